//! What one delivery attempt means: delivered, worth retrying, or final.
//!
//! A pure classifier (no HTTP client in here): the edge turns a response or a
//! transport error into an [`Attempt`], and [`Classifier::classify`] says what
//! happens next. Retry timing is `retry.rs`'s business; telling an outage from
//! a bad record is `circuit.rs`'s.
//!
//! Default rules (both status lists are configurable):
//! - a status in `success_statuses` (default `2xx`) → delivered;
//! - a status in `retryable_statuses` (default `408, 425, 429, 5xx`), a connect
//!   error, a timeout or a reset connection → retry;
//! - any other `3xx` → final, `http_redirect` (redirects are never followed);
//! - any other status → final, `http_rejected`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The result of one HTTP attempt, as the edge observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The target answered with a status.
    Response {
        /// HTTP status code.
        status: u16,
        /// `Retry-After`, already converted to a delay, if the target sent one.
        retry_after: Option<Duration>,
    },
    /// The request never reached the target: connection refused, DNS, TLS
    /// handshake, connect timeout.
    Connect(String),
    /// The target accepted the connection but did not answer in time.
    Timeout(String),
    /// The connection broke mid-request (reset, closed early).
    Transport(String),
}

/// Why a record ends in the dead-letter topic; the `cpn.dlq.reason` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DlqReason {
    /// The target answered a 4xx (or other status) that is not retryable.
    HttpRejected,
    /// The target answered a 3xx; redirects are not followed.
    HttpRedirect,
    /// Retryable failures used up the retry budget.
    RetriesExhausted,
    /// The record value is not JSON or not a valid ContactProcessed.
    InvalidPayload,
}

impl DlqReason {
    /// Every reason, in a stable order.
    pub const ALL: [DlqReason; 4] = [
        DlqReason::HttpRejected,
        DlqReason::HttpRedirect,
        DlqReason::RetriesExhausted,
        DlqReason::InvalidPayload,
    ];

    /// The wire name written to `cpn.dlq.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            DlqReason::HttpRejected => "http_rejected",
            DlqReason::HttpRedirect => "http_redirect",
            DlqReason::RetriesExhausted => "retries_exhausted",
            DlqReason::InvalidPayload => "invalid_payload",
        }
    }
}

impl fmt::Display for DlqReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DlqReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DlqReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = DlqReason::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown reason {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// The verdict on one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The target took it; the record is finished.
    Delivered,
    /// Try again later (policy permitting).
    Retry,
    /// Final failure: dead-letter with this reason.
    Permanent(DlqReason),
}

/// Coarse class of an attempt, for metrics labels and outage detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptClass {
    /// 2xx.
    Status2xx,
    /// 3xx.
    Status3xx,
    /// 4xx.
    Status4xx,
    /// 5xx.
    Status5xx,
    /// Any other status number (1xx, or out of range).
    StatusOther,
    /// Connect error.
    Connect,
    /// Timeout.
    Timeout,
    /// Connection broke mid-request.
    Transport,
}

impl AttemptClass {
    /// Every class, in the order of [`AttemptClass::index`].
    pub const ALL: [AttemptClass; 8] = [
        AttemptClass::Status2xx,
        AttemptClass::Status3xx,
        AttemptClass::Status4xx,
        AttemptClass::Status5xx,
        AttemptClass::StatusOther,
        AttemptClass::Connect,
        AttemptClass::Timeout,
        AttemptClass::Transport,
    ];

    /// This class's place in [`AttemptClass::ALL`] (a new class fails to
    /// compile here until it has one).
    pub fn index(self) -> usize {
        match self {
            AttemptClass::Status2xx => 0,
            AttemptClass::Status3xx => 1,
            AttemptClass::Status4xx => 2,
            AttemptClass::Status5xx => 3,
            AttemptClass::StatusOther => 4,
            AttemptClass::Connect => 5,
            AttemptClass::Timeout => 6,
            AttemptClass::Transport => 7,
        }
    }

    /// Metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptClass::Status2xx => "2xx",
            AttemptClass::Status3xx => "3xx",
            AttemptClass::Status4xx => "4xx",
            AttemptClass::Status5xx => "5xx",
            AttemptClass::StatusOther => "other",
            AttemptClass::Connect => "connect_error",
            AttemptClass::Timeout => "timeout",
            AttemptClass::Transport => "transport_error",
        }
    }
}

impl Attempt {
    /// The coarse class of this attempt.
    pub fn class(&self) -> AttemptClass {
        match self {
            Attempt::Response { status, .. } => match status {
                200..=299 => AttemptClass::Status2xx,
                300..=399 => AttemptClass::Status3xx,
                400..=499 => AttemptClass::Status4xx,
                500..=599 => AttemptClass::Status5xx,
                _ => AttemptClass::StatusOther,
            },
            Attempt::Connect(_) => AttemptClass::Connect,
            Attempt::Timeout(_) => AttemptClass::Timeout,
            Attempt::Transport(_) => AttemptClass::Transport,
        }
    }

    /// The HTTP status, when the target answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Attempt::Response { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The `Retry-After` delay the target asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Attempt::Response { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short human description, for logs and `cpn.dlq.error`.
    pub fn describe(&self) -> String {
        match self {
            Attempt::Response { status, .. } => format!("HTTP {status}"),
            Attempt::Connect(e) => format!("connect error: {e}"),
            Attempt::Timeout(e) => format!("timeout: {e}"),
            Attempt::Transport(e) => format!("transport error: {e}"),
        }
    }
}

/// A set of HTTP statuses written as `"2xx"`, `"429"` or `"500-504"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet {
    ranges: Vec<(u16, u16)>,
}

impl StatusSet {
    /// Parses a list of entries.
    ///
    /// # Errors
    /// Names the first entry that is not a status, a class (`5xx`) or a range.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut ranges = Vec::with_capacity(entries.len());
        for e in entries {
            ranges.push(parse_status_entry(e.as_ref().trim())?);
        }
        Ok(StatusSet { ranges })
    }

    /// Whether `status` is in the set.
    pub fn contains(&self, status: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

fn parse_status_entry(e: &str) -> Result<(u16, u16), String> {
    let bad = || {
        format!("{e:?} is not a status (e.g. 429), a class (e.g. 5xx) or a range (e.g. 500-504)")
    };
    let check = |n: u16| {
        if (100..=599).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        }
    };
    if let Some(class) = e.strip_suffix("xx").or_else(|| e.strip_suffix("XX")) {
        let d: u16 = class.parse().map_err(|_| bad())?;
        if !(1..=5).contains(&d) || class.len() != 1 {
            return Err(bad());
        }
        return Ok((d * 100, d * 100 + 99));
    }
    if let Some((lo, hi)) = e.split_once('-') {
        let lo = check(lo.trim().parse().map_err(|_| bad())?)?;
        let hi = check(hi.trim().parse().map_err(|_| bad())?)?;
        if lo > hi {
            return Err(bad());
        }
        return Ok((lo, hi));
    }
    let n = check(e.parse().map_err(|_| bad())?)?;
    Ok((n, n))
}

/// Turns attempts into verdicts, per the configured status lists.
#[derive(Debug, Clone)]
pub struct Classifier {
    success: StatusSet,
    retryable: StatusSet,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier {
            success: StatusSet {
                ranges: vec![(200, 299)],
            },
            retryable: StatusSet {
                ranges: vec![(408, 408), (425, 425), (429, 429), (500, 599)],
            },
        }
    }
}

impl Classifier {
    /// A classifier with these lists.
    pub fn new(success: StatusSet, retryable: StatusSet) -> Self {
        Classifier { success, retryable }
    }

    /// The verdict on one attempt.
    pub fn classify(&self, attempt: &Attempt) -> Verdict {
        match attempt {
            Attempt::Response { status, .. } => {
                let s = *status;
                if self.success.contains(s) {
                    Verdict::Delivered
                } else if self.retryable.contains(s) {
                    Verdict::Retry
                } else if (300..=399).contains(&s) {
                    Verdict::Permanent(DlqReason::HttpRedirect)
                } else {
                    Verdict::Permanent(DlqReason::HttpRejected)
                }
            }
            Attempt::Connect(_) | Attempt::Timeout(_) | Attempt::Transport(_) => Verdict::Retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_sits_at_its_index_once() {
        // The relay's metrics are resolved per class into an array indexed
        // by `index`: a class out of place would count under another label.
        for (i, c) in AttemptClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i, "{c:?}");
        }
        let labels: std::collections::BTreeSet<_> =
            AttemptClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels.len(), AttemptClass::ALL.len());
    }

    fn status(s: u16) -> Attempt {
        Attempt::Response {
            status: s,
            retry_after: None,
        }
    }

    #[test]
    fn default_rules_table() {
        let c = Classifier::default();
        let cases: &[(Attempt, Verdict)] = &[
            (status(200), Verdict::Delivered),
            (status(201), Verdict::Delivered),
            (status(204), Verdict::Delivered),
            (status(299), Verdict::Delivered),
            (status(301), Verdict::Permanent(DlqReason::HttpRedirect)),
            (status(302), Verdict::Permanent(DlqReason::HttpRedirect)),
            (status(307), Verdict::Permanent(DlqReason::HttpRedirect)),
            (status(400), Verdict::Permanent(DlqReason::HttpRejected)),
            (status(401), Verdict::Permanent(DlqReason::HttpRejected)),
            (status(404), Verdict::Permanent(DlqReason::HttpRejected)),
            (status(409), Verdict::Permanent(DlqReason::HttpRejected)),
            (status(422), Verdict::Permanent(DlqReason::HttpRejected)),
            (status(408), Verdict::Retry),
            (status(425), Verdict::Retry),
            (status(429), Verdict::Retry),
            (status(500), Verdict::Retry),
            (status(502), Verdict::Retry),
            (status(503), Verdict::Retry),
            (status(599), Verdict::Retry),
            (status(101), Verdict::Permanent(DlqReason::HttpRejected)),
            (Attempt::Connect("refused".into()), Verdict::Retry),
            (Attempt::Timeout("10s".into()), Verdict::Retry),
            (Attempt::Transport("reset".into()), Verdict::Retry),
        ];
        for (a, want) in cases {
            assert_eq!(&c.classify(a), want, "{a:?}");
        }
    }

    #[test]
    fn configured_lists_override_defaults() {
        let c = Classifier::new(
            StatusSet::parse(&["2xx", "409"]).unwrap(),
            StatusSet::parse(&["503", "500-502"]).unwrap(),
        );
        assert_eq!(
            c.classify(&status(409)),
            Verdict::Delivered,
            "409 = duplicate, treated as delivered"
        );
        assert_eq!(
            c.classify(&status(429)),
            Verdict::Permanent(DlqReason::HttpRejected)
        );
        assert_eq!(c.classify(&status(501)), Verdict::Retry);
        assert_eq!(
            c.classify(&status(504)),
            Verdict::Permanent(DlqReason::HttpRejected)
        );
    }

    #[test]
    fn status_entries_are_checked() {
        for bad in [
            "6xx", "0xx", "abc", "99", "600", "504-500", "5x", "55xx", "",
        ] {
            assert!(
                StatusSet::parse(&[bad]).is_err(),
                "{bad:?} should be rejected"
            );
        }
        let s = StatusSet::parse(&["4xx", "500 - 501"]).unwrap();
        assert!(s.contains(404) && s.contains(501) && !s.contains(502));
    }

    #[test]
    fn reasons_round_trip_through_their_names() {
        for r in DlqReason::ALL {
            assert_eq!(r.as_str().parse::<DlqReason>().unwrap(), r);
        }
        assert!(
            "nope"
                .parse::<DlqReason>()
                .unwrap_err()
                .contains("http_rejected")
        );
    }
}
