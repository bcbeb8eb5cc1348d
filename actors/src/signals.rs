//! A member's recent signals: the bounded ring of events a session keeps,
//! each with the time it happened.
//!
//! The ring is what the model folds a user vector in from (together with
//! the member's training history, which the model carries), and what
//! decides which items are "seen". It is bounded so that a member who sends
//! a flood of events costs a fixed amount of memory.
//!
//! Every signal carries its event time: the producer's `at_ms` when it is
//! plausible (not further in the future than [`SignalPolicy::max_skew_ms`],
//! not older than the horizon), the time of receipt otherwise. Freshness is
//! enforced where signals are read: a signal older than
//! [`SignalPolicy::horizon_ms`] is not folded in (it still marks its item
//! as seen: a film watched last month is still watched), and the weight of
//! a fresh one follows the fold-in policy's recency boost
//! ([`reco_models::FoldInPolicy`]). Weights come from the one weighting
//! training uses too ([`reco_models::confidence::event_weight`]).
//!
//! Every signal also keeps the device its event named (as a
//! [`reco_models::device_key`]): a request that names a device folds the
//! signals seen on it in at `same_device_weight` times the others, their
//! total unchanged ([`reco_models::FoldInPolicy::weigh_devices`]).

use reco_messages::{Event, EventKind, ItemId};
use reco_models::confidence::{combine, event_weight};
use reco_models::rows::Watch;
use reco_models::{device_key, FoldInPolicy};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// How recent signals are timed, aged and weighed; one per node, shared by
/// every session.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalPolicy {
    /// Signals older than this are not folded in.
    pub horizon_ms: u64,
    /// A producer time at most this far in the future is believed (clock
    /// skew between producers and the node); beyond it, receipt time is
    /// used.
    pub max_skew_ms: u64,
    /// How recent events weigh against the member's history.
    pub fold_in: FoldInPolicy,
}

impl Default for SignalPolicy {
    fn default() -> Self {
        Self {
            horizon_ms: 30 * 24 * 3_600_000,
            max_skew_ms: 60_000,
            fold_in: FoldInPolicy::default(),
        }
    }
}

impl SignalPolicy {
    /// The time to record for an event received at `now_ms`: the producer's
    /// `at_ms` when plausible, else `now_ms`.
    pub fn event_time(&self, at_ms: Option<u64>, now_ms: u64) -> u64 {
        match at_ms {
            Some(at)
                if at <= now_ms.saturating_add(self.max_skew_ms)
                    && now_ms.saturating_sub(at) <= self.horizon_ms =>
            {
                at.min(now_ms)
            }
            _ => now_ms,
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One remembered event, without the fields the session does not use.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Signal {
    item: ItemId,
    /// Event time (see [`SignalPolicy::event_time`]).
    at_ms: u64,
    /// [`event_weight`] of the event.
    weight: f32,
    kind: EventKind,
    /// The event's value: seconds watched for play/stop.
    value: f32,
    /// [`device_key`] of the event's device, if it named one.
    device: Option<u64>,
}

/// The last `capacity` events of one member, oldest first.
#[derive(Clone, Debug)]
pub struct RecentSignals {
    ring: VecDeque<Signal>,
    capacity: usize,
    policy: Arc<SignalPolicy>,
}

/// How much an event says about the member's taste: the one weighting of
/// training and serving ([`event_weight`]).
pub fn weight(event: &Event) -> f32 {
    event_weight(event.kind, event.value)
}

impl RecentSignals {
    /// An empty ring that keeps at most `capacity` events (at least one),
    /// timed and weighed by `policy`.
    pub fn new(capacity: usize, policy: Arc<SignalPolicy>) -> Self {
        let capacity = capacity.max(1);
        RecentSignals {
            // Grows on demand: most resident members have a few events.
            ring: VecDeque::new(),
            capacity,
            policy,
        }
    }

    /// Remembers an event received now, forgetting the oldest one when full.
    pub fn push(&mut self, event: &Event) {
        self.push_at(event, now_ms());
    }

    /// Remembers an event received at `now_ms`.
    pub fn push_at(&mut self, event: &Event, now_ms: u64) {
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(Signal {
            item: event.item,
            at_ms: self.policy.event_time(event.at_ms, now_ms),
            weight: weight(event),
            kind: event.kind,
            value: event.value,
            device: event.device.as_deref().map(device_key),
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

    /// The (item, weight) pairs to fold a user vector in from, now, for a
    /// request from `device` (if it named one).
    pub fn interactions(&self, device: Option<&str>) -> Vec<(ItemId, f32)> {
        self.interactions_on(now_ms(), device)
    }

    /// The (item, weight) pairs to fold a user vector in from at `now_ms`,
    /// for a request that names no device.
    pub fn interactions_at(&self, now_ms: u64) -> Vec<(ItemId, f32)> {
        self.interactions_on(now_ms, None)
    }

    /// The (item, weight) pairs to fold a user vector in from at `now_ms`
    /// for a request from `device`: one per item, the strongest weight any
    /// of its signals within the horizon gives it after the recency boost
    /// and the same-device reweighing; older signals are left out.
    pub fn interactions_on(&self, now_ms: u64, device: Option<&str>) -> Vec<(ItemId, f32)> {
        let policy = &self.policy;
        let asked = device.map(device_key);
        let fresh: Vec<&Signal> = self
            .ring
            .iter()
            .filter(|s| now_ms.saturating_sub(s.at_ms) <= policy.horizon_ms)
            .collect();
        let mut weights: Vec<(f32, bool)> = fresh
            .iter()
            .map(|s| {
                let age = now_ms.saturating_sub(s.at_ms);
                let weight = policy.fold_in.recent_weight(s.weight, age);
                (weight, asked.is_some() && s.device == asked)
            })
            .collect();
        policy.fold_in.weigh_devices(&mut weights);
        let mut pairs: Vec<(ItemId, f32)> = fresh
            .iter()
            .zip(weights)
            .map(|(s, (w, _))| (s.item, w))
            .filter(|&(_, w)| w > 0.0)
            .collect();
        pairs.sort_by_key(|&(item, _)| item);
        pairs.dedup_by(|later, kept| {
            if later.0 == kept.0 {
                kept.1 = combine(kept.1, later.1);
                true
            } else {
                false
            }
        });
        pairs
    }

    /// Whether a request from `device` folds in other weights than one that
    /// names no device: the same-device weight is on and some signal was
    /// seen on that device.
    pub fn device_matters(&self, device: Option<&str>) -> bool {
        let Some(asked) = device.map(device_key) else {
            return false;
        };
        self.policy.fold_in.same_device_weight != 1.0
            && self.ring.iter().any(|s| s.device == Some(asked))
    }

    /// How many signals a fold-in at `now_ms` uses (positive weight, within
    /// the horizon), and the age of the newest one (ms), if any.
    pub fn freshness_at(&self, now_ms: u64) -> (usize, Option<u64>) {
        let ages = self
            .ring
            .iter()
            .filter(|s| s.weight > 0.0)
            .map(|s| now_ms.saturating_sub(s.at_ms))
            .filter(|&age| age <= self.policy.horizon_ms);
        ages.fold((0, None), |(n, newest), age| {
            (n + 1, Some(newest.map_or(age, |a: u64| a.min(age))))
        })
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

    /// What the member did with each title it played, stopped or rated,
    /// as the `continue` row reads it (largest watch time, last play or
    /// stop, whether it was rated).
    pub fn watches(&self) -> Vec<Watch> {
        let mut watches: Vec<Watch> = Vec::new();
        for s in &self.ring {
            let (played, rated) = match s.kind {
                EventKind::Play | EventKind::Stop => (true, false),
                EventKind::Rate => (false, true),
                _ => continue,
            };
            let at = match watches.iter().position(|w| w.item == s.item) {
                Some(at) => at,
                None => {
                    watches.push(Watch {
                        item: s.item,
                        watched_secs: 0.0,
                        last_ms: 0,
                        rated: false,
                    });
                    watches.len() - 1
                }
            };
            let watch = &mut watches[at];
            if played {
                watch.watched_secs = watch.watched_secs.max(s.value);
                watch.last_ms = watch.last_ms.max(s.at_ms);
            }
            watch.rated |= rated;
        }
        watches
    }

    /// The policy the ring reads with.
    pub fn policy(&self) -> &SignalPolicy {
        &self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_messages::MemberId;

    const NOW: u64 = 1_800_000_000_000;

    fn event(item: u64, kind: EventKind, at_ms: Option<u64>) -> Event {
        Event {
            member: MemberId(1),
            item: ItemId(item),
            kind,
            value: 0.0,
            at_ms,
            device: None,
        }
    }

    fn ring(capacity: usize) -> RecentSignals {
        let policy = SignalPolicy {
            fold_in: FoldInPolicy::NEUTRAL,
            ..SignalPolicy::default()
        };
        RecentSignals::new(capacity, Arc::new(policy))
    }

    #[test]
    fn ring_forgets_the_oldest_event_when_full() {
        let mut ring = ring(2);
        for item in 1..=3 {
            ring.push_at(&event(item, EventKind::Play, None), NOW);
        }
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.seen(), vec![ItemId(2), ItemId(3)]);
    }

    #[test]
    fn interactions_keep_the_strongest_weight_per_item() {
        let mut ring = ring(8);
        for e in [
            event(5, EventKind::Click, None),
            event(5, EventKind::Play, None),
            event(7, EventKind::Impression, None),
            event(3, EventKind::Click, None),
        ] {
            ring.push_at(&e, NOW);
        }
        assert_eq!(
            ring.interactions_at(NOW),
            vec![(ItemId(3), 0.25), (ItemId(5), 0.5)]
        );
        assert_eq!(ring.seen(), vec![ItemId(5)]);
    }

    #[test]
    fn a_signal_older_than_the_horizon_is_ignored() {
        let policy = SignalPolicy {
            horizon_ms: 60_000,
            fold_in: FoldInPolicy::NEUTRAL,
            ..SignalPolicy::default()
        };
        let mut ring = RecentSignals::new(8, Arc::new(policy));
        // Produced 30 s ago (plausible, kept), received now.
        ring.push_at(&event(1, EventKind::Play, Some(NOW - 30_000)), NOW);
        ring.push_at(&event(2, EventKind::Play, None), NOW);
        assert_eq!(ring.interactions_at(NOW).len(), 2);
        assert_eq!(ring.freshness_at(NOW), (2, Some(0)));
        // 40 s later the first is 70 s old: past the horizon, not folded in
        // (still seen).
        let later = NOW + 40_000;
        assert_eq!(ring.interactions_at(later), vec![(ItemId(2), 0.5)]);
        assert_eq!(ring.freshness_at(later), (1, Some(40_000)));
        assert_eq!(ring.seen(), vec![ItemId(1), ItemId(2)]);
        assert!(ring.interactions_at(NOW + 120_000).is_empty());
    }

    #[test]
    fn watches_keep_the_longest_watch_time_and_the_rating() {
        let mut ring = ring(8);
        let mut play = |item, value, at, kind| {
            let mut e = event(item, kind, Some(at));
            e.value = value;
            ring.push_at(&e, NOW);
        };
        play(1, 300.0, NOW - 3_000, EventKind::Play);
        play(1, 900.0, NOW - 2_000, EventKind::Stop);
        play(2, 60.0, NOW - 1_000, EventKind::Play);
        play(2, 4.0, NOW, EventKind::Rate);
        play(3, 0.0, NOW, EventKind::Click);
        let watches = ring.watches();
        assert_eq!(watches.len(), 2);
        assert_eq!(
            (
                watches[0].item,
                watches[0].watched_secs,
                watches[0].last_ms,
                watches[0].rated
            ),
            (ItemId(1), 900.0, NOW - 2_000, false)
        );
        assert!(watches[1].rated);
    }

    #[test]
    fn implausible_producer_times_are_replaced_by_receipt_time() {
        let p = SignalPolicy {
            horizon_ms: 3_600_000,
            max_skew_ms: 1_000,
            ..SignalPolicy::default()
        };
        assert_eq!(p.event_time(Some(NOW - 5_000), NOW), NOW - 5_000);
        assert_eq!(
            p.event_time(Some(NOW + 500), NOW),
            NOW,
            "skew: not later than now"
        );
        assert_eq!(p.event_time(Some(NOW + 5_000), NOW), NOW, "future");
        assert_eq!(p.event_time(Some(NOW - 7_200_000), NOW), NOW, "too old");
        assert_eq!(p.event_time(Some(0), NOW), NOW);
        assert_eq!(p.event_time(None, NOW), NOW);
    }

    #[test]
    fn fresh_signals_are_boosted_by_the_fold_in_policy() {
        let policy = SignalPolicy {
            fold_in: FoldInPolicy {
                history_weight: 1.0,
                recent_boost: 9.0,
                half_life_ms: Some(1_000),
                same_device_weight: 1.0,
            },
            ..SignalPolicy::default()
        };
        let mut ring = RecentSignals::new(8, Arc::new(policy));
        ring.push_at(&event(1, EventKind::Rate, None), NOW);
        assert_eq!(ring.interactions_at(NOW), vec![(ItemId(1), 9.0)]);
        assert_eq!(ring.interactions_at(NOW + 1_000), vec![(ItemId(1), 5.0)]);
    }

    #[test]
    fn signals_from_the_requests_device_weigh_more() {
        let policy = SignalPolicy {
            fold_in: FoldInPolicy {
                same_device_weight: 3.0,
                ..FoldInPolicy::NEUTRAL
            },
            ..SignalPolicy::default()
        };
        let mut ring = RecentSignals::new(8, Arc::new(policy));
        let on = |item, device: &str| {
            let mut e = event(item, EventKind::Play, None);
            e.device = Some(device.to_owned());
            e
        };
        ring.push_at(&on(1, "tv"), NOW);
        ring.push_at(&on(2, "mobile"), NOW);
        ring.push_at(&event(3, EventKind::Play, None), NOW);
        // Total 1.5 kept; tv's signal weighs 3 times each other one.
        let tv = vec![(ItemId(1), 0.9), (ItemId(2), 0.3), (ItemId(3), 0.3)];
        assert_eq!(ring.interactions_on(NOW, Some("tv")), tv);
        let mobile = vec![(ItemId(1), 0.3), (ItemId(2), 0.9), (ItemId(3), 0.3)];
        assert_eq!(ring.interactions_on(NOW, Some("mobile")), mobile);
        // No device in the request, or one no signal was seen on: unchanged.
        let plain = vec![(ItemId(1), 0.5), (ItemId(2), 0.5), (ItemId(3), 0.5)];
        assert_eq!(ring.interactions_on(NOW, None), plain);
        assert_eq!(ring.interactions_on(NOW, Some("web")), plain);
        assert!(ring.device_matters(Some("tv")));
        assert!(!ring.device_matters(Some("web")));
        assert!(!ring.device_matters(None));
    }
}
