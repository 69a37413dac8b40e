//! The replay ledger: which dead letters `cpn-relay dlq replay` already
//! republished, so that no run sends one twice by accident — not a second
//! run with `--from-beginning`, not a run with another `--progress-group`,
//! not a run after the progress commit failed.
//!
//! The ledger is a compacted Kafka topic (`<dlq topic>.replay-ledger` unless
//! `--ledger-topic`). One record per replayed dead letter, keyed by its
//! coordinates `DLQ_TOPIC:PARTITION:OFFSET` (the topic is in the key, so
//! several dead-letter topics may share one ledger); the value is a small
//! JSON object ([`Entry`]). Compaction keeps the last entry per dead letter,
//! so the ledger grows with the number of dead letters replayed, not with
//! the number of runs.
//!
//! A replay reads the ledger from the beginning to its end at start, skips
//! the dead letters it holds (unless `--again`) and writes an entry for each
//! dead letter *after* Kafka acknowledged its republished record — never
//! before, so a failed republish is never recorded as done. A crash between
//! the two leaves the dead letter unrecorded and a later run sends it again
//! (at least once; receivers de-duplicate on the unchanged GUID).
//!
//! An entry holds the dead letter's GUID and record timestamp. A dead letter
//! at the same coordinates with another GUID or timestamp (the topic was
//! deleted and created again, offsets restarted) is not the one replayed:
//! the entry is stale and does not hold it back.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};

use crate::dlq::headers::rfc3339;
use crate::dlq::record::DeadLetterView;
use crate::dlq::tools::read::{DlqReader, KafkaOptions, REQUEST_TIMEOUT, ReadError, Start};

/// The ledger topic of `dlq_topic` when `--ledger-topic` is not given.
pub fn default_ledger_topic(dlq_topic: &str) -> String {
    format!("{dlq_topic}.replay-ledger")
}

/// The ledger key of a dead letter: `DLQ_TOPIC:PARTITION:OFFSET`, the same
/// text a replayed record carries in `cpn.dlq.replayed_from`.
pub fn key(dlq_topic: &str, partition: i32, offset: i64) -> String {
    format!("{dlq_topic}:{partition}:{offset}")
}

/// One ledger record's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Entry {
    /// The dead letter's message GUID, when its value is JSON with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    /// The dead-letter record's Kafka timestamp (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_timestamp_ms: Option<i64>,
    /// Where the record was republished.
    #[serde(default)]
    pub replayed_to: String,
    /// When (RFC 3339, UTC) the last replay of it was acknowledged.
    #[serde(default)]
    pub replayed_at: String,
    /// How many runs republished this dead letter (more than 1 only with `--again`).
    #[serde(default)]
    pub times: u32,
}

impl Entry {
    /// The entry recording that `dl` was republished to `to` now, after
    /// `previous` (when it was replayed before, with `--again`).
    pub fn replayed(dl: &DeadLetterView, to: &str, previous: Option<&Entry>) -> Self {
        Entry {
            guid: dl.guid().map(str::to_owned),
            dead_letter_timestamp_ms: dl.raw.timestamp_ms,
            replayed_to: to.to_owned(),
            replayed_at: rfc3339(SystemTime::now()),
            times: previous.map_or(0, |p| p.times).saturating_add(1),
        }
    }

    /// The record value.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether this entry was written for `dl` (and not for an older record
    /// that had the same coordinates).
    pub fn is_for(&self, dl: &DeadLetterView) -> bool {
        self.guid.as_deref() == dl.guid() && self.dead_letter_timestamp_ms == dl.raw.timestamp_ms
    }
}

/// The ledger's entries for one dead-letter topic, read at the start of a run.
#[derive(Debug, Default)]
pub struct Ledger {
    topic: String,
    dlq_topic: String,
    entries: HashMap<(i32, i64), Entry>,
    /// Partition → offsets `start..end` the run reads; entries outside are
    /// not kept (the ledger keeps entries of dead letters retention already
    /// deleted, and of ones before the run's progress). `None`: keep all.
    keep: Option<BTreeMap<i32, (i64, i64)>>,
}

impl Ledger {
    /// An empty ledger for `dlq_topic`, kept in `topic`.
    pub fn empty(topic: &str, dlq_topic: &str) -> Self {
        Ledger {
            topic: topic.to_owned(),
            dlq_topic: dlq_topic.to_owned(),
            entries: HashMap::new(),
            keep: None,
        }
    }

    /// The ledger topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// How many dead letters of this dead-letter topic it holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Applies one ledger record, in ledger order: a later record for the
    /// same key replaces the earlier one; a null value (a tombstone, written
    /// by an operator to forget a replay) removes it. Keys of other
    /// dead-letter topics and keys that are not coordinates are ignored. A
    /// value that is not an entry still records the replay (the key is what
    /// counts), without details.
    pub fn apply(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some(at) = key
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| self.coordinates(k))
        else {
            return;
        };
        if let Some(keep) = &self.keep
            && !keep
                .get(&at.0)
                .is_some_and(|(start, end)| (*start..*end).contains(&at.1))
        {
            return;
        }
        match value {
            None => {
                self.entries.remove(&at);
            }
            Some(v) => {
                let entry = serde_json::from_slice::<Entry>(v).unwrap_or_default();
                self.entries.insert(at, entry);
            }
        }
    }

    /// `PARTITION:OFFSET` of a key of this ledger's dead-letter topic.
    fn coordinates(&self, key: &str) -> Option<(i32, i64)> {
        let rest = key
            .strip_prefix(self.dlq_topic.as_str())?
            .strip_prefix(':')?;
        let (p, o) = rest.split_once(':')?;
        Some((p.parse().ok()?, o.parse().ok()?))
    }

    /// The entry saying `dl` was already replayed, if there is one that was
    /// written for this very record (see [`Entry::is_for`]). An entry whose
    /// value could not be read (no details) counts as written for it.
    pub fn replayed(&self, dl: &DeadLetterView) -> Option<&Entry> {
        let e = self.entries.get(&(dl.partition(), dl.offset()))?;
        (*e == Entry::default() || e.is_for(dl)).then_some(e)
    }

    /// Any entry at `dl`'s coordinates, stale or not (the previous entry
    /// `--again` counts on from).
    pub fn at(&self, dl: &DeadLetterView) -> Option<&Entry> {
        self.entries.get(&(dl.partition(), dl.offset()))
    }

    /// Reads the ledger topic from its beginning to its end, keeping the
    /// entries of the dead letters `dlq` is about to read. A ledger topic
    /// that does not exist is an empty ledger; unless `create` is false (a
    /// dry run changes nothing) it is created first ([`create_topic`]).
    ///
    /// # Errors
    /// Kafka does not answer, refuses to create the topic or to read it.
    pub async fn load(
        kafka: &KafkaOptions,
        topic: &str,
        dlq: &DlqReader,
        create: bool,
    ) -> Result<Self, LedgerError> {
        let dlq_topic = dlq.topic().to_owned();
        let mut ledger = Ledger::empty(topic, &dlq_topic);
        ledger.keep = Some(
            dlq.ranges()
                .iter()
                .map(|r| (r.partition, (r.start, r.end)))
                .collect(),
        );
        if !dlq.topic_exists(topic).await? {
            if !create {
                return Ok(ledger);
            }
            if create_topic(kafka, topic, dlq).await? == Created::Now {
                return Ok(ledger);
            }
            // Someone else created it meanwhile: read what it holds.
        }
        let mut reader = DlqReader::open(kafka, topic, Start::Beginning, None).await?;
        while let Some(r) = reader.next().await? {
            ledger.apply(r.raw.key.as_deref(), r.raw.value.as_deref());
        }
        Ok(ledger)
    }
}

/// Why the ledger could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Reading it (or asking whether it exists) failed.
    #[error("replay ledger: {0}")]
    Read(#[from] ReadError),
    /// It does not exist and could not be created.
    #[error(
        "replay ledger {topic} (--ledger-topic): it does not exist and creating it failed: {problem}. Create it (cleanup.policy=compact,delete, 1 partition; deploy/topics does) or let this user create topics"
    )]
    Create {
        /// The ledger topic.
        topic: String,
        /// Kafka's answer.
        problem: String,
    },
}

/// Whether [`create_topic`] created the topic or found it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Created {
    Now,
    AlreadyThere,
}

/// The dead-letter topic's settings a ledger created by a replay copies:
/// its retention (an entry outlives its dead letter: it is written later)
/// and its `min.insync.replicas` (entries are written with `acks=all`).
const COPIED_FROM_DLQ: &[&str] = &["retention.ms", "min.insync.replicas"];

/// Creates the ledger topic: one partition, the dead-letter topic's
/// replication factor, `cleanup.policy=compact,delete` (the last entry per
/// dead letter, dropped with the dead letters' retention), unclean leader
/// election off, and the settings in [`COPIED_FROM_DLQ`] when the
/// dead-letter topic's configuration can be read.
async fn create_topic(
    kafka: &KafkaOptions,
    topic: &str,
    dlq: &DlqReader,
) -> Result<Created, LedgerError> {
    let failed = |problem: String| LedgerError::Create {
        topic: topic.to_owned(),
        problem,
    };
    let replication = dlq.replication_factor().await?;
    let admin: AdminClient<DefaultClientContext> = kafka
        .client_config(&[("client.id", "cpn-relay-dlq-replay")])
        .create()
        .map_err(|e| failed(e.to_string()))?;
    let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let budget = REQUEST_TIMEOUT + Duration::from_secs(5);
    let no_answer = || failed(format!("no answer in {}s", budget.as_secs()));
    // Without the right to describe the DLQ's configuration the broker's
    // defaults apply: the ledger still works.
    let spec = ResourceSpecifier::Topic(dlq.topic());
    let copied: Vec<(&str, String)> =
        match tokio::time::timeout(budget, admin.describe_configs([&spec], &opts)).await {
            Ok(Ok(results)) => results
                .into_iter()
                .flatten()
                .flat_map(|resource| {
                    COPIED_FROM_DLQ
                        .iter()
                        .filter_map(|k| Some((*k, resource.get(k)?.value.clone()?)))
                        .collect::<Vec<_>>()
                })
                .collect(),
            _ => Vec::new(),
        };
    let mut new = NewTopic::new(topic, 1, TopicReplication::Fixed(replication))
        .set("cleanup.policy", "compact,delete")
        .set("unclean.leader.election.enable", "false");
    for (k, v) in &copied {
        new = new.set(k, v);
    }
    let results = tokio::time::timeout(budget, admin.create_topics([&new], &opts))
        .await
        .map_err(|_| no_answer())?
        .map_err(|e| failed(e.to_string()))?;
    let mut created = Created::Now;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => created = Created::AlreadyThere,
            Err((_, code)) => return Err(failed(code.to_string())),
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::record::RawDeadLetter;

    fn dl(partition: i32, offset: i64, guid: &str, ts: i64) -> DeadLetterView {
        DeadLetterView::decode(RawDeadLetter {
            partition,
            offset,
            timestamp_ms: Some(ts),
            key: Some(b"k".to_vec()),
            value: Some(format!(r#"{{"GSW_MESSAGE_GUID":"{guid}"}}"#).into_bytes()),
            headers: Vec::new(),
        })
    }

    fn record(l: &mut Ledger, key: &str, e: Option<&Entry>) {
        let v = e.map(Entry::to_json);
        l.apply(Some(key.as_bytes()), v.as_deref());
    }

    #[test]
    fn keys_are_the_coordinates_replayed_from_carries() {
        assert_eq!(key("cp.dlq", 3, 14), "cp.dlq:3:14");
        assert_eq!(default_ledger_topic("cp.dlq"), "cp.dlq.replay-ledger");
    }

    #[test]
    fn an_entry_holds_back_exactly_its_dead_letter() {
        let a = dl(0, 4, "g-a", 1000);
        let mut l = Ledger::empty("L", "cp.dlq");
        assert!(l.replayed(&a).is_none(), "empty ledger");
        record(&mut l, "cp.dlq:0:4", Some(&Entry::replayed(&a, "cp", None)));
        let e = l.replayed(&a).expect("recorded");
        assert_eq!((e.times, e.replayed_to.as_str()), (1, "cp"));
        // Neighbours, another partition, another topic's key: not held back.
        assert!(l.replayed(&dl(0, 5, "g-b", 1000)).is_none());
        assert!(l.replayed(&dl(1, 4, "g-a", 1000)).is_none());
        record(&mut l, "other.dlq:0:9", Some(&Entry::default()));
        assert!(l.replayed(&dl(0, 9, "x", 1)).is_none(), "other topic's key");
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn a_stale_entry_does_not_hold_back_a_new_record_at_the_same_place() {
        let old = dl(0, 4, "g-old", 1000);
        let mut l = Ledger::empty("L", "cp.dlq");
        record(
            &mut l,
            "cp.dlq:0:4",
            Some(&Entry::replayed(&old, "cp", None)),
        );
        // The topic was created again: offset 0:4 is another dead letter.
        assert!(l.replayed(&dl(0, 4, "g-new", 1000)).is_none(), "other guid");
        assert!(l.replayed(&dl(0, 4, "g-old", 2000)).is_none(), "other time");
        assert!(
            l.at(&dl(0, 4, "g-new", 1000)).is_some(),
            "still there for --again"
        );
    }

    #[test]
    fn later_records_win_tombstones_forget_and_junk_still_counts() {
        let a = dl(2, 7, "g", 5);
        let mut l = Ledger::empty("L", "cp.dlq");
        let first = Entry::replayed(&a, "cp", None);
        record(&mut l, "cp.dlq:2:7", Some(&first));
        let second = Entry::replayed(&a, "elsewhere", Some(&first));
        record(&mut l, "cp.dlq:2:7", Some(&second));
        let e = l.replayed(&a).expect("recorded");
        assert_eq!((e.times, e.replayed_to.as_str()), (2, "elsewhere"));
        record(&mut l, "cp.dlq:2:7", None);
        assert!(l.replayed(&a).is_none(), "a tombstone forgets the replay");
        // A value that is not an entry: the key still records the replay.
        l.apply(Some(b"cp.dlq:2:7"), Some(b"not json"));
        assert!(l.replayed(&a).is_some());
        // Keys that are not coordinates are ignored, not a panic.
        for k in ["cp.dlq", "cp.dlq:", "cp.dlq:x:1", "cp.dlq:1", "cp.dlqx:1:2"] {
            l.apply(Some(k.as_bytes()), Some(b"{}"));
        }
        l.apply(None, Some(b"{}"));
        l.apply(Some(&[0xff, 0xfe]), Some(b"{}"));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn only_entries_of_the_dead_letters_the_run_reads_are_kept() {
        let mut l = Ledger::empty("L", "cp.dlq");
        l.keep = Some(BTreeMap::from([(0, (10, 20))]));
        for k in [
            "cp.dlq:0:9",
            "cp.dlq:0:10",
            "cp.dlq:0:19",
            "cp.dlq:0:20",
            "cp.dlq:1:15",
        ] {
            l.apply(Some(k.as_bytes()), Some(b"{}"));
        }
        let mut kept: Vec<_> = l.entries.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, [(0, 10), (0, 19)]);
    }

    #[test]
    fn entries_round_trip_and_old_fields_default() {
        let e = Entry::replayed(&dl(0, 1, "g", 9), "cp", None);
        let back: Entry = serde_json::from_slice(&e.to_json()).expect("json");
        assert_eq!(back, e);
        let text = String::from_utf8(e.to_json()).expect("utf-8");
        assert!(
            text.contains(r#""guid":"g""#) && text.contains(r#""times":1"#),
            "{text}"
        );
        let partial: Entry = serde_json::from_str(r#"{"replayed_to":"cp"}"#).expect("json");
        assert_eq!(partial.times, 0);
    }
}
