//! Per-partition offset watermark: which offset a relay may commit.
//!
//! DESIGN invariant 2: a partition's offset is committed only up to the
//! highest offset below which every message is *finished* (delivered 2xx, or
//! written to the dead-letter topic with the write acknowledged). Messages
//! finish out of order (different chains are in flight at once), so this
//! keeps the set of offsets handed out and not yet finished, and the commit
//! position is the lowest of them — or one past the highest offset seen when
//! none is pending.
//!
//! This is the only place that computes a commit position. It does no I/O and
//! knows nothing of Kafka clients; the caller turns [`OffsetWatermark::commit_position`]
//! into a `TopicPartitionList` entry (which takes the *next* offset to read).

use std::collections::BTreeSet;

/// Tracks the offsets of one partition that are in progress and answers the
/// position that is safe to commit.
#[derive(Debug, Default, Clone)]
pub struct OffsetWatermark {
    /// Offsets handed out for processing and not finished yet.
    pending: BTreeSet<i64>,
    /// One past the highest offset ever tracked; the commit position when
    /// nothing is pending.
    next_after_seen: Option<i64>,
}

impl OffsetWatermark {
    /// An empty tracker: nothing seen, nothing to commit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `offset` was handed out for processing. Offsets are
    /// tracked in the order a partition yields them (increasing), but gaps
    /// (compaction, transaction markers) are fine.
    pub fn track(&mut self, offset: i64) {
        self.pending.insert(offset);
        let next = offset.saturating_add(1);
        self.next_after_seen = Some(self.next_after_seen.map_or(next, |n| n.max(next)));
    }

    /// Records that `offset` is finished. Finishing an offset that was never
    /// tracked, or twice, changes nothing.
    pub fn finish(&mut self, offset: i64) {
        self.pending.remove(&offset);
    }

    /// The next offset to read after everything finished so far: every
    /// offset below it is finished. `None` before anything was tracked.
    pub fn commit_position(&self) -> Option<i64> {
        match self.pending.first() {
            Some(&lowest_unfinished) => Some(lowest_unfinished),
            None => self.next_after_seen,
        }
    }

    /// How many tracked offsets are not finished.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nothing_tracked_commits_nothing() {
        assert_eq!(OffsetWatermark::new().commit_position(), None);
    }

    #[test]
    fn commit_stops_at_lowest_unfinished() {
        let mut w = OffsetWatermark::new();
        for o in 10..15 {
            w.track(o);
        }
        assert_eq!(w.commit_position(), Some(10));
        w.finish(11);
        w.finish(12);
        assert_eq!(w.commit_position(), Some(10), "10 is still in flight");
        w.finish(10);
        assert_eq!(w.commit_position(), Some(13));
        w.finish(14);
        assert_eq!(w.commit_position(), Some(13));
        w.finish(13);
        assert_eq!(
            w.commit_position(),
            Some(15),
            "all done: one past the highest"
        );
    }

    #[test]
    fn gaps_in_offsets_do_not_block_the_commit() {
        let mut w = OffsetWatermark::new();
        w.track(3);
        w.track(7);
        w.finish(3);
        assert_eq!(w.commit_position(), Some(7));
        w.finish(7);
        assert_eq!(w.commit_position(), Some(8));
    }

    #[test]
    fn finishing_an_unknown_offset_changes_nothing() {
        let mut w = OffsetWatermark::new();
        w.track(5);
        w.finish(99);
        w.finish(5);
        w.finish(5);
        assert_eq!(w.commit_position(), Some(6));
        assert_eq!(w.pending(), 0);
    }

    proptest! {
        /// For any completion order, the commit position never passes an
        /// unfinished offset, and ends one past the last offset.
        #[test]
        fn commit_never_passes_unfinished(
            order in Just((0..64).collect::<Vec<i64>>()).prop_shuffle()
        ) {
            let mut w = OffsetWatermark::new();
            for o in 0..64 {
                w.track(o);
            }
            let mut finished = std::collections::HashSet::new();
            let mut last = 0;
            for o in order {
                w.finish(o);
                finished.insert(o);
                let pos = w.commit_position().unwrap();
                prop_assert!(pos >= last, "commit position went backwards");
                for below in 0..pos {
                    prop_assert!(finished.contains(&below), "committed past unfinished {}", below);
                }
                last = pos;
            }
            prop_assert_eq!(w.commit_position(), Some(64));
        }
    }
}
