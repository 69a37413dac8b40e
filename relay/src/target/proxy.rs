//! Forward proxy for the target (`[target.proxy]`): an `http://` proxy that
//! https targets are tunnelled through with CONNECT (http targets are sent to
//! it as absolute-URI requests), optional basic proxy auth, a `no_proxy`
//! list, or the `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` environment when asked
//! to. Without a `[target.proxy]` section no proxy is used, whatever the
//! environment says.
//!
//! Not here: TLS to the target inside the tunnel (`tls.rs`; end to end, the
//! proxy sees only the CONNECT host and port). A refused CONNECT (407, 403)
//! or an unreachable proxy is a connect error to the relay: an outage that
//! pauses delivery, never a dead letter.

use serde::{Deserialize, Serialize};

use crate::config::problem::ConfigProblem;
use crate::secret::SecretSource;
use crate::target::error::ClientError;

/// Variables read when `from_env = true` (by reqwest, the way curl reads
/// them); only their names are ever logged.
const ENV_VARS: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// `[target.proxy]`: the forward proxy between the relay and the target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The proxy, `http://host:port`. Required unless `from_env = true`.
    /// Without credentials: `check-config` prints it, so they go in
    /// `username`/`password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Basic proxy auth (`Proxy-Authorization`) user; set together with
    /// `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Basic proxy auth password: inline, `{ env = "VAR" }` or
    /// `{ file = "/path" }`; read at start, never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretSource>,
    /// Hosts reached directly, not through the proxy: a domain (with or
    /// without a leading dot: it and its subdomains), an IP address, a CIDR
    /// network such as `10.0.0.0/8`, or `*` for every host.
    #[serde(default)]
    pub no_proxy: Vec<String>,
    /// Use `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY` (or their
    /// lower-case forms) from the relay's environment instead of `url`,
    /// `username`, `password` and `no_proxy`.
    #[serde(default)]
    pub from_env: bool,
}

fn problem(key: &str, problem: impl Into<String>) -> ConfigProblem {
    ConfigProblem {
        path: format!("target.proxy.{key}"),
        problem: problem.into(),
    }
}

fn setting(p: ConfigProblem) -> ClientError {
    ClientError::Setting {
        path: p.path,
        problem: p.problem,
    }
}

impl ProxyConfig {
    /// Problems of this section, with key paths under `target.proxy`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if self.from_env {
            let env_instead = |key: &str, what: &str| {
                problem(
                    key,
                    format!("not used with from_env = true ({what} comes from the environment)"),
                )
            };
            if self.url.is_some() {
                p.push(env_instead("url", "the proxy"));
            }
            if self.username.is_some() {
                p.push(env_instead("username", "put credentials in HTTPS_PROXY;"));
            }
            if self.password.is_some() {
                p.push(env_instead("password", "put credentials in HTTPS_PROXY;"));
            }
            if !self.no_proxy.is_empty() {
                p.push(env_instead("no_proxy", "NO_PROXY"));
            }
            return p;
        }
        match &self.url {
            None => p.push(problem("url", "required (or set from_env = true)")),
            Some(url) => {
                if let Err(e) = check_url(url) {
                    p.push(e);
                }
            }
        }
        match (&self.username, &self.password) {
            (Some(_), None) => p.push(problem("password", "set together with username")),
            (None, Some(_)) => p.push(problem("username", "set together with password")),
            _ => {}
        }
        for (i, entry) in self.no_proxy.iter().enumerate() {
            if let Err(why) = check_no_proxy(entry) {
                p.push(problem(&format!("no_proxy[{i}]"), why));
            }
        }
        p
    }
}

/// An `http://host[:port]` URL without credentials.
fn check_url(url: &str) -> Result<reqwest::Url, ConfigProblem> {
    let u = reqwest::Url::parse(url).map_err(|e| problem("url", format!("{e}")))?;
    if u.scheme() != "http" {
        return Err(problem(
            "url",
            format!(
                "expected an http:// proxy URL, got {}:// (TLS to the proxy itself is not supported)",
                u.scheme()
            ),
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(problem("url", "has no host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(problem(
            "url",
            "credentials do not belong in the URL (check-config prints it): \
             use username and password",
        ));
    }
    Ok(u)
}

/// One `no_proxy` entry, as reqwest will read it: a CIDR network must parse,
/// or it would silently be taken for a domain name.
fn check_no_proxy(entry: &str) -> Result<(), String> {
    if entry.is_empty() {
        return Err("empty entry".into());
    }
    if entry.contains(',') || entry.chars().any(char::is_whitespace) {
        return Err(format!(
            "{entry:?}: one host per entry, no commas or spaces"
        ));
    }
    if let Some((addr, bits)) = entry.split_once('/') {
        let max = match addr.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => 32,
            Ok(std::net::IpAddr::V6(_)) => 128,
            Err(_) => return Err(format!("{entry:?}: {addr:?} is not an IP address")),
        };
        match bits.parse::<u8>() {
            Ok(b) if b <= max => {}
            _ => return Err(format!("{entry:?}: prefix length must be 0 to {max}")),
        }
    }
    Ok(())
}

/// Applies the proxy settings (or "no proxy") to the target's client builder.
///
/// # Errors
/// The proxy URL is not usable or the password cannot be read.
pub fn configure(
    cfg: Option<&ProxyConfig>,
    b: reqwest::ClientBuilder,
) -> Result<reqwest::ClientBuilder, ClientError> {
    let Some(cfg) = cfg else {
        // DESIGN: the target is reached directly unless the config says
        // otherwise; an inherited HTTPS_PROXY must not reroute deliveries.
        return Ok(b.no_proxy());
    };
    if cfg.from_env {
        let set: Vec<&str> = ENV_VARS
            .into_iter()
            .filter(|v| std::env::var_os(v).is_some())
            .collect();
        tracing::info!(
            variables = ?set,
            "target proxy taken from the environment"
        );
        // reqwest reads the environment at build when no proxy is set.
        return Ok(b);
    }
    let url = check_url(cfg.url.as_deref().unwrap_or_default()).map_err(setting)?;
    let mut proxy =
        reqwest::Proxy::all(url.as_str()).map_err(|e| setting(problem("url", e.to_string())))?;
    if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
        let password = password
            .resolve()
            .map_err(|e| setting(problem("password", e.to_string())))?;
        proxy = proxy.basic_auth(user, &password);
    }
    if !cfg.no_proxy.is_empty() {
        proxy = proxy.no_proxy(reqwest::NoProxy::from_string(&cfg.no_proxy.join(",")));
    }
    tracing::info!(
        proxy = %format!("{}:{}", url.host_str().unwrap_or_default(), url.port_or_known_default().unwrap_or(80)),
        auth = cfg.username.is_some(),
        no_proxy = cfg.no_proxy.len(),
        "target proxy"
    );
    Ok(b.proxy(proxy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(c: &ProxyConfig) -> Vec<String> {
        c.problems().into_iter().map(|p| p.to_string()).collect()
    }

    fn with_url(url: &str) -> ProxyConfig {
        ProxyConfig {
            url: Some(url.into()),
            ..ProxyConfig::default()
        }
    }

    #[test]
    fn a_plain_http_proxy_is_valid_and_builds() {
        let c = with_url("http://proxy.corp:3128");
        assert!(c.problems().is_empty());
        assert!(
            configure(Some(&c), reqwest::Client::builder())
                .unwrap()
                .build()
                .is_ok()
        );
    }

    #[test]
    fn the_url_is_checked() {
        for (url, wanted) in [
            (
                "https://proxy:3128",
                "expected an http:// proxy URL, got https://",
            ),
            (
                "socks5://proxy:1080",
                "expected an http:// proxy URL, got socks5://",
            ),
            (
                "http://u:p@proxy:3128",
                "credentials do not belong in the URL",
            ),
            ("proxy:3128", "expected an http:// proxy URL"),
            ("not a url", "relative URL without a base"),
        ] {
            let p = paths(&with_url(url));
            assert_eq!(p.len(), 1, "{url}: {p:?}");
            assert!(p[0].starts_with("target.proxy.url: "), "{p:?}");
            assert!(p[0].contains(wanted), "{url}: {p:?}");
        }
        assert_eq!(
            paths(&ProxyConfig::default()),
            ["target.proxy.url: required (or set from_env = true)"]
        );
    }

    #[test]
    fn username_and_password_go_together() {
        let c = ProxyConfig {
            username: Some("relay".into()),
            ..with_url("http://proxy:3128")
        };
        assert_eq!(
            paths(&c),
            ["target.proxy.password: set together with username"]
        );
        let c = ProxyConfig {
            password: Some(SecretSource::Inline("pw".into())),
            ..with_url("http://proxy:3128")
        };
        assert_eq!(
            paths(&c),
            ["target.proxy.username: set together with password"]
        );
    }

    #[test]
    fn an_unreadable_password_names_the_key_and_not_the_value() {
        let c = ProxyConfig {
            username: Some("relay".into()),
            password: Some(SecretSource::Env {
                env: "CPN_TEST_PROXY_PASSWORD_UNSET".into(),
            }),
            ..with_url("http://proxy:3128")
        };
        assert!(c.problems().is_empty(), "resolved at start, not at load");
        let err = configure(Some(&c), reqwest::Client::builder())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "target.proxy.password: environment variable CPN_TEST_PROXY_PASSWORD_UNSET is not set"
        );
    }

    #[test]
    fn no_proxy_entries_are_checked() {
        for (entry, ok) in [
            ("localhost", true),
            (".internal.corp", true),
            ("10.0.0.0/8", true),
            ("fd00::/8", true),
            ("192.168.1.7", true),
            ("*", true),
            ("10.0.0.0/33", false),
            ("intranet/8", false),
            ("a.corp,b.corp", false),
            ("a.corp b.corp", false),
            ("", false),
        ] {
            let c = ProxyConfig {
                no_proxy: vec![entry.into()],
                ..with_url("http://proxy:3128")
            };
            let p = paths(&c);
            assert_eq!(p.is_empty(), ok, "{entry:?}: {p:?}");
            if !ok {
                assert!(p[0].starts_with("target.proxy.no_proxy[0]: "), "{p:?}");
            }
        }
    }

    #[test]
    fn from_env_excludes_the_explicit_keys() {
        let c = ProxyConfig {
            from_env: true,
            ..ProxyConfig::default()
        };
        assert!(c.problems().is_empty());
        let c = ProxyConfig {
            from_env: true,
            username: Some("u".into()),
            password: Some(SecretSource::Inline("pw".into())),
            no_proxy: vec!["localhost".into()],
            ..with_url("http://proxy:3128")
        };
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.path).collect();
        assert_eq!(
            keys,
            [
                "target.proxy.url",
                "target.proxy.username",
                "target.proxy.password",
                "target.proxy.no_proxy"
            ]
        );
    }

    #[test]
    fn the_password_is_redacted_when_printed() {
        let c: ProxyConfig = toml::from_str(
            "url = \"http://proxy:3128\"\nusername = \"relay\"\npassword = \"hunter2\"\n",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!toml::to_string(&c).unwrap().contains("hunter2"));
        assert!(toml::from_str::<ProxyConfig>("proxy = \"http://p:1\"\n").is_err());
    }
}
