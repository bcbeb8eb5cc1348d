//! A member's recent signals: the bounded ring of events a session keeps.
//!
//! The ring is what the model folds a user vector in from, and what decides
//! which items are "seen". It is bounded so that a member who sends a flood
//! of events costs a fixed amount of memory.

use reco_messages::{Event, EventKind, ItemId};
use std::collections::VecDeque;

/// One remembered event, without the fields the session does not use.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Signal {
    item: ItemId,
    kind: EventKind,
}

/// The last `capacity` events of one member, oldest first.
#[derive(Clone, Debug)]
pub struct RecentSignals {
    ring: VecDeque<Signal>,
    capacity: usize,
}

/// How much an event says about the member's taste, as an implicit-feedback
/// weight for fold-in. The model is trained with every interaction at weight
/// 1, so consumption counts 1; a click is a weaker hint; an impression says
/// nothing positive and is not used.
pub fn weight(kind: EventKind) -> f32 {
    match kind {
        EventKind::Play | EventKind::Stop | EventKind::Rate | EventKind::ListAdd => 1.0,
        EventKind::Click => 0.5,
        EventKind::Impression => 0.0,
    }
}

impl RecentSignals {
    /// An empty ring that keeps at most `capacity` events (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        RecentSignals {
            // Grows on demand: most resident members have a few events.
            ring: VecDeque::new(),
            capacity,
        }
    }

    /// Remembers an event, forgetting the oldest one when full.
    pub fn push(&mut self, event: &Event) {
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(Signal {
            item: event.item,
            kind: event.kind,
        });
    }

    /// Number of events remembered.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// True when the member has no remembered events.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The (item, weight) pairs to fold a user vector in from: one per item,
    /// with the strongest weight any of its events gave it.
    pub fn interactions(&self) -> Vec<(ItemId, f32)> {
        let mut pairs: Vec<(ItemId, f32)> = self
            .ring
            .iter()
            .map(|s| (s.item, weight(s.kind)))
            .filter(|&(_, w)| w > 0.0)
            .collect();
        pairs.sort_by_key(|&(item, _)| item);
        pairs.dedup_by(|later, kept| {
            if later.0 == kept.0 {
                kept.1 = kept.1.max(later.1);
                true
            } else {
                false
            }
        });
        pairs
    }

    /// The items the member consumed, sorted and without duplicates.
    pub fn seen(&self) -> Vec<ItemId> {
        let mut seen: Vec<ItemId> = self
            .ring
            .iter()
            .filter(|s| s.kind.marks_seen())
            .map(|s| s.item)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_messages::MemberId;

    fn event(item: u64, kind: EventKind) -> Event {
        Event {
            member: MemberId(1),
            item: ItemId(item),
            kind,
            value: 0.0,
            at_ms: None,
            device: None,
        }
    }

    #[test]
    fn ring_forgets_the_oldest_event_when_full() {
        let mut ring = RecentSignals::new(2);
        for item in 1..=3 {
            ring.push(&event(item, EventKind::Play));
        }
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.seen(), vec![ItemId(2), ItemId(3)]);
    }

    #[test]
    fn interactions_keep_the_strongest_weight_per_item() {
        let mut ring = RecentSignals::new(8);
        ring.push(&event(5, EventKind::Click));
        ring.push(&event(5, EventKind::Play));
        ring.push(&event(7, EventKind::Impression));
        ring.push(&event(3, EventKind::Click));
        assert_eq!(
            ring.interactions(),
            vec![(ItemId(3), 0.5), (ItemId(5), 1.0)]
        );
        assert_eq!(ring.seen(), vec![ItemId(5)]);
    }
}
