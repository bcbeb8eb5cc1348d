//! Replay evaluation on MovieLens ml-latest-small (see `reco_models::replay`):
//! per-member temporal split (first 80 % train), then each member's other
//! ratings replayed in time order (ask, then rate), next-item HR@10 and
//! NDCG@10 of the online fold-in (history ∪ recent), the same without
//! history, the static top-10 of the same model, the precomputed list
//! without replayed items, and popularity.
//!
//! ```text
//! cargo run --release -p reco-models --example replay -- [ratings.csv] [history_weight recent_boost half_life_hours ...]
//! ```
//! Policies are given as triples (half-life 0: no decay); without any, a
//! small grid is run.

use reco_models::replay::{prepare, replay, ReplayOptions};
use reco_models::{parse_ratings, FoldInPolicy};
use std::io::BufReader;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let path = if args.first().is_some_and(|a| a.ends_with(".csv")) {
        args.remove(0)
    } else {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../data/ml-latest-small/ratings.csv"
        )
        .to_owned()
    };
    let numbers: Vec<f64> = args
        .iter()
        .map(|a| a.parse::<f64>())
        .collect::<Result<_, _>>()?;
    let policies: Vec<FoldInPolicy> = if numbers.is_empty() {
        vec![
            FoldInPolicy::NEUTRAL,
            FoldInPolicy {
                recent_boost: 8.0,
                half_life_ms: None,
                ..FoldInPolicy::default()
            },
            FoldInPolicy::default(),
        ]
    } else {
        numbers
            .chunks_exact(3)
            .map(|c| FoldInPolicy {
                history_weight: c[0] as f32,
                recent_boost: c[1] as f32,
                half_life_ms: (c[2] > 0.0).then(|| (c[2] * 3_600_000.0) as u64),
                ..FoldInPolicy::default()
            })
            .collect()
    };
    let ratings = parse_ratings(BufReader::new(std::fs::File::open(&path)?))?;
    let options = ReplayOptions::default();
    let started = Instant::now();
    let prepared = prepare(&ratings, &options)?;
    let history = prepared
        .model
        .item_factors
        .history()
        .map_or(0, |h| h.encoded_len());
    println!(
        "{} ratings; trained on {} ({} members x {} items) in {:.1} s; model artifact {} bytes of which member history {} bytes",
        ratings.len(),
        prepared.data.nnz(),
        prepared.data.num_members(),
        prepared.data.num_items(),
        started.elapsed().as_secs_f64(),
        prepared.model.item_factors.to_bytes().len(),
        history,
    );
    for policy in policies {
        let started = Instant::now();
        let report = replay(&prepared, &options, &policy, 2);
        println!(
            "\npolicy {policy:?}: {} members, {} asks, {:.1} s",
            report.members,
            report.steps,
            started.elapsed().as_secs_f64()
        );
        println!(
            "{:<14} {:>8} {:>9} {:>10}",
            "recommender", "HR@10", "NDCG@10", "HR/static"
        );
        for (name, m) in report.named() {
            println!(
                "{name:<14} {:>8.4} {:>9.4} {:>10.2}",
                m.hit_rate,
                m.ndcg,
                m.hit_rate / report.static_top.hit_rate
            );
        }
    }
    Ok(())
}
