//! Replay evaluation: does the online path beat what a batch-only system
//! shows, on the next thing each member actually chose?
//!
//! Protocol (pure, deterministic):
//! 1. **Temporal split** ([`temporal_split`]): each member's ratings in time
//!    order (ties in input order); the first `train_fraction` train the
//!    model, the rest are replayed. Members with fewer than `min_ratings`
//!    ratings only train.
//! 2. **Replay**: for each member, for each replayed rating in order: *ask*
//!    (every recommender gives its top `k`), score a hit if the rating's item
//!    is in the list (HR@k) and its discounted rank (NDCG@k with one relevant
//!    item); then *rate* (the event joins the member's recent events).
//! 3. **Recommenders**, all from the same trained model:
//!    - `online`: fold-in over history ∪ the last `recent_events` replayed
//!      events ([`crate::ItemFactors::fold_in_member`] under a
//!      [`FoldInPolicy`]), excluding history and recent items — what reco's
//!      model answers;
//!    - `recent_only`: fold-in over the recent events alone (reco before
//!      the history was in the artifact), its precomputed list while it has
//!      no event;
//!    - `static_top`: the member's top `k` from its trained vector, fixed
//!      for the whole replay — what a batch-only system shows;
//!    - `static_unseen`: the member's precomputed list without the items
//!      replayed so far — reco's fallback;
//!    - `popular`: most popular training items not yet seen.
//!
//! Figures are micro-averaged over replay steps (each next item counts
//! once).

use crate::confidence::event_weight;
use crate::{
    popular, train_als, AlsParams, FoldInPolicy, Interactions, ItemFactors, Rating, Scored,
    TrainError, TrainedModel,
};
use reco_messages::{EventKind, ItemId, MemberId};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What [`prepare`] and [`replay`] need to know.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// Share of each member's ratings (in time order) that trains.
    pub train_fraction: f64,
    /// Members with fewer ratings are not replayed (they only train).
    pub min_ratings: usize,
    /// List length (HR@k, NDCG@k).
    pub k: usize,
    /// Recent events remembered per member (the session's ring).
    pub recent_events: usize,
    /// ALS hyper-parameters of the trained model.
    pub params: AlsParams,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            train_fraction: 0.8,
            min_ratings: 5,
            k: 10,
            recent_events: 50,
            params: AlsParams::default(),
        }
    }
}

/// Next-item quality of one recommender over a replay.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NextItem {
    /// Share of asks whose list held the next item.
    pub hit_rate: f64,
    /// Mean of `1 / log2(rank + 2)` of the next item (0 when absent).
    pub ndcg: f64,
}

/// The figures of one replay.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReplayReport {
    /// Members replayed.
    pub members: usize,
    /// Asks (replayed ratings).
    pub steps: usize,
    /// History ∪ recent fold-in (reco's model replies).
    pub online: NextItem,
    /// Recent events alone (reco before member history).
    pub recent_only: NextItem,
    /// Fixed top-k of the trained vector (batch only).
    pub static_top: NextItem,
    /// Precomputed list minus what was replayed (reco's fallback).
    pub static_unseen: NextItem,
    /// Popularity minus what was seen.
    pub popular: NextItem,
}

impl ReplayReport {
    /// The recommenders with their names, in the order above.
    pub fn named(&self) -> [(&'static str, &NextItem); 5] {
        [
            ("online", &self.online),
            ("recent_only", &self.recent_only),
            ("static_top", &self.static_top),
            ("static_unseen", &self.static_unseen),
            ("popular", &self.popular),
        ]
    }
}

/// Splits each member's ratings in time order: the first `train_fraction`
/// (at least one, and at least one left) train, the rest are replayed, in
/// time order. Members with fewer than `min_ratings` ratings only train.
pub fn temporal_split(
    ratings: &[Rating],
    train_fraction: f64,
    min_ratings: usize,
) -> (Vec<Rating>, Vec<Rating>) {
    let mut by_member: BTreeMap<MemberId, Vec<Rating>> = BTreeMap::new();
    for r in ratings {
        by_member.entry(r.member).or_default().push(*r);
    }
    let fraction = if train_fraction.is_finite() {
        train_fraction.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let mut train = Vec::with_capacity(ratings.len());
    let mut test = Vec::new();
    for (_, mut list) in by_member {
        // Stable: ties keep the input order.
        list.sort_by_key(|r| r.at_ms);
        if list.len() < min_ratings.max(2) {
            train.extend(list);
            continue;
        }
        let n_train = ((fraction * list.len() as f64).round() as usize).clamp(1, list.len() - 1);
        test.extend_from_slice(&list[n_train..]);
        train.extend_from_slice(&list[..n_train]);
    }
    (train, test)
}

/// A trained model and the ratings to replay.
#[derive(Debug)]
pub struct Prepared {
    /// The model trained on the first part of every member.
    pub model: TrainedModel,
    /// Its training interactions.
    pub data: Interactions,
    /// Replayed ratings per member, in time order.
    pub replay: BTreeMap<MemberId, Vec<Rating>>,
    /// Popularity over the training data (whole catalogue).
    pub popular: Vec<Scored>,
}

/// Splits `ratings` ([`temporal_split`]) and trains the model on the first
/// part, every rating weighted by [`event_weight`] as a `rate` event.
///
/// # Errors
/// [`TrainError`] when training fails (no data, bad parameters).
pub fn prepare(ratings: &[Rating], options: &ReplayOptions) -> Result<Prepared, TrainError> {
    let (train, test) = temporal_split(ratings, options.train_fraction, options.min_ratings);
    let data = Interactions::from_triples(
        train
            .iter()
            .map(|r| (r.member, r.item, event_weight(EventKind::Rate, r.value))),
    );
    let model = train_als(&data, &options.params, "replay".into(), |_| {})?;
    let mut replay: BTreeMap<MemberId, Vec<Rating>> = BTreeMap::new();
    for r in test {
        replay.entry(r.member).or_default().push(r);
    }
    let popular = popular(&data, data.num_items());
    Ok(Prepared {
        model,
        data,
        replay,
        popular,
    })
}

/// Hit and discounted gain of `next` in the first `k` of `list`.
fn score(list: &[ItemId], next: ItemId, k: usize) -> (f64, f64) {
    match list.iter().take(k).position(|&i| i == next) {
        Some(rank) => (1.0, 1.0 / ((rank + 2) as f64).log2()),
        None => (0.0, 0.0),
    }
}

/// Sums of (hit, gain) per recommender, in [`ReplayReport::named`] order.
type Sums = [(f64, f64); 5];

/// Replays every member of `prepared` under `policy` (see the module).
/// Runs on `threads` threads (at least one); the result does not depend on
/// their number beyond floating-point summation order.
pub fn replay(
    prepared: &Prepared,
    options: &ReplayOptions,
    policy: &FoldInPolicy,
    threads: usize,
) -> ReplayReport {
    let members: Vec<(&MemberId, &Vec<Rating>)> = prepared.replay.iter().collect();
    let next = Mutex::new(0usize);
    let totals = Mutex::new(([(0.0, 0.0); 5], 0usize));
    let work = || {
        let mut sums: Sums = [(0.0, 0.0); 5];
        let mut steps = 0;
        loop {
            let at = {
                let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                *n += 1;
                *n - 1
            };
            let Some(&(member, ratings)) = members.get(at) else {
                break;
            };
            steps += replay_member(prepared, options, policy, *member, ratings, &mut sums);
        }
        let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
        for (total, s) in t.0.iter_mut().zip(sums) {
            total.0 += s.0;
            total.1 += s.1;
        }
        t.1 += steps;
    };
    std::thread::scope(|scope| {
        for _ in 1..threads.max(1) {
            scope.spawn(work);
        }
        work();
    });
    let (sums, steps) = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    let n = steps.max(1) as f64;
    let m = |i: usize| NextItem {
        hit_rate: sums[i].0 / n,
        ndcg: sums[i].1 / n,
    };
    ReplayReport {
        members: members.len(),
        steps,
        online: m(0),
        recent_only: m(1),
        static_top: m(2),
        static_unseen: m(3),
        popular: m(4),
    }
}

/// Replays one member; adds to `sums` and returns its steps.
fn replay_member(
    prepared: &Prepared,
    options: &ReplayOptions,
    policy: &FoldInPolicy,
    member: MemberId,
    ratings: &[Rating],
    sums: &mut Sums,
) -> usize {
    let items: &ItemFactors = &prepared.model.item_factors;
    let k = options.k;
    let history = items.history_items(member);
    let ids = |list: Vec<Scored>| -> Vec<ItemId> { list.into_iter().map(|s| s.item).collect() };
    let trained = prepared.model.user_factors.get(member);
    // The precomputed list: long enough to stay k long after the replay's
    // items are removed from it.
    let precomputed: Vec<ItemId> = trained
        .map(|u| ids(items.top_k(u, k + ratings.len(), &history)))
        .unwrap_or_default();
    let static_top: Vec<ItemId> = precomputed.iter().take(k).copied().collect();
    let mut replayed: Vec<ItemId> = Vec::new();
    let mut recent: Vec<(ItemId, f32, u64)> = Vec::new();
    for r in ratings {
        let now = r.at_ms;
        let window = &recent[recent.len().saturating_sub(options.recent_events.max(1))..];
        let pairs: Vec<(ItemId, f32)> = window
            .iter()
            .map(|&(item, w, at)| (item, policy.recent_weight(w, now.saturating_sub(at))))
            .collect();
        let ring: Vec<ItemId> = window.iter().map(|e| e.0).collect();
        let mut exclude = history.clone();
        exclude.extend_from_slice(&ring);
        let unseen = |list: &[ItemId]| -> Vec<ItemId> {
            list.iter()
                .filter(|i| !replayed.contains(i))
                .take(k)
                .copied()
                .collect()
        };
        let fallback = unseen(&precomputed);
        let online = match items.fold_in_member(member, &pairs, policy.history_weight) {
            Some(user) => ids(items.top_k(&user, k, &exclude)),
            None => fallback.clone(),
        };
        let recent_only = match items.fold_in(&pairs) {
            Some(user) => ids(items.top_k(&user, k, &ring)),
            None => fallback.clone(),
        };
        let popular: Vec<ItemId> = prepared
            .popular
            .iter()
            .map(|s| s.item)
            .filter(|i| !history.contains(i) && !replayed.contains(i))
            .take(k)
            .collect();
        let lists = [&online, &recent_only, &static_top, &fallback, &popular];
        for (sum, list) in sums.iter_mut().zip(lists) {
            let (hit, gain) = score(list, r.item, k);
            sum.0 += hit;
            sum.1 += gain;
        }
        replayed.push(r.item);
        recent.push((r.item, event_weight(EventKind::Rate, r.value), r.at_ms));
    }
    ratings.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rating(member: u64, item: u64, at: u64) -> Rating {
        Rating {
            member: MemberId(member),
            item: ItemId(item),
            value: 4.0,
            at_ms: at,
        }
    }

    #[test]
    fn the_split_is_by_time_per_member() {
        let ratings = vec![
            rating(1, 10, 50),
            rating(1, 11, 10),
            rating(1, 12, 30),
            rating(1, 13, 20),
            rating(1, 14, 40),
            rating(2, 20, 1),
            rating(2, 21, 2),
        ];
        let (train, test) = temporal_split(&ratings, 0.8, 5);
        let items = |v: &[Rating]| v.iter().map(|r| r.item.0).collect::<Vec<_>>();
        assert_eq!(items(&train), vec![11, 13, 12, 14, 20, 21]);
        assert_eq!(items(&test), vec![10]);
    }

    #[test]
    fn the_online_fold_in_follows_a_member_who_changes_taste() {
        // Two taste groups; members 0..20 trained on group A only; member
        // 0 then switches to group B in the replay: the online path, which
        // sees the new events, hits group B; the static list cannot.
        let mut ratings = Vec::new();
        for m in 1..20u64 {
            let base = if m < 10 { 0 } else { 20 };
            for (t, i) in (base..base + 8).enumerate() {
                ratings.push(rating(m, i, t as u64));
            }
        }
        for (t, i) in [0u64, 1, 2, 3, 4, 20, 21, 22, 23, 24].iter().enumerate() {
            ratings.push(rating(0, *i, t as u64));
        }
        let options = ReplayOptions {
            train_fraction: 0.5,
            min_ratings: 9,
            k: 3,
            recent_events: 50,
            params: AlsParams {
                factors: 4,
                iterations: 10,
                reg: 0.1,
                alpha: 10.0,
                reg_exponent: 0.0,
                seed: 7,
                threads: 1,
                cg_steps: 0,
            },
        };
        let prepared = prepare(&ratings, &options).unwrap();
        assert_eq!(prepared.replay.len(), 1);
        let policy = FoldInPolicy {
            recent_boost: 4.0,
            ..FoldInPolicy::default()
        };
        let report = replay(&prepared, &options, &policy, 2);
        assert_eq!(report.steps, 5);
        assert!(
            report.online.hit_rate > report.static_top.hit_rate,
            "{report:?}"
        );
    }
}
