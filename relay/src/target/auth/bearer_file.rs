//! A bearer token kept in a file that something else rotates (a Vault
//! agent, a Kubernetes projected secret, a cron job).
//!
//! The file's modification time and length are checked at most once per
//! [`STAT_INTERVAL`]; when they change the token is read again. After a 401
//! the next request reads the file whatever its stamp (a same-length token
//! written within the file system's mtime granularity would otherwise be
//! missed). A file that cannot be read while an earlier token is known
//! keeps that token (rotation tools often replace files non-atomically);
//! only with no token at all is it an [`AuthError`].

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::HeaderValue;

use super::{AuthError, bearer_header};

/// How often the file's stamp is checked at most.
pub const STAT_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies one version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl FileStamp {
    fn of(m: &std::fs::Metadata) -> Self {
        FileStamp {
            modified: m.modified().ok(),
            len: m.len(),
        }
    }
}

/// What one request does before using the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Use the cached token.
    Cached,
    /// Compare the file's stamp; read it when changed.
    Stat,
    /// Read the file.
    Read,
}

/// Decides the check for a request at `now`.
pub fn next_check(have_token: bool, force_read: bool, checked_at: Instant, now: Instant) -> Check {
    if !have_token || force_read {
        Check::Read
    } else if now.saturating_duration_since(checked_at) >= STAT_INTERVAL {
        Check::Stat
    } else {
        Check::Cached
    }
}

/// What [`load`] found.
enum Loaded {
    /// Same stamp as before; not read.
    Unchanged,
    /// The file's stamp and contents.
    Read(FileStamp, String),
}

/// Stats the file and reads it when its stamp differs from `old` or `force`.
fn load(path: &std::path::Path, old: Option<FileStamp>, force: bool) -> std::io::Result<Loaded> {
    let stamp = FileStamp::of(&std::fs::metadata(path)?);
    if !force && Some(stamp) == old {
        return Ok(Loaded::Unchanged);
    }
    Ok(Loaded::Read(stamp, std::fs::read_to_string(path)?))
}

#[derive(Debug)]
struct State {
    header: Option<HeaderValue>,
    stamp: Option<FileStamp>,
    checked_at: Instant,
    force_read: bool,
}

/// The token file and what was last read from it.
#[derive(Debug)]
pub struct BearerFile {
    path: PathBuf,
    /// Never held across an await.
    state: Mutex<State>,
}

impl BearerFile {
    /// Reads the token now, so a wrong path fails at start. Synchronous:
    /// called once while the relay is being built.
    ///
    /// # Errors
    /// The file cannot be read or holds no usable token.
    pub fn open(path: PathBuf) -> Result<Self, String> {
        let stamp = std::fs::metadata(&path)
            .map(|m| FileStamp::of(&m))
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let header = bearer_header(text.trim()).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(BearerFile {
            path,
            state: Mutex::new(State {
                header: Some(header),
                stamp: Some(stamp),
                checked_at: Instant::now(),
                force_read: false,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next read ignores the stamp (the target answered 401).
    pub fn force_reread(&self) {
        self.state().force_read = true;
    }

    /// The `Authorization` value for one request.
    ///
    /// # Errors
    /// The file cannot be read and no earlier token is known.
    pub async fn header(&self) -> Result<HeaderValue, AuthError> {
        let now = Instant::now();
        let (check, cached, old_stamp) = {
            let mut s = self.state();
            let check = next_check(s.header.is_some(), s.force_read, s.checked_at, now);
            if check != Check::Cached {
                // Claim this check so concurrent requests use the cached
                // token meanwhile instead of all reading the file.
                s.checked_at = now;
                s.force_read = false;
            }
            (check, s.header.clone(), s.stamp)
        };
        if check == Check::Cached {
            return cached.ok_or_else(|| AuthError("no token read from the token file".into()));
        }
        let path = self.path.clone();
        let force = check == Check::Read;
        // Plain file I/O, off the async threads.
        let loaded = tokio::task::spawn_blocking(move || load(&path, old_stamp, force))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        let (stamp, text) = match loaded {
            Ok(Loaded::Unchanged) => {
                return cached.ok_or_else(|| AuthError("no token read from the token file".into()));
            }
            Ok(Loaded::Read(stamp, text)) => (stamp, text),
            Err(e) => return self.keep(cached, format!("cannot read token file: {e}")),
        };
        match bearer_header(text.trim()) {
            Ok(h) => {
                if Some(stamp) != old_stamp {
                    tracing::info!("bearer token file changed; using the new token");
                }
                let mut s = self.state();
                s.header = Some(h.clone());
                s.stamp = Some(stamp);
                Ok(h)
            }
            Err(e) => self.keep(cached, format!("token file: {e}")),
        }
    }

    /// A read failed: keep the earlier token if there is one.
    fn keep(&self, cached: Option<HeaderValue>, problem: String) -> Result<HeaderValue, AuthError> {
        match cached {
            Some(h) => {
                tracing::warn!(path = %self.path.display(), %problem, "keeping the previous bearer token");
                Ok(h)
            }
            None => Err(AuthError(format!("{}: {problem}", self.path.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_the_stamp_at_most_once_per_interval() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let cases = [
            // (have token, forced, since last check ms, expected)
            (true, false, 0, Check::Cached),
            (true, false, 999, Check::Cached),
            (true, false, 1000, Check::Stat),
            (true, false, 60_000, Check::Stat),
            (true, true, 0, Check::Read),
            (false, false, 0, Check::Read),
        ];
        for (have, forced, after, want) in cases {
            assert_eq!(
                next_check(have, forced, t0, ms(after)),
                want,
                "{have} {forced} {after}"
            );
        }
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "cpn-bearer-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ))
    }

    #[tokio::test]
    async fn rereads_on_force_and_keeps_the_old_token_when_the_file_vanishes() {
        let p = temp("force");
        std::fs::write(&p, "tok-aaaa\n").unwrap();
        let f = BearerFile::open(p.clone()).unwrap();
        assert_eq!(f.header().await.unwrap(), "Bearer tok-aaaa");
        // Same length, within the stat interval: only a forced read sees it.
        std::fs::write(&p, "tok-bbbb").unwrap();
        assert_eq!(f.header().await.unwrap(), "Bearer tok-aaaa");
        f.force_reread();
        assert_eq!(f.header().await.unwrap(), "Bearer tok-bbbb");
        std::fs::remove_file(&p).unwrap();
        f.force_reread();
        assert_eq!(f.header().await.unwrap(), "Bearer tok-bbbb");
    }

    #[test]
    fn a_missing_or_empty_file_fails_at_open() {
        let p = temp("missing");
        assert!(
            BearerFile::open(p.clone())
                .unwrap_err()
                .contains("cannot read")
        );
        std::fs::write(&p, "  \n").unwrap();
        assert!(BearerFile::open(p.clone()).unwrap_err().contains("empty"));
        let _ = std::fs::remove_file(&p);
    }
}
