//! What the target receives on the wire, byte for byte, from
//! `cpn_relay::target::client::Target` (no broker needed): header names in
//! Title-Case over HTTP/1.1 by default, as OCS writes them, lower case with
//! `title_case_headers = false`, and the configured `user_agent`.

use std::time::Duration;

use bytes::Bytes;
use cpn_relay::secret::Secret;
use cpn_relay::target::client::{Target, USER_AGENT};
use cpn_relay::target::settings::TargetConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const GUID: &str = "0b5e7a1c-3d2f-4e6a-9b8c-7d6e5f4a3b2c";
const BODY: &[u8] = br#"{"GSW_CHAIN_ID":1}"#;

/// Posts one event with `configure` applied and returns the raw request
/// the server read (head and body).
async fn raw_request(configure: impl FnOnce(&mut TargetConfig)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = sock.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed before the request ended");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(end) = text.find("\r\n\r\n")
                && buf.len() >= end + 4 + BODY.len()
            {
                break;
            }
        }
        sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        String::from_utf8_lossy(&buf).into_owned()
    });
    let mut cfg = TargetConfig {
        url: format!("http://{addr}/crm"),
        ..TargetConfig::default()
    };
    cfg.headers
        .insert("X-Api-Key".to_owned(), Secret("k-123".to_owned()));
    configure(&mut cfg);
    let target = Target::new(&cfg).expect("target");
    let report = target.post(Bytes::from_static(BODY), GUID).await;
    let raw = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server read the request in time")
        .expect("server task");
    assert!(
        format!("{:?}", report.attempt).contains("200"),
        "{:?}",
        report.attempt
    );
    raw
}

fn header_lines(raw: &str) -> Vec<&str> {
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n").skip(1).collect()
}

#[tokio::test]
async fn header_names_go_out_title_cased_by_default_as_ocs_writes_them() {
    let raw = raw_request(|_| {}).await;
    let lines = header_lines(&raw);
    assert!(raw.starts_with("POST /crm HTTP/1.1\r\n"), "{raw}");
    for want in [
        "Content-Type: application/json".to_owned(),
        format!("Content-Length: {}", BODY.len()),
        format!("Etag: {GUID}"),
        format!("User-Agent: {USER_AGENT}"),
        "Accept: */*".to_owned(),
        "X-Api-Key: k-123".to_owned(),
    ] {
        assert!(lines.contains(&want.as_str()), "{want:?} not in {lines:?}");
    }
    assert!(
        lines
            .iter()
            .all(|l| !l.starts_with(|c: char| c.is_ascii_lowercase())),
        "a lower-case name: {lines:?}"
    );
    assert!(raw.ends_with(std::str::from_utf8(BODY).unwrap()), "{raw}");
}

#[tokio::test]
async fn lower_case_names_and_ocs_user_agent_when_configured() {
    let raw = raw_request(|c| {
        c.title_case_headers = false;
        c.user_agent = "OCS/8.1.528.15".to_owned();
    })
    .await;
    let lines = header_lines(&raw);
    for want in [
        "content-type: application/json".to_owned(),
        format!("etag: {GUID}"),
        "user-agent: OCS/8.1.528.15".to_owned(),
        "x-api-key: k-123".to_owned(),
    ] {
        assert!(lines.contains(&want.as_str()), "{want:?} not in {lines:?}");
    }
}
