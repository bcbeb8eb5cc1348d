//! `Fence`: which partitions this node may answer for, right now.
//!
//! The rebalancer writes each held partition's local lease validity here;
//! the request path reads it (one clock read and one atomic load) before it
//! answers. A node that was stopped (SIGSTOP, a long pause) and resumes
//! with requests already buffered therefore refuses them the moment its
//! leases ran out, before its rebalancer has even run: the new owner is the
//! only one answering.

use reco_messages::partition::Partition;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Shared view of the partitions this node holds, and until when.
#[derive(Clone, Debug)]
pub struct Fence {
    epoch: Instant,
    /// Per partition: validity end in nanoseconds after `epoch`, plus one;
    /// 0 when not held.
    until: Arc<[AtomicU64]>,
}

impl Fence {
    /// A fence over `partitions` partitions, none held.
    pub fn new(partitions: u32) -> Self {
        Fence {
            epoch: Instant::now(),
            until: (0..partitions.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The number of partitions.
    pub fn partitions(&self) -> u32 {
        self.until.len() as u32
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64 + 1
    }

    /// Whether this node may answer for `k` now.
    pub fn holds(&self, k: Partition) -> bool {
        self.holds_at(k, Instant::now())
    }

    /// Whether this node may answer for `k` at `now`.
    pub fn holds_at(&self, k: Partition, now: Instant) -> bool {
        let Some(slot) = self.until.get(k.0 as usize) else {
            return false;
        };
        let until = slot.load(Ordering::Acquire);
        until != 0 && self.nanos(now) < until
    }

    /// Marks `k` held until `until`.
    pub fn hold(&self, k: Partition, until: Instant) {
        if let Some(slot) = self.until.get(k.0 as usize) {
            slot.store(self.nanos(until), Ordering::Release);
        }
    }

    /// Marks `k` not held.
    pub fn drop_partition(&self, k: Partition) {
        if let Some(slot) = self.until.get(k.0 as usize) {
            slot.store(0, Ordering::Release);
        }
    }

    /// How long `k`'s lease stays valid after `now` (`None`: not held).
    pub fn remaining_at(&self, k: Partition, now: Instant) -> Option<std::time::Duration> {
        let until = self.until.get(k.0 as usize)?.load(Ordering::Acquire);
        let now = self.nanos(now);
        (until != 0 && now < until).then(|| std::time::Duration::from_nanos(until - now))
    }

    /// The partitions held at `now`.
    pub fn held_at(&self, now: Instant) -> Vec<Partition> {
        (0..self.partitions())
            .map(Partition)
            .filter(|&k| self.holds_at(k, now))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_partition_is_held_until_its_validity_ends_or_it_is_dropped() {
        let fence = Fence::new(4);
        let now = Instant::now();
        assert!(!fence.holds_at(Partition(1), now));
        fence.hold(Partition(1), now + Duration::from_secs(1));
        assert!(fence.holds_at(Partition(1), now));
        assert!(!fence.holds_at(Partition(1), now + Duration::from_secs(1)));
        assert_eq!(fence.held_at(now), vec![Partition(1)]);
        fence.drop_partition(Partition(1));
        assert!(!fence.holds_at(Partition(1), now));
        assert!(!fence.holds_at(Partition(9), now));
    }
}
