//! The mock CRM's pure decision core: a [`Behavior`], one request and the
//! state carried between requests go in, a [`Reply`] comes out.
//!
//! No sockets, clocks or OS randomness here: the caller passes the time and
//! the random source, so every rule is unit-tested below, and a seeded run
//! replays exactly. Serving the reply (and sleeping its delay) is
//! [`super::server`]'s job.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rand::Rng;
use serde_json::{Map, Value};

use super::behavior::{Behavior, Latency};

/// Body field holding the message GUID (spec: also sent as `ETag`).
pub const GUID_FIELD: &str = "GSW_MESSAGE_GUID";

/// What the decision core may look at in one request.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    /// HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// Request path with query, e.g. `/crm`.
    pub path: &'a str,
    /// Headers with lower-case names, in arrival order.
    pub headers: &'a [(String, String)],
    /// Raw body bytes.
    pub body: &'a [u8],
    /// The body when it parsed as a JSON object.
    pub json: Option<&'a Map<String, Value>>,
}

impl<'a> RequestView<'a> {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `GSW_MESSAGE_GUID` from the body, when present and a string.
    pub fn guid(&self) -> Option<&'a str> {
        self.json?.get(GUID_FIELD)?.as_str()
    }

    /// Top-level body field as text: strings as-is, numbers and booleans in
    /// their JSON spelling; `None` for absent, null, arrays and objects.
    pub fn field_text(&self, field: &str) -> Option<Cow<'a, str>> {
        match self.json?.get(field)? {
            Value::String(s) => Some(Cow::Borrowed(s.as_str())),
            Value::Number(n) => Some(Cow::Owned(n.to_string())),
            Value::Bool(b) => Some(Cow::Owned(b.to_string())),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        }
    }
}

/// Parse a body as a JSON object, the only shape a ContactProcessed body has.
pub fn parse_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Which knob of the [`Behavior`] chose a reply; printed by the CLI and
/// asserted by tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Nothing else applied: [`Behavior::status`].
    Default,
    /// The [`Behavior::custom`] closure.
    Custom,
    /// Content rule number `index` (0-based) on body field `field`.
    Rule {
        /// Position in [`Behavior::rules`].
        index: usize,
        /// The body field it tested.
        field: String,
    },
    /// Request `attempt` (1-based) of the `count` failed per GUID.
    FailFirst {
        /// Which request for this GUID this was.
        attempt: u32,
        /// How many fail in total.
        count: u32,
    },
    /// Step `step` (1-based) of a script of `len` statuses.
    Script {
        /// Position in the script.
        step: usize,
        /// Script length.
        len: usize,
    },
    /// Injected by [`Behavior::fail_rate`].
    FailRate,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Default => f.write_str("default"),
            Cause::Custom => f.write_str("custom"),
            // The field name only: the matched value may be personal data.
            Cause::Rule { index, field } => write!(f, "rule#{index} {field}"),
            Cause::FailFirst { attempt, count } => write!(f, "fail-first {attempt}/{count}"),
            Cause::Script { step, len } => write!(f, "script {step}/{len}"),
            Cause::FailRate => f.write_str("fail-rate"),
        }
    }
}

/// What to send back, and after how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra headers (`Retry-After`, `Location`, `Content-Type`, …).
    pub headers: Vec<(String, String)>,
    /// Response body; a small JSON object by default so the relay's DLQ has a
    /// response excerpt to record.
    pub body: Bytes,
    /// Wait this long before replying.
    pub delay: Duration,
    /// Which knob decided.
    pub cause: Cause,
}

impl Reply {
    /// `status` with the default JSON body for its class, no delay, cause
    /// [`Cause::Custom`] (what a custom closure usually builds).
    pub fn status(status: u16) -> Self {
        Self::explained(status, Cause::Custom, "custom reply")
    }

    /// `status` with a body explaining `reason`.
    fn explained(status: u16, cause: Cause, reason: &str) -> Self {
        Reply {
            status,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: default_body(status, reason),
            delay: Duration::ZERO,
            cause,
        }
    }

    /// Add a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replace the body (and its `Content-Type`).
    pub fn with_body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        self.headers
            .push(("content-type".to_owned(), content_type.to_owned()));
        self.body = body.into();
        self
    }

    /// Wait `delay` before replying (added to the behavior's latency).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Statuses whose responses must not carry a body (RFC 9110).
fn bodiless(status: u16) -> bool {
    status == 204 || status == 304 || status < 200
}

fn default_body(status: u16, reason: &str) -> Bytes {
    if bodiless(status) {
        return Bytes::new();
    }
    let word = match status {
        200..=299 => "accepted",
        300..=399 => "moved",
        400..=499 => "rejected",
        _ => "error",
    };
    let body = if (200..=299).contains(&status) {
        serde_json::json!({ "status": word })
    } else {
        serde_json::json!({ "status": word, "reason": reason })
    };
    Bytes::from(body.to_string())
}

/// What [`decide`] remembers between requests. Reset whenever the behavior
/// is replaced, so a new script starts at its first step.
#[derive(Debug, Default)]
pub struct DecideState {
    /// Next script step to hand out.
    script_next: usize,
    /// Requests seen per GUID, only kept while `fail_first` is set. Grows by
    /// one entry per distinct message: fine for tests and demos.
    per_guid: HashMap<String, u32>,
}

/// Decide the reply to `request`.
///
/// Knobs are consulted in this order, the first that applies wins:
///
/// 1. [`Behavior::custom`], when it returns `Some`;
/// 2. [`Behavior::rules`], first match — content decides before luck;
/// 3. [`Behavior::fail_first`] for the request's GUID (every request with a
///    GUID counts as an attempt while `fail_first` is set);
/// 4. the next step of [`Behavior::script`];
/// 5. [`Behavior::fail_rate`];
/// 6. [`Behavior::status`].
///
/// Then, whatever decided: the behavior's latency is added to the delay,
/// `Retry-After` is attached to 429/503 and `Location` to 3xx unless the
/// reply already has one. `now` dates a relative `Retry-After`.
pub fn decide<R: Rng + ?Sized>(
    behavior: &Behavior,
    request: &RequestView<'_>,
    state: &mut DecideState,
    rng: &mut R,
    now: SystemTime,
) -> Reply {
    let attempt = count_attempt(behavior, request, state);
    // Draw on every request while a rate is set, so with a seed request N
    // gets the same roll however earlier requests were decided.
    let unlucky = behavior.fail_rate > 0.0 && rng.random::<f64>() < behavior.fail_rate;
    let mut reply = choose(behavior, request, state, attempt, unlucky);
    reply.delay = reply
        .delay
        .saturating_add(sample_latency(behavior.latency, rng));
    decorate(behavior, &mut reply, now);
    reply
}

fn count_attempt(
    behavior: &Behavior,
    request: &RequestView<'_>,
    state: &mut DecideState,
) -> Option<u32> {
    behavior.fail_first?;
    let guid = request.guid()?;
    let seen = state.per_guid.entry(guid.to_owned()).or_insert(0);
    *seen = seen.saturating_add(1);
    Some(*seen)
}

fn choose(
    behavior: &Behavior,
    request: &RequestView<'_>,
    state: &mut DecideState,
    attempt: Option<u32>,
    unlucky: bool,
) -> Reply {
    if let Some(reply) = behavior.custom.as_ref().and_then(|c| (c.0)(request)) {
        return reply;
    }
    for (index, rule) in behavior.rules.iter().enumerate() {
        if request.field_text(&rule.field).as_deref() == Some(rule.equals.as_str()) {
            let reason = format!("field {} matched a reject rule", rule.field);
            let cause = Cause::Rule {
                index,
                field: rule.field.clone(),
            };
            return Reply::explained(rule.status, cause, &reason);
        }
    }
    if let (Some(ff), Some(attempt)) = (behavior.fail_first, attempt) {
        if attempt <= ff.count {
            let reason = format!("failing attempt {attempt} of {} for this message", ff.count);
            let cause = Cause::FailFirst {
                attempt,
                count: ff.count,
            };
            return Reply::explained(ff.status, cause, &reason);
        }
    }
    if let Some(&status) = behavior.script.get(state.script_next) {
        state.script_next += 1;
        let cause = Cause::Script {
            step: state.script_next,
            len: behavior.script.len(),
        };
        return Reply::explained(status, cause, "scripted status");
    }
    if unlucky {
        return Reply::explained(behavior.fail_status, Cause::FailRate, "injected failure");
    }
    Reply::explained(behavior.status, Cause::Default, "configured status")
}

fn sample_latency<R: Rng + ?Sized>(latency: Latency, rng: &mut R) -> Duration {
    match latency {
        Latency::None => Duration::ZERO,
        Latency::Fixed(d) => d,
        Latency::Uniform { min, max } => {
            // Validation keeps min <= max; order them anyway so a bad value
            // cannot panic the range sampler.
            let (lo, hi) = (min.min(max), min.max(max));
            let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(rng.random_range(nanos(lo)..=nanos(hi)))
        }
    }
}

fn decorate(behavior: &Behavior, reply: &mut Reply, now: SystemTime) {
    if let Some(retry_after) = &behavior.retry_after {
        if matches!(reply.status, 429 | 503) && reply.header("retry-after").is_none() {
            reply
                .headers
                .push(("retry-after".to_owned(), retry_after.header_value(now)));
        }
    }
    if let Some(location) = &behavior.location {
        if (300..=399).contains(&reply.status) && reply.header("location").is_none() {
            reply
                .headers
                .push(("location".to_owned(), location.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behavior::RetryAfter;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const GUID_A: &str = "0b5a4f1e-0000-4000-8000-00000000000a";
    const GUID_B: &str = "0b5a4f1e-0000-4000-8000-00000000000b";

    struct Req {
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        json: Option<Map<String, Value>>,
    }

    impl Req {
        fn json(value: Value) -> Self {
            let body = value.to_string().into_bytes();
            let json = parse_object(&body);
            Req {
                headers: vec![("content-type".into(), "application/json".into())],
                body,
                json,
            }
        }

        fn guid(guid: &str) -> Self {
            Self::json(serde_json::json!({ "GSW_MESSAGE_GUID": guid }))
        }

        fn view(&self) -> RequestView<'_> {
            RequestView {
                method: "POST",
                path: "/crm",
                headers: &self.headers,
                body: &self.body,
                json: self.json.as_ref(),
            }
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// Statuses for `reqs` in order, sharing one state and a seeded RNG.
    fn run(behavior: &Behavior, reqs: &[Req]) -> Vec<u16> {
        let mut state = DecideState::default();
        let mut rng = StdRng::seed_from_u64(7);
        reqs.iter()
            .map(|r| decide(behavior, &r.view(), &mut state, &mut rng, now()).status)
            .collect()
    }

    fn anon(n: usize) -> Vec<Req> {
        (0..n).map(|_| Req::json(serde_json::json!({}))).collect()
    }

    #[test]
    fn status_sequences_for_each_knob() {
        let campaign = |name: &str| {
            Req::json(serde_json::json!({ "GSW_CAMPAIGN_NAME": name, "GSW_CALL_RESULT": 33 }))
        };
        let cases: Vec<(&str, Behavior, Vec<Req>, Vec<u16>)> = vec![
            (
                "default answers 200",
                Behavior::default(),
                anon(2),
                vec![200, 200],
            ),
            (
                "fixed status answers it",
                Behavior::status(500),
                anon(2),
                vec![500, 500],
            ),
            (
                "script is consumed in order then falls back",
                Behavior::default().with_script([500, 429, 200]),
                anon(5),
                vec![500, 429, 200, 200, 200],
            ),
            (
                "script falls back to the fixed status",
                Behavior::status(204).with_script([500]),
                anon(2),
                vec![500, 204],
            ),
            (
                "fail-first fails each guid independently",
                Behavior::default().with_fail_first(2, 503),
                vec![
                    Req::guid(GUID_A),
                    Req::guid(GUID_B),
                    Req::guid(GUID_A),
                    Req::guid(GUID_A),
                    Req::guid(GUID_B),
                    Req::guid(GUID_B),
                ],
                vec![503, 503, 503, 200, 503, 200],
            ),
            (
                "fail-first ignores requests without a guid",
                Behavior::default().with_fail_first(1, 503),
                anon(2),
                vec![200, 200],
            ),
            (
                "rule matches a string field",
                Behavior::default().reject_when("GSW_CAMPAIGN_NAME", "reject-me", 400),
                vec![campaign("ok"), campaign("reject-me"), campaign("ok")],
                vec![200, 400, 200],
            ),
            (
                "rule matches an integer field by its json spelling",
                Behavior::default().reject_when("GSW_CALL_RESULT", "33", 422),
                vec![campaign("any")],
                vec![422],
            ),
            (
                "first matching rule wins",
                Behavior::default()
                    .reject_when("GSW_CALL_RESULT", "33", 409)
                    .reject_when("GSW_CAMPAIGN_NAME", "x", 400),
                vec![campaign("x")],
                vec![409],
            ),
            (
                "rule beats script and does not consume a step",
                Behavior::default().with_script([500]).reject_when(
                    "GSW_CAMPAIGN_NAME",
                    "reject-me",
                    400,
                ),
                vec![campaign("reject-me"), campaign("ok"), campaign("ok")],
                vec![400, 500, 200],
            ),
            (
                "fail-first beats script",
                Behavior::default()
                    .with_fail_first(1, 502)
                    .with_script([500]),
                vec![Req::guid(GUID_A), Req::guid(GUID_A), Req::guid(GUID_A)],
                vec![502, 500, 200],
            ),
            (
                "fail rate 1 always fails",
                Behavior::default().with_fail_rate(1.0, 503),
                anon(3),
                vec![503, 503, 503],
            ),
            (
                "fail rate 0 never fails",
                Behavior::default().with_fail_rate(0.0, 503),
                anon(3),
                vec![200, 200, 200],
            ),
            (
                "script beats fail rate",
                Behavior::default()
                    .with_fail_rate(1.0, 503)
                    .with_script([201]),
                anon(2),
                vec![201, 503],
            ),
        ];
        for (claim, behavior, reqs, want) in cases {
            assert_eq!(run(&behavior, &reqs), want, "{claim}");
        }
    }

    #[test]
    fn custom_decides_first_and_none_falls_through() {
        let behavior = Behavior::default()
            .reject_when("GSW_CAMPAIGN_NAME", "x", 400)
            .with_custom(|req| (req.path == "/teapot").then(|| Reply::status(418)));
        let req = Req::json(serde_json::json!({ "GSW_CAMPAIGN_NAME": "x" }));
        let mut state = DecideState::default();
        let mut rng = StdRng::seed_from_u64(1);
        let mut view = req.view();
        view.path = "/teapot";
        let reply = decide(&behavior, &view, &mut state, &mut rng, now());
        assert_eq!((reply.status, reply.cause), (418, Cause::Custom));
        let reply = decide(&behavior, &req.view(), &mut state, &mut rng, now());
        assert_eq!(reply.status, 400);
    }

    #[test]
    fn seeded_fail_rate_is_reproducible_and_near_the_rate() {
        let behavior = Behavior::default().with_fail_rate(0.3, 503);
        let reqs = anon(2000);
        let first = run(&behavior, &reqs);
        assert_eq!(first, run(&behavior, &reqs));
        let failed = first.iter().filter(|&&s| s == 503).count();
        assert!(
            (500..700).contains(&failed),
            "{failed} of 2000 failed at rate 0.3"
        );
    }

    #[test]
    fn retry_after_goes_on_429_and_503_only() {
        let behavior = Behavior::default()
            .with_script([429, 503, 500, 200])
            .with_retry_after(RetryAfter::Seconds(7));
        let mut state = DecideState::default();
        let mut rng = StdRng::seed_from_u64(1);
        let req = Req::json(serde_json::json!({}));
        let got: Vec<Option<String>> = (0..4)
            .map(|_| {
                decide(&behavior, &req.view(), &mut state, &mut rng, now())
                    .header("retry-after")
                    .map(str::to_owned)
            })
            .collect();
        let seven = Some("7".to_owned());
        assert_eq!(got, vec![seven.clone(), seven, None, None]);
    }

    #[test]
    fn relative_retry_after_is_an_http_date_from_now() {
        let behavior =
            Behavior::status(503).with_retry_after(RetryAfter::DateIn(Duration::from_secs(60)));
        let req = Req::json(serde_json::json!({}));
        let reply = decide(
            &behavior,
            &req.view(),
            &mut DecideState::default(),
            &mut StdRng::seed_from_u64(1),
            now(),
        );
        let date = httpdate::parse_http_date(reply.header("retry-after").unwrap()).unwrap();
        assert_eq!(date, now() + Duration::from_secs(60));
    }

    #[test]
    fn redirect_carries_location_and_non_3xx_does_not() {
        let behavior = Behavior::redirect(307, "http://elsewhere.invalid/crm").with_script([200]);
        let req = Req::json(serde_json::json!({}));
        let mut state = DecideState::default();
        let mut rng = StdRng::seed_from_u64(1);
        let first = decide(&behavior, &req.view(), &mut state, &mut rng, now());
        let second = decide(&behavior, &req.view(), &mut state, &mut rng, now());
        assert_eq!((first.status, first.header("location")), (200, None));
        assert_eq!(
            (second.status, second.header("location")),
            (307, Some("http://elsewhere.invalid/crm"))
        );
    }

    #[test]
    fn custom_reply_keeps_its_own_retry_after() {
        let behavior =
            Behavior::custom(|_| Some(Reply::status(429).with_header("Retry-After", "1")))
                .with_retry_after(RetryAfter::Seconds(99));
        let req = Req::json(serde_json::json!({}));
        let reply = decide(
            &behavior,
            &req.view(),
            &mut DecideState::default(),
            &mut StdRng::seed_from_u64(1),
            now(),
        );
        let values: Vec<&str> = reply
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("retry-after"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(values, vec!["1"]);
    }

    #[test]
    fn rejection_body_explains_without_echoing_the_value() {
        let behavior = Behavior::default().reject_when("GSW_PHONE", "5551234", 400);
        let req = Req::json(serde_json::json!({ "GSW_PHONE": "5551234" }));
        let reply = decide(
            &behavior,
            &req.view(),
            &mut DecideState::default(),
            &mut StdRng::seed_from_u64(1),
            now(),
        );
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["status"], "rejected");
        assert_eq!(body["reason"], "field GSW_PHONE matched a reject rule");
        assert!(!String::from_utf8_lossy(&reply.body).contains("5551234"));
        assert!(!reply.cause.to_string().contains("5551234"));
        assert_eq!(reply.header("content-type"), Some("application/json"));
    }

    #[test]
    fn bodies_follow_the_status_class() {
        let cases = [
            (200, r#"{"status":"accepted"}"#),
            (204, ""),
            (503, r#"{"reason":"configured status","status":"error"}"#),
        ];
        for (status, want) in cases {
            let req = Req::json(serde_json::json!({}));
            let reply = decide(
                &Behavior::status(status),
                &req.view(),
                &mut DecideState::default(),
                &mut StdRng::seed_from_u64(1),
                now(),
            );
            assert_eq!(String::from_utf8_lossy(&reply.body), want, "{status}");
        }
    }

    #[test]
    fn latency_is_fixed_or_within_the_jitter_range() {
        let req = Req::json(serde_json::json!({}));
        let mut state = DecideState::default();
        let mut rng = StdRng::seed_from_u64(3);
        let fixed = Behavior::default().with_latency(Latency::Fixed(Duration::from_millis(40)));
        let reply = decide(&fixed, &req.view(), &mut state, &mut rng, now());
        assert_eq!(reply.delay, Duration::from_millis(40));
        let jitter = Behavior::default().with_latency(Latency::from_millis(10, 20));
        for _ in 0..200 {
            let d = decide(&jitter, &req.view(), &mut state, &mut rng, now()).delay;
            assert!(
                (Duration::from_millis(10)..=Duration::from_millis(30)).contains(&d),
                "{d:?}"
            );
        }
    }

    #[test]
    fn field_text_reads_strings_numbers_and_bools_only() {
        let req = Req::json(serde_json::json!({
            "s": "x", "i": 33, "f": 1.5, "b": true, "n": null, "a": [1], "o": {}
        }));
        let view = req.view();
        let got: Vec<Option<String>> = ["s", "i", "f", "b", "n", "a", "o", "missing"]
            .iter()
            .map(|f| view.field_text(f).map(Cow::into_owned))
            .collect();
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            got,
            vec![
                some("x"),
                some("33"),
                some("1.5"),
                some("true"),
                None,
                None,
                None,
                None
            ]
        );
    }

    #[test]
    fn non_object_bodies_have_no_json_view() {
        for body in [&b"[1,2]"[..], b"not json", b"\"str\"", b""] {
            assert!(parse_object(body).is_none(), "{body:?}");
        }
    }
}
