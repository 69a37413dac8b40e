//! One assigned partition's feeder: reads the partition's own queue (split
//! from the consumer's on assign) and hands records to the partition's
//! worker only while the window has room and the memory budget allows.
//!
//! This is the backpressure: a feeder that does not read leaves records in
//! librdkafka's per-partition prefetch queue, and librdkafka stops fetching
//! that partition when the queue holds `queued.max.messages.kbytes`. No
//! partition is paused for a full window — pausing flushes the prefetched
//! records and resuming waits for the broker thread's next wake-up, up to a
//! second (BENCHMARKS.md). `pause` is left to the circuit and to draining.
//!
//! A record the feeder read is either handed to the worker or, only when the
//! feeder is stopped (the partition is being given up), dropped untracked:
//! the worker's watermark never saw it, so no commit passes it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::ConsumerContext;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::delivery::Record;
use crate::kafka::memory::{MemoryBudget, cost};
use crate::kafka::partition::{PartitionState, Taken};
use crate::observe::health::Health;

/// How often a feeder with an empty queue looks again even without the
/// queue's non-empty callback (a safety net: the callback is the wake-up).
const RECHECK: Duration = Duration::from_millis(250);

/// Records a feeder hands over before it yields to the other tasks on its
/// runtime thread, when its queue never runs dry.
const BATCH: u32 = 64;

/// What a feeder needs besides its queue.
pub struct Feeding {
    /// The partition's shared state (window and room).
    pub state: Arc<PartitionState>,
    /// The worker's feed.
    pub feed: mpsc::UnboundedSender<Taken>,
    /// Max records taken and not finished in this partition.
    pub window: usize,
    /// The relay-wide memory budget.
    pub memory: MemoryBudget,
    /// Counts every record taken (pre-resolved for this partition).
    pub consumed: prometheus::IntCounter,
    /// Liveness: every record taken is progress.
    pub health: Arc<Health>,
    /// Stops the feeder (the partition is being settled or abandoned).
    pub stop: CancellationToken,
}

/// The bytes a message costs against the memory budget.
#[must_use]
pub fn message_cost(m: &BorrowedMessage<'_>) -> usize {
    let headers = m.headers().map_or(0, |h| {
        h.iter()
            .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
            .sum()
    });
    cost(
        m.key().map_or(0, <[u8]>::len),
        m.payload().map_or(0, <[u8]>::len),
        headers,
    )
}

/// The message as a [`Record`] the worker owns.
#[must_use]
pub fn record(m: &BorrowedMessage<'_>) -> Record {
    Record {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(Bytes::copy_from_slice),
        headers: m.headers().map(rdkafka::message::BorrowedHeaders::detach),
        timestamp_ms: m.timestamp().to_millis(),
    }
}

/// Runs until `f.stop` fires. Never blocks a runtime thread: the queue is
/// read with a zero timeout and the feeder sleeps on its non-empty callback.
pub async fn run_feeder<C>(mut queue: PartitionQueue<C>, f: Feeding)
where
    C: ConsumerContext + 'static,
{
    let arrived = Arc::new(Notify::new());
    {
        let arrived = arrived.clone();
        // librdkafka calls this from its own threads when the queue goes from
        // empty to non-empty; `notify_one` keeps the wake-up if the feeder is
        // not waiting yet.
        queue.set_nonempty_callback(move || arrived.notify_one());
    }
    let mut handed = 0u32;
    loop {
        if f.stop.is_cancelled() {
            break;
        }
        if handed >= BATCH {
            handed = 0;
            tokio::task::yield_now().await;
        }
        if f.state.taken.load(Ordering::Acquire) >= f.window {
            tokio::select! {
                () = f.state.room.notified() => {}
                () = f.stop.cancelled() => break,
                // `taken` is reset on cancel without a waiter; look again.
                () = tokio::time::sleep(RECHECK) => {}
            }
            continue;
        }
        match queue.poll(Duration::ZERO) {
            Some(Ok(m)) => {
                let need = message_cost(&m);
                let rec = record(&m);
                drop(m);
                let charge = tokio::select! {
                    c = f.memory.charge(need) => c,
                    // Given up untracked: see the module comment.
                    () = f.stop.cancelled() => break,
                };
                f.state.taken.fetch_add(1, Ordering::AcqRel);
                f.health.progress();
                f.consumed.inc();
                handed += 1;
                let taken = Taken {
                    rec,
                    charge: Some(charge),
                };
                if f.feed.send(taken).is_err() {
                    // Only when the worker ended first (a panic elsewhere
                    // stopping the relay): nothing after this is committed.
                    error!("partition worker stopped; the record will be redelivered");
                    break;
                }
            }
            Some(Err(e)) => warn!(error = %e, "consumer error on a partition queue"),
            None => {
                tokio::select! {
                    () = arrived.notified() => {}
                    () = f.stop.cancelled() => break,
                    () = tokio::time::sleep(RECHECK) => {}
                }
            }
        }
    }
}
