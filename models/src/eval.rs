//! Offline evaluation: a reproducible per-member train/test split and the
//! usual top-k ranking metrics, so model changes (and the fold-in path) are
//! judged on numbers rather than anecdotes.

use crate::Rating;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use reco_messages::{ItemId, MemberId};
use std::collections::{BTreeMap, HashSet};

/// Per-member random split into (train, test).
///
/// Members with at least `min_interactions` ratings have their ratings
/// shuffled and `round(test_fraction * n)` of them (at least 1) moved to
/// test; members with fewer stay entirely in train (they still inform the
/// item factors). The shuffle of each member uses a ChaCha8 stream derived
/// from `seed` and the member id, so a member's split does not depend on who
/// else is in the data. Output is grouped by ascending member id.
pub fn split_per_member(
    ratings: &[Rating],
    test_fraction: f64,
    min_interactions: usize,
    seed: u64,
) -> (Vec<Rating>, Vec<Rating>) {
    let mut by_member: BTreeMap<MemberId, Vec<Rating>> = BTreeMap::new();
    for r in ratings {
        by_member.entry(r.member).or_default().push(*r);
    }
    let fraction = if test_fraction.is_finite() {
        test_fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut train = Vec::with_capacity(ratings.len());
    let mut test = Vec::new();
    for (member, mut list) in by_member {
        if list.len() < min_interactions.max(1) {
            train.extend(list);
            continue;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(member.0);
        list.shuffle(&mut rng);
        let n_test = ((fraction * list.len() as f64).round() as usize).clamp(1, list.len());
        test.extend_from_slice(&list[..n_test]);
        train.extend_from_slice(&list[n_test..]);
    }
    (train, test)
}

/// Ranking quality at k, averaged over the members that have test items.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Precision@k: hits / k (a list shorter than k is not rewarded).
    pub precision: f64,
    /// Recall@k: hits / |test items| (the standard definition; a member with
    /// more than k test items cannot reach 1).
    pub recall: f64,
    /// NDCG@k with binary relevance; the ideal DCG places
    /// `min(k, |test items|)` hits at the top.
    pub ndcg: f64,
    /// Hit rate@k: share of members with at least one hit.
    pub hit_rate: f64,
    /// Members evaluated.
    pub members: usize,
}

/// Hits and NDCG@k (binary relevance) of one ranked list: only the first `k`
/// items count, a duplicate counts once, and the ideal DCG places
/// `min(k, relevant_count)` hits at the top (NDCG 0 when nothing is
/// relevant). The one NDCG of reco: offline evaluation and the simulator's
/// quality judge both use it.
pub fn ndcg_at_k(
    ranked: impl IntoIterator<Item = ItemId>,
    k: usize,
    relevant_count: usize,
    is_relevant: impl Fn(&ItemId) -> bool,
) -> (usize, f64) {
    let discount = |rank: usize| 1.0 / ((rank + 2) as f64).log2();
    let mut counted = HashSet::new();
    let mut hits = 0usize;
    let mut dcg = 0.0;
    for (rank, item) in ranked.into_iter().take(k).enumerate() {
        if is_relevant(&item) && counted.insert(item) {
            hits += 1;
            dcg += discount(rank);
        }
    }
    let ideal: f64 = (0..k.min(relevant_count)).map(discount).sum();
    (hits, if ideal > 0.0 { dcg / ideal } else { 0.0 })
}

/// Scores a recommender on held-out ratings: `recommend(member)` returns its
/// ranked items (only the first `k` count, duplicates count once) for each
/// member with test ratings, in ascending member order.
pub fn evaluate(
    test: &[Rating],
    k: usize,
    mut recommend: impl FnMut(MemberId) -> Vec<ItemId>,
) -> Metrics {
    let mut relevant: BTreeMap<MemberId, HashSet<ItemId>> = BTreeMap::new();
    for r in test {
        relevant.entry(r.member).or_default().insert(r.item);
    }
    let members = relevant.len();
    if members == 0 || k == 0 {
        return Metrics {
            members,
            ..Metrics::default()
        };
    }
    let mut sum = Metrics::default();
    for (member, items) in &relevant {
        let (hits, ndcg) = ndcg_at_k(recommend(*member), k, items.len(), |item| {
            items.contains(item)
        });
        sum.precision += hits as f64 / k as f64;
        sum.recall += hits as f64 / items.len() as f64;
        sum.ndcg += ndcg;
        sum.hit_rate += f64::from(u8::from(hits > 0));
    }
    let n = members as f64;
    Metrics {
        precision: sum.precision / n,
        recall: sum.recall / n,
        ndcg: sum.ndcg / n,
        hit_rate: sum.hit_rate / n,
        members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rating(member: u64, item: u64) -> Rating {
        Rating {
            member: MemberId(member),
            item: ItemId(item),
            value: 1.0,
            at_ms: 0,
        }
    }

    #[test]
    fn split_is_reproducible_and_respects_fraction_and_minimum() {
        let ratings: Vec<Rating> = (0..10)
            .map(|i| rating(1, i))
            .chain((0..3).map(|i| rating(2, i)))
            .collect();
        let (train, test) = split_per_member(&ratings, 0.2, 5, 42);
        assert_eq!(test.len(), 2);
        assert!(test.iter().all(|r| r.member == MemberId(1)));
        assert_eq!(train.len(), 11);
        assert_eq!(
            split_per_member(&ratings, 0.2, 5, 42),
            (train.clone(), test.clone())
        );
        let (_, other) = split_per_member(&ratings, 0.2, 5, 43);
        assert_ne!(other, test, "a different seed should pick other items");
        // At least one test item even when the fraction rounds to zero.
        let (_, tiny) = split_per_member(&ratings, 0.01, 1, 42);
        assert_eq!(tiny.len(), 2);
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        // Member 1: test {1, 2}; recommends [1, 9, 2] at k=3 -> 2 hits at ranks 0 and 2.
        // Member 2: test {5}; recommends [7, 8] -> no hit.
        let test = vec![rating(1, 1), rating(1, 2), rating(2, 5)];
        let m = evaluate(&test, 3, |member| match member.0 {
            1 => vec![ItemId(1), ItemId(9), ItemId(2), ItemId(3)],
            _ => vec![ItemId(7), ItemId(8)],
        });
        let ndcg1 = (1.0 + 0.5) / (1.0 + 1.0 / 3f64.log2());
        assert_eq!(m.members, 2);
        assert!((m.precision - (2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!((m.recall - 0.5).abs() < 1e-12);
        assert!((m.ndcg - ndcg1 / 2.0).abs() < 1e-12);
        assert!((m.hit_rate - 0.5).abs() < 1e-12);
    }

    #[test]
    fn duplicate_recommendations_count_once_and_k_zero_is_zero() {
        let test = vec![rating(1, 1)];
        let m = evaluate(&test, 2, |_| vec![ItemId(1), ItemId(1)]);
        assert!((m.precision - 0.5).abs() < 1e-12);
        assert!((m.ndcg - 1.0).abs() < 1e-12);
        assert_eq!(evaluate(&test, 0, |_| vec![ItemId(1)]).precision, 0.0);
        assert_eq!(evaluate(&[], 10, |_| vec![]).members, 0);
    }
}
