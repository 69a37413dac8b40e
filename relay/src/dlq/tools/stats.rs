//! `cpn-relay dlq stats`: how many dead letters, why, for which target,
//! campaign group and media type, in which hours, oldest and newest.
//!
//! Pure: feed it decoded dead letters with [`Stats::add`], then print it as a
//! table ([`Stats::render`]) or JSON ([`Stats::to_json`]). Hours and
//! oldest/newest use [`DeadLetterView::at`] (last attempt, else the
//! dead-letter record's timestamp), in UTC.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use crate::dlq::headers::rfc3339;
use crate::dlq::record::DeadLetterView;

/// The key counted when a dead letter has no value for a dimension (no HTTP
/// status, a value that is not JSON, ...).
pub const NONE: &str = "(none)";

/// Counts over a set of dead letters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// How many dead letters.
    pub total: u64,
    /// Earliest [`DeadLetterView::at`].
    pub oldest: Option<SystemTime>,
    /// Latest [`DeadLetterView::at`].
    pub newest: Option<SystemTime>,
    /// By `cpn.dlq.reason`.
    pub by_reason: BTreeMap<String, u64>,
    /// By last HTTP status.
    pub by_http_status: BTreeMap<String, u64>,
    /// By `cpn.dlq.target`.
    pub by_target: BTreeMap<String, u64>,
    /// By `GSW_CAMPAIGN_GROUP_NAME`.
    pub by_campaign_group: BTreeMap<String, u64>,
    /// By `GSW_CONTACT_MEDIA_TYPE`.
    pub by_media_type: BTreeMap<String, u64>,
    /// By hour (UTC), `2025-11-25T10`.
    pub by_hour: BTreeMap<String, u64>,
}

fn bump(map: &mut BTreeMap<String, u64>, key: Option<&str>) {
    *map.entry(key.unwrap_or(NONE).to_owned()).or_default() += 1;
}

/// `2025-11-25T10` for a time in that UTC hour.
pub fn hour_of(t: SystemTime) -> String {
    rfc3339(t)
        .get(..13)
        .map_or_else(|| rfc3339(t), str::to_owned)
}

impl Stats {
    /// Counts one dead letter.
    pub fn add(&mut self, dl: &DeadLetterView) {
        self.total += 1;
        let event = dl.event.as_ref();
        bump(&mut self.by_reason, dl.reason.as_deref());
        bump(
            &mut self.by_http_status,
            dl.http_status.map(|s| s.to_string()).as_deref(),
        );
        bump(&mut self.by_target, dl.target.as_deref());
        bump(
            &mut self.by_campaign_group,
            event.and_then(|e| e.campaign_group.as_deref()),
        );
        bump(
            &mut self.by_media_type,
            event.and_then(|e| e.media_type.as_deref()),
        );
        let at = dl.at();
        bump(&mut self.by_hour, at.map(hour_of).as_deref());
        if let Some(t) = at {
            self.oldest = Some(self.oldest.map_or(t, |o| o.min(t)));
            self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
        }
    }

    /// The `--json` form, one line: `topic`, `total`, `oldest`, `newest`
    /// (RFC 3339 or null) and one object of counts per dimension
    /// (`by_reason`, `by_http_status`, `by_target`, `by_campaign_group`,
    /// `by_media_type`, `by_hour`).
    pub fn to_json(&self, topic: &str) -> String {
        #[derive(Serialize)]
        struct Report<'a> {
            topic: &'a str,
            total: u64,
            oldest: Option<String>,
            newest: Option<String>,
            by_reason: &'a BTreeMap<String, u64>,
            by_http_status: &'a BTreeMap<String, u64>,
            by_target: &'a BTreeMap<String, u64>,
            by_campaign_group: &'a BTreeMap<String, u64>,
            by_media_type: &'a BTreeMap<String, u64>,
            by_hour: &'a BTreeMap<String, u64>,
        }
        let report = Report {
            topic,
            total: self.total,
            oldest: self.oldest.map(rfc3339),
            newest: self.newest.map(rfc3339),
            by_reason: &self.by_reason,
            by_http_status: &self.by_http_status,
            by_target: &self.by_target,
            by_campaign_group: &self.by_campaign_group,
            by_media_type: &self.by_media_type,
            by_hour: &self.by_hour,
        };
        // Strings, numbers and string-keyed maps only: serializing cannot fail.
        serde_json::to_string(&report).unwrap_or_default()
    }

    /// The human table: a header line, then one block per dimension, the
    /// biggest counts first (hours in time order).
    pub fn render(&self, topic: &str) -> String {
        let mut out = String::new();
        let time = |t: Option<SystemTime>| t.map_or_else(|| "-".to_owned(), rfc3339);
        // Writing to a String cannot fail.
        let _ = writeln!(out, "dead letters in {topic}: {}", self.total);
        if self.total == 0 {
            return out;
        }
        let _ = writeln!(out, "oldest: {}", time(self.oldest));
        let _ = writeln!(out, "newest: {}", time(self.newest));
        let blocks: [(&str, &BTreeMap<String, u64>, bool); 6] = [
            ("reason", &self.by_reason, true),
            ("http status", &self.by_http_status, true),
            ("target", &self.by_target, true),
            ("campaign group", &self.by_campaign_group, true),
            ("media type", &self.by_media_type, true),
            ("hour (UTC)", &self.by_hour, false),
        ];
        for (title, map, by_count) in blocks {
            let mut rows: Vec<(&String, &u64)> = map.iter().collect();
            if by_count {
                rows.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            }
            let width = rows
                .iter()
                .map(|(k, _)| k.chars().count())
                .max()
                .unwrap_or(0)
                .max(title.len());
            let _ = writeln!(out, "\n{title:<width$}  {:>7}", "count");
            for (k, n) in rows {
                let _ = writeln!(out, "{k:<width$}  {n:>7}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::headers::{self as h};
    use crate::dlq::record::RawDeadLetter;

    fn dl(reason: &str, status: Option<&str>, last: Option<&str>, value: &str) -> DeadLetterView {
        let mut headers = vec![(h::REASON.to_owned(), Some(reason.as_bytes().to_vec()))];
        if let Some(s) = status {
            headers.push((h::HTTP_STATUS.to_owned(), Some(s.as_bytes().to_vec())));
        }
        if let Some(l) = last {
            headers.push((h::LAST_ATTEMPT_AT.to_owned(), Some(l.as_bytes().to_vec())));
        }
        headers.push((h::TARGET.to_owned(), Some(b"http://crm/hook".to_vec())));
        DeadLetterView::decode(RawDeadLetter {
            partition: 0,
            offset: 0,
            timestamp_ms: Some(1_764_068_400_000), // 2025-11-25T11:00:00Z
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers,
        })
    }

    fn stats() -> Stats {
        let ev = |g: &str, m: &str| {
            format!(r#"{{"GSW_CAMPAIGN_GROUP_NAME":"{g}","GSW_CONTACT_MEDIA_TYPE":"{m}"}}"#)
        };
        let mut s = Stats::default();
        s.add(&dl(
            "http_rejected",
            Some("400"),
            Some("2025-11-25T10:15:00Z"),
            &ev("G1", "voice"),
        ));
        s.add(&dl(
            "http_rejected",
            Some("400"),
            Some("2025-11-25T10:45:00Z"),
            &ev("G1", "sms"),
        ));
        s.add(&dl(
            "retries_exhausted",
            Some("503"),
            Some("2025-11-25T12:00:00Z"),
            &ev("G2", "voice"),
        ));
        s.add(&dl("invalid_payload", None, None, "garbage"));
        s
    }

    #[test]
    fn counts_every_dimension() {
        let s = stats();
        let m = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(s.total, 4);
        assert_eq!(
            s.by_reason,
            m(&[
                ("http_rejected", 2),
                ("retries_exhausted", 1),
                ("invalid_payload", 1)
            ])
        );
        assert_eq!(s.by_http_status, m(&[("400", 2), ("503", 1), (NONE, 1)]));
        assert_eq!(s.by_target, m(&[("http://crm/hook", 4)]));
        assert_eq!(s.by_campaign_group, m(&[("G1", 2), ("G2", 1), (NONE, 1)]));
        assert_eq!(s.by_media_type, m(&[("voice", 2), ("sms", 1), (NONE, 1)]));
        assert_eq!(
            s.by_hour,
            m(&[
                ("2025-11-25T10", 2),
                ("2025-11-25T11", 1),
                ("2025-11-25T12", 1)
            ])
        );
        assert_eq!(
            s.oldest.map(rfc3339).as_deref(),
            Some("2025-11-25T10:15:00.000Z")
        );
        assert_eq!(
            s.newest.map(rfc3339).as_deref(),
            Some("2025-11-25T12:00:00.000Z")
        );
    }

    #[test]
    fn json_and_table_agree() {
        let s = stats();
        let j: serde_json::Value = serde_json::from_str(&s.to_json("D")).unwrap();
        assert!(s.to_json("D").starts_with(r#"{"topic":"D","total":4,"#));
        assert_eq!(j["total"], 4);
        assert_eq!(j["by_reason"]["http_rejected"], 2);
        assert_eq!(j["by_hour"]["2025-11-25T12"], 1);
        let t = s.render("D");
        assert!(t.starts_with("dead letters in D: 4\n"), "{t}");
        let reason_block: Vec<&str> = t.split("\n\n").nth(1).unwrap().lines().collect();
        assert_eq!(
            reason_block[0].split_whitespace().collect::<Vec<_>>(),
            ["reason", "count"]
        );
        assert!(
            reason_block[1].starts_with("http_rejected"),
            "biggest first: {t}"
        );
    }

    #[test]
    fn empty_topic_says_so() {
        assert_eq!(Stats::default().render("D"), "dead letters in D: 0\n");
        assert!(Stats::default().to_json("D").contains(r#""oldest":null"#));
    }
}
