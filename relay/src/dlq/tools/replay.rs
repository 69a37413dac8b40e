//! What `cpn-relay dlq replay` does with one selected dead letter: send it
//! again (to where, with which headers) or skip it (loop guard, nowhere to
//! send it). The Kafka side — reading, producing, recording progress — is
//! `republish.rs`.
//!
//! Pure. The replayed record is the original event, not the dead letter:
//! key and value bytes unchanged (GUID, `GSW_TIMESTAMP` and so the `ETag`
//! stay the same, DESIGN invariant 3), the original record's headers kept,
//! this dead letter's diagnostic headers (`cpn.dlq.*`, `__connect.errors.*`)
//! dropped, then `cpn.dlq.replays` (previous count + 1) and
//! `cpn.dlq.replayed_from` (`DLQ_TOPIC:PARTITION:OFFSET`) appended. The relay
//! keeps all of a record's headers when it dead-letters it again, so the
//! count survives a second trip through the dead-letter topic and the loop
//! guard sees it.

use crate::dlq::headers::{REPLAYED_FROM, REPLAYS};
use crate::dlq::record::DeadLetterView;

/// Default for `--max-replays`.
pub const DEFAULT_MAX_REPLAYS: u32 = 3;

/// What to do with one selected dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Produce the original key and value to `topic` with `headers`.
    Replay {
        /// Destination topic.
        topic: String,
        /// Headers of the replayed record, in order.
        headers: Vec<(String, Option<Vec<u8>>)>,
        /// The `cpn.dlq.replays` value written.
        replays: u32,
    },
    /// Skipped by the loop guard: already replayed `replays` times.
    LoopGuard {
        /// How often the event was already replayed.
        replays: u32,
    },
    /// No `--to` and no `__connect.errors.topic` header: nowhere to send it.
    NoDestination,
}

/// Decides the fate of `dl`, read from `dlq_topic`. `to` is `--to`; when it
/// is `None` the record goes back to the topic it was consumed from.
pub fn plan(dl: &DeadLetterView, dlq_topic: &str, to: Option<&str>, max_replays: u32) -> Plan {
    if dl.replays >= max_replays {
        return Plan::LoopGuard {
            replays: dl.replays,
        };
    }
    let Some(topic) = to.map(str::to_owned).or_else(|| dl.original_topic.clone()) else {
        return Plan::NoDestination;
    };
    let replays = dl.replays + 1;
    Plan::Replay {
        topic,
        headers: replay_headers(dl, dlq_topic, replays),
        replays,
    }
}

/// Whether a header is a dead letter's diagnostic, dropped on replay.
pub fn is_diagnostic(name: &str) -> bool {
    name.starts_with("cpn.dlq.") || name.starts_with("__connect.errors.")
}

/// The original record's headers, without diagnostics, plus the replay
/// count and where the record was replayed from.
pub fn replay_headers(
    dl: &DeadLetterView,
    dlq_topic: &str,
    replays: u32,
) -> Vec<(String, Option<Vec<u8>>)> {
    let mut headers: Vec<(String, Option<Vec<u8>>)> = dl
        .raw
        .headers
        .iter()
        .filter(|(k, _)| !is_diagnostic(k))
        .cloned()
        .collect();
    headers.push((REPLAYS.to_owned(), Some(replays.to_string().into_bytes())));
    headers.push((
        REPLAYED_FROM.to_owned(),
        Some(format!("{dlq_topic}:{}:{}", dl.partition(), dl.offset()).into_bytes()),
    ));
    headers
}

/// The consumer group that records a replay's progress through `dlq_topic`
/// when `--progress-group` is not given.
pub fn default_progress_group(dlq_topic: &str) -> String {
    format!("cpn-dlq-replay.{dlq_topic}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::headers::{self as h, DeadLetterInfo};
    use crate::dlq::record::RawDeadLetter;
    use crate::policy::classify::DlqReason;

    fn info() -> DeadLetterInfo {
        DeadLetterInfo {
            reason: DlqReason::RetriesExhausted,
            http_status: Some(503),
            error: "HTTP 503".into(),
            location: None,
            response_body: Vec::new(),
            attempts: 5,
            first_attempt_at: None,
            last_attempt_at: None,
            target: "http://crm".into(),
            group: "g".into(),
            relay: "r".into(),
            topic: "contact-processed".into(),
            partition: 0,
            offset: 9,
            original_timestamp_ms: None,
        }
    }

    /// A dead letter as the relay writes it: `original` headers then its own.
    fn dead_letter(original: &[(&str, Option<&[u8]>)]) -> DeadLetterView {
        let mut headers: Vec<(String, Option<Vec<u8>>)> = original
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(<[u8]>::to_vec)))
            .collect();
        headers.extend(
            info()
                .to_headers()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Some(v))),
        );
        DeadLetterView::decode(RawDeadLetter {
            partition: 3,
            offset: 14,
            timestamp_ms: None,
            key: Some(b"k".to_vec()),
            value: Some(b"{}".to_vec()),
            headers,
        })
    }

    fn names(headers: &[(String, Option<Vec<u8>>)]) -> Vec<&str> {
        headers.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn loop_guard_decision_table() {
        // (replays already in the record, max) -> replayed?
        let cases = [
            (0, 3, true),
            (2, 3, true),
            (3, 3, false),
            (7, 3, false),
            (0, 1, true),
            (1, 1, false),
        ];
        for (replays, max, want) in cases {
            let count = replays.to_string();
            let dl = dead_letter(&[(h::REPLAYS, Some(count.as_bytes()))]);
            let p = plan(&dl, "D", None, max);
            match (want, &p) {
                (true, Plan::Replay { replays: n, .. }) => assert_eq!(*n, replays + 1),
                (false, Plan::LoopGuard { replays: n }) => assert_eq!(*n, replays),
                _ => panic!("replays={replays} max={max}: {p:?}"),
            }
        }
    }

    #[test]
    fn replay_keeps_original_headers_and_drops_diagnostics() {
        let dl = dead_letter(&[("cpn.guid", Some(b"abc")), ("trace", None)]);
        let Plan::Replay {
            topic,
            headers,
            replays,
        } = plan(&dl, "D", None, 3)
        else {
            panic!()
        };
        assert_eq!(topic, "contact-processed", "back where it came from");
        assert_eq!(replays, 1);
        assert_eq!(
            names(&headers),
            ["cpn.guid", "trace", h::REPLAYS, h::REPLAYED_FROM]
        );
        assert_eq!(headers[0].1.as_deref(), Some(&b"abc"[..]));
        assert_eq!(headers[1].1, None, "a null header stays null");
        assert_eq!(headers[2].1.as_deref(), Some(&b"1"[..]));
        assert_eq!(headers[3].1.as_deref(), Some(&b"D:3:14"[..]));
    }

    #[test]
    fn a_second_replay_counts_up_and_carries_one_count() {
        // The first replay's headers, dead-lettered again by the relay.
        let dl = dead_letter(&[
            ("cpn.guid", Some(b"abc")),
            (h::REPLAYS, Some(b"1")),
            (h::REPLAYED_FROM, Some(b"D:0:1")),
        ]);
        let Plan::Replay {
            headers, replays, ..
        } = plan(&dl, "D", Some("elsewhere"), 3)
        else {
            panic!()
        };
        assert_eq!(replays, 2);
        assert_eq!(names(&headers), ["cpn.guid", h::REPLAYS, h::REPLAYED_FROM]);
        assert_eq!(headers[1].1.as_deref(), Some(&b"2"[..]));
        assert_eq!(headers[2].1.as_deref(), Some(&b"D:3:14"[..]));
    }

    #[test]
    fn to_overrides_and_missing_origin_has_no_destination() {
        let dl = dead_letter(&[]);
        assert!(
            matches!(plan(&dl, "D", Some("retry-topic"), 3), Plan::Replay { topic, .. } if topic == "retry-topic")
        );
        let mut bare = dl.clone();
        bare.original_topic = None;
        assert_eq!(plan(&bare, "D", None, 3), Plan::NoDestination);
    }

    #[test]
    fn diagnostics_are_recognised_by_prefix() {
        for (name, want) in [
            (h::REASON, true),
            (h::CONNECT_EXCEPTION_MESSAGE, true),
            (h::REPLAYS, true),
            ("cpn.guid", false),
            ("__connect.other", false),
            ("traceparent", false),
        ] {
            assert_eq!(is_diagnostic(name), want, "{name}");
        }
        assert_eq!(default_progress_group("cp.dlq"), "cpn-dlq-replay.cp.dlq");
    }
}
