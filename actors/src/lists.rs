//! The precomputed lists in service, the fallback of the online path.
//!
//! Purpose: hold the lists the offline job computed (a top-N per member and a
//! popular list) so that the request path can answer from memory when the
//! model cannot.
//!
//! There is no actor here on purpose: the lists are one `Arc<PrecomputedLists>`
//! behind an `ArcSwap`, shared by a [`ListsReader`] per reader. Sessions, the
//! shards and the ingress read the current lists with one atomic load, so the
//! fallback has no queue that could reject it or make it late, and does no
//! I/O. The one writer is the node's loader, which puts a newly published
//! version in service with [`ListsReader::replace`].
//!
//! Emits: `reco_lists_members` (set when a reader is made and on every
//! replacement). Logs: DEBUG "Precomputed lists replaced." on a swap.
//!
//! Fails: nothing here can fail; the lists live in the shared cell, so no
//! restart of any actor loses them.

use crate::metrics as m;
use arc_swap::ArcSwap;
use reco_messages::{ItemId, MemberId, ScoredItem, Source};
use reco_models::PrecomputedLists;
use std::collections::HashSet;
use std::sync::Arc;

/// Read access to the lists in service, shared by every session.
#[derive(Clone, Debug)]
pub struct ListsReader {
    current: Arc<ArcSwap<PrecomputedLists>>,
}

/// A fallback answer, ready before the model is even asked.
#[derive(Clone, Debug, PartialEq)]
pub struct Fallback {
    /// `precomputed` when the member has a list of its own, else `popular`.
    pub source: Source,
    /// Up to k items, best first, without excluded items.
    pub items: Vec<ScoredItem>,
    /// The version of the model that computed the items: the batch run
    /// of the lists, or the model of a nearline list.
    pub version: Option<String>,
    /// The version of the precomputed lists in service.
    pub lists_version: Option<String>,
    /// How old the list is, in ms: since a nearline list was computed, or
    /// since the batch run computed the lists in service (`None` when that
    /// time is unknown: lists written before it was recorded).
    pub age_ms: Option<u64>,
}

impl ListsReader {
    /// A reader over `lists`.
    pub fn new(lists: PrecomputedLists) -> Self {
        publish_gauges(&lists);
        ListsReader {
            current: Arc::new(ArcSwap::from_pointee(lists)),
        }
    }

    /// The lists in service now.
    pub fn load(&self) -> Arc<PrecomputedLists> {
        self.current.load_full()
    }

    /// Puts `lists` in service (one atomic store; readers of the old lists
    /// finish with them) and returns the old ones.
    pub fn replace(&self, lists: Arc<PrecomputedLists>) -> Arc<PrecomputedLists> {
        publish_gauges(&lists);
        tracing::debug!(new = %lists.version, members = lists.members.len(), "Precomputed lists replaced.");
        self.current.swap(lists)
    }

    /// The best fallback for `member`: its own precomputed list, padded from
    /// the popular list, without the items of `exclude` (sorted) and without
    /// duplicates, at most `k` items.
    pub fn fallback(&self, member: MemberId, k: usize, exclude: &[ItemId]) -> Fallback {
        self.fallback_of(Some(member), k, exclude)
    }

    /// The popular list alone (no member's own list), without the items of
    /// `exclude` (sorted), at most `k` items: the fallback of rows that are
    /// not the member's top picks (`trending`, `billboard`).
    pub fn fallback_popular(&self, k: usize, exclude: &[ItemId]) -> Fallback {
        self.fallback_of(None, k, exclude)
    }

    fn fallback_of(&self, member: Option<MemberId>, k: usize, exclude: &[ItemId]) -> Fallback {
        let lists = self.current.load();
        let own = member
            .and_then(|member| lists.member(member))
            .filter(|l| !l.is_empty());
        let source = if own.is_some() {
            Source::Precomputed
        } else {
            Source::Popular
        };
        let mut items: Vec<ScoredItem> = Vec::with_capacity(k);
        // Duplicates come from padding with the popular list; a linear scan
        // is cheapest for the usual small k, a set for large ones.
        let mut taken = (k > 32).then(|| HashSet::with_capacity(k));
        let candidates = own.unwrap_or(&[]).iter().chain(lists.popular.iter());
        for &scored in candidates {
            let item = scored.item;
            if items.len() == k {
                break;
            }
            let duplicate = match taken.as_mut() {
                Some(taken) => !taken.insert(item),
                None => items.iter().any(|s| s.item == item),
            };
            if duplicate || exclude.binary_search(&item).is_ok() {
                continue;
            }
            items.push(scored);
        }
        let version = (!lists.version.is_empty()).then(|| lists.version.clone());
        Fallback {
            source,
            items,
            lists_version: version.clone(),
            version,
            age_ms: lists.age_ms(crate::signals::now_ms()),
        }
    }
}

fn publish_gauges(lists: &PrecomputedLists) {
    metrics::gauge!(m::LISTS_MEMBERS).set(lists.members.len() as f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_models::Scored;
    use std::collections::HashMap;

    fn scored(ids: &[u64]) -> Vec<Scored> {
        ids.iter()
            .map(|&i| Scored {
                item: ItemId(i),
                score: 100.0 - i as f32,
            })
            .collect()
    }

    fn lists() -> PrecomputedLists {
        PrecomputedLists {
            version: "v1".into(),
            popular: scored(&[1, 2, 3, 4, 5]),
            members: HashMap::from([(MemberId(7), scored(&[9, 2, 8]))]),
            computed_at_ms: None,
            ..PrecomputedLists::default()
        }
    }

    fn ids(f: &Fallback) -> Vec<u64> {
        f.items.iter().map(|s| s.item.0).collect()
    }

    #[test]
    fn members_own_list_comes_first_then_popular_without_duplicates_or_seen() {
        let reader = ListsReader::new(lists());
        let f = reader.fallback(MemberId(7), 5, &[ItemId(1), ItemId(8)]);
        assert_eq!(f.source, Source::Precomputed);
        assert_eq!(ids(&f), vec![9, 2, 3, 4, 5]);
        assert_eq!(f.version.as_deref(), Some("v1"));
    }

    #[test]
    fn large_k_pads_from_popular_without_duplicates() {
        let mut big = lists();
        big.popular = scored(&(1..=200).collect::<Vec<_>>());
        let reader = ListsReader::new(big);
        let f = reader.fallback(MemberId(7), 100, &[ItemId(3)]);
        assert_eq!(f.items.len(), 100);
        let distinct: HashSet<_> = f.items.iter().map(|s| s.item).collect();
        assert_eq!(distinct.len(), 100);
        assert!(!distinct.contains(&ItemId(3)));
        assert_eq!(ids(&f)[..3], [9, 2, 8]);
    }

    #[test]
    fn batch_answers_say_how_old_the_lists_are() {
        let reader = ListsReader::new(lists());
        assert_eq!(reader.fallback(MemberId(7), 2, &[]).age_ms, None);
        let stamped = lists().computed_now();
        let at = stamped.computed_at_ms.unwrap();
        reader.replace(Arc::new(PrecomputedLists {
            computed_at_ms: Some(at - 60_000),
            ..stamped
        }));
        for member in [MemberId(7), MemberId(1)] {
            let age = reader.fallback(member, 2, &[]).age_ms.unwrap();
            assert!((60_000..120_000).contains(&age), "{age}");
        }
    }

    #[test]
    fn unknown_members_get_the_popular_list() {
        let reader = ListsReader::new(lists());
        let f = reader.fallback(MemberId(1), 2, &[]);
        assert_eq!((f.source, ids(&f)), (Source::Popular, vec![1, 2]));
    }

    #[test]
    fn replaced_lists_are_read_by_the_next_fallback() {
        let reader = ListsReader::new(lists());
        let other = reader.clone();
        let mut next = lists();
        next.version = "v2".into();
        next.popular = scored(&[42]);
        let old = other.replace(Arc::new(next));
        assert_eq!(old.version, "v1");
        let f = reader.fallback(MemberId(1), 3, &[]);
        assert_eq!((ids(&f), f.version.as_deref()), (vec![42], Some("v2")));
        let now = reader.load();
        assert_eq!(
            (now.version.as_str(), now.members.len(), now.popular.len()),
            ("v2", 1, 1)
        );
    }
}
