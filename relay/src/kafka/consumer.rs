//! The Kafka edge: one dedicated thread owns the consumer, polls its main
//! queue (callbacks and rebalances), starts a worker and a feeder for every
//! assigned partition, pauses every partition while the target is down,
//! commits finished offsets, and settles partitions before giving them up in
//! a rebalance.
//!
//! Records do not pass through this thread. Each assigned partition's queue
//! is split from the consumer's on assign, before its first fetch, and read
//! by the partition's [`feeder`](crate::kafka::feeder) only while the
//! partition's window has room and the relay-wide
//! [`memory budget`](crate::kafka::memory) allows; librdkafka stops fetching a
//! partition whose prefetch queue holds `queued.max.messages.kbytes`. So a
//! full window pauses nothing: memory is bounded by the budget plus the
//! prefetch, whatever the partition count or the backlog.
//!
//! Why a thread: librdkafka calls the rebalance callback from `poll`, and
//! settling revoked partitions means waiting for their in-flight deliveries.
//! On a thread of its own that wait blocks nothing else; deliveries run on
//! the tokio runtime meanwhile.
//!
//! Liveness (DESIGN invariant 8, see [`crate::observe::health`]): the circuit pauses
//! every partition during an outage, and its probe is a record's attempt.
//! When the probe is due and no record is taken anywhere — the partitions
//! were lost and reassigned, or the relay restarted, while the circuit was
//! open — [`apply_backpressure`] resumes the partitions until a record
//! arrives to be the probe, so recovery never waits on a task that does not
//! exist.
//!
//! Offsets (DESIGN invariant 2, STYLE §7): auto-commit is off. Every
//! `commit.interval_ms` the thread commits, asynchronously, each partition's
//! watermark position — the *next* offset to read, which is what a
//! `TopicPartitionList` takes. On revoke and on shutdown it commits
//! synchronously. A partition that is no longer assigned has no worker here,
//! so nothing is ever committed for it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::RelayConfig;
use crate::delivery::SharedDeliverer;
use crate::kafka::feeder::{self, Feeding};
use crate::kafka::memory::MemoryBudget;
use crate::kafka::partition::{PartitionState, Taken, delivering, run_worker};
use crate::kafka::settings::GroupProtocol;
use crate::observe::health::Health;
use crate::observe::metrics::RelayMetrics;

type Tp = (String, i32);

/// How often, at most, the circuit (and the window of a partition fed from
/// the main queue) is checked for pausing and resuming while records keep
/// arriving.
const BACKPRESSURE_SCAN_INTERVAL: Duration = Duration::from_millis(5);

/// How long a synchronous commit (on revoke, on shutdown) is retried while
/// the group coordinator is moving or loading.
const SYNC_COMMIT_RETRY: Duration = Duration::from_secs(5);

struct Worker {
    /// The worker's feed, for records that arrive on the main queue (a
    /// partition whose queue could not be split): None once settling.
    feed: Option<mpsc::UnboundedSender<Taken>>,
    /// The feeder of the partition's own queue; None when it could not be
    /// split (then records come from the main queue and a full window
    /// pauses the partition, as before queues were split).
    feeder: Option<FeederTask>,
    state: Arc<PartitionState>,
    cancel: CancellationToken,
    /// Cancelled when the partition is settled: records that would have to
    /// wait (circuit, backoff, budget) give up at once instead.
    drain: CancellationToken,
    join: JoinHandle<()>,
    paused: bool,
}

struct FeederTask {
    stop: CancellationToken,
    join: JoinHandle<()>,
}

struct Inner {
    workers: HashMap<Tp, Worker>,
    /// Partitions given up while paused that librdkafka could not be told
    /// to resume (a rebalance error unassigned them first): resumed when
    /// they are assigned again.
    paused_when_lost: HashSet<Tp>,
    /// The circuit is open, its probe due, and no record was taken: every
    /// partition stays resumed until one arrives to be the probe.
    seeking_probe: bool,
}

/// The consumer's context: owns the partition workers so that the rebalance
/// callbacks can start and settle them.
pub struct RelayContext {
    inner: Mutex<Inner>,
    /// The consumer itself, to split partition queues on assign (set once,
    /// right after it is created; a weak reference, as it owns this context).
    consumer: OnceLock<Weak<BaseConsumer<RelayContext>>>,
    /// Max records taken and not finished per partition.
    window: usize,
    /// The relay-wide bound on the bytes of records taken and not finished.
    memory: MemoryBudget,
    rt: Handle,
    deliverer: SharedDeliverer,
    metrics: RelayMetrics,
    cancel: CancellationToken,
    revoke_deadline: Duration,
    health: Arc<Health>,
    /// Cancelled when a delivery panics: the relay stops.
    fatal: CancellationToken,
    /// The topic consumed, and its partition count as last seen in metadata
    /// (the denominator of the group-wide request budget's share).
    topic: String,
    topic_partitions: AtomicUsize,
    /// Partitions assigned now (the numerator).
    assigned: AtomicUsize,
}

impl std::fmt::Debug for RelayContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayContext").finish_non_exhaustive()
    }
}

impl RelayContext {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Only the consumer thread takes this lock; a poisoned lock means a
        // panic on that thread, which ends the relay anyway.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the worker of a newly assigned partition and, with `split`,
    /// the feeder of the partition's own queue (call it before the partition
    /// is assigned: records fetched before the split go to the main queue).
    fn start_worker(&self, inner: &mut Inner, tp: Tp, split: bool) {
        if inner.workers.contains_key(&tp) {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(PartitionState::default());
        let queue = if split {
            self.consumer
                .get()
                .and_then(Weak::upgrade)
                .and_then(|c| c.split_partition_queue(&tp.0, tp.1))
        } else {
            None
        };
        if split && queue.is_none() {
            warn!(topic = %tp.0, partition = tp.1, "could not split the partition's queue; reading it from the consumer's (a full window pauses it)");
        }
        let feeder = queue.map(|queue| {
            let stop = CancellationToken::new();
            let feeding = Feeding {
                state: state.clone(),
                feed: tx.clone(),
                window: self.window,
                memory: self.memory.clone(),
                consumed: self
                    .metrics
                    .consumed
                    .with_label_values(&[tp.0.as_str(), &tp.1.to_string()]),
                health: self.health.clone(),
                stop: stop.clone(),
            };
            FeederTask {
                stop,
                join: self.rt.spawn(feeder::run_feeder(queue, feeding)),
            }
        });
        let cancel = self.cancel.child_token();
        let drain = CancellationToken::new();
        let join = self.rt.spawn(run_worker(
            rx,
            state.clone(),
            delivering(self.deliverer.clone(), self.health.clone()),
            cancel.clone(),
            drain.clone(),
            self.fatal.clone(),
        ));
        inner.workers.insert(
            tp,
            Worker {
                feed: Some(tx),
                feeder,
                state,
                cancel,
                drain,
                join,
                paused: false,
            },
        );
        self.count_assigned(inner);
    }

    fn count_assigned(&self, inner: &Inner) {
        let n = inner.workers.len();
        self.metrics.assigned_partitions.set(n as i64);
        self.health.update_assigned(n);
        self.share_budget(n);
    }

    /// Re-computes this replica's share of the group's request budget after
    /// its assignment changed. A cooperative rebalance revokes before it
    /// assigns elsewhere, so the replicas' shares never add up to more than
    /// the whole while partitions move.
    fn share_budget(&self, assigned: usize) {
        self.assigned.store(assigned, Ordering::Release);
        let total = self.topic_partitions.load(Ordering::Acquire);
        self.deliverer.set_budget_share(assigned, total);
    }

    /// Settles the given workers: stops their feeders and closes their
    /// feeds, lets requests in flight finish within `deadline` (records that
    /// would have to wait give up at once), then abandons the rest. Returns
    /// their final commit positions.
    fn settle(&self, workers: Vec<(Tp, Worker)>, deadline: Duration) -> Vec<(Tp, Option<i64>)> {
        let mut out = Vec::with_capacity(workers.len());
        let mut waiting = Vec::with_capacity(workers.len());
        let mut feeders = Vec::new();
        for (tp, mut w) in workers {
            w.feed.take();
            if let Some(f) = w.feeder.take() {
                f.stop.cancel();
                feeders.push(f.join);
            }
            w.drain.cancel();
            waiting.push((tp, w));
        }
        // A stopped feeder ends at its next await (it never blocks), and
        // with it the last sender of its worker's feed.
        self.rt.block_on(async {
            for f in feeders {
                let _ = f.await;
            }
        });
        let until = tokio::time::Instant::now() + deadline;
        for (tp, w) in waiting {
            let Worker {
                state,
                cancel,
                mut join,
                ..
            } = w;
            self.rt.block_on(async {
                tokio::select! {
                    _ = &mut join => {}
                    _ = tokio::time::sleep_until(until) => {
                        warn!(topic = %tp.0, partition = tp.1, "settle deadline passed; abandoning unfinished records (they will be redelivered)");
                        cancel.cancel();
                        let _ = join.await;
                    }
                }
            });
            out.push((tp, state.position()));
        }
        out
    }

    /// Gives up workers of partitions this member no longer owns: cancels
    /// their in-flight records (Kafka redelivers them to the new owner) and
    /// commits nothing for them.
    fn abandon(&self, workers: Vec<(Tp, Worker)>) {
        let tps: Vec<Tp> = workers.iter().map(|(tp, _)| tp.clone()).collect();
        for (_, w) in &workers {
            w.cancel.cancel();
        }
        let _ = self.settle(workers, Duration::ZERO);
        self.forget_series(&tps);
    }

    /// Drops the per-partition series of partitions given up, so a replica
    /// does not report lag or offsets for partitions another one now owns.
    fn forget_series(&self, tps: &[Tp]) {
        for (t, p) in tps {
            let p = p.to_string();
            let _ = self
                .metrics
                .committed_offset
                .remove_label_values(&[t.as_str(), &p]);
            let _ = self
                .metrics
                .consumer_lag
                .remove_label_values(&[t.as_str(), &p]);
        }
    }

    fn commit_sync(&self, consumer: &BaseConsumer<RelayContext>, positions: &[(Tp, Option<i64>)]) {
        let mut tpl = TopicPartitionList::new();
        for ((t, p), pos) in positions {
            if let Some(pos) = pos {
                let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*pos));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        // A coordinator that is moving would turn this commit into
        // redelivered duplicates: give it a few seconds.
        match crate::kafka::coordinator::retry(SYNC_COMMIT_RETRY, || {
            consumer.commit(&tpl, CommitMode::Sync)
        }) {
            Ok(()) => {
                for ((t, p), pos) in positions {
                    if let Some(pos) = pos {
                        self.metrics
                            .committed_offset
                            .with_label_values(&[t.as_str(), &p.to_string()])
                            .set(*pos);
                    }
                }
                info!(partitions = tpl.count(), "committed finished offsets");
            }
            Err(e) => {
                self.metrics.commit_errors.inc();
                warn!(error = %e, "synchronous commit failed; unfinished work will be redelivered");
            }
        }
    }
}

impl ClientContext for RelayContext {
    fn stats(&self, stats: Statistics) {
        // The topic's partition count, from the client's metadata (partition
        // -1 is librdkafka's internal one): partitions added to the topic
        // shrink every replica's share of the request budget.
        if let Some(t) = stats.topics.get(&self.topic) {
            let total = t.partitions.keys().filter(|p| **p >= 0).count();
            if total > 0 && self.topic_partitions.swap(total, Ordering::AcqRel) != total {
                info!(topic = %self.topic, partitions = total, "topic partition count changed");
                self.deliverer
                    .set_budget_share(self.assigned.load(Ordering::Acquire), total);
            }
        }
        for (topic, t) in &stats.topics {
            for (p, part) in &t.partitions {
                if *p >= 0 && part.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[topic.as_str(), &p.to_string()])
                        .set(part.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // A fatal one (librdkafka's `rd_kafka_fatal_error`) ends the
        // consumer thread's loop; see `run_consumer`.
        warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for RelayContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // Before librdkafka assigns (and starts fetching): split each new
            // partition's queue so that no record of it reaches the main one.
            let mut inner = self.lock();
            for e in tpl.elements() {
                self.start_worker(&mut inner, (e.topic().to_owned(), e.partition()), true);
            }
            return;
        }
        if let Rebalance::Revoke(tpl) = rebalance {
            let lost = consumer.assignment_lost();
            let mut inner = self.lock();
            let mut revoked = Vec::new();
            let mut unpause = TopicPartitionList::new();
            for e in tpl.elements() {
                let tp = (e.topic().to_owned(), e.partition());
                if let Some(w) = inner.workers.remove(&tp) {
                    if w.paused {
                        self.metrics.paused_partitions.dec();
                        unpause.add_partition(&tp.0, tp.1);
                    }
                    revoked.push((tp, w));
                }
            }
            self.count_assigned(&inner);
            drop(inner);
            // librdkafka keeps a partition's pause flag across unassign and
            // assign: one given up paused would come back paused while its
            // new worker believes it runs, and never be fetched again. Give
            // it up resumed (it is still assigned here, so resume applies).
            if unpause.count() > 0
                && let Err(e) = consumer.resume(&unpause)
            {
                warn!(error = %e, "resuming partitions before giving them up failed");
                let mut inner = self.lock();
                for e in unpause.elements() {
                    inner
                        .paused_when_lost
                        .insert((e.topic().to_owned(), e.partition()));
                }
            }
            if revoked.is_empty() {
                return;
            }
            if lost {
                // Another member may own them already: abandon without committing.
                warn!(
                    partitions = revoked.len(),
                    "partitions lost; abandoning their in-flight records without commit"
                );
                self.abandon(revoked);
                return;
            }
            info!(
                partitions = revoked.len(),
                "partitions revoked; settling in-flight records before giving them up"
            );
            let tps: Vec<Tp> = revoked.iter().map(|(tp, _)| tp.clone()).collect();
            let positions = self.settle(revoked, self.revoke_deadline);
            self.commit_sync(consumer, &positions);
            self.forget_series(&tps);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut inner = self.lock();
                let mut unpause = TopicPartitionList::new();
                for e in tpl.elements() {
                    let tp = (e.topic().to_owned(), e.partition());
                    if inner.paused_when_lost.remove(&tp) {
                        unpause.add_partition(&tp.0, tp.1);
                    }
                    // Started with its feeder in pre_rebalance; this is a
                    // no-op unless that could not run.
                    self.start_worker(&mut inner, tp, true);
                }
                // New workers start resumed; make librdkafka agree for
                // partitions it may still hold paused (see pre_rebalance).
                if unpause.count() > 0
                    && let Err(e) = consumer.resume(&unpause)
                {
                    warn!(error = %e, "resuming reassigned partitions failed");
                }
                info!(
                    added = tpl.count(),
                    total = inner.workers.len(),
                    "partitions assigned"
                );
                self.health.set_assigned(inner.workers.len());
                self.share_budget(inner.workers.len());
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                // rust-rdkafka unassigns after a rebalance error without
                // telling which partitions: whatever is no longer assigned is
                // lost to us, and must not be committed for again.
                warn!(error = %e, "rebalance error");
                let assigned: HashSet<Tp> = match consumer.assignment() {
                    Ok(tpl) => tpl
                        .elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition()))
                        .collect(),
                    Err(e) => {
                        warn!(error = %e, "reading the assignment after a rebalance error failed");
                        return;
                    }
                };
                let mut inner = self.lock();
                let gone: Vec<Tp> = inner
                    .workers
                    .keys()
                    .filter(|tp| !assigned.contains(*tp))
                    .cloned()
                    .collect();
                let orphans: Vec<(Tp, Worker)> = gone
                    .into_iter()
                    .filter_map(|tp| inner.workers.remove(&tp).map(|w| (tp, w)))
                    .collect();
                for (tp, w) in &orphans {
                    if w.paused {
                        self.metrics.paused_partitions.dec();
                        inner.paused_when_lost.insert(tp.clone());
                    }
                }
                self.count_assigned(&inner);
                drop(inner);
                if !orphans.is_empty() {
                    warn!(
                        partitions = orphans.len(),
                        "partitions unassigned by a rebalance error; abandoning their in-flight records without commit"
                    );
                    self.abandon(orphans);
                }
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                for e in offsets.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        self.metrics
                            .committed_offset
                            .with_label_values(&[e.topic(), &e.partition().to_string()])
                            .set(o);
                    }
                }
            }
            Err(e) => {
                self.metrics.commit_errors.inc();
                warn!(error = %e, "offset commit failed; will retry with the next commit");
            }
        }
    }
}

/// The consumer thread's settings.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Commit interval.
    pub commit_interval: Duration,
    /// Shutdown drain deadline.
    pub shutdown_deadline: Duration,
}

/// Creates the consumer (subscribed to the topic) with librdkafka settings
/// that keep the delivery guarantees. `topic_partitions`, the topic's
/// partition count, divides `concurrency.prefetch_bytes` into the
/// per-partition prefetch bound (a relay may be assigned every partition).
///
/// # Errors
/// librdkafka refused the configuration or the subscription.
#[allow(clippy::too_many_arguments)]
pub fn create_consumer(
    config: &RelayConfig,
    topic_partitions: usize,
    rt: Handle,
    deliverer: SharedDeliverer,
    metrics: RelayMetrics,
    cancel: CancellationToken,
    health: Arc<Health>,
    fatal: CancellationToken,
) -> KafkaResult<Arc<BaseConsumer<RelayContext>>> {
    let mut c = ClientConfig::new();
    // With split queues, librdkafka applies `queued.max.messages.kbytes` to
    // each partition's queue: the relay-wide prefetch divided by the
    // partitions. A fetch may overshoot that by one response, so a
    // partition's fetch size follows it (librdkafka still returns a record
    // larger than the fetch size, alone). A full queue is looked at again
    // after `fetch.queue.backoff.ms` (default 1 s: a drained queue would
    // wait that long for its next fetch).
    let prefetch = config.concurrency.partition_prefetch(topic_partitions);
    metrics.prefetch_partition_bytes.set(prefetch as i64);
    // Before the pass-through: an operator may override these.
    c.set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000")
        .set("queued.max.messages.kbytes", (prefetch / 1024).to_string())
        .set(
            "fetch.message.max.bytes",
            prefetch.min(1024 * 1024).to_string(),
        )
        .set("fetch.queue.backoff.ms", "10");
    match config.kafka.group_protocol {
        GroupProtocol::Classic => {
            c.set("partition.assignment.strategy", "cooperative-sticky")
                .set(
                    "session.timeout.ms",
                    config.kafka.session_timeout.as_millis().to_string(),
                );
        }
        // KIP-848: the broker assigns (incrementally) and owns the session
        // and heartbeat timeouts; librdkafka refuses to create a consumer
        // given `partition.assignment.strategy`, `session.timeout.ms` or
        // `heartbeat.interval.ms` with this protocol.
        GroupProtocol::Consumer => {}
    }
    for (k, v) in &config.kafka.properties {
        c.set(k, &v.0);
    }
    c.set("group.protocol", config.kafka.group_protocol.as_str());
    if let Some(id) = &config.kafka.instance_id {
        c.set("group.instance.id", id);
    }
    c.set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", &config.kafka.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    let memory = MemoryBudget::new(
        config.concurrency.memory_budget_bytes,
        &metrics.memory_budget_bytes,
        metrics.memory_taken_bytes.clone(),
    );
    let ctx = RelayContext {
        inner: Mutex::new(Inner {
            workers: HashMap::new(),
            paused_when_lost: HashSet::new(),
            seeking_probe: false,
        }),
        consumer: OnceLock::new(),
        window: config.concurrency.max_in_flight_per_partition,
        memory,
        rt,
        deliverer,
        metrics,
        cancel,
        revoke_deadline: config.shutdown.revoke_deadline,
        health,
        fatal,
        topic: config.kafka.topic.clone(),
        topic_partitions: AtomicUsize::new(topic_partitions),
        assigned: AtomicUsize::new(0),
    };
    ctx.deliverer.set_budget_share(0, topic_partitions);
    let consumer: Arc<BaseConsumer<RelayContext>> = Arc::new(c.create_with_context(ctx)?);
    // Set before subscribing, so before any rebalance callback can run.
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    consumer.subscribe(&[config.kafka.topic.as_str()])?;
    Ok(consumer)
}

/// The consumer thread's loop. Returns when `stop` fires, or when
/// librdkafka reports a fatal error (then with its reason), after draining
/// in-flight work within the shutdown deadline, committing, and leaving the
/// group.
pub fn run_consumer(
    consumer: Arc<BaseConsumer<RelayContext>>,
    settings: ConsumerSettings,
    stop: CancellationToken,
) -> Option<String> {
    let ctx = consumer.context();
    let mut last_commit = Instant::now();
    let mut last_scan = Instant::now();
    let mut scan_now = false;
    let mut fatal = None;
    while !stop.is_cancelled() {
        ctx.health.polled();
        // While partitions are paused, come back soon to resume them the
        // moment the circuit (or their window) allows; while hunting for a
        // probe, to pause again the moment one is taken.
        let timeout = if ctx.metrics.paused_partitions.get() > 0 || ctx.lock().seeking_probe {
            Duration::from_millis(5)
        } else {
            Duration::from_millis(100)
        };
        match consumer.poll(timeout) {
            Some(Ok(m)) => {
                // Only partitions whose queue could not be split come here.
                let rec = feeder::record(&m);
                let tp = (rec.topic.clone(), rec.partition);
                drop(m);
                let mut inner = ctx.lock();
                if !inner.workers.contains_key(&tp) {
                    // Not expected (workers start on assign), but a record
                    // must never be skipped: its offset would be committed past.
                    ctx.start_worker(&mut inner, tp.clone(), false);
                }
                if let Some(w) = inner.workers.get(&tp)
                    && let Some(feed) = &w.feed
                {
                    let taken = w.state.taken.fetch_add(1, Ordering::AcqRel) + 1;
                    // The first record after a probe hunt, or a full window.
                    if taken >= ctx.window || inner.seeking_probe {
                        scan_now = true;
                    }
                    ctx.health.progress();
                    ctx.metrics
                        .consumed
                        .with_label_values(&[tp.0.as_str(), &tp.1.to_string()])
                        .inc();
                    if feed.send(rec.into()).is_err() {
                        error!(topic = %tp.0, partition = tp.1, "partition worker stopped; record will be redelivered");
                    }
                }
            }
            Some(Err(e)) => warn!(error = %e, "consumer error"),
            None => scan_now = true,
        }
        // Scanning every partition after every record would cost O(partitions)
        // per record: scan when a window filled up, when idle, or every 5 ms.
        if scan_now || last_scan.elapsed() >= BACKPRESSURE_SCAN_INTERVAL {
            // DESIGN invariant 8: a consumer librdkafka declared dead (a
            // static member fenced by another with its group.instance.id,
            // say) can never consume again; end the relay, do not idle.
            if let Some((code, text)) = consumer.client().fatal_error() {
                error!(error = ?code, reason = %text, "fatal Kafka client error: the consumer cannot go on; stopping");
                fatal = Some(format!("{code:?}: {text}"));
                break;
            }
            apply_backpressure(&consumer);
            last_scan = Instant::now();
            scan_now = false;
        }
        if last_commit.elapsed() >= settings.commit_interval {
            commit_async(&consumer);
            last_commit = Instant::now();
        }
    }
    info!("stopping: draining in-flight records");
    // Stop fetching while draining.
    if let Ok(assignment) = consumer.assignment() {
        let _ = consumer.pause(&assignment);
    }
    let workers: Vec<(Tp, Worker)> = ctx.lock().workers.drain().collect();
    let positions = ctx.settle(workers, settings.shutdown_deadline);
    ctx.commit_sync(&consumer, &positions);
    ctx.metrics.assigned_partitions.set(0);
    ctx.health.update_assigned(0);
    info!("leaving the consumer group");
    drop(consumer);
    fatal
}

/// Pauses every partition while the circuit is open, and a partition fed
/// from the main queue whose window is full (resumed at half) — except when
/// the circuit's probe is
/// due and no record is taken anywhere: then all stay resumed until one
/// arrives to be the probe (DESIGN invariant 8). Publishes to [`Health`]
/// whether the relay holds work, and the circuit's next probe as a known wait.
fn apply_backpressure(consumer: &BaseConsumer<RelayContext>) {
    let ctx = consumer.context();
    let window = ctx.window;
    let now = Instant::now();
    let probe_due_at = ctx.deliverer.probe_due_at(now);
    let outage = ctx.deliverer.circuit_open();
    let mut to_pause = TopicPartitionList::new();
    let mut to_resume = TopicPartitionList::new();
    let mut inner = ctx.lock();
    let taken_total: usize = inner
        .workers
        .values()
        .map(|w| w.state.taken.load(Ordering::Acquire))
        .sum();
    let seeking = outage && taken_total == 0 && probe_due_at.is_some_and(|t| now >= t);
    if seeking && !inner.seeking_probe {
        info!("circuit probe due and no record taken: resuming partitions to fetch one");
    }
    inner.seeking_probe = seeking;
    if outage && let Some(t) = probe_due_at {
        ctx.health.waiting_until(t);
    }
    let mut paused = 0usize;
    for ((t, p), w) in inner.workers.iter_mut() {
        let taken = w.state.taken.load(Ordering::Acquire);
        // Hysteresis: resume at half the window, so a full partition does not
        // flap between paused and resumed on every record.
        // A partition with a feeder is never paused for its window: the
        // feeder stops reading instead.
        let main_fed = w.feeder.is_none();
        let want_paused = (outage && !seeking)
            || (main_fed && (taken >= window || (w.paused && taken > window / 2)));
        paused += usize::from(want_paused);
        if want_paused && !w.paused {
            tracing::debug!(partition = *p, taken, "pause");
            to_pause.add_partition(t, *p);
            w.paused = true;
            ctx.metrics.paused_partitions.inc();
        } else if !want_paused && w.paused {
            tracing::debug!(partition = *p, taken, "resume");
            to_resume.add_partition(t, *p);
            w.paused = false;
            ctx.metrics.paused_partitions.dec();
        }
    }
    drop(inner);
    ctx.health.set_holds_work(taken_total > 0 || paused > 0);
    if to_pause.count() > 0
        && let Err(e) = consumer.pause(&to_pause)
    {
        warn!(error = %e, "pausing partitions failed");
    }
    if to_resume.count() > 0
        && let Err(e) = consumer.resume(&to_resume)
    {
        warn!(error = %e, "resuming partitions failed");
    }
}

fn commit_async(consumer: &BaseConsumer<RelayContext>) {
    let ctx = consumer.context();
    let mut tpl = TopicPartitionList::new();
    let inner = ctx.lock();
    for ((t, p), w) in inner.workers.iter() {
        // Every interval commits every known position, changed or not: a
        // failed async commit is simply repeated by the next one.
        if let Some(pos) = w.state.position() {
            let _ = tpl.add_partition_offset(t, *p, Offset::Offset(pos));
        }
    }
    drop(inner);
    if tpl.count() > 0
        && let Err(e) = consumer.commit(&tpl, CommitMode::Async)
    {
        ctx.metrics.commit_errors.inc();
        warn!(error = %e, "queueing an offset commit failed");
    }
}
