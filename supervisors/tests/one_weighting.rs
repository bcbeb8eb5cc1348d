//! One weighting: the same event gets the same weight, hence the same ALS
//! confidence `1 + alpha w`, when training reads it (from the event log, or
//! a CSV rating) and when a session folds it in online.

use reco_actors::signals::{RecentSignals, SignalPolicy};
use reco_messages::{Event, EventKind, ItemId, MemberId};
use reco_models::confidence::confidence;
use reco_models::{FoldInPolicy, Rating};
use reco_offline::event_log::add_interaction;
use reco_offline::train::RatingValues;
use std::collections::HashMap;
use std::sync::Arc;

const NOW: u64 = 1_800_000_000_000;
const ALPHA: f32 = 3.0;

fn events() -> Vec<Event> {
    let mut events = Vec::new();
    for (n, kind) in EventKind::ALL.into_iter().enumerate() {
        for (m, value) in [0.0f32, 30.0, 600.0, 5400.0, 0.5, 4.0]
            .into_iter()
            .enumerate()
        {
            events.push(Event {
                member: MemberId(1),
                item: ItemId((n * 10 + m) as u64),
                kind,
                value,
                at_ms: Some(NOW - 1_000),
                device: None,
            });
        }
    }
    events
}

/// The training side: the event log's interactions as `reco train` weighs them.
fn trained(event: &Event) -> Option<f32> {
    let (mut ratings, mut seen) = (Vec::new(), HashMap::new());
    if reco_offline::event_log::event_weight(event) <= 0.0 {
        return None;
    }
    add_interaction(&mut ratings, &mut seen, event);
    Some(RatingValues::Weights.weight(&ratings[0]))
}

/// The serving side: what a session hands the model for this event.
fn served(event: &Event, policy: FoldInPolicy) -> Option<f32> {
    let policy = SignalPolicy {
        fold_in: policy,
        ..SignalPolicy::default()
    };
    let mut ring = RecentSignals::new(8, Arc::new(policy));
    ring.push_at(event, NOW);
    ring.interactions_at(NOW).first().map(|&(_, w)| w)
}

#[test]
fn the_same_event_gets_the_same_confidence_in_training_and_serving() {
    for event in events() {
        let t = trained(&event);
        let s = served(&event, FoldInPolicy::NEUTRAL);
        assert_eq!(t, s, "{event:?}");
        if let (Some(t), Some(s)) = (t, s) {
            assert_eq!(confidence(ALPHA, t), confidence(ALPHA, s), "{event:?}");
        }
        // A CSV line is a rate event of its stars.
        if event.kind == EventKind::Rate {
            let csv = Rating {
                member: event.member,
                item: event.item,
                value: event.value,
                at_ms: NOW,
            };
            assert_eq!(Some(RatingValues::Stars.weight(&csv)), s, "{event:?}");
        }
    }
}

#[test]
fn the_recency_boost_is_the_only_difference_and_is_the_documented_one() {
    let policy = FoldInPolicy::default();
    for event in events() {
        let (Some(t), Some(s)) = (trained(&event), served(&event, policy)) else {
            continue;
        };
        // One second old: boost 32 halving every hour.
        let expected = policy.recent_weight(t, 1_000);
        assert_eq!(s, expected, "{event:?}");
        assert!(s > t * 31.0 && s <= t * 32.0, "{event:?}: {s} vs {t}");
    }
}
