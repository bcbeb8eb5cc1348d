//! The offline batch lists that are the fallback of the online path: a
//! per-member top-N computed from trained user factors, and a popularity list
//! for members the model does not know.
//!
//! They are published as one artifact ([`PrecomputedLists::to_bytes`]) and
//! served from memory, so a fallback answer never waits on I/O or a queue.

use crate::artifact::{self, ArtifactError};
use crate::interactions::Interactions;
use crate::items::{Catalogue, RowLists};
use crate::{Scored, TrainedModel};
use reco_messages::MemberId;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Mutex;

/// Magic bytes of a precomputed-lists artifact.
const MAGIC: &[u8; 8] = b"RECOLST\0";

/// The offline batch lists that are the fallback of the online path.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PrecomputedLists {
    /// Version of the model run that produced the lists, for replies and
    /// hot-swap decisions.
    pub version: String,
    /// The answer for anyone without a list of their own.
    pub popular: Vec<Scored>,
    /// Per-member top-N, best first, seen items already excluded.
    pub members: HashMap<MemberId, Vec<Scored>>,
    /// Titles, genres and years of the items (empty when trained without
    /// item data; lists written before it existed decode with none).
    #[serde(default)]
    pub catalogue: Catalogue,
    /// The fallbacks of the rows (genre, new, because); empty without item
    /// data.
    #[serde(default)]
    pub rows: RowLists,
    /// When the batch run computed them, ms since the Unix epoch (replies
    /// say how old a precomputed answer is from it); `None` in lists
    /// written before it was recorded.
    #[serde(default)]
    pub computed_at_ms: Option<u64>,
}

impl PrecomputedLists {
    /// The precomputed list of a member, `None` if it has none (then
    /// [`popular`](Self::popular) answers).
    pub fn member(&self, member: MemberId) -> Option<&[Scored]> {
        self.members.get(&member).map(Vec::as_slice)
    }

    /// The same lists stamped as computed now (the batch run's clock).
    pub fn computed_now(mut self) -> Self {
        self.computed_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// How old the lists are at `now_ms` (ms since the Unix epoch), when
    /// their computation time is known.
    pub fn age_ms(&self, now_ms: u64) -> Option<u64> {
        self.computed_at_ms.map(|at| now_ms.saturating_sub(at))
    }

    /// Encodes the lists in the shared artifact envelope (see
    /// [`crate::artifact`]) with a named-field MessagePack body.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain structs, strings, numbers and maps into a Vec
        // cannot fail.
        let body = rmp_serde::to_vec_named(self).unwrap_or_default();
        artifact::seal(MAGIC, &body)
    }

    /// Decodes lists written by [`to_bytes`](Self::to_bytes).
    ///
    /// # Errors
    /// [`ArtifactError`] for anything but an intact artifact of this format.
    /// Never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let body = artifact::open(MAGIC, "precomputed lists", bytes)?;
        rmp_serde::from_slice(body).map_err(ArtifactError::Decode)
    }
}

/// Popularity list: items by number of distinct interacting members (ties by
/// total weight, then ascending id), the top `n`, with `score` = the share
/// of members who interacted with the item (0..1).
///
/// The share is on the scale of the model's scores: implicit ALS predicts
/// a preference in 0..1 (watched or not), and the share is the empirical
/// chance that a member picked at random watched the item.
///
/// The cold-start and last-resort answer: it needs no model and is never
/// wrong by much.
pub fn popular(data: &Interactions, n: usize) -> Vec<Scored> {
    let by_item = data.by_item();
    let mut stats: Vec<(usize, f64, usize)> = (0..data.num_items())
        .map(|i| {
            let (members, weights) = by_item.row(i);
            let total = weights.iter().map(|&w| f64::from(w)).sum();
            (members.len(), total, i)
        })
        .collect();
    let order = |a: &(usize, f64, usize), b: &(usize, f64, usize)| {
        b.0.cmp(&a.0)
            .then(b.1.partial_cmp(&a.1).unwrap_or(Ordering::Equal))
            .then(a.2.cmp(&b.2))
    };
    if n < stats.len() {
        stats.select_nth_unstable_by(n, order);
        stats.truncate(n);
    }
    stats.sort_unstable_by(order);
    let members = data.num_members().max(1) as f32;
    stats
        .into_iter()
        .map(|(count, _, i)| Scored {
            item: data.items()[i],
            score: count as f32 / members,
        })
        .collect()
}

/// Batch-computes per-member top-`n` lists from trained user factors,
/// excluding each member's training items, in parallel over `threads`
/// (at least one is used).
///
/// Members are those of the model's user factors; their training items are
/// looked up in `data` (normally the data the model was trained on).
pub fn batch_top_n(
    model: &TrainedModel,
    data: &Interactions,
    n: usize,
    threads: usize,
) -> HashMap<MemberId, Vec<Scored>> {
    let users = &model.user_factors;
    let items = &model.item_factors;
    let members = users.members();
    let next = Mutex::new(0usize);
    const BLOCK: usize = 64;
    let work = || {
        let mut out = Vec::new();
        let mut excluded = Vec::new();
        loop {
            let start = {
                let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
                let start = *next;
                *next += BLOCK;
                start
            };
            if start >= members.len() {
                break;
            }
            for (row, &member) in members.iter().enumerate().skip(start).take(BLOCK) {
                excluded.clear();
                excluded.extend(
                    data.member_items(member)
                        .iter()
                        .filter_map(|&(item, _)| items.index_of(item)),
                );
                excluded.sort_unstable();
                excluded.dedup();
                out.push((member, items.top_k_excluding(users.row(row), n, &excluded)));
            }
        }
        out
    };
    let parts: Vec<Vec<(MemberId, Vec<Scored>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..threads.max(1)).map(|_| scope.spawn(work)).collect();
        let mut parts = vec![work()];
        for handle in handles {
            // A worker only panics on a bug; re-raise it here.
            parts.push(
                handle
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            );
        }
        parts
    });
    parts.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{train_als, AlsParams};
    use proptest::prelude::*;
    use reco_messages::ItemId;

    #[test]
    fn popularity_orders_by_members_then_weight_then_id() {
        let data = Interactions::from_triples([
            (MemberId(1), ItemId(50), 1.0),
            (MemberId(2), ItemId(50), 1.0),
            (MemberId(1), ItemId(40), 1.0),
            (MemberId(2), ItemId(40), 3.0),
            (MemberId(3), ItemId(30), 1.0),
            (MemberId(3), ItemId(20), 1.0),
            (MemberId(1), ItemId(10), 9.0),
            (MemberId(1), ItemId(10), 9.0), // duplicate: one member, weight 18
        ]);
        let list = popular(&data, 10);
        let ids: Vec<u64> = list.iter().map(|s| s.item.0).collect();
        assert_eq!(ids, vec![40, 50, 10, 20, 30]);
        // Shares of the 3 members.
        assert_eq!(list[0].score, 2.0 / 3.0);
        assert_eq!(list[2].score, 1.0 / 3.0);
        let top2: Vec<u64> = popular(&data, 2).iter().map(|s| s.item.0).collect();
        assert_eq!(top2, vec![40, 50]);
        assert!(popular(&data, 0).is_empty());
    }

    #[test]
    fn batch_lists_exclude_training_items_and_match_top_k() {
        let triples: Vec<_> = (0..30u64)
            .flat_map(|m| {
                (0..8u64)
                    .filter(move |i| (m + i) % 3 != 0)
                    .map(move |i| (MemberId(m), ItemId(i), 1.0))
            })
            .collect();
        let data = Interactions::from_triples(triples);
        let params = AlsParams {
            factors: 3,
            iterations: 3,
            reg: 0.5,
            ..AlsParams::default()
        };
        let model = train_als(&data, &params, "v".into(), |_| {}).unwrap();
        let lists = batch_top_n(&model, &data, 4, 3);
        assert_eq!(lists.len(), 30);
        for (&member, list) in &lists {
            let seen: Vec<ItemId> = data.member_items(member).iter().map(|p| p.0).collect();
            assert!(list.iter().all(|s| !seen.contains(&s.item)));
            let expected =
                model
                    .item_factors
                    .top_k(model.user_factors.get(member).unwrap(), 4, &seen);
            assert_eq!(list, &expected);
        }
    }

    fn lists_strategy() -> impl Strategy<Value = PrecomputedLists> {
        let scored = (any::<u64>(), -1e6f32..1e6).prop_map(|(i, s)| Scored {
            item: ItemId(i),
            score: s,
        });
        (
            ".{0,12}",
            prop::collection::vec(scored.clone(), 0..8),
            prop::collection::hash_map(
                any::<u64>().prop_map(MemberId),
                prop::collection::vec(scored, 0..5),
                0..6,
            ),
        )
            .prop_map(|(version, popular, members)| PrecomputedLists {
                computed_at_ms: (!version.is_empty()).then_some(1_700_000_000_000),
                version,
                popular,
                members,
                ..PrecomputedLists::default()
            })
    }

    proptest! {
        #[test]
        fn lists_round_trip(lists in lists_strategy()) {
            let back = PrecomputedLists::from_bytes(&lists.to_bytes()).unwrap();
            prop_assert_eq!(back, lists);
        }

        #[test]
        fn hostile_list_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = PrecomputedLists::from_bytes(&bytes);
        }

        #[test]
        fn bit_flipped_lists_are_refused(lists in lists_strategy(), bit in any::<prop::sample::Index>()) {
            let mut bytes = lists.to_bytes();
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(PrecomputedLists::from_bytes(&bytes).is_err());
        }
    }

    #[test]
    fn member_lookup_returns_the_list() {
        let mut lists = PrecomputedLists::default();
        lists.members.insert(
            MemberId(3),
            vec![Scored {
                item: ItemId(1),
                score: 0.5,
            }],
        );
        assert_eq!(lists.member(MemberId(3)).unwrap().len(), 1);
        assert!(lists.member(MemberId(4)).is_none());
    }
}
