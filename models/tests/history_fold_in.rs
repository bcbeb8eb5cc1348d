//! History-aware fold-in on MovieLens ml-latest-small: a trained member who
//! then plays one new film gets, from the served model, the user vector
//! batch ALS would give it with that play added.
//!
//! Batch ALS retrains the item factors too, so vectors of two trainings are
//! compared through what they do: the cosine of their score vectors over
//! the whole catalogue (`Y_a u_a` against `Y_b u_b`), which does not depend
//! on how each training happened to orient its factor space.

use reco_messages::{EventKind, ItemId, MemberId};
use reco_models::confidence::event_weight;
use reco_models::{parse_ratings, train_als, AlsParams, Interactions, ItemFactors};
use std::collections::HashSet;
use std::io::BufReader;

const RATINGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/ml-latest-small/ratings.csv"
);

/// Cosine of the catalogue-wide score vectors of two (model, user) pairs,
/// over the items both models know.
fn score_cosine(a: &ItemFactors, ua: &[f32], b: &ItemFactors, ub: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for &item in a.items() {
        let (Some(sa), Some(sb)) = (a.score(ua, item), b.score(ub, item)) else {
            continue;
        };
        let (sa, sb) = (f64::from(sa), f64::from(sb));
        dot += sa * sb;
        na += sa * sa;
        nb += sb * sb;
    }
    dot / (na.sqrt() * nb.sqrt())
}

#[test]
fn one_new_play_folds_in_close_to_batch_als_with_the_play_added() {
    let file = std::fs::File::open(RATINGS).unwrap_or_else(|e| panic!("open {RATINGS}: {e}"));
    let ratings = parse_ratings(BufReader::new(file)).expect("ratings.csv parses");
    let weight = |r: &reco_models::Rating| event_weight(EventKind::Rate, r.value);
    let triples: Vec<(MemberId, ItemId, f32)> = ratings
        .iter()
        .map(|r| (r.member, r.item, weight(r)))
        .collect();
    let before = Interactions::from_triples(triples.clone());
    let params = AlsParams::default();
    let served = train_als(&before, &params, "before".into(), |_| {}).expect("trains");

    // Every 10th member plays (40 minutes) the most popular film it has not
    // rated.
    let popular = reco_models::popular(&before, before.num_items());
    let play = event_weight(EventKind::Play, 2400.0);
    let mut plays = Vec::new();
    for &member in before.members().iter().step_by(10) {
        let seen: HashSet<ItemId> = before.member_items(member).iter().map(|p| p.0).collect();
        let new = popular
            .iter()
            .map(|s| s.item)
            .find(|i| !seen.contains(i))
            .expect("an unseen film");
        plays.push((member, new, play));
    }
    let after = Interactions::from_triples(triples.into_iter().chain(plays.iter().copied()));
    let batch = train_als(&after, &params, "after".into(), |_| {}).expect("trains");

    let model = &served.item_factors;
    let (mut worst, mut sum, mut stale_sum) = (1.0f64, 0.0f64, 0.0f64);
    for &(member, item, w) in &plays {
        let online = model
            .fold_in_member(member, &[(item, w)], 1.0)
            .expect("a trained member folds in");
        let retrained = batch.user_factors.get(member).expect("trained");
        let cos = score_cosine(model, &online, &batch.item_factors, retrained);
        // What the node served before the play (its trained vector).
        let stale = served.user_factors.get(member).expect("trained");
        let stale_cos = score_cosine(model, stale, &batch.item_factors, retrained);
        worst = worst.min(cos);
        sum += cos;
        stale_sum += stale_cos;
    }
    let n = plays.len() as f64;
    let (mean, stale_mean) = (sum / n, stale_sum / n);
    println!(
        "{} members: score cosine with batch ALS: mean {mean:.4}, worst {worst:.4}; without the play: mean {stale_mean:.4}",
        plays.len()
    );
    assert!(worst >= 0.95, "worst cosine {worst:.4} (mean {mean:.4})");
    assert!(mean >= 0.98, "mean cosine {mean:.4}");
    // The play moved the vector towards what batch ALS learns from it:
    // measured, the distance (1 - cosine) shrinks about 6-fold.
    assert!(
        (1.0 - mean) * 3.0 < 1.0 - stale_mean,
        "{mean:.4} vs {stale_mean:.4}"
    );

    // Without the play the served model gives back each trained vector.
    for &(member, _, _) in &plays {
        let folded = model.fold_in_member(member, &[], 1.0).expect("history");
        let trained = served.user_factors.get(member).expect("trained");
        for (a, b) in folded.iter().zip(trained) {
            assert!((a - b).abs() < 1e-3, "{member}: {a} vs {b}");
        }
    }
}
