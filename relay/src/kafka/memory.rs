//! The relay-wide memory budget: one bound, in bytes, on the records taken
//! from Kafka and not finished, across every assigned partition.
//!
//! A partition's feeder charges a record's [`cost`] before handing it to the
//! worker; the [`Charge`] travels with the record and gives the bytes back
//! when the record is finished (or abandoned). When the budget is spent the
//! feeders wait, in the order they asked (the semaphore is fair), so memory
//! stays flat whatever the number of partitions or the depth of the backlog.
//! A record larger than the whole budget is charged the whole budget: it
//! goes alone, it is never refused.

use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a record costs besides its bytes: the `Record` itself, its place in
/// a chain's queue, its task. A measured order of magnitude, not an exact
/// figure.
pub const RECORD_OVERHEAD: usize = 256;

/// The largest budget a semaphore charge can express (`u32` permits).
pub const MAX_BUDGET: usize = u32::MAX as usize;

/// The budget, shared by every partition's feeder.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    total: u32,
    taken: IntGauge,
}

/// Bytes charged for one record, given back on drop.
#[derive(Debug)]
pub struct Charge {
    _permit: Option<OwnedSemaphorePermit>,
    bytes: u32,
    taken: IntGauge,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.taken.sub(i64::from(self.bytes));
    }
}

/// What a record of these sizes costs against the budget.
#[must_use]
pub fn cost(key: usize, value: usize, headers: usize) -> usize {
    key.saturating_add(value)
        .saturating_add(headers)
        .saturating_add(RECORD_OVERHEAD)
}

impl MemoryBudget {
    /// A budget of `bytes` (clamped to 1..=[`MAX_BUDGET`]); `budget` and
    /// `taken` are the gauges it reports in.
    #[must_use]
    pub fn new(bytes: usize, budget: &IntGauge, taken: IntGauge) -> Self {
        let total = u32::try_from(bytes.clamp(1, MAX_BUDGET)).unwrap_or(u32::MAX);
        budget.set(i64::from(total));
        MemoryBudget {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
            taken,
        }
    }

    /// Waits until `cost` bytes are free, then charges them. Cancel-safe:
    /// dropping the future charges nothing.
    pub async fn charge(&self, cost: usize) -> Charge {
        let bytes = u32::try_from(cost).unwrap_or(u32::MAX).clamp(1, self.total);
        // The semaphore is never closed (this type holds it and never calls
        // `close`), so acquiring only waits; were it closed, the record would
        // go uncharged rather than wait forever.
        match self.permits.clone().acquire_many_owned(bytes).await {
            Ok(permit) => {
                self.taken.add(i64::from(bytes));
                Charge {
                    _permit: Some(permit),
                    bytes,
                    taken: self.taken.clone(),
                }
            }
            Err(_) => Charge {
                _permit: None,
                bytes: 0,
                taken: self.taken.clone(),
            },
        }
    }

    /// Bytes free right now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn budget(bytes: usize) -> (MemoryBudget, IntGauge) {
        let b = IntGauge::new("b", "b").expect("valid gauge");
        let t = IntGauge::new("t", "t").expect("valid gauge");
        (MemoryBudget::new(bytes, &b, t.clone()), t)
    }

    #[tokio::test(start_paused = true)]
    async fn charges_wait_for_room_and_give_it_back_on_drop() {
        let (m, taken) = budget(1000);
        let a = m.charge(600).await;
        assert_eq!(taken.get(), 600);
        assert_eq!(m.available(), 400);
        let waiting = tokio::spawn({
            let m = m.clone();
            async move { m.charge(600).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no room for a second 600");
        drop(a);
        let b = waiting.await.expect("the waiter gets the room");
        assert_eq!(taken.get(), 600);
        drop(b);
        assert_eq!(taken.get(), 0);
        assert_eq!(m.available(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_larger_than_the_budget_goes_alone() {
        let (m, taken) = budget(1000);
        let big = m.charge(5000).await;
        assert_eq!(taken.get(), 1000, "charged the whole budget, not refused");
        assert_eq!(m.available(), 0);
        drop(big);
        assert_eq!(m.available(), 1000);
        assert_eq!(cost(10, 100, 0), 10 + 100 + RECORD_OVERHEAD);
    }
}
