//! Offline quality of every tier that can answer a request: the model, the
//! nearline fold-in, the precomputed lists and the popular list, each scored
//! with [`crate::eval::evaluate`] on the same held-out ratings.
//!
//! The serving path falls back from one tier to the next, so each tier's own
//! quality matters: a fallback that is much worse than the model makes every
//! late reply a bad one.

use crate::eval::{evaluate, Metrics};
use crate::{Interactions, PrecomputedLists, Rating, TrainedModel};
use reco_messages::ItemId;

/// Ranking quality at k of each tier, on the same test ratings.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TierMetrics {
    /// The trained user vectors (what the batch job knows about a member).
    pub model: Metrics,
    /// User vectors folded in from each member's training interactions
    /// against the frozen item factors (what the online path computes).
    pub nearline: Metrics,
    /// The member's precomputed list; the popular list for members without
    /// one (as serving does).
    pub precomputed: Metrics,
    /// The popular list, the last resort.
    pub popular: Metrics,
}

impl TierMetrics {
    /// The tiers with their wire names (`Source` values), in fallback order.
    pub fn named(&self) -> [(&'static str, &Metrics); 4] {
        [
            ("model", &self.model),
            ("nearline", &self.nearline),
            ("precomputed", &self.precomputed),
            ("popular", &self.popular),
        ]
    }
}

/// Scores every tier at `k` over the full catalogue, excluding each member's
/// training items (`train`, the data the model was trained on), on the
/// held-out `test` ratings.
///
/// A member the model does not know gets an empty model and nearline list
/// (a miss): serving would answer it from a fallback, which the other tiers
/// measure.
pub fn evaluate_tiers(
    model: &TrainedModel,
    lists: &PrecomputedLists,
    train: &Interactions,
    test: &[Rating],
    k: usize,
) -> TierMetrics {
    let items = &model.item_factors;
    let seen = |m| -> Vec<ItemId> { train.member_items(m).iter().map(|p| p.0).collect() };
    let ids = |list: Vec<crate::Scored>| list.into_iter().map(|s| s.item).collect();
    let model_metrics = evaluate(test, k, |m| match model.user_factors.get(m) {
        Some(user) => ids(items.top_k(user, k, &seen(m))),
        None => Vec::new(),
    });
    let nearline = evaluate(test, k, |m| match items.fold_in(&train.member_items(m)) {
        Some(user) => ids(items.top_k(&user, k, &seen(m))),
        None => Vec::new(),
    });
    let popular_for = |m| -> Vec<ItemId> {
        let ex = seen(m);
        lists
            .popular
            .iter()
            .map(|s| s.item)
            .filter(|i| !ex.contains(i))
            .take(k)
            .collect()
    };
    let precomputed = evaluate(test, k, |m| match lists.member(m) {
        Some(list) => list.iter().take(k).map(|s| s.item).collect(),
        None => popular_for(m),
    });
    let popular = evaluate(test, k, popular_for);
    TierMetrics {
        model: model_metrics,
        nearline,
        precomputed,
        popular,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{batch_top_n, popular, train_als, AlsParams};
    use reco_messages::MemberId;

    #[test]
    fn every_tier_is_scored_on_the_same_members() {
        // Two taste groups; each member's held-out item is the group item it
        // lacks in training.
        let mut train = Vec::new();
        let mut test = Vec::new();
        for m in 0..20u64 {
            let base = if m < 10 { 0 } else { 5 };
            for i in base..base + 5 {
                let r = Rating {
                    member: MemberId(m),
                    item: ItemId(i),
                    value: 1.0,
                    at_ms: 0,
                };
                if i == base + m % 5 {
                    test.push(r);
                } else {
                    train.push((r.member, r.item, 1.0));
                }
            }
        }
        let data = Interactions::from_triples(train);
        let params = AlsParams {
            factors: 2,
            iterations: 10,
            reg: 1.0,
            alpha: 10.0,
            reg_exponent: 0.0,
            seed: 7,
            threads: 1,
            cg_steps: 0,
        };
        let model = train_als(&data, &params, "v".into(), |_| {}).unwrap();
        let lists = PrecomputedLists {
            version: "v".into(),
            popular: popular(&data, 10),
            members: batch_top_n(&model, &data, 5, 1),
            computed_at_ms: None,
            ..PrecomputedLists::default()
        };
        let tiers = evaluate_tiers(&model, &lists, &data, &test, 1);
        for (name, m) in tiers.named() {
            assert_eq!(m.members, 20, "{name}");
        }
        assert_eq!(tiers.model.hit_rate, 1.0);
        assert_eq!(tiers.precomputed, tiers.model);
        assert!((tiers.nearline.precision - tiers.model.precision).abs() < 1e-9);
        assert!(tiers.popular.precision < tiers.model.precision);
    }
}
