//! What the mock CRM is told to do: the knobs of a [`Behavior`] and their
//! validation.
//!
//! This is configuration only. Turning a behavior and a request into a reply
//! is [`super::decide`]; serving HTTP is [`super::server`]. A `Behavior` is a
//! stack of independent knobs rather than an enum so that they combine (a
//! latency *and* a failure rate *and* a reject rule); the order in which they
//! are consulted is documented on [`super::decide::decide`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::decide::{Reply, RequestView};

/// Lowest status the mock will send; 1xx are not final responses.
pub const MIN_STATUS: u16 = 200;
/// Highest status the mock will send.
pub const MAX_STATUS: u16 = 599;

/// Status sent by default when nothing else decides.
pub const DEFAULT_STATUS: u16 = 200;
/// Status sent for injected failures (fail rate, fail-first) unless told otherwise.
pub const DEFAULT_FAIL_STATUS: u16 = 503;
/// Status sent when a reject rule matches unless the rule names one.
pub const DEFAULT_REJECT_STATUS: u16 = 400;

/// How the mock CRM answers; swap it at runtime with
/// [`MockCrm::set_behavior`](super::MockCrm::set_behavior).
///
/// Build one with [`Behavior::default`] (always 200, no delay) and the
/// `with_*` methods, or set the public fields directly.
#[derive(Clone, Debug)]
pub struct Behavior {
    /// Status sent when no other knob decides (default 200). A 3xx here plus
    /// [`Behavior::location`] makes a redirecting target.
    pub status: u16,
    /// Delay before every reply, custom replies included.
    pub latency: Latency,
    /// Probability in `0.0..=1.0` that a request gets `fail_status`.
    pub fail_rate: f64,
    /// Status for injected failures from `fail_rate` and, unless it names its
    /// own, `fail_first` (default 503).
    pub fail_status: u16,
    /// Statuses handed out one per request in arrival order; once used up the
    /// other knobs apply again. Useful for "fail twice, then recover".
    pub script: Vec<u16>,
    /// Per-message failures: the first `count` requests carrying a given
    /// `GSW_MESSAGE_GUID` get `status`. Exercises the relay's retry of one
    /// message without failing the others.
    pub fail_first: Option<FailFirst>,
    /// Content rules: the first rule whose body field matches decides.
    pub rules: Vec<Rule>,
    /// `Retry-After` added to 429 and 503 replies.
    pub retry_after: Option<RetryAfter>,
    /// `Location` added to 3xx replies.
    pub location: Option<String>,
    /// A closure consulted before every other knob; `None` from it falls
    /// through to them.
    pub custom: Option<Custom>,
    /// Seed for the random source (fail rate, latency jitter); `None` seeds
    /// from the OS. With a seed, the same request sequence gets the same replies.
    pub seed: Option<u64>,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            status: DEFAULT_STATUS,
            latency: Latency::None,
            fail_rate: 0.0,
            fail_status: DEFAULT_FAIL_STATUS,
            script: Vec::new(),
            fail_first: None,
            rules: Vec::new(),
            retry_after: None,
            location: None,
            custom: None,
            seed: None,
        }
    }
}

impl Behavior {
    /// Always answer `status`, with no delay.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    /// Redirect every request: `status` (a 3xx) with `Location: location`.
    pub fn redirect(status: u16, location: impl Into<String>) -> Self {
        Self {
            status,
            location: Some(location.into()),
            ..Self::default()
        }
    }

    /// Decide every request with `f`; returning `None` falls back to the
    /// default status.
    pub fn custom(f: impl Fn(&RequestView<'_>) -> Option<Reply> + Send + Sync + 'static) -> Self {
        Self::default().with_custom(f)
    }

    /// Set the delay before every reply.
    pub fn with_latency(mut self, latency: Latency) -> Self {
        self.latency = latency;
        self
    }

    /// Fail with probability `rate` using `status`.
    pub fn with_fail_rate(mut self, rate: f64, status: u16) -> Self {
        self.fail_rate = rate;
        self.fail_status = status;
        self
    }

    /// Hand out `statuses` one per request, then fall back to the other knobs.
    pub fn with_script(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.script = statuses.into_iter().collect();
        self
    }

    /// Fail the first `count` requests of every message GUID with `status`.
    pub fn with_fail_first(mut self, count: u32, status: u16) -> Self {
        self.fail_first = Some(FailFirst { count, status });
        self
    }

    /// Add a content rule (consulted in the order added).
    pub fn with_rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Reply `status` when body field `field` equals `value`.
    pub fn reject_when(
        self,
        field: impl Into<String>,
        value: impl Into<String>,
        status: u16,
    ) -> Self {
        self.with_rule(Rule {
            field: field.into(),
            equals: value.into(),
            status,
        })
    }

    /// Attach `Retry-After` to 429 and 503 replies.
    pub fn with_retry_after(mut self, retry_after: RetryAfter) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Attach `Location` to 3xx replies.
    pub fn with_location(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }

    /// Consult `f` before every other knob.
    pub fn with_custom(
        mut self,
        f: impl Fn(&RequestView<'_>) -> Option<Reply> + Send + Sync + 'static,
    ) -> Self {
        self.custom = Some(Custom(Arc::new(f)));
        self
    }

    /// Seed the random source so runs are reproducible.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Check every knob, reporting the first bad one by its field path.
    ///
    /// # Errors
    ///
    /// [`BehaviorError::Invalid`] naming the field (`script[2]`,
    /// `rules[0].field`, …) and what is wrong with it.
    pub fn validate(&self) -> Result<(), BehaviorError> {
        check_status("status", self.status)?;
        check_status("fail_status", self.fail_status)?;
        if !(0.0..=1.0).contains(&self.fail_rate) {
            return Err(invalid("fail_rate", "must be between 0 and 1"));
        }
        if let Latency::Uniform { min, max } = self.latency {
            if min > max {
                return Err(invalid("latency", "min must not exceed max"));
            }
        }
        for (i, &status) in self.script.iter().enumerate() {
            check_status(&format!("script[{i}]"), status)?;
        }
        if let Some(ff) = &self.fail_first {
            check_status("fail_first.status", ff.status)?;
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.field.is_empty() {
                return Err(invalid(&format!("rules[{i}].field"), "must not be empty"));
            }
            check_status(&format!("rules[{i}].status"), rule.status)?;
        }
        if let Some(RetryAfter::Raw(raw)) = &self.retry_after {
            if !is_header_value(raw) {
                return Err(invalid("retry_after", "not a valid header value"));
            }
        }
        if let Some(location) = &self.location {
            if !is_header_value(location) {
                return Err(invalid("location", "not a valid header value"));
            }
        }
        Ok(())
    }
}

fn check_status(field: &str, status: u16) -> Result<(), BehaviorError> {
    if (MIN_STATUS..=MAX_STATUS).contains(&status) {
        Ok(())
    } else {
        Err(invalid(
            field,
            &format!("{status} is not a status between {MIN_STATUS} and {MAX_STATUS}"),
        ))
    }
}

/// Visible ASCII and spaces/tabs: what `http::HeaderValue` accepts without
/// surprises, checked here so the core needs no HTTP crate.
fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

fn invalid(field: &str, problem: &str) -> BehaviorError {
    BehaviorError::Invalid {
        field: field.to_owned(),
        problem: problem.to_owned(),
    }
}

/// A [`Behavior`] that cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BehaviorError {
    /// One knob has a value outside what it accepts.
    #[error("{field}: {problem}")]
    Invalid {
        /// Path of the knob, e.g. `rules[1].status`.
        field: String,
        /// What is wrong with its value.
        problem: String,
    },
}

/// Delay applied before a reply is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Latency {
    /// Reply as soon as decided.
    #[default]
    None,
    /// Always wait this long.
    Fixed(Duration),
    /// Wait a uniformly random time in `min..=max`.
    Uniform {
        /// Shortest delay.
        min: Duration,
        /// Longest delay.
        max: Duration,
    },
}

impl Latency {
    /// The CLI's form: `base_ms` plus up to `jitter_ms` more.
    pub fn from_millis(base_ms: u64, jitter_ms: u64) -> Self {
        let base = Duration::from_millis(base_ms);
        match (base_ms, jitter_ms) {
            (0, 0) => Latency::None,
            (_, 0) => Latency::Fixed(base),
            _ => Latency::Uniform {
                min: base,
                max: base.saturating_add(Duration::from_millis(jitter_ms)),
            },
        }
    }
}

/// Per-message failure script: see [`Behavior::fail_first`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailFirst {
    /// How many requests per GUID fail before the others knobs apply.
    pub count: u32,
    /// Status those requests get.
    pub status: u16,
}

/// Reply `status` when the JSON body's top-level `field` equals `equals`.
///
/// String fields compare as text; numbers and booleans compare by their JSON
/// spelling, so `GSW_CALL_RESULT=33` matches the integer 33.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Top-level body field name, e.g. `GSW_CAMPAIGN_NAME`.
    pub field: String,
    /// Value that triggers the rule.
    pub equals: String,
    /// Status sent when it matches.
    pub status: u16,
}

impl std::str::FromStr for Rule {
    type Err = String;

    /// Parses `FIELD=VALUE[:STATUS]`; STATUS defaults to 400. A `:` followed
    /// by anything but a number stays part of the value.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (field, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("expected FIELD=VALUE[:STATUS], got '{s}'"))?;
        let field = field.trim();
        if field.is_empty() {
            return Err("field name is empty".to_owned());
        }
        let (equals, status) = match rest.rsplit_once(':') {
            Some((value, status))
                if !status.is_empty() && status.bytes().all(|b| b.is_ascii_digit()) =>
            {
                let status: u16 = status
                    .parse()
                    .map_err(|_| format!("status '{status}' is not a number"))?;
                (value, status)
            }
            _ => (rest, DEFAULT_REJECT_STATUS),
        };
        check_status("status", status).map_err(|e| e.to_string())?;
        Ok(Rule {
            field: field.to_owned(),
            equals: equals.to_owned(),
            status,
        })
    }
}

/// Value of the `Retry-After` header attached to 429 and 503 replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: <seconds>`.
    Seconds(u64),
    /// A fixed HTTP-date.
    Date(SystemTime),
    /// An HTTP-date this far after the moment of the reply, so a long demo
    /// keeps sending dates in the future.
    DateIn(Duration),
    /// Sent verbatim, to test how the relay copes with odd values.
    Raw(String),
}

impl RetryAfter {
    /// The header value for a reply sent at `now`.
    pub fn header_value(&self, now: SystemTime) -> String {
        match self {
            RetryAfter::Seconds(s) => s.to_string(),
            RetryAfter::Date(at) => httpdate::fmt_http_date(*at),
            RetryAfter::DateIn(d) => httpdate::fmt_http_date(now + *d),
            RetryAfter::Raw(raw) => raw.clone(),
        }
    }
}

impl fmt::Display for RetryAfter {
    /// The form [`RetryAfter::from_str`](std::str::FromStr::from_str) parses back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryAfter::Seconds(s) => write!(f, "{s}"),
            RetryAfter::Date(at) => f.write_str(&httpdate::fmt_http_date(*at)),
            RetryAfter::DateIn(d) => write!(f, "date+{}", humantime::format_duration(*d)),
            RetryAfter::Raw(raw) => write!(f, "raw:{raw}"),
        }
    }
}

impl std::str::FromStr for RetryAfter {
    type Err = String;

    /// Accepts `120` (seconds), `date+30s` (an HTTP-date 30 s after each
    /// reply; any humantime duration), an HTTP-date such as
    /// `Wed, 21 Oct 2015 07:28:00 GMT`, or `raw:ANYTHING` (sent verbatim).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(seconds) = s.parse::<u64>() {
            return Ok(RetryAfter::Seconds(seconds));
        }
        if let Some(offset) = s.strip_prefix("date+") {
            return humantime::parse_duration(offset)
                .map(RetryAfter::DateIn)
                .map_err(|e| format!("'{offset}' after 'date+': {e}"));
        }
        if let Some(raw) = s.strip_prefix("raw:") {
            if !is_header_value(raw) {
                return Err("raw value is not a valid header value".to_owned());
            }
            return Ok(RetryAfter::Raw(raw.to_owned()));
        }
        httpdate::parse_http_date(s)
            .map(RetryAfter::Date)
            .map_err(|_| {
                format!("'{s}' is not seconds, 'date+DURATION', an HTTP-date or 'raw:VALUE'")
            })
    }
}

/// The closure behind [`Behavior::custom`]; `None` falls through to the
/// other knobs.
pub type CustomFn = dyn Fn(&RequestView<'_>) -> Option<Reply> + Send + Sync;

/// A shareable [`CustomFn`]; a newtype so [`Behavior`] stays `Clone + Debug`.
#[derive(Clone)]
pub struct Custom(pub Arc<CustomFn>);

impl fmt::Debug for Custom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Custom(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_behavior_is_valid_and_answers_200() {
        let b = Behavior::default();
        assert_eq!(b.validate(), Ok(()));
        assert_eq!(b.status, 200);
    }

    #[test]
    fn validate_names_the_bad_field() {
        let cases: Vec<(Behavior, &str)> = vec![
            (Behavior::status(99), "status"),
            (Behavior::default().with_fail_rate(1.5, 503), "fail_rate"),
            (
                Behavior::default().with_fail_rate(f64::NAN, 503),
                "fail_rate",
            ),
            (Behavior::default().with_fail_rate(0.5, 600), "fail_status"),
            (
                Behavior::default().with_script([200, 500, 700]),
                "script[2]",
            ),
            (
                Behavior::default().with_fail_first(2, 42),
                "fail_first.status",
            ),
            (
                Behavior::default().reject_when("", "x", 400),
                "rules[0].field",
            ),
            (
                Behavior::default()
                    .reject_when("A", "x", 400)
                    .reject_when("B", "y", 1000),
                "rules[1].status",
            ),
            (
                Behavior::default().with_latency(Latency::Uniform {
                    min: Duration::from_millis(5),
                    max: Duration::from_millis(1),
                }),
                "latency",
            ),
            (
                Behavior::default().with_retry_after(RetryAfter::Raw("a\nb".into())),
                "retry_after",
            ),
            (Behavior::redirect(302, "http://x/\r\n"), "location"),
        ];
        for (behavior, field) in cases {
            match behavior.validate() {
                Err(BehaviorError::Invalid { field: got, .. }) => assert_eq!(got, field),
                Ok(()) => panic!("expected {field} to be rejected"),
            }
        }
    }

    #[test]
    fn rule_parses_field_value_and_optional_status() {
        let cases = [
            (
                "GSW_CAMPAIGN_NAME=reject-me",
                ("GSW_CAMPAIGN_NAME", "reject-me", 400),
            ),
            ("GSW_CALL_RESULT=33:422", ("GSW_CALL_RESULT", "33", 422)),
            ("Other1=a:b", ("Other1", "a:b", 400)),
            ("Other1=10:30:409", ("Other1", "10:30", 409)),
            ("Other1=", ("Other1", "", 400)),
        ];
        for (input, (field, equals, status)) in cases {
            let rule: Rule = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                rule,
                Rule {
                    field: field.into(),
                    equals: equals.into(),
                    status
                },
                "{input}"
            );
        }
    }

    #[test]
    fn rule_rejects_missing_equals_and_bad_status() {
        for input in ["GSW_CAMPAIGN_NAME", "=x", "A=b:99", "A=b:70000"] {
            assert!(input.parse::<Rule>().is_err(), "{input} should not parse");
        }
    }

    #[test]
    fn retry_after_parses_every_documented_form() {
        let at = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let cases = [
            ("120", RetryAfter::Seconds(120)),
            ("date+30s", RetryAfter::DateIn(Duration::from_secs(30))),
            ("Wed, 21 Oct 2015 07:28:00 GMT", RetryAfter::Date(at)),
            ("raw:soon", RetryAfter::Raw("soon".into())),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<RetryAfter>(), Ok(want.clone()), "{input}");
            assert_eq!(want.to_string(), input, "displays as it parses");
        }
        assert!("tomorrow".parse::<RetryAfter>().is_err());
        assert!("date+forever".parse::<RetryAfter>().is_err());
    }

    #[test]
    fn retry_after_date_in_is_relative_to_the_reply() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let value = RetryAfter::DateIn(Duration::from_secs(90)).header_value(now);
        assert_eq!(value, "Wed, 21 Oct 2015 07:29:30 GMT");
    }

    #[test]
    fn cli_latency_maps_to_none_fixed_or_uniform() {
        let ms = Duration::from_millis;
        assert_eq!(Latency::from_millis(0, 0), Latency::None);
        assert_eq!(Latency::from_millis(50, 0), Latency::Fixed(ms(50)));
        assert_eq!(
            Latency::from_millis(50, 20),
            Latency::Uniform {
                min: ms(50),
                max: ms(70)
            }
        );
        assert_eq!(
            Latency::from_millis(0, 20),
            Latency::Uniform {
                min: ms(0),
                max: ms(20)
            }
        );
    }
}
