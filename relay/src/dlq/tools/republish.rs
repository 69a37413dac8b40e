//! The Kafka side of `cpn-relay dlq replay`: read the dead-letter topic from
//! the replay's progress, send the selected dead letters' original records
//! again, and move the progress only past what is finished.
//!
//! Guarantees and their limits:
//! - *Once, on purpose.* Every republished dead letter is recorded in the
//!   replay ledger ([`crate::dlq::tools::ledger`]) after Kafka acknowledged
//!   it; a later run skips what the ledger holds — with `--from-beginning`
//!   or another progress group too — unless `--again`, and says how many it
//!   skipped.
//! - *At least once.* A dead letter's progress and its ledger entry are
//!   written only after Kafka acknowledged its republished record
//!   (idempotent producer, `acks=all`). A crash between the acknowledgement
//!   and the ledger write replays it again next run (at most the records in
//!   flight, [`MAX_IN_FLIGHT`]); receivers de-duplicate on the unchanged
//!   GUID (`ETag`).
//! - *Progress* lives in a consumer group of its own
//!   (`cpn-dlq-replay.<dlq topic>` unless `--progress-group`), committed by
//!   explicit assignment — no group membership, the relay's group is never
//!   touched. It moves past every dead letter a run *examined*, replayed or
//!   not (filtered out, stopped by the loop guard), so the next run sees only
//!   dead letters that arrived since; `--from-beginning` looks at all again.
//! - *Order.* Records are enqueued in dead-letter order with the producer's
//!   murmur2 partitioner, so a chain's records land in one partition in the
//!   order they were dead-lettered. At the first record that cannot be
//!   republished the run stops selecting: that partition's progress stays
//!   before it, records already sent are awaited, and the run exits 1.
//! - The replayed record's Kafka timestamp is the time of the replay; the
//!   event's own time (`GSW_TIMESTAMP`) is in the unchanged value. An old
//!   timestamp would let time-based retention delete the replay early.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::io::Write;
use std::time::Duration;

use futures::FutureExt as _;
use futures::channel::oneshot::Canceled;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::time::MissedTickBehavior;

use crate::dlq::record::DeadLetterView;
use crate::dlq::tools::filter::{Filter, rate_interval};
use crate::dlq::tools::ledger::{self, Entry, Ledger, LedgerError};
use crate::dlq::tools::read::{DlqReader, KafkaOptions, ReadError, Start};
use crate::dlq::tools::replay::{Plan, plan};

/// Records sent and not yet acknowledged, at most.
pub const MAX_IN_FLIGHT: usize = 1000;
/// How long one republished record may wait for Kafka's acknowledgement.
pub const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Dead letters skipped as already replayed that are named one by one; the
/// rest are counted.
pub const LISTED_ALREADY_REPLAYED: u64 = 20;

/// What `replay` was asked to do.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The dead-letter topic read.
    pub dlq_topic: String,
    /// `--to`: destination for every record; `None` = each record's original topic.
    pub to: Option<String>,
    /// Which dead letters to replay.
    pub filter: Filter,
    /// `--dry-run`: print, produce nothing, commit nothing.
    pub dry_run: bool,
    /// `--rate`: records per second at most.
    pub rate: Option<f64>,
    /// `--limit`: replay at most this many records.
    pub limit: Option<u64>,
    /// `--max-replays`: the loop guard.
    pub max_replays: u32,
    /// The group that records progress.
    pub progress_group: String,
    /// `--from-beginning`: ignore the recorded progress.
    pub from_beginning: bool,
    /// The replay ledger topic.
    pub ledger_topic: String,
    /// `--again`: replay dead letters the ledger says were replayed.
    pub again: bool,
    /// Draw a progress bar on stderr.
    pub progress_bar: bool,
}

/// A dead letter the loop guard kept back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `PARTITION:OFFSET` in the dead-letter topic.
    pub coordinates: String,
    /// Message GUID, if the value is JSON.
    pub guid: Option<String>,
    /// Replays it already had.
    pub replays: u32,
}

/// A selected dead letter that could not be republished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// `PARTITION:OFFSET` in the dead-letter topic.
    pub coordinates: String,
    /// Message GUID, if the value is JSON.
    pub guid: Option<String>,
    /// Why.
    pub error: String,
}

/// What a replay run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Dead letters read.
    pub examined: u64,
    /// Dead letters that passed the filters.
    pub matched: u64,
    /// Records republished and acknowledged (dry run: that would be).
    pub replayed: u64,
    /// Stopped by the loop guard.
    pub skipped: Vec<Skipped>,
    /// Skipped because the ledger says they were replayed already.
    pub already_replayed: u64,
    /// Could not be republished (the run stopped at the first).
    pub failed: Vec<Failed>,
    /// `--limit` was reached before the end of the topic.
    pub limit_reached: bool,
    /// Interrupted (Ctrl-C) before the end.
    pub interrupted: bool,
    /// A dry run: nothing was produced or committed.
    pub dry_run: bool,
}

impl ReplaySummary {
    /// One line for people.
    pub fn line(&self) -> String {
        let verb = if self.dry_run {
            "would replay"
        } else {
            "replayed"
        };
        let loop_guard = self.skipped.len() as u64;
        let mut s = format!(
            "{verb} {}, skipped {} ({} already replayed, {loop_guard} loop guard), failed {}; examined {} dead letter{}, {} matched the filters",
            self.replayed,
            self.already_replayed + loop_guard,
            self.already_replayed,
            self.failed.len(),
            self.examined,
            if self.examined == 1 { "" } else { "s" },
            self.matched
        );
        if self.limit_reached {
            s.push_str("; stopped at --limit");
        }
        if self.interrupted {
            s.push_str("; interrupted");
        }
        if self.dry_run {
            s.push_str(" (dry run: nothing sent, progress unchanged)");
        }
        s
    }
}

/// Why a replay could not run at all (per-record failures are in the summary).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the dead-letter topic or committing progress failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The replay ledger could not be read or created.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An option is unusable.
    #[error("{option}: {problem}")]
    Invalid {
        /// The option, e.g. `--to`.
        option: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The producer could not be created.
    #[error("creating the Kafka producer: {0}")]
    Producer(#[source] KafkaError),
    /// Writing dry-run lines failed.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// What became of one examined dead letter.
enum Outcome {
    /// Nothing to send (filtered out, loop guard, dry run).
    Nothing,
    /// Sent; Kafka's acknowledgement, then the ledger entry's, pending.
    Sent(tokio::task::JoinHandle<Result<(), String>>),
    /// Could not be sent.
    Failed(String),
}

/// One examined dead letter, waiting to be settled in read order.
struct Pending {
    partition: i32,
    offset: i64,
    coordinates: String,
    guid: Option<String>,
    outcome: Outcome,
}

/// Settles examined records in the order they were read and moves the
/// progress past the finished ones.
struct Progress {
    dry_run: bool,
    inflight: VecDeque<Pending>,
    /// Partition → last offset handled, for the final synchronous commit.
    positions: BTreeMap<i32, i64>,
    /// Partitions whose progress stopped at a failure.
    blocked: HashSet<i32>,
}

impl Progress {
    fn settled(
        &mut self,
        reader: &DlqReader,
        p: Pending,
        result: Result<bool, String>,
        summary: &mut ReplaySummary,
        bar: &ProgressBar,
    ) {
        match result {
            Ok(sent) => {
                if sent {
                    summary.replayed += 1;
                    bar.set_message(format!("{} replayed", summary.replayed));
                }
                if !self.dry_run && !self.blocked.contains(&p.partition) {
                    self.positions.insert(p.partition, p.offset);
                    if let Err(e) = reader.commit(p.partition, p.offset) {
                        // The final synchronous commit tries again.
                        bar.suspend(|| eprintln!("warning: {e}"));
                    }
                }
            }
            Err(error) => {
                self.blocked.insert(p.partition);
                bar.suspend(|| {
                    eprintln!(
                        "failed {} (guid {}): {error}",
                        p.coordinates,
                        p.guid.as_deref().unwrap_or("-")
                    )
                });
                summary.failed.push(Failed {
                    coordinates: p.coordinates,
                    guid: p.guid,
                    error,
                });
            }
        }
    }

    /// Settles the front records that are finished, without waiting.
    fn settle_ready(&mut self, reader: &DlqReader, summary: &mut ReplaySummary, bar: &ProgressBar) {
        while let Some(front) = self.inflight.front_mut() {
            let result = match &mut front.outcome {
                Outcome::Nothing => Ok(false),
                Outcome::Failed(e) => Err(std::mem::take(e)),
                Outcome::Sent(f) => match f.now_or_never() {
                    None => return,
                    Some(r) => joined(r),
                },
            };
            if let Some(p) = self.inflight.pop_front() {
                self.settled(reader, p, result, summary, bar);
            }
        }
    }

    /// Waits for the front record and settles it.
    async fn settle_front(
        &mut self,
        reader: &DlqReader,
        summary: &mut ReplaySummary,
        bar: &ProgressBar,
    ) {
        let Some(mut p) = self.inflight.pop_front() else {
            return;
        };
        let result = match &mut p.outcome {
            Outcome::Nothing => Ok(false),
            Outcome::Failed(e) => Err(std::mem::take(e)),
            Outcome::Sent(f) => joined(f.await),
        };
        self.settled(reader, p, result, summary, bar);
    }
}

fn delivery_result(r: Result<OwnedDeliveryResult, Canceled>) -> Result<(), String> {
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(format!("kafka did not acknowledge the record: {e}")),
        Err(_) => Err("the producer went away before acknowledging the record".to_owned()),
    }
}

fn joined(r: Result<Result<(), String>, tokio::task::JoinError>) -> Result<bool, String> {
    match r {
        Ok(Ok(())) => Ok(true),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(format!("the republishing task ended early: {e}")),
    }
}

fn producer(kafka: &KafkaOptions) -> Result<FutureProducer, ReplayError> {
    let timeout = PRODUCE_TIMEOUT.as_millis().to_string();
    let mut c = kafka.client_config(&[
        ("client.id", "cpn-relay-dlq-replay"),
        // Same key → same partition as cpn-producer and the Java client.
        ("partitioner", "murmur2_random"),
        ("compression.type", "lz4"),
        ("linger.ms", "5"),
        ("message.timeout.ms", timeout.as_str()),
    ]);
    c.set("enable.idempotence", "true").set("acks", "all");
    c.create().map_err(ReplayError::Producer)
}

fn progress_bar(enabled: bool, total: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:30} {pos}/{len} dead letters examined, {msg} [{elapsed}]",
    ) {
        bar.set_style(style);
    }
    bar.set_message("0 replayed");
    bar
}

/// Runs a replay until the end of the dead-letter topic (as it was at the
/// start), `--limit`, the first failure, or `stop`. Dry-run lines go to `out`.
///
/// # Errors
/// The dead-letter topic cannot be read, `--to` is unusable, the producer
/// cannot be created, or the final progress commit fails. Records that
/// cannot be republished are not errors: they are in [`ReplaySummary::failed`].
pub async fn replay(
    kafka: &KafkaOptions,
    opts: &ReplayOptions,
    out: &mut dyn Write,
    stop: impl Future<Output = ()>,
) -> Result<ReplaySummary, ReplayError> {
    let start = if opts.from_beginning {
        Start::Beginning
    } else {
        Start::Committed
    };
    let mut reader =
        DlqReader::open(kafka, &opts.dlq_topic, start, Some(&opts.progress_group)).await?;
    let mut topics: HashMap<String, bool> = HashMap::new();
    if let Some(to) = &opts.to {
        if *to == opts.dlq_topic {
            return Err(ReplayError::Invalid {
                option: "--to",
                problem: format!("{to} is the dead-letter topic being replayed"),
            });
        }
        if !reader.topic_exists(to).await? {
            return Err(ReplayError::Invalid {
                option: "--to",
                problem: format!("no such topic {to}"),
            });
        }
        topics.insert(to.clone(), true);
    }
    if opts.ledger_topic == opts.dlq_topic || opts.to.as_deref() == Some(&opts.ledger_topic) {
        return Err(ReplayError::Invalid {
            option: "--ledger-topic",
            problem: format!(
                "{} is also the {} topic",
                opts.ledger_topic,
                if opts.ledger_topic == opts.dlq_topic {
                    "dead-letter"
                } else {
                    "--to"
                }
            ),
        });
    }
    let ledger = Ledger::load(kafka, &opts.ledger_topic, &reader, !opts.dry_run).await?;
    let producer = if opts.dry_run {
        None
    } else {
        Some(producer(kafka)?)
    };
    let bar = progress_bar(opts.progress_bar && !opts.dry_run, reader.total());
    let mut pacer = opts.rate.map(|r| {
        let mut i = tokio::time::interval(rate_interval(r));
        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
        i
    });
    let mut summary = ReplaySummary {
        dry_run: opts.dry_run,
        ..ReplaySummary::default()
    };
    let mut progress = Progress {
        dry_run: opts.dry_run,
        inflight: VecDeque::new(),
        positions: BTreeMap::new(),
        blocked: HashSet::new(),
    };
    let mut selected: u64 = 0;
    let mut stopping = false;
    tokio::pin!(stop);
    while !stopping {
        if opts.limit.is_some_and(|l| selected >= l) {
            summary.limit_reached = !reader.is_done();
            break;
        }
        let next = tokio::select! {
            biased;
            () = &mut stop => {
                summary.interrupted = true;
                break;
            }
            r = reader.next() => r?,
        };
        let Some(dl) = next else { break };
        summary.examined += 1;
        bar.inc(1);
        let mut outcome = Outcome::Nothing;
        let already = if opts.again {
            None
        } else {
            ledger.replayed(&dl)
        };
        if let (true, Some(e)) = (opts.filter.matches(&dl), already) {
            summary.matched += 1;
            summary.already_replayed += 1;
            if summary.already_replayed <= LISTED_ALREADY_REPLAYED {
                let line = format!(
                    "{} {} (guid {}): already replayed{}{} (ledger {})",
                    if opts.dry_run {
                        "would skip"
                    } else {
                        "skipped"
                    },
                    dl.coordinates(),
                    dl.guid().unwrap_or("-"),
                    if e.replayed_to.is_empty() {
                        String::new()
                    } else {
                        format!(" to {}", e.replayed_to)
                    },
                    if e.replayed_at.is_empty() {
                        String::new()
                    } else {
                        format!(" at {}", e.replayed_at)
                    },
                    ledger.topic()
                );
                bar.suspend(|| eprintln!("{line}"));
            }
        } else if opts.filter.matches(&dl) {
            summary.matched += 1;
            match plan(&dl, &opts.dlq_topic, opts.to.as_deref(), opts.max_replays) {
                Plan::LoopGuard { replays } => {
                    let line = format!(
                        "{} {} (guid {}): already replayed {replays} time{} (--max-replays {})",
                        if opts.dry_run {
                            "would skip"
                        } else {
                            "skipped"
                        },
                        dl.coordinates(),
                        dl.guid().unwrap_or("-"),
                        if replays == 1 { "" } else { "s" },
                        opts.max_replays
                    );
                    bar.suspend(|| eprintln!("{line}"));
                    summary.skipped.push(Skipped {
                        coordinates: dl.coordinates(),
                        guid: dl.guid().map(str::to_owned),
                        replays,
                    });
                }
                Plan::NoDestination => {
                    selected += 1;
                    outcome = Outcome::Failed(
                        "no __connect.errors.topic header says where it came from; pass --to"
                            .to_owned(),
                    );
                }
                Plan::Replay {
                    topic,
                    headers,
                    replays,
                } => {
                    selected += 1;
                    outcome = match destination_problem(
                        &mut topics,
                        &reader,
                        &topic,
                        &opts.dlq_topic,
                        &opts.ledger_topic,
                    )
                    .await?
                    {
                        Some(problem) => Outcome::Failed(problem),
                        None if opts.dry_run => {
                            writeln!(
                                out,
                                "would replay {} (guid {}, {}) to {topic} as replay {replays}",
                                dl.coordinates(),
                                dl.guid().unwrap_or("-"),
                                dl.reason.as_deref().unwrap_or("no reason")
                            )?;
                            summary.replayed += 1;
                            Outcome::Nothing
                        }
                        None => match &producer {
                            Some(producer) => {
                                if let Some(p) = pacer.as_mut() {
                                    p.tick().await;
                                }
                                let entry = Entry::replayed(&dl, &topic, ledger.at(&dl));
                                let record = LedgerRecord {
                                    topic: ledger.topic().to_owned(),
                                    key: ledger::key(&opts.dlq_topic, dl.partition(), dl.offset()),
                                    value: entry.to_json(),
                                };
                                send(
                                    producer,
                                    &dl,
                                    &topic,
                                    &headers,
                                    record,
                                    &reader,
                                    &mut progress,
                                    &mut summary,
                                    &bar,
                                )
                                .await
                            }
                            None => Outcome::Nothing,
                        },
                    };
                }
            }
        }
        if matches!(outcome, Outcome::Failed(_)) {
            // Stop selecting: the next run starts again at this record.
            stopping = true;
        }
        progress.inflight.push_back(Pending {
            partition: dl.partition(),
            offset: dl.offset(),
            coordinates: dl.coordinates(),
            guid: dl.guid().map(str::to_owned),
            outcome,
        });
        progress.settle_ready(&reader, &mut summary, &bar);
        while progress.inflight.len() >= MAX_IN_FLIGHT {
            progress.settle_front(&reader, &mut summary, &bar).await;
        }
        if !progress.blocked.is_empty() {
            // A record sent earlier failed (Kafka did not acknowledge it,
            // or its ledger entry was refused): stop selecting as for a
            // refusal on the spot, so at most the records in flight are sent
            // after it and the next run starts again at it.
            stopping = true;
        }
    }
    while !progress.inflight.is_empty() {
        progress.settle_front(&reader, &mut summary, &bar).await;
    }
    bar.finish_and_clear();
    if summary.already_replayed > LISTED_ALREADY_REPLAYED {
        eprintln!(
            "... and {} more already replayed (not listed)",
            summary.already_replayed - LISTED_ALREADY_REPLAYED
        );
    }
    if !opts.dry_run {
        reader.commit_sync(&progress.positions).await?;
    }
    Ok(summary)
}

/// Writes the ledger entry of a republished (and acknowledged) record and
/// waits for Kafka's acknowledgement.
async fn record_replay(producer: &FutureProducer, ledger: &LedgerRecord) -> Result<(), String> {
    let failed = |e: &dyn std::fmt::Display| {
        format!(
            "republished, but recording it in the replay ledger {} failed: {e}; a later replay sends it again",
            ledger.topic
        )
    };
    loop {
        let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&ledger.topic)
            .key(ledger.key.as_str())
            .payload(ledger.value.as_slice());
        match producer.send_result(record) {
            Ok(f) => return delivery_result(f.await).map_err(|e| failed(&e)),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err((e, _)) => return Err(failed(&e)),
        }
    }
}

/// Why `topic` cannot take replayed records, if it cannot (asked once per topic).
async fn destination_problem(
    known: &mut HashMap<String, bool>,
    reader: &DlqReader,
    topic: &str,
    dlq_topic: &str,
    ledger_topic: &str,
) -> Result<Option<String>, ReadError> {
    if topic == dlq_topic {
        return Ok(Some(format!(
            "its original topic is {dlq_topic}, the dead-letter topic itself; pass --to"
        )));
    }
    if topic == ledger_topic {
        return Ok(Some(format!(
            "its original topic is {ledger_topic}, the replay ledger; pass --to or another --ledger-topic"
        )));
    }
    let exists = match known.get(topic) {
        Some(e) => *e,
        None => {
            let e = reader.topic_exists(topic).await?;
            known.insert(topic.to_owned(), e);
            e
        }
    };
    Ok((!exists).then(|| format!("destination topic {topic} does not exist; pass --to")))
}

/// The ledger record written once a republished record is acknowledged.
struct LedgerRecord {
    topic: String,
    key: String,
    value: Vec<u8>,
}

/// Enqueues the original record (enqueue order = read order, which keeps a
/// chain's order); when librdkafka's queue is full, settles sent records to
/// make room. The returned task waits for Kafka's acknowledgement, then
/// writes `ledger` and waits for that acknowledgement too.
#[allow(clippy::too_many_arguments)]
async fn send(
    producer: &FutureProducer,
    dl: &DeadLetterView,
    topic: &str,
    headers: &[(String, Option<Vec<u8>>)],
    ledger: LedgerRecord,
    reader: &DlqReader,
    progress: &mut Progress,
    summary: &mut ReplaySummary,
    bar: &ProgressBar,
) -> Outcome {
    loop {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            owned = owned.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(owned);
        if let Some(k) = dl.raw.key.as_deref() {
            record = record.key(k);
        }
        if let Some(v) = dl.raw.value.as_deref() {
            record = record.payload(v);
        }
        match producer.send_result(record) {
            Ok(f) => {
                let producer = producer.clone();
                return Outcome::Sent(tokio::spawn(async move {
                    delivery_result(f.await)?;
                    record_replay(&producer, &ledger).await
                }));
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                if progress.inflight.is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                } else {
                    progress.settle_front(reader, summary, bar).await;
                }
            }
            Err((e, _)) => return Outcome::Failed(format!("cannot send to {topic}: {e}")),
        }
    }
}
