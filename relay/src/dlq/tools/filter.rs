//! Which dead letters a `cpn-relay dlq` command looks at: the filters shared
//! by `list`, `stats`, `export` and `replay`, and the parsing of their values
//! (`--since 2h`, `--status 5xx`, ...).
//!
//! Pure: no Kafka, no clock (the caller passes "now" in). Values of one
//! filter are alternatives (`--reason a --reason b` keeps either); different
//! filters must all match. A filter on a field a dead letter does not have
//! (no HTTP status, a value that is not JSON) does not match it.
//!
//! Time filters look at *when the relay gave up*: the `cpn.dlq.last_attempt_at`
//! header, else (no request was made, e.g. `invalid_payload`) the timestamp of
//! the dead-letter record itself. See [`DeadLetterView::at`].

use std::time::{Duration, SystemTime};

use crate::dlq::headers::parse_rfc3339;
use crate::dlq::record::DeadLetterView;
use crate::policy::classify::{DlqReason, StatusSet};

/// The selection a command applies to every dead letter it reads.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Keep dead letters with one of these reasons (empty: any).
    pub reasons: Vec<DlqReason>,
    /// Keep dead letters whose last HTTP status is in one of these sets.
    pub statuses: Vec<StatusSet>,
    /// Keep dead letters of these message GUIDs (compared as UUIDs, so case,
    /// braces and `urn:uuid:` do not matter).
    pub guids: Vec<String>,
    /// Keep dead letters given up at or after this time.
    pub since: Option<SystemTime>,
    /// Keep dead letters given up strictly before this time.
    pub until: Option<SystemTime>,
    /// Keep events of these campaign groups (`GSW_CAMPAIGN_GROUP_NAME`, exact).
    pub campaign_groups: Vec<String>,
    /// Keep events of these calling lists (`GSW_CALLING_LIST`, exact).
    pub calling_lists: Vec<String>,
    /// Keep dead letters whose `cpn.dlq.target` starts with one of these.
    pub targets: Vec<String>,
}

impl Filter {
    /// Whether no filter is set (every dead letter matches).
    pub fn is_empty(&self) -> bool {
        self.reasons.is_empty()
            && self.statuses.is_empty()
            && self.guids.is_empty()
            && self.since.is_none()
            && self.until.is_none()
            && self.campaign_groups.is_empty()
            && self.calling_lists.is_empty()
            && self.targets.is_empty()
    }

    /// Whether `dl` passes every filter.
    pub fn matches(&self, dl: &DeadLetterView) -> bool {
        if !self.reasons.is_empty() {
            let Some(reason) = dl.reason.as_deref() else {
                return false;
            };
            if !self.reasons.iter().any(|r| r.as_str() == reason) {
                return false;
            }
        }
        if !self.statuses.is_empty() {
            let Some(status) = dl.http_status else {
                return false;
            };
            if !self.statuses.iter().any(|s| s.contains(status)) {
                return false;
            }
        }
        if !self.guids.is_empty() {
            let Some(guid) = dl.guid() else { return false };
            if !self.guids.iter().any(|g| same_guid(g, guid)) {
                return false;
            }
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(at) = dl.at() else { return false };
            if self.since.is_some_and(|s| at < s) || self.until.is_some_and(|u| at >= u) {
                return false;
            }
        }
        if !one_of(
            &self.campaign_groups,
            dl.event.as_ref().and_then(|e| e.campaign_group.as_deref()),
        ) {
            return false;
        }
        if !one_of(
            &self.calling_lists,
            dl.event.as_ref().and_then(|e| e.calling_list.as_deref()),
        ) {
            return false;
        }
        if !self.targets.is_empty() {
            let Some(target) = dl.target.as_deref() else {
                return false;
            };
            if !self.targets.iter().any(|t| target.starts_with(t.as_str())) {
                return false;
            }
        }
        true
    }
}

fn one_of(wanted: &[String], have: Option<&str>) -> bool {
    wanted.is_empty() || have.is_some_and(|h| wanted.iter().any(|w| w == h))
}

/// GUIDs are equal when they name the same UUID; text that is not a UUID
/// must match exactly.
fn same_guid(a: &str, b: &str) -> bool {
    match (
        uuid::Uuid::parse_str(a.trim()),
        uuid::Uuid::parse_str(b.trim()),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Parses a time bound: RFC 3339 (`2026-11-25T10:00:00Z`, any offset), a
/// date (`2026-11-25`, midnight UTC), or a duration before `now` (`2h`,
/// `30m`, `7d`, `1h30m`).
///
/// # Errors
/// The text is none of these; the message shows the accepted forms.
pub fn parse_time(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let t = text.trim();
    if let Some(at) = parse_rfc3339(t) {
        return Ok(at);
    }
    if let Ok(date) =
        time::Date::parse(t, time::macros::format_description!("[year]-[month]-[day]"))
    {
        return Ok(SystemTime::from(date.midnight().assume_utc()));
    }
    if t.starts_with(|c: char| c.is_ascii_digit())
        && let Ok(ago) = humantime::parse_duration(t)
    {
        return now
            .checked_sub(ago)
            .ok_or_else(|| format!("{t:?} reaches before 1970"));
    }
    Err(format!(
        "{t:?} is not a time: use RFC 3339 (2026-11-25T10:00:00Z), a date (2026-11-25, UTC) \
         or a duration ago (2h, 30m, 7d)"
    ))
}

/// Parses one `--status` value: `400`, a class `4xx` or a range `500-504`.
///
/// # Errors
/// The text is none of these.
pub fn parse_status(text: &str) -> Result<StatusSet, String> {
    StatusSet::parse(&[text])
}

/// Parses one `--reason` value.
///
/// # Errors
/// Not a reason the relay writes; the message lists the valid ones.
pub fn parse_reason(text: &str) -> Result<DlqReason, String> {
    text.trim().parse()
}

/// Parses a replay rate: `50`, `50/s`, `0.5` (records per second, > 0).
///
/// # Errors
/// Not a positive number of records per second.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let n = t.strip_suffix("/s").unwrap_or(t);
    match n.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1_000_000.0 => Ok(r),
        _ => Err(format!(
            "{t:?} is not a rate: use records per second, a number above 0 and at most 1000000, e.g. 50 or 50/s"
        )),
    }
}

/// The pause between two records at `rate` records per second.
pub fn rate_interval(rate: f64) -> Duration {
    Duration::from_secs_f64(1.0 / rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::headers::{self as h};
    use crate::dlq::record::RawDeadLetter;

    fn t(s: &str) -> SystemTime {
        parse_rfc3339(s).unwrap()
    }

    const GUID: &str = "6f1c4a52-9d7e-4b1a-8c3e-2f5a7b9d0e11";

    fn dead_letter(
        reason: &str,
        status: Option<u16>,
        last: Option<&str>,
        body: &str,
    ) -> DeadLetterView {
        let mut headers: Vec<(String, Option<Vec<u8>>)> =
            vec![(h::REASON.into(), Some(reason.as_bytes().to_vec()))];
        if let Some(s) = status {
            headers.push((h::HTTP_STATUS.into(), Some(s.to_string().into_bytes())));
        }
        if let Some(l) = last {
            headers.push((h::LAST_ATTEMPT_AT.into(), Some(l.as_bytes().to_vec())));
        }
        headers.push((h::TARGET.into(), Some(b"https://crm.example/hook".to_vec())));
        DeadLetterView::decode(RawDeadLetter {
            partition: 0,
            offset: 1,
            timestamp_ms: Some(1_764_064_800_000), // 2025-11-25T10:00:00Z
            key: None,
            value: Some(body.as_bytes().to_vec()),
            headers,
        })
    }

    fn body(group: &str, list: &str) -> String {
        format!(
            r#"{{"GSW_MESSAGE_GUID":"{GUID}","GSW_CAMPAIGN_GROUP_NAME":"{group}","GSW_CALLING_LIST":"{list}","GSW_CALL_RESULT":33}}"#
        )
    }

    #[test]
    fn each_filter_keeps_only_its_matches() {
        let rejected = dead_letter(
            "http_rejected",
            Some(400),
            Some("2025-11-25T12:00:00Z"),
            &body("G1", "L1"),
        );
        let exhausted = dead_letter(
            "retries_exhausted",
            Some(503),
            Some("2025-11-25T13:00:00Z"),
            &body("G2", "L2"),
        );
        let invalid = dead_letter("invalid_payload", None, None, "not json");
        let all = [&rejected, &exhausted, &invalid];
        let cases: Vec<(&str, Filter, [bool; 3])> = vec![
            ("no filter", Filter::default(), [true, true, true]),
            (
                "reason",
                Filter {
                    reasons: vec![DlqReason::HttpRejected],
                    ..Default::default()
                },
                [true, false, false],
            ),
            (
                "two reasons",
                Filter {
                    reasons: vec![DlqReason::HttpRejected, DlqReason::InvalidPayload],
                    ..Default::default()
                },
                [true, false, true],
            ),
            (
                "status 4xx",
                Filter {
                    statuses: vec![parse_status("4xx").unwrap()],
                    ..Default::default()
                },
                [true, false, false],
            ),
            (
                "status 503",
                Filter {
                    statuses: vec![parse_status("503").unwrap()],
                    ..Default::default()
                },
                [false, true, false],
            ),
            (
                "guid, other spelling",
                Filter {
                    guids: vec![GUID.to_uppercase()],
                    ..Default::default()
                },
                [true, true, false],
            ),
            (
                "guid, other",
                Filter {
                    guids: vec![uuid::Uuid::nil().to_string()],
                    ..Default::default()
                },
                [false, false, false],
            ),
            (
                "since is inclusive",
                Filter {
                    since: Some(t("2025-11-25T13:00:00Z")),
                    ..Default::default()
                },
                [false, true, false],
            ),
            (
                "until is exclusive",
                Filter {
                    until: Some(t("2025-11-25T13:00:00Z")),
                    ..Default::default()
                },
                [true, false, true],
            ),
            (
                "no attempt: record timestamp",
                Filter {
                    since: Some(t("2025-11-25T09:59:00Z")),
                    until: Some(t("2025-11-25T10:01:00Z")),
                    ..Default::default()
                },
                [false, false, true],
            ),
            (
                "campaign group",
                Filter {
                    campaign_groups: vec!["G2".into()],
                    ..Default::default()
                },
                [false, true, false],
            ),
            (
                "calling list",
                Filter {
                    calling_lists: vec!["L1".into(), "L2".into()],
                    ..Default::default()
                },
                [true, true, false],
            ),
            (
                "target prefix",
                Filter {
                    targets: vec!["https://crm.example".into()],
                    ..Default::default()
                },
                [true, true, true],
            ),
            (
                "target other",
                Filter {
                    targets: vec!["https://other".into()],
                    ..Default::default()
                },
                [false, false, false],
            ),
            (
                "filters combine",
                Filter {
                    reasons: vec![DlqReason::HttpRejected],
                    campaign_groups: vec!["G2".into()],
                    ..Default::default()
                },
                [false, false, false],
            ),
        ];
        for (name, filter, want) in cases {
            let got: Vec<bool> = all.iter().map(|d| filter.matches(d)).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn times_parse_in_every_accepted_form() {
        let now = t("2025-11-25T12:00:00Z");
        let cases = [
            ("2025-11-25T10:00:00Z", "2025-11-25T10:00:00Z"),
            ("2025-11-25T11:00:00+01:00", "2025-11-25T10:00:00Z"),
            ("2025-11-25T10:00:00.250Z", "2025-11-25T10:00:00.250Z"),
            ("2025-11-24", "2025-11-24T00:00:00Z"),
            ("2h", "2025-11-25T10:00:00Z"),
            ("30m", "2025-11-25T11:30:00Z"),
            ("7d", "2025-11-18T12:00:00Z"),
            ("1h30m", "2025-11-25T10:30:00Z"),
            (" 90s ", "2025-11-25T11:58:30Z"),
        ];
        for (input, want) in cases {
            assert_eq!(parse_time(input, now), Ok(t(want)), "{input}");
        }
    }

    #[test]
    fn malformed_times_are_refused_with_the_forms() {
        let now = t("2025-11-25T12:00:00Z");
        for bad in [
            "yesterday",
            "2h ago",
            "-2h",
            "2025-11-25 10:00",
            "2025-11-25T10:00:00",
            "",
            "h2",
            "2x",
        ] {
            let e = parse_time(bad, now).unwrap_err();
            assert!(e.contains("RFC 3339") && e.contains("2h"), "{bad}: {e}");
        }
    }

    #[test]
    fn reasons_and_statuses_are_validated() {
        assert_eq!(
            parse_reason("retries_exhausted"),
            Ok(DlqReason::RetriesExhausted)
        );
        let e = parse_reason("timeout").unwrap_err();
        assert!(
            e.contains("http_rejected") && e.contains("invalid_payload"),
            "{e}"
        );
        assert!(parse_status("4xx").unwrap().contains(404));
        assert!(parse_status("four hundred").is_err());
    }

    #[test]
    fn rates_are_positive_records_per_second() {
        assert_eq!(parse_rate("50"), Ok(50.0));
        assert_eq!(parse_rate("50/s"), Ok(50.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in ["0", "-1", "fast", "NaN", "inf", "10/m"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(rate_interval(4.0), Duration::from_millis(250));
    }
}
