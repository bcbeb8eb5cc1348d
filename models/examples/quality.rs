//! Offline quality of the models on MovieLens ml-latest-small.
//!
//! Splits the ratings per member (20 % test, members with >= 5 ratings,
//! seed 42), trains ALS on every training rating as a binary interaction,
//! and prints P/R/NDCG/HR@10 over the full catalogue (training items
//! excluded) for: the trained user factors, user vectors folded in from each
//! member's training items, and popularity.
//!
//! ```text
//! cargo run --release -p reco-models --example quality -- [ratings.csv] [reg alpha [factors iterations]]
//! ```

use reco_models::eval::{evaluate, split_per_member, Metrics};
use reco_models::{parse_ratings, popular, train_als, AlsParams, Interactions};
use std::collections::HashMap;
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
    let mut params = AlsParams::default();
    let mut numbers = args.iter().map(|a| a.parse::<f64>());
    if let Some(reg) = numbers.next() {
        params.reg = reg? as f32;
    }
    if let Some(alpha) = numbers.next() {
        params.alpha = alpha? as f32;
    }
    if let Some(factors) = numbers.next() {
        params.factors = factors? as usize;
    }
    if let Some(iterations) = numbers.next() {
        params.iterations = iterations? as usize;
    }

    let ratings = parse_ratings(BufReader::new(std::fs::File::open(&path)?))?;
    let (train, test) = split_per_member(&ratings, 0.2, 5, 42);
    let data = Interactions::from_triples(train.iter().map(|r| (r.member, r.item, 1.0)));
    println!(
        "{} ratings: {} train ({} members x {} items), {} test",
        ratings.len(),
        train.len(),
        data.num_members(),
        data.num_items(),
        test.len()
    );
    println!("{params:?}");

    let started = Instant::now();
    let model = train_als(&data, &params, "quality".into(), |_| {})?;
    let trained_in = started.elapsed();
    println!("trained in {:.2} s", trained_in.as_secs_f64());

    let k = 10;
    let seen: HashMap<_, Vec<_>> = data
        .members()
        .iter()
        .map(|&m| (m, data.member_items(m)))
        .collect();
    let exclude = |m| -> Vec<_> {
        seen.get(&m)
            .map(|s| s.iter().map(|p| p.0).collect())
            .unwrap_or_default()
    };
    let items = &model.item_factors;

    let als = evaluate(&test, k, |m| match model.user_factors.get(m) {
        Some(user) => items
            .top_k(user, k, &exclude(m))
            .iter()
            .map(|s| s.item)
            .collect(),
        None => Vec::new(),
    });
    let started = Instant::now();
    let folded = evaluate(&test, k, |m| {
        let history = seen.get(&m).map(Vec::as_slice).unwrap_or_default();
        match items.fold_in(history) {
            Some(user) => items
                .top_k(&user, k, &exclude(m))
                .iter()
                .map(|s| s.item)
                .collect(),
            None => Vec::new(),
        }
    });
    let fold_time = started.elapsed();
    let pop = popular(&data, data.num_items());
    let popularity = evaluate(&test, k, |m| {
        let ex = exclude(m);
        pop.iter()
            .map(|s| s.item)
            .filter(|i| !ex.contains(i))
            .take(k)
            .collect()
    });
    report("ALS (trained users)", &als);
    report("ALS (fold-in users)", &folded);
    report("popularity", &popularity);
    println!(
        "fold-in + top-10 per member: {:.1} us",
        fold_time.as_secs_f64() * 1e6 / folded.members.max(1) as f64
    );
    Ok(())
}

fn report(name: &str, m: &Metrics) {
    println!(
        "{name:<22} P@10 {:.4}  R@10 {:.4}  NDCG@10 {:.4}  HR@10 {:.4}  ({} members)",
        m.precision, m.recall, m.ndcg, m.hit_rate, m.members
    );
}
