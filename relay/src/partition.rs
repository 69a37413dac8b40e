//! One assigned partition's worker: keeps per-chain order, runs different
//! chains at once, and publishes the offset it is safe to commit.
//!
//! DESIGN invariant 4: records with the same key are delivered in offset
//! order, retries included — a chain's next record starts only when the one
//! before it is finished. Invariant 2: the commit position comes from the
//! [`OffsetWatermark`] only.
//!
//! The consumer thread feeds records in; closing the feed means "settle":
//! finish what was taken, then stop. Cancelling the token abandons whatever
//! is left (not finished, not committed: Kafka redelivers it).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::delivery::{Finished, Record, SharedDeliverer};
use crate::watermark::OffsetWatermark;

/// What the consumer thread and the worker share about one partition.
#[derive(Debug)]
pub struct PartitionState {
    /// The next offset to read such that everything before is finished; -1
    /// before anything finished.
    pub commit_position: AtomicI64,
    /// Records taken and not finished (the window).
    pub taken: AtomicUsize,
}

impl Default for PartitionState {
    fn default() -> Self {
        PartitionState {
            commit_position: AtomicI64::new(-1),
            taken: AtomicUsize::new(0),
        }
    }
}

impl PartitionState {
    /// The commit position, if any.
    pub fn position(&self) -> Option<i64> {
        let p = self.commit_position.load(Ordering::Acquire);
        (p >= 0).then_some(p)
    }
}

/// Runs the worker until the feed closes and every taken record is finished,
/// or until `cancel` abandons the rest.
pub async fn run_worker(
    mut feed: mpsc::UnboundedReceiver<Record>,
    state: Arc<PartitionState>,
    deliverer: SharedDeliverer,
    cancel: CancellationToken,
) {
    let mut watermark = OffsetWatermark::new();
    // Per chain: records waiting for the one in flight before them.
    let mut waiting: HashMap<u64, VecDeque<Record>> = HashMap::new();
    let mut running: JoinSet<(u64, i64, Option<Finished>)> = JoinSet::new();
    let mut accepting = true;

    let start = |running: &mut JoinSet<(u64, i64, Option<Finished>)>, rec: Record| {
        let d = deliverer.clone();
        let c = cancel.clone();
        running.spawn(async move {
            let _gauge = InFlight::enter(&d.metrics.in_flight);
            let key = rec.key_hash();
            let out = d.process(&rec, &c).await;
            (key, rec.offset, out)
        });
    };

    loop {
        if !accepting && running.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            done = running.join_next(), if !running.is_empty() => {
                let Some(done) = done else { continue };
                let (key, offset, outcome) = match done {
                    Ok(v) => v,
                    Err(e) => {
                        // A panicked delivery is not finished: its offset stays
                        // uncommitted, so the record is redelivered. Its chain
                        // stops here so later records of it do not overtake it.
                        tracing::error!(error = %e, "delivery task failed; partition needs a restart to retry it");
                        continue;
                    }
                };
                match outcome {
                    Some(_) => {
                        watermark.finish(offset);
                        if let Some(p) = watermark.commit_position() {
                            state.commit_position.store(p, Ordering::Release);
                        }
                        state.taken.fetch_sub(1, Ordering::AcqRel);
                        // The chain stays busy while it has a next record.
                        match waiting.get_mut(&key).and_then(|q| q.pop_front()) {
                            Some(rec) => start(&mut running, rec),
                            None => {
                                waiting.remove(&key);
                            }
                        }
                    }
                    None => {
                        // Abandoned: the chain's later records must not go
                        // out before it, so they are abandoned too.
                        if let Some(q) = waiting.remove(&key) {
                            tracing::debug!(dropped_in_order = q.len(), "abandoning the rest of a chain");
                        }
                    }
                }
            }
            rec = feed.recv(), if accepting => {
                match rec {
                    Some(rec) => {
                        watermark.track(rec.offset);
                        let key = rec.key_hash();
                        if let Some(q) = waiting.get_mut(&key) {
                            q.push_back(rec);
                        } else {
                            // Marks the chain busy; later records queue behind.
                            waiting.insert(key, VecDeque::new());
                            start(&mut running, rec);
                        }
                    }
                    None => accepting = false,
                }
            }
            _ = cancel.cancelled() => {
                // Past the deadline: abandon what is left, but keep the
                // outcomes of records that did finish meanwhile.
                running.abort_all();
                while let Some(done) = running.join_next().await {
                    if let Ok((_, offset, Some(_))) = done {
                        watermark.finish(offset);
                        state.taken.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                if let Some(p) = watermark.commit_position() {
                    state.commit_position.store(p, Ordering::Release);
                }
                break;
            }
        }
    }
}

/// Counts a record in the in-flight gauge for as long as its task lives,
/// aborted tasks included.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn enter(g: &'a prometheus::IntGauge) -> Self {
        g.inc();
        InFlight(g)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
