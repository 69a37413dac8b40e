//! One assigned partition's worker: keeps per-chain order, runs different
//! chains at once, and publishes the offset it is safe to commit.
//!
//! DESIGN invariant 4: records with the same key are delivered in offset
//! order, retries included — a chain's next record starts only when the one
//! before it is finished. Invariant 2: the commit position comes from the
//! [`OffsetWatermark`] only.
//!
//! The consumer thread feeds records in; closing the feed means "settle":
//! finish what was taken, then stop. The `drain` token, cancelled when
//! settling starts, makes records that would have to wait (an open circuit,
//! a backoff, the budget) give up at once instead. Cancelling `cancel`
//! abandons whatever is left. Given-up and abandoned records are not
//! finished, not committed: Kafka redelivers them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use futures::future::BoxFuture;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::delivery::{Finished, Record, SharedDeliverer, Stops};
use crate::kafka::memory::Charge;
use crate::policy::watermark::OffsetWatermark;

/// A record taken from Kafka, with what it was charged against the memory
/// budget (given back when the record's run ends).
#[derive(Debug)]
pub struct Taken {
    /// The record.
    pub rec: Record,
    /// Its charge; `None` for records fed without a budget (tests).
    pub charge: Option<Charge>,
}

impl From<Record> for Taken {
    fn from(rec: Record) -> Self {
        Taken { rec, charge: None }
    }
}

/// Takes one record to its end (`None`: abandoned or given up first). The
/// worker calls it once per record, in per-chain order, with its [`Stops`];
/// in the relay it is [`delivering`], and tests pass their own.
pub type Process = Arc<dyn Fn(Record, Stops) -> BoxFuture<'static, Option<Finished>> + Send + Sync>;

/// The relay's [`Process`]: [`crate::delivery::Deliverer::process`], counted
/// in the in-flight gauge while it runs (aborted runs included), and noted
/// as progress when it ends.
pub fn delivering(
    deliverer: SharedDeliverer,
    health: Arc<crate::observe::health::Health>,
) -> Process {
    Arc::new(move |rec, stops| {
        let d = deliverer.clone();
        let health = health.clone();
        Box::pin(async move {
            let _gauge = InFlight::enter(&d.metrics().in_flight);
            let out = d.process(&rec, &stops, &health).await;
            health.progress();
            out
        })
    })
}

/// What the consumer thread and the worker share about one partition.
#[derive(Debug)]
pub struct PartitionState {
    /// The next offset to read such that everything before is finished; -1
    /// before anything finished.
    pub commit_position: AtomicI64,
    /// Records taken and not finished (the window).
    pub taken: AtomicUsize,
    /// Notified whenever a record leaves the window: the feeder waits on it
    /// while the window is full.
    pub room: Notify,
}

impl Default for PartitionState {
    fn default() -> Self {
        PartitionState {
            commit_position: AtomicI64::new(-1),
            taken: AtomicUsize::new(0),
            room: Notify::new(),
        }
    }
}

impl PartitionState {
    /// The commit position, if any.
    pub fn position(&self) -> Option<i64> {
        let p = self.commit_position.load(Ordering::Acquire);
        (p >= 0).then_some(p)
    }

    /// `n` records left the window (finished, or given up).
    fn release(&self, n: usize) {
        if n > 0 {
            self.taken.fetch_sub(n, Ordering::AcqRel);
            self.room.notify_one();
        }
    }
}

/// Runs the worker until the feed closes and every taken record is finished,
/// or until `cancel` abandons the rest. A `process` that panics cancels
/// `fatal`: its record is not finished, so the offset stops below it, and
/// the relay stops (a bug must not pass for a slow partition).
pub async fn run_worker(
    mut feed: mpsc::UnboundedReceiver<Taken>,
    state: Arc<PartitionState>,
    process: Process,
    cancel: CancellationToken,
    drain: CancellationToken,
    fatal: CancellationToken,
) {
    let stops = Stops {
        cancel: cancel.clone(),
        drain,
    };
    let mut watermark = OffsetWatermark::new();
    // Per chain: records waiting for the one in flight before them.
    let mut waiting: HashMap<u64, VecDeque<Taken>> = HashMap::new();
    let mut running: JoinSet<(u64, i64, Option<Finished>)> = JoinSet::new();
    let mut accepting = true;

    let start = |running: &mut JoinSet<(u64, i64, Option<Finished>)>, t: Taken| {
        let Taken { rec, charge } = t;
        let key = rec.key_hash();
        let offset = rec.offset;
        let run = process(rec, stops.clone());
        running.spawn(async move {
            let out = run.await;
            // The record's bytes go back to the budget when its run ends.
            drop(charge);
            (key, offset, out)
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
                        // stops here so later records of it do not overtake it,
                        // and the relay stops rather than stall this partition.
                        tracing::error!(error = %e, "a delivery panicked (a bug): stopping the relay; the record is not committed and will be redelivered");
                        fatal.cancel();
                        continue;
                    }
                };
                match outcome {
                    Some(_) => {
                        watermark.finish(offset);
                        if let Some(p) = watermark.commit_position() {
                            state.commit_position.store(p, Ordering::Release);
                        }
                        state.release(1);
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
                        let dropped = waiting.remove(&key).map_or(0, |q| q.len());
                        if dropped > 0 {
                            tracing::debug!(dropped_in_order = dropped, "abandoning the rest of a chain");
                        }
                        state.release(1 + dropped);
                    }
                }
            }
            rec = feed.recv(), if accepting => {
                match rec {
                    Some(t) => {
                        watermark.track(t.rec.offset);
                        let key = t.rec.key_hash();
                        if let Some(q) = waiting.get_mut(&key) {
                            q.push_back(t);
                        } else {
                            // Marks the chain busy; later records queue behind.
                            waiting.insert(key, VecDeque::new());
                            start(&mut running, t);
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
                    }
                }
                if let Some(p) = watermark.commit_position() {
                    state.commit_position.store(p, Ordering::Release);
                }
                // Nothing of this partition is taken any more.
                state.taken.store(0, Ordering::Release);
                state.room.notify_one();
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    type Log = Arc<Mutex<Vec<(u8, i64)>>>;

    fn rec(offset: i64, chain: u8) -> Record {
        Record {
            topic: "t".into(),
            partition: 0,
            offset,
            key: Some(vec![chain]),
            value: None,
            headers: None,
            timestamp_ms: None,
        }
    }

    /// Finishes each record after a delay that makes later offsets finish
    /// sooner (a worker that let a chain's records overlap would log them out
    /// of order); panics at `panic_at`; waits for cancellation at `hang_at`.
    fn recorder(log: Log, panic_at: Option<i64>, hang_at: Option<i64>) -> Process {
        Arc::new(move |rec: Record, stops: Stops| {
            let log = log.clone();
            Box::pin(async move {
                assert_ne!(Some(rec.offset), panic_at, "injected panic");
                if Some(rec.offset) == hang_at {
                    stops.cancel.cancelled().await;
                    return None;
                }
                let ms = u64::try_from(40 - rec.offset.min(40)).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let chain = rec.key.as_ref().map_or(0, |k| k[0]);
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((chain, rec.offset));
                Some(Finished::Delivered)
            })
        })
    }

    /// Feeds `offsets` (chain = offset % `chains`) to a worker, closes the
    /// feed, and returns the worker's join handle and shared state.
    fn start(
        count: i64,
        chains: i64,
        process: Process,
        cancel: &CancellationToken,
        fatal: &CancellationToken,
    ) -> (tokio::task::JoinHandle<()>, Arc<PartitionState>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(PartitionState::default());
        for o in 0..count {
            state.taken.fetch_add(1, Ordering::AcqRel);
            let chain = u8::try_from(o % chains).unwrap_or(0);
            tx.send(rec(o, chain).into())
                .unwrap_or_else(|_| panic!("worker gone"));
        }
        drop(tx);
        let join = tokio::spawn(run_worker(
            rx,
            state.clone(),
            process,
            cancel.clone(),
            CancellationToken::new(),
            fatal.clone(),
        ));
        (join, state)
    }

    fn per_chain(log: &Log) -> HashMap<u8, Vec<i64>> {
        let mut m: HashMap<u8, Vec<i64>> = HashMap::new();
        for (c, o) in log.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            m.entry(*c).or_default().push(*o);
        }
        m
    }

    #[tokio::test(start_paused = true)]
    async fn each_chain_finishes_in_offset_order_and_the_position_passes_all() {
        let log = Log::default();
        let (cancel, fatal) = (CancellationToken::new(), CancellationToken::new());
        let (join, state) = start(30, 3, recorder(log.clone(), None, None), &cancel, &fatal);
        join.await
            .expect("worker ends when the feed is closed and all finished");
        let chains = per_chain(&log);
        assert_eq!(chains.len(), 3);
        for (c, offsets) in &chains {
            let want: Vec<i64> = (0..30).filter(|o| o % 3 == i64::from(*c)).collect();
            assert_eq!(offsets, &want, "chain {c} in offset order, none lost");
        }
        assert_eq!(state.position(), Some(30));
        assert_eq!(state.taken.load(Ordering::Acquire), 0);
        assert!(!fatal.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicked_delivery_holds_its_chain_and_the_offset_and_is_fatal() {
        let log = Log::default();
        let (cancel, fatal) = (CancellationToken::new(), CancellationToken::new());
        let (join, state) = start(10, 2, recorder(log.clone(), Some(4), None), &cancel, &fatal);
        join.await.expect("worker ends");
        assert!(fatal.is_cancelled(), "a panic stops the relay");
        let chains = per_chain(&log);
        assert_eq!(
            chains[&0],
            vec![0, 2],
            "chain 0 stops at the panicked record"
        );
        assert_eq!(chains[&1], vec![1, 3, 5, 7, 9], "other chains go on");
        assert_eq!(
            state.position(),
            Some(4),
            "nothing at or past offset 4 committed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_abandons_the_unfinished_without_passing_them() {
        let log = Log::default();
        let (cancel, fatal) = (CancellationToken::new(), CancellationToken::new());
        let (join, state) = start(10, 2, recorder(log.clone(), None, Some(2)), &cancel, &fatal);
        // Chain 1 finishes by itself; chain 0 hangs at offset 2 until cancelled.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(per_chain(&log)[&1], vec![1, 3, 5, 7, 9]);
        assert_eq!(state.position(), Some(2));
        cancel.cancel();
        join.await.expect("worker ends on cancel");
        assert_eq!(
            per_chain(&log)[&0],
            vec![0],
            "later records of chain 0 never went out"
        );
        assert_eq!(
            state.position(),
            Some(2),
            "the abandoned record is not passed"
        );
        assert!(!fatal.is_cancelled());
    }
}
