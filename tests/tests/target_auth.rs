//! Authentication and signing against real counterparts on loopback: an
//! OAuth2 token endpoint in this test (counting token requests, issuing
//! short-lived tokens), the mock CRM checking `Authorization`, a token file
//! rotated mid-run, and the relay's Standard Webhooks signatures checked by
//! an independent verifier written from the spec in Python (stdlib only).
//!
//! Every test runs the relay against the real local broker and fails, never
//! skips, when the broker or `python3` is missing.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cpn_e2e::relay::{RunningRelay, fixture};
use cpn_e2e::{event, produce, producer, unique, wait_for};
use cpn_mock_crm::{Behavior, MockCrm, Received, Reply};
use cpn_relay::secret::Secret;
use cpn_relay::secret::SecretSource;
use cpn_relay::target::auth::{AuthConfig, ClientAuth};
use cpn_relay::target::signing::SigningConfig;

const WAIT: Duration = Duration::from_secs(60);
const CLIENT_ID: &str = "cpn-relay";
const CLIENT_SECRET: &str = "cl1ent s3cret&=";

async fn crm(behavior: Behavior) -> Result<MockCrm> {
    Ok(MockCrm::start(MockCrm::bind("127.0.0.1:0".parse()?)?, behavior).await?)
}

/// The requests answered 200 whose GUID is in `guids`.
fn delivered(crm: &MockCrm, guids: &[String]) -> Vec<Received> {
    crm.received()
        .into_iter()
        .filter(|r| r.status_sent == 200 && r.etag.as_ref().is_some_and(|g| guids.contains(g)))
        .collect()
}

async fn wait_delivered(crm: &MockCrm, guids: &[String]) -> Result<Vec<Received>> {
    wait_for(&format!("{} deliveries", guids.len()), WAIT, || async {
        let d = delivered(crm, guids);
        let distinct: HashSet<_> = d.iter().filter_map(|r| r.etag.clone()).collect();
        (distinct.len() == guids.len()).then_some(d)
    })
    .await
}

/// Locks, carrying on after a panicked holder (the data is plain).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn secret_file(contents: &str) -> Result<String> {
    let p = std::env::temp_dir().join(unique("cpn-auth-secret"));
    std::fs::write(&p, contents).context("writing a secret file")?;
    Ok(p.to_string_lossy().into_owned())
}

/// Replaces `path` the way secret managers do: write aside, then rename.
fn rotate_file(path: &str, contents: &str) -> Result<()> {
    let tmp = format!("{path}.new");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

// ---------------------------------------------------------------- OAuth2 --

/// One token request as the endpoint saw it.
#[derive(Debug, Clone)]
struct TokenRequest {
    authorization: Option<String>,
    content_type: Option<String>,
    form: String,
}

/// An OAuth2 token endpoint: issues `tok-<n>` valid for `expires_in`, records
/// every request, and tells the CRM which tokens are valid right now.
#[derive(Debug)]
struct Idp {
    expires_in: Duration,
    up: AtomicBool,
    count: AtomicUsize,
    requests: Mutex<Vec<TokenRequest>>,
    /// token → expiry (the endpoint's clock).
    issued: Mutex<Vec<(String, Instant)>>,
}

impl Idp {
    fn new(expires_in: Duration) -> Arc<Self> {
        Arc::new(Idp {
            expires_in,
            up: AtomicBool::new(true),
            count: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            issued: Mutex::new(Vec::new()),
        })
    }

    fn token_requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    fn is_valid(&self, authorization: Option<&str>) -> bool {
        let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
            return false;
        };
        let now = Instant::now();
        lock(&self.issued)
            .iter()
            .any(|(t, exp)| t == token && now < *exp)
    }

    /// Server-side revocation of every token issued so far.
    fn revoke_all(&self) {
        lock(&self.issued).clear();
    }

    /// A CRM that answers 401 unless the request carries a valid token.
    fn guarded_crm(self: &Arc<Self>) -> Behavior {
        let idp = self.clone();
        Behavior::custom(move |req| {
            (!idp.is_valid(req.header("authorization"))).then(|| Reply::status(401))
        })
    }
}

async fn token_endpoint(State(idp): State<Arc<Idp>>, headers: HeaderMap, body: String) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    lock(&idp.requests).push(TokenRequest {
        authorization: h("authorization"),
        content_type: h("content-type"),
        form: body,
    });
    let n = idp.count.fetch_add(1, Ordering::SeqCst) + 1;
    if !idp.up.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let token = format!("tok-{n}");
    lock(&idp.issued).push((token.clone(), Instant::now() + idp.expires_in));
    axum::Json(serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": idp.expires_in.as_secs(),
    }))
    .into_response()
}

async fn serve_idp(idp: Arc<Idp>, listener: tokio::net::TcpListener) -> Result<String> {
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/token", axum::routing::post(token_endpoint))
        .with_state(idp);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/token"))
}

async fn start_idp(idp: Arc<Idp>) -> Result<String> {
    serve_idp(idp, tokio::net::TcpListener::bind("127.0.0.1:0").await?).await
}

fn oauth2(token_url: &str, client_auth: ClientAuth, secret_path: &str) -> AuthConfig {
    AuthConfig::Oauth2 {
        token_url: Some(token_url.to_owned()),
        client_id: Some(CLIENT_ID.to_owned()),
        client_secret: Some(SecretSource::File {
            file: secret_path.to_owned(),
        }),
        scope: Some("crm.write crm.read".to_owned()),
        audience: Some("https://crm.example".to_owned()),
        client_auth,
        refresh_before_ms: 60_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_token_is_fetched_once_and_shared() -> Result<()> {
    let s = fixture(3).await?;
    let idp = Idp::new(Duration::from_secs(3600));
    let token_url = start_idp(idp.clone()).await?;
    let crm = crm(idp.guarded_crm()).await?;
    let mut cfg = s.config(&crm.url());
    cfg.target.auth = oauth2(&token_url, ClientAuth::Post, &secret_file(CLIENT_SECRET)?);
    cfg.target
        .headers
        .insert("X-Api-Key".into(), Secret("k-123".into()));
    let relay = RunningRelay::start(cfg)?;
    let guids = s.produce_events("list-o", 20).await?;
    let got = wait_delivered(&crm, &guids).await?;
    relay.stop().await?;

    assert_eq!(
        idp.token_requests(),
        1,
        "one token for 20 concurrent deliveries"
    );
    let req = lock(&idp.requests)[0].clone();
    assert_eq!(
        req.form,
        "grant_type=client_credentials&client_id=cpn-relay&client_secret=cl1ent+s3cret%26%3D\
         &scope=crm.write+crm.read&audience=https%3A%2F%2Fcrm.example"
    );
    assert_eq!(
        req.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        req.authorization, None,
        "client_auth = post sends no header"
    );
    for r in &got {
        assert_eq!(r.header("authorization"), Some("Bearer tok-1"));
        assert_eq!(r.header("x-api-key"), Some("k-123"), "static headers kept");
    }
    assert!(
        crm.received().iter().all(|r| r.status_sent == 200),
        "no request went out without a valid token"
    );
    assert_eq!(s.dead_letters()?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_token_is_refreshed_before_it_expires() -> Result<()> {
    let s = fixture(1).await?;
    // Tokens live 2 s; refresh 1 s before expiry. The CRM refuses expired
    // tokens, so a single 401 would mean the relay used one too long.
    let idp = Idp::new(Duration::from_secs(2));
    let token_url = start_idp(idp.clone()).await?;
    let crm = crm(idp.guarded_crm()).await?;
    let mut cfg = s.config(&crm.url());
    let mut auth = oauth2(&token_url, ClientAuth::Post, &secret_file(CLIENT_SECRET)?);
    if let AuthConfig::Oauth2 {
        refresh_before_ms, ..
    } = &mut auth
    {
        *refresh_before_ms = 1_000;
    }
    cfg.target.auth = auth;
    let relay = RunningRelay::start(cfg)?;
    let p = producer(&s.brokers)?;
    let mut guids = Vec::new();
    // A steady trickle for about 4.5 s: three token lifetimes' worth of refreshes.
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_millis(4_500) {
        let (guid, body) = event("list-e", i, 0);
        produce(&p, &s.topic, &format!("list-e:{i}"), Some(&guid), &body).await?;
        guids.push(guid);
        i += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    wait_delivered(&crm, &guids).await?;
    relay.stop().await?;

    let refused: Vec<_> = crm
        .received()
        .into_iter()
        .filter(|r| r.status_sent != 200)
        .map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert!(
        refused.is_empty(),
        "requests with an expired token: {refused:?}"
    );
    let fetched = idp.token_requests();
    // About one a second over ~4.5 s; far fewer than one per request.
    assert!(
        (3..=10).contains(&fetched) && fetched < guids.len() / 2,
        "expected a refresh about every second, got {fetched} token requests for {} events",
        guids.len()
    );
    assert_eq!(s.dead_letters()?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_re_mints_the_token_and_resends_once() -> Result<()> {
    let s = fixture(1).await?;
    let idp = Idp::new(Duration::from_secs(3600));
    let token_url = start_idp(idp.clone()).await?;
    let crm = crm(idp.guarded_crm()).await?;
    let mut cfg = s.config(&crm.url());
    cfg.target.auth = oauth2(&token_url, ClientAuth::Basic, &secret_file(CLIENT_SECRET)?);
    let relay = RunningRelay::start(cfg)?;
    let first = s.produce_events("list-m", 1).await?;
    wait_delivered(&crm, &first).await?;
    assert_eq!(idp.token_requests(), 1);
    // The relay ignores a 401 for a token younger than a second (it was
    // minted after the refused request left); let tok-1 age past that.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    idp.revoke_all();
    let p = producer(&s.brokers)?;
    let (guid, body) = event("list-m", 2, 0);
    produce(&p, &s.topic, "list-m:2", Some(&guid), &body).await?;
    let second = vec![guid.clone()];
    wait_delivered(&crm, &second).await?;
    relay.stop().await?;

    let tries: Vec<(u16, Option<String>)> = crm
        .received()
        .into_iter()
        .filter(|r| r.etag.as_deref() == Some(guid.as_str()))
        .map(|r| (r.status_sent, r.header("authorization").map(str::to_owned)))
        .collect();
    assert_eq!(
        tries,
        vec![
            (401, Some("Bearer tok-1".to_owned())),
            (200, Some("Bearer tok-2".to_owned()))
        ]
    );
    assert_eq!(idp.token_requests(), 2, "exactly one re-mint");
    let reqs = lock(&idp.requests).clone();
    for r in &reqs {
        // RFC 6749 §2.3.1: form-encode, then basic. Expected value computed
        // with coreutils: printf 'cpn-relay:cl1ent+s3cret%%26%%3D' | base64
        assert_eq!(
            r.authorization.as_deref(),
            Some("Basic Y3BuLXJlbGF5OmNsMWVudCtzM2NyZXQlMjYlM0Q=")
        );
        assert_eq!(
            r.form,
            "grant_type=client_credentials&scope=crm.write+crm.read&audience=https%3A%2F%2Fcrm.example"
        );
    }
    assert_eq!(s.dead_letters()?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_down_pauses_delivery_and_dead_letters_nothing() -> Result<()> {
    let s = fixture(2).await?;
    // A port with nothing listening: connection refused, a real outage.
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let idp = Idp::new(Duration::from_secs(3600));
    let crm = crm(idp.guarded_crm()).await?;
    let mut cfg = s.config(&crm.url());
    cfg.target.auth = oauth2(
        &format!("http://{addr}/token"),
        ClientAuth::Post,
        &secret_file(CLIENT_SECRET)?,
    );
    // test_config allows 5 attempts with backoff under 200 ms: 3 s of
    // outage would exhaust every record if auth failures were charged to
    // the records like a 503 from one chain. They count as connect errors,
    // which open the circuit (failure_threshold = 5) before any record can
    // use its budget up, and are not charged while it is open.
    assert!(cfg.retry.max_attempts >= cfg.circuit.failure_threshold);
    let relay = RunningRelay::start(cfg)?;
    let guids = s.produce_events("list-d", 6).await?;
    // Observing that nothing happens takes time: 3 s of outage.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(crm.received_count(), 0, "nothing sent without a token");
    assert_eq!(
        s.dead_letters()?,
        0,
        "an auth outage is not the records' fault"
    );

    // The endpoint comes up, answering 503 at first (also an outage)...
    idp.up.store(false, Ordering::SeqCst);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("re-binding {addr} for the token endpoint"))?;
    serve_idp(idp.clone(), listener).await?;
    wait_for("a token request answered 503", WAIT, || async {
        (idp.token_requests() > 0).then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(crm.received_count(), 0);
    assert_eq!(s.dead_letters()?, 0);
    // ...then issues tokens: everything is delivered.
    idp.up.store(true, Ordering::SeqCst);
    wait_delivered(&crm, &guids).await?;
    relay.stop().await?;
    assert_eq!(s.dead_letters()?, 0);
    Ok(())
}

// ------------------------------------------------------ basic and bearer --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_sends_the_rfc_7617_header_next_to_static_headers() -> Result<()> {
    let s = fixture(1).await?;
    // printf 'relay:s3cret' | base64
    const EXPECTED: &str = "Basic cmVsYXk6czNjcmV0";
    let crm = crm(Behavior::custom(|req| {
        (req.header("authorization") != Some(EXPECTED)).then(|| Reply::status(401))
    }))
    .await?;
    let mut cfg = s.config(&crm.url());
    cfg.target.auth = AuthConfig::Basic {
        username: Some("relay".into()),
        password: Some(SecretSource::File {
            file: secret_file("s3cret\n")?,
        }),
    };
    cfg.target
        .headers
        .insert("X-Tenant".into(), Secret("acme".into()));
    let relay = RunningRelay::start(cfg)?;
    let guids = s.produce_events("list-b", 5).await?;
    let got = wait_delivered(&crm, &guids).await?;
    relay.stop().await?;
    for r in &got {
        assert_eq!(r.header("authorization"), Some(EXPECTED));
        assert_eq!(r.header("x-tenant"), Some("acme"));
    }
    assert!(crm.received().iter().all(|r| r.status_sent == 200));
    assert_eq!(s.dead_letters()?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_file_rotated_mid_run_is_picked_up() -> Result<()> {
    let s = fixture(1).await?;
    let accepted: Arc<Mutex<HashSet<String>>> =
        Arc::new(Mutex::new(HashSet::from(["Bearer tok-AAAA".to_owned()])));
    let crm = crm(Behavior::custom({
        let accepted = accepted.clone();
        move |req| {
            let ok = req
                .header("authorization")
                .is_some_and(|a| lock(&accepted).contains(a));
            (!ok).then(|| Reply::status(401))
        }
    }))
    .await?;
    let path = secret_file("tok-AAAA\n")?;
    let mut cfg = s.config(&crm.url());
    cfg.target.auth = AuthConfig::BearerFile {
        token_file: Some(path.clone()),
    };
    let relay = RunningRelay::start(cfg)?;
    let auth_of = |guids: &[String]| -> HashSet<Option<String>> {
        delivered(&crm, guids)
            .iter()
            .map(|r| r.header("authorization").map(str::to_owned))
            .collect()
    };

    let a = s.produce_events("list-f1", 3).await?;
    wait_delivered(&crm, &a).await?;
    assert_eq!(auth_of(&a), HashSet::from([Some("Bearer tok-AAAA".into())]));

    // Rotation the target has not enforced yet: picked up by the file check
    // (at most once a second), without any 401.
    lock(&accepted).insert("Bearer tok-BBBBBB".into());
    rotate_file(&path, "tok-BBBBBB\n")?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let b = s.produce_events("list-f2", 3).await?;
    wait_delivered(&crm, &b).await?;
    assert_eq!(
        auth_of(&b),
        HashSet::from([Some("Bearer tok-BBBBBB".into())])
    );
    assert!(
        crm.received().iter().all(|r| r.status_sent == 200),
        "the new token was used before any 401"
    );

    // Rotation enforced at once (same length, immediately): a 401 makes the
    // relay read the file again and resend.
    *lock(&accepted) = HashSet::from(["Bearer tok-CCCCCC".to_owned()]);
    rotate_file(&path, "tok-CCCCCC\n")?;
    let c = s.produce_events("list-f3", 3).await?;
    wait_delivered(&crm, &c).await?;
    relay.stop().await?;
    assert_eq!(
        auth_of(&c),
        HashSet::from([Some("Bearer tok-CCCCCC".into())])
    );
    assert_eq!(s.dead_letters()?, 0);
    Ok(())
}

// --------------------------------------------------------------- signing --

/// A Standard Webhooks verifier written from the spec
/// (<https://www.standardwebhooks.com>, "Verifying webhook signatures"),
/// stdlib only: it shares no code with the relay. Reads
/// `{"secrets": [...], "requests": [{"id","timestamp","signature","body_hex"}]}`
/// on stdin. It first checks itself against the spec's published vector.
const PY_VERIFIER: &str = r#"
import base64, hashlib, hmac, json, sys, time

def key(secret):
    return base64.b64decode(secret[len("whsec_"):] if secret.startswith("whsec_") else secret)

def sign(secret, msg_id, ts, body):
    mac = hmac.new(key(secret), f"{msg_id}.{ts}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()

def verifies(secret, msg_id, ts, sig_header, body):
    if abs(time.time() - int(ts)) > 300:
        return False
    want = sign(secret, msg_id, ts, body)
    return any(hmac.compare_digest(want, s) for s in sig_header.split(" "))

spec = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", b'{"test": 2432232314}')
assert sign(*spec) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "verifier disagrees with the spec vector"

data = json.load(sys.stdin)
for r in data["requests"]:
    body = bytes.fromhex(r["body_hex"])
    sigs = r["signature"].split(" ")
    if len(sigs) != len(data["secrets"]):
        sys.exit(f"{r['id']}: {len(sigs)} signatures for {len(data['secrets'])} secrets")
    for i, secret in enumerate(data["secrets"]):
        if not verifies(secret, r["id"], r["timestamp"], r["signature"], body):
            sys.exit(f"{r['id']}: no signature verifies with secret {i}")
        if not hmac.compare_digest(sign(secret, r["id"], r["timestamp"], body), sigs[i]):
            sys.exit(f"{r['id']}: signature {i} is not secret {i}'s")
    if verifies(data["secrets"][0], r["id"], r["timestamp"], r["signature"], body + b" "):
        sys.exit(f"{r['id']}: a tampered body verifies")
print(f"verified {len(data['requests'])} requests")
"#;

fn python_verify(secrets: &[&str], got: &[Received]) -> Result<String> {
    use std::io::Write;
    let requests: Vec<_> = got
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.header("webhook-id"),
                "timestamp": r.header("webhook-timestamp"),
                "signature": r.header("webhook-signature"),
                "body_hex": r.body.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            })
        })
        .collect();
    let input = serde_json::json!({ "secrets": secrets, "requests": requests }).to_string();
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(PY_VERIFIER)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context(
            "running python3 (the independent signature verifier needs it: \
             apt-get install python3)",
        )?;
    child
        .stdin
        .take()
        .context("python3 stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "python verifier failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_verify_with_an_independent_python_verifier_for_each_secret() -> Result<()> {
    let s = fixture(2).await?;
    let crm = crm(Behavior::status(200)).await?;
    // The spec's example secret, and a second one (base64 of
    // "second-secret-for-rotation", no prefix) read from a file.
    const NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OLD: &str = "c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24=";
    let mut cfg = s.config(&crm.url());
    cfg.target.signing = Some(SigningConfig {
        secrets: vec![
            SecretSource::Inline(NEW.into()),
            SecretSource::File {
                file: secret_file(&format!("{OLD}\n"))?,
            },
        ],
    });
    let relay = RunningRelay::start(cfg)?;
    let guids = s.produce_events("list-s", 8).await?;
    let got = wait_delivered(&crm, &guids).await?;
    relay.stop().await?;
    for r in &got {
        assert_eq!(
            r.header("webhook-id"),
            r.etag.as_deref(),
            "webhook-id is the GUID"
        );
        let ts: u64 = r
            .header("webhook-timestamp")
            .context("webhook-timestamp")?
            .parse()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        assert!(now.abs_diff(ts) < 120, "timestamp {ts} is not now ({now})");
    }
    let said = python_verify(&[NEW, OLD], &got)?;
    assert_eq!(said, format!("verified {} requests", got.len()));
    // A receiver holding only one of the secrets accepts too (rotation):
    // covered by the verifier's per-secret check above.
    assert_eq!(s.dead_letters()?, 0);
    Ok(())
}
