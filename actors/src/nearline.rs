//! Nearline: a member's list, recomputed between requests after an
//! important event.
//!
//! After a `play`, `rate` or `list_add`, the member's session schedules a
//! refresh (debounced: a burst of events costs one refresh). The refresh
//! runs off the request path, on the nearline worker pool (model workers of
//! their own, so it never takes admission from online requests): it folds
//! the member's user vector in from its recent events against the current
//! item factors and keeps the top N, with the time it was computed. The
//! request path then uses that list as its first fallback tier (`source:
//! nearline`), and — when the node is configured to — as a cheap answer
//! while it is fresh and reflects every event of the member. A list older
//! than `max_age` is not served at all.
//!
//! Emits: `reco_nearline_refreshes_total{outcome}`,
//! `reco_nearline_refresh_seconds` (compute time),
//! `reco_nearline_freshness_seconds` (first event of the batch → list
//! stored).

use crate::model::ModelPool;
use crate::precomputed::Fallback;
use reco_messages::{EventKind, ItemId, ScoredItem, Source};
use reco_models::Scored;
use std::time::{Duration, Instant};

/// Nearline settings of a node.
#[derive(Clone, Debug)]
pub struct NearlineSettings {
    /// The workers that compute refreshes.
    pub pool: ModelPool,
    /// Wait this long after the first important event before refreshing,
    /// so that a burst of events costs one refresh.
    pub debounce: Duration,
    /// Length of a nearline list.
    pub top_n: usize,
    /// A list older than this is not served.
    pub max_age: Duration,
    /// Answer with a fresh list that reflects every event, without asking
    /// the model.
    pub answer_when_fresh: bool,
}

/// Whether an event of this kind is important enough to refresh the
/// member's nearline list.
pub fn triggers_refresh(kind: EventKind) -> bool {
    matches!(kind, EventKind::Play | EventKind::Rate | EventKind::ListAdd)
}

/// A member's nearline list.
#[derive(Clone, Debug)]
pub struct NearlineList {
    /// Best first, without the items seen when it was computed.
    pub items: Vec<Scored>,
    /// Version of the model that computed it.
    pub version: String,
    /// When it was stored.
    pub computed_at: Instant,
    /// How many of the member's events it reflects (the session's event
    /// count when the refresh started).
    pub reflects: u64,
}

impl NearlineList {
    /// How old the list is.
    pub fn age(&self) -> Duration {
        self.computed_at.elapsed()
    }

    /// The list as a fallback of at most `k` items without `exclude`
    /// (sorted), padded from `padding` (the precomputed/popular fallback).
    pub fn fallback(&self, k: usize, exclude: &[ItemId], padding: Fallback) -> Fallback {
        let mut items: Vec<ScoredItem> = self
            .items
            .iter()
            .filter(|s| exclude.binary_search(&s.item).is_err())
            .take(k)
            .map(|s| ScoredItem {
                item: s.item,
                score: s.score,
            })
            .collect();
        let padding_lists = padding.lists_version;
        for extra in padding.items {
            if items.len() == k {
                break;
            }
            if !items.iter().any(|s| s.item == extra.item) {
                items.push(extra);
            }
        }
        Fallback {
            source: Source::Nearline,
            items,
            version: Some(self.version.clone()),
            lists_version: padding_lists,
            age_ms: Some(self.age().as_millis() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearline_fallback_drops_seen_items_and_pads_without_duplicates() {
        let list = NearlineList {
            items: [5, 6, 7]
                .map(|i| Scored {
                    item: ItemId(i),
                    score: i as f32,
                })
                .to_vec(),
            version: "v1".into(),
            computed_at: Instant::now(),
            reflects: 1,
        };
        let padding = Fallback {
            source: Source::Popular,
            items: [7, 8, 9]
                .map(|i| ScoredItem {
                    item: ItemId(i),
                    score: 0.0,
                })
                .to_vec(),
            version: None,
            lists_version: Some("l1".into()),
            age_ms: None,
        };
        let f = list.fallback(4, &[ItemId(6)], padding);
        let ids: Vec<u64> = f.items.iter().map(|s| s.item.0).collect();
        assert_eq!(ids, vec![5, 7, 8, 9]);
        assert_eq!(f.source, Source::Nearline);
        assert_eq!(f.version.as_deref(), Some("v1"));
        assert_eq!(f.lists_version.as_deref(), Some("l1"));
        assert!(f.age_ms.is_some());
    }
}
