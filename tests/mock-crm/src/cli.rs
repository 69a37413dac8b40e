//! `cpn-mock-crm`: options, the print loop and the summaries.
//!
//! Options map one-to-one onto a [`Behavior`]; every bad value is a clap
//! error naming its option. Each received request becomes one line on
//! stdout (text or, with `--json`, one JSON object); the banner, periodic
//! summaries and final totals go to stderr so `--json | jq` stays clean.
//! Lines carry only the ETag, GUID, campaign and call result from the body,
//! never `GSW_PHONE` or `GSW_CUSTOMER_ID`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::behavior::{self, Behavior, FailFirst, Latency, RetryAfter, Rule};
use super::server::{MockCrm, MockCrmOptions, Received};

/// Requests the CLI keeps in memory; it prints them as they come, so only a
/// backlog while stdout is slow needs room.
const KEEP_RECEIVED: usize = 10_000;

/// Lines queued for the printing thread before the receive loop waits.
const PRINT_QUEUE: usize = 1024;

/// Body fields the per-request line shows: identifiers of the campaign and
/// the outcome, nothing about the customer.
const CAMPAIGN_FIELD: &str = "GSW_CAMPAIGN_NAME";
const CALL_RESULT_FIELD: &str = "GSW_CALL_RESULT";

/// Run a fake customer HTTP server that prints what it receives and answers
/// with configurable statuses, latency, failures and rejections.
#[derive(Clone, Debug, clap::Args)]
pub struct MockCrmArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "CPN_MOCK_CRM_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Status for requests no other option decides; a 3xx with --location
    /// makes a redirecting target.
    #[arg(
        long,
        env = "CPN_MOCK_CRM_STATUS",
        value_name = "STATUS",
        default_value_t = behavior::DEFAULT_STATUS,
        value_parser = parse_status
    )]
    pub status: u16,

    /// Delay every reply by this many milliseconds.
    #[arg(
        long,
        env = "CPN_MOCK_CRM_LATENCY_MS",
        value_name = "MS",
        default_value_t = 0
    )]
    pub latency_ms: u64,

    /// Add a uniformly random 0..=MS milliseconds to --latency-ms.
    #[arg(
        long,
        env = "CPN_MOCK_CRM_LATENCY_JITTER_MS",
        value_name = "MS",
        default_value_t = 0
    )]
    pub latency_jitter_ms: u64,

    /// Probability (0 to 1) that a request gets --fail-status.
    #[arg(
        long,
        env = "CPN_MOCK_CRM_FAIL_RATE",
        value_name = "P",
        default_value_t = 0.0,
        value_parser = parse_rate
    )]
    pub fail_rate: f64,

    /// Status for --fail-rate and --fail-first failures.
    #[arg(
        long,
        env = "CPN_MOCK_CRM_FAIL_STATUS",
        value_name = "STATUS",
        default_value_t = behavior::DEFAULT_FAIL_STATUS,
        value_parser = parse_status
    )]
    pub fail_status: u16,

    /// Statuses for the first requests, in order (e.g. 500,500,200); then
    /// the other options apply.
    #[arg(
        long,
        env = "CPN_MOCK_CRM_SCRIPT",
        value_name = "STATUS,...",
        value_delimiter = ',',
        value_parser = parse_status
    )]
    pub script: Vec<u16>,

    /// Fail the first N requests of every message (same GSW_MESSAGE_GUID)
    /// with --fail-status, then let it through.
    #[arg(long, env = "CPN_MOCK_CRM_FAIL_FIRST", value_name = "N")]
    pub fail_first: Option<u32>,

    /// Reply STATUS (default 400) when body field FIELD equals VALUE, e.g.
    /// GSW_CAMPAIGN_NAME=reject-me. Repeatable; in the environment variable
    /// separate rules with ';'.
    #[arg(
        long,
        env = "CPN_MOCK_CRM_REJECT_WHEN",
        value_name = "FIELD=VALUE[:STATUS]",
        value_delimiter = ';'
    )]
    pub reject_when: Vec<Rule>,

    /// Retry-After on 429 and 503 replies: seconds (120), an HTTP-date, a
    /// date relative to each reply (date+30s), or raw:VALUE sent verbatim.
    #[arg(long, env = "CPN_MOCK_CRM_RETRY_AFTER", value_name = "VALUE")]
    pub retry_after: Option<RetryAfter>,

    /// Location header on 3xx replies.
    #[arg(
        long,
        env = "CPN_MOCK_CRM_LOCATION",
        value_name = "URL",
        value_parser = parse_location
    )]
    pub location: Option<String>,

    /// Seed for --fail-rate and --latency-jitter-ms, for reproducible runs.
    #[arg(long, env = "CPN_MOCK_CRM_SEED", value_name = "SEED")]
    pub seed: Option<u64>,

    /// Print neither a line per request nor periodic summaries (totals are
    /// still printed on exit).
    #[arg(
        long,
        env = "CPN_MOCK_CRM_QUIET",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub quiet: bool,

    /// Print each request as one JSON object per line.
    #[arg(
        long,
        env = "CPN_MOCK_CRM_JSON",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub json: bool,

    /// How often to print summary counts (e.g. 5s, 1m).
    #[arg(
        long,
        env = "CPN_MOCK_CRM_SUMMARY_INTERVAL",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = parse_interval
    )]
    pub summary_interval: Duration,
}

impl MockCrmArgs {
    /// The [`Behavior`] these options describe.
    pub fn behavior(&self) -> Behavior {
        Behavior {
            status: self.status,
            latency: Latency::from_millis(self.latency_ms, self.latency_jitter_ms),
            fail_rate: self.fail_rate,
            fail_status: self.fail_status,
            script: self.script.clone(),
            fail_first: self.fail_first.map(|count| FailFirst {
                count,
                status: self.fail_status,
            }),
            rules: self.reject_when.clone(),
            retry_after: self.retry_after.clone(),
            location: self.location.clone(),
            custom: None,
            seed: self.seed,
        }
    }
}

fn parse_status(s: &str) -> Result<u16, String> {
    let status: u16 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not an HTTP status"))?;
    if (behavior::MIN_STATUS..=behavior::MAX_STATUS).contains(&status) {
        Ok(status)
    } else {
        Err(format!(
            "{status} is outside {}..={}",
            behavior::MIN_STATUS,
            behavior::MAX_STATUS
        ))
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is not between 0 and 1"))
    }
}

fn parse_location(s: &str) -> Result<String, String> {
    let probe = Behavior::default().with_location(s);
    probe
        .validate()
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        Err("must be longer than zero".to_owned())
    } else {
        Ok(d)
    }
}

/// Run the mock CRM until `shutdown` completes, printing as configured, then
/// print totals and return.
///
/// # Errors
///
/// The listen address cannot be bound (the message says why, e.g. the port is
/// in use), or the options describe an invalid behavior.
pub async fn run_cli(args: MockCrmArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let behavior = args.behavior();
    behavior.validate().context("invalid mock-crm options")?;
    let listener = MockCrm::bind(args.listen).map_err(|e| bind_error(args.listen, e))?;
    let stop = CancellationToken::new();
    let options = MockCrmOptions {
        keep_received: Some(KEEP_RECEIVED),
        shutdown: stop.clone(),
    };
    let mut crm = MockCrm::start_with(listener, behavior.clone(), options)
        .await
        .context("starting the mock CRM")?;
    let printer = Printer::spawn();
    printer
        .err(format!(
            "mock-crm: listening on {} (any path); {}",
            crm.url(),
            describe(&behavior)
        ))
        .await;

    let mut tally = Tally::default();
    let mut summaries = tokio::time::interval(args.summary_interval);
    summaries.set_missed_tick_behavior(MissedTickBehavior::Delay);
    summaries.reset();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            received = crm.next_arrival() => {
                tally.add(received.status_sent);
                if !args.quiet {
                    printer.out(request_line(&received, args.json)).await;
                }
            }
            _ = summaries.tick(), if !args.quiet => {
                if let Some(line) = tally.summary_since_last(args.summary_interval) {
                    printer.err(line).await;
                }
            }
        }
    }

    // Close the port first, then print what arrived meanwhile, so the totals
    // count every request that was answered.
    stop.cancel();
    crm.shut_down().await;
    while let Some(received) = crm.try_next() {
        tally.add(received.status_sent);
        if !args.quiet {
            printer.out(request_line(&received, args.json)).await;
        }
    }
    printer.err(tally.totals()).await;
    printer.finish().await;
    Ok(())
}

fn bind_error(addr: SocketAddr, error: io::Error) -> anyhow::Error {
    let why = match error.kind() {
        io::ErrorKind::AddrInUse => {
            "the port is already in use (another mock-crm or server?); pick another with --listen"
        }
        io::ErrorKind::AddrNotAvailable => "no local interface has that address; check --listen",
        io::ErrorKind::PermissionDenied => "permission denied (ports below 1024 need privileges)",
        _ => "see the cause below",
    };
    anyhow::Error::new(error).context(format!("cannot listen on {addr}: {why}"))
}

/// One line saying which knobs are active, for the banner.
fn describe(b: &Behavior) -> String {
    let mut parts = vec![format!("answers {}", b.status)];
    match b.latency {
        Latency::None => {}
        Latency::Fixed(d) => parts.push(format!("latency {}", humantime::format_duration(d))),
        Latency::Uniform { min, max } => parts.push(format!(
            "latency {}..{}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )),
    }
    if !b.script.is_empty() {
        let script: Vec<String> = b.script.iter().map(u16::to_string).collect();
        parts.push(format!("script {}", script.join(",")));
    }
    if let Some(ff) = b.fail_first {
        parts.push(format!("first {} per message -> {}", ff.count, ff.status));
    }
    if b.fail_rate > 0.0 {
        parts.push(format!("fail-rate {} -> {}", b.fail_rate, b.fail_status));
    }
    for rule in &b.rules {
        // The value is left out: a rule may be keyed on personal data.
        parts.push(format!("reject on {} -> {}", rule.field, rule.status));
    }
    if let Some(ra) = &b.retry_after {
        parts.push(format!("retry-after {ra}"));
    }
    if let Some(location) = &b.location {
        parts.push(format!("location {location}"));
    }
    if let Some(seed) = b.seed {
        parts.push(format!("seed {seed}"));
    }
    parts.join("; ")
}

/// The stdout line for one request.
fn request_line(r: &Received, json: bool) -> String {
    let body = r.json();
    let field = |name: &str| body.as_ref().and_then(|b| b.get(name)).cloned();
    let at = humantime::format_rfc3339_millis(r.at).to_string();
    let problems: Vec<String> = r.framing_problems.iter().map(ToString::to_string).collect();
    if json {
        serde_json::json!({
            "at": at,
            "seq": r.seq,
            "method": r.method,
            "path": r.path,
            "etag": r.etag,
            "guid": r.guid,
            "campaign": field(CAMPAIGN_FIELD),
            "call_result": field(CALL_RESULT_FIELD),
            "status": r.status_sent,
            "cause": r.cause.to_string(),
            "delay_ms": u64::try_from(r.delay.as_millis()).unwrap_or(u64::MAX),
            "body_bytes": r.body.len(),
            "framing_problems": problems,
        })
        .to_string()
    } else {
        let text = |v: Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => format!("{s:?}"),
            Some(other) => other.to_string(),
            None => "-".to_owned(),
        };
        let mut line = format!(
            "{at} {status} ({cause}) {method} {path} etag={etag} guid={guid} campaign={campaign} \
             call_result={call_result} delay={delay}ms {bytes}B",
            status = r.status_sent,
            cause = r.cause,
            method = r.method,
            path = r.path,
            etag = r.etag.as_deref().unwrap_or("-"),
            guid = r.guid.as_deref().unwrap_or("-"),
            campaign = text(field(CAMPAIGN_FIELD)),
            call_result = text(field(CALL_RESULT_FIELD)),
            delay = r.delay.as_millis(),
            bytes = r.body.len(),
        );
        if !problems.is_empty() {
            line.push_str(" framing: ");
            line.push_str(&problems.join("; "));
        }
        line
    }
}

/// Counts by status for summaries and totals.
#[derive(Debug, Default)]
struct Tally {
    total: u64,
    by_status: BTreeMap<u16, u64>,
    at_last_summary: u64,
}

impl Tally {
    fn add(&mut self, status: u16) {
        self.total += 1;
        *self.by_status.entry(status).or_default() += 1;
    }

    fn counts(&self) -> String {
        if self.by_status.is_empty() {
            return "nothing".to_owned();
        }
        self.by_status
            .iter()
            .map(|(status, n)| format!("{status}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A summary line when anything arrived since the last one.
    fn summary_since_last(&mut self, interval: Duration) -> Option<String> {
        let new = self.total - self.at_last_summary;
        if new == 0 {
            return None;
        }
        self.at_last_summary = self.total;
        Some(format!(
            "mock-crm: {} received (+{new} in {}): {}",
            self.total,
            humantime::format_duration(interval),
            self.counts()
        ))
    }

    fn totals(&self) -> String {
        format!(
            "mock-crm: stopped; {} received in total: {}",
            self.total,
            self.counts()
        )
    }
}

/// Which stream a printed line goes to.
#[derive(Debug)]
enum Line {
    Out(String),
    Err(String),
}

/// Writes lines on a blocking thread: terminal writes block, and the receive
/// loop must not.
#[derive(Debug)]
struct Printer {
    tx: mpsc::Sender<Line>,
    thread: JoinHandle<()>,
}

impl Printer {
    fn spawn() -> Self {
        let (tx, mut rx) = mpsc::channel::<Line>(PRINT_QUEUE);
        let thread = tokio::task::spawn_blocking(move || {
            let (mut out_ok, mut err_ok) = (true, true);
            while let Some(line) = rx.blocking_recv() {
                // A closed pipe (`| head`) stops that stream, not the server.
                match line {
                    Line::Out(l) if out_ok => out_ok = writeln!(io::stdout().lock(), "{l}").is_ok(),
                    Line::Err(l) if err_ok => err_ok = writeln!(io::stderr().lock(), "{l}").is_ok(),
                    _ => {}
                }
            }
            let _ = io::stdout().lock().flush();
        });
        Printer { tx, thread }
    }

    async fn out(&self, line: String) {
        // Err only if the thread is gone, which `finish` reports.
        let _ = self.tx.send(Line::Out(line)).await;
    }

    async fn err(&self, line: String) {
        let _ = self.tx.send(Line::Err(line)).await;
    }

    async fn finish(self) {
        drop(self.tx);
        if let Err(error) = self.thread.await {
            tracing::warn!(%error, "mock-crm printer thread failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::Cause;
    use crate::framing::FramingProblem;
    use bytes::Bytes;
    use clap::Parser;
    use std::time::SystemTime;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: MockCrmArgs,
    }

    fn parse(argv: &[&str]) -> Result<MockCrmArgs, String> {
        Cli::try_parse_from(std::iter::once("mock-crm").chain(argv.iter().copied()))
            .map(|cli| cli.args)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_describe_an_always_200_server_on_8080() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(args.summary_interval, Duration::from_secs(5));
        let b = args.behavior();
        assert_eq!((b.status, b.fail_rate, b.fail_status), (200, 0.0, 503));
        assert_eq!(b.latency, Latency::None);
        assert!(b.script.is_empty() && b.rules.is_empty() && b.fail_first.is_none());
        assert_eq!(b.validate(), Ok(()));
    }

    #[test]
    fn every_option_maps_onto_the_behavior() {
        let args = parse(&[
            "--listen=0.0.0.0:9999",
            "--status=302",
            "--location=http://elsewhere.invalid/",
            "--latency-ms=20",
            "--latency-jitter-ms=5",
            "--fail-rate=0.25",
            "--fail-status=429",
            "--script=500,500,200",
            "--fail-first=2",
            "--reject-when=GSW_CAMPAIGN_NAME=reject-me",
            "--reject-when",
            "GSW_CALL_RESULT=33:422",
            "--retry-after=date+30s",
            "--seed=42",
            "--quiet",
            "--json",
            "--summary-interval=1m",
        ])
        .unwrap();
        assert!(args.quiet && args.json);
        assert_eq!(args.summary_interval, Duration::from_secs(60));
        let b = args.behavior();
        assert_eq!(b.status, 302);
        assert_eq!(b.location.as_deref(), Some("http://elsewhere.invalid/"));
        assert_eq!(b.latency, Latency::from_millis(20, 5));
        assert_eq!((b.fail_rate, b.fail_status), (0.25, 429));
        assert_eq!(b.script, vec![500, 500, 200]);
        assert_eq!(
            b.fail_first,
            Some(FailFirst {
                count: 2,
                status: 429
            })
        );
        assert_eq!(b.rules.len(), 2);
        assert_eq!(
            (b.rules[1].field.as_str(), b.rules[1].status),
            ("GSW_CALL_RESULT", 422)
        );
        assert_eq!(
            b.retry_after,
            Some(RetryAfter::DateIn(Duration::from_secs(30)))
        );
        assert_eq!(b.seed, Some(42));
        assert_eq!(b.validate(), Ok(()));
    }

    #[test]
    fn bad_values_are_errors_naming_the_option() {
        let cases = [
            (vec!["--fail-rate=1.5"], "--fail-rate"),
            (vec!["--fail-rate=-0.1"], "--fail-rate"),
            (vec!["--fail-rate=lots"], "--fail-rate"),
            (vec!["--status=42"], "--status"),
            (vec!["--fail-status=600"], "--fail-status"),
            (vec!["--script=500,abc"], "--script"),
            (vec!["--reject-when=GSW_CAMPAIGN_NAME"], "--reject-when"),
            (vec!["--reject-when=A=b:700"], "--reject-when"),
            (vec!["--retry-after=tomorrow"], "--retry-after"),
            (vec!["--listen=localhost"], "--listen"),
            (vec!["--summary-interval=0s"], "--summary-interval"),
            (vec!["--location=http://x/\u{7f}"], "--location"),
            (vec!["--fail-first=-1"], "--fail-first"),
        ];
        for (argv, option) in cases {
            let err = parse(&argv).expect_err(&format!("{argv:?} should be rejected"));
            assert!(err.contains(option), "{argv:?}: {err}");
        }
    }

    fn received(body: &str) -> Received {
        Received {
            seq: 3,
            method: "POST".into(),
            path: "/crm".into(),
            headers: vec![],
            body: Bytes::from(body.to_owned()),
            etag: Some("g-1".into()),
            guid: Some("g-1".into()),
            status_sent: 400,
            cause: Cause::Rule {
                index: 0,
                field: "GSW_CAMPAIGN_NAME".into(),
            },
            delay: Duration::from_millis(12),
            framing_problems: vec![FramingProblem::MissingHeader("user-agent")],
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        }
    }

    const BODY: &str = r#"{"GSW_MESSAGE_GUID":"g-1","GSW_PHONE":"+15551234567","GSW_CUSTOMER_ID":"cust-778899","GSW_CAMPAIGN_NAME":"Spring Sale","GSW_CALL_RESULT":33}"#;

    #[test]
    fn text_line_shows_identifiers_and_outcome() {
        let line = request_line(&received(BODY), false);
        let want = format!(
            "2023-11-14T22:13:20.123Z 400 (rule#0 GSW_CAMPAIGN_NAME) POST /crm etag=g-1 guid=g-1 \
             campaign=\"Spring Sale\" call_result=33 delay=12ms {}B framing: no user-agent header",
            BODY.len()
        );
        assert_eq!(line, want);
    }

    #[test]
    fn json_line_is_one_object_with_the_same_facts() {
        let line = request_line(&received(BODY), true);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["guid"], "g-1");
        assert_eq!(v["campaign"], "Spring Sale");
        assert_eq!(v["call_result"], 33);
        assert_eq!(v["status"], 400);
        assert_eq!(v["delay_ms"], 12);
        assert_eq!(v["framing_problems"][0], "no user-agent header");
    }

    #[test]
    fn lines_never_show_phone_or_customer_id() {
        for json in [false, true] {
            let line = request_line(&received(BODY), json);
            assert!(!line.contains("5551234567"), "{line}");
            assert!(!line.contains("cust-778899"), "{line}");
        }
    }

    #[test]
    fn line_for_a_non_json_body_uses_dashes() {
        let mut r = received("not json");
        r.etag = None;
        r.guid = None;
        let line = request_line(&r, false);
        assert!(
            line.contains("etag=- guid=- campaign=- call_result=-"),
            "{line}"
        );
    }

    #[test]
    fn summary_appears_only_after_new_requests() {
        let mut tally = Tally::default();
        let every = Duration::from_secs(5);
        assert_eq!(tally.summary_since_last(every), None);
        for status in [200, 503, 200] {
            tally.add(status);
        }
        assert_eq!(
            tally.summary_since_last(every).as_deref(),
            Some("mock-crm: 3 received (+3 in 5s): 200: 2, 503: 1")
        );
        assert_eq!(tally.summary_since_last(every), None);
        assert_eq!(
            tally.totals(),
            "mock-crm: stopped; 3 received in total: 200: 2, 503: 1"
        );
    }

    #[test]
    fn banner_names_rule_fields_but_not_values() {
        let b = Behavior::default().reject_when("GSW_PHONE", "+15551234567", 400);
        let text = describe(&b);
        assert!(text.contains("reject on GSW_PHONE -> 400"), "{text}");
        assert!(!text.contains("5551234567"), "{text}");
    }

    #[tokio::test]
    async fn taken_port_is_a_clear_error() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let args = parse(&[&format!("--listen={addr}"), "--quiet"]).unwrap();
        let err = run_cli(args, std::future::ready(())).await.unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(&format!("cannot listen on {addr}")), "{text}");
        assert!(text.contains("already in use"), "{text}");
    }

    #[tokio::test]
    async fn returns_ok_when_shutdown_fires() {
        let args = parse(&["--listen=127.0.0.1:0", "--quiet"]).unwrap();
        run_cli(args, std::future::ready(())).await.unwrap();
    }
}
