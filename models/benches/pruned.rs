//! Cluster-pruned scoring against the exact scan, in one run: recall@10 of
//! the pruned top 10 against the exact top 10, and the time per request of
//! both kernels side by side.
//!
//! Two catalogues:
//! - `ml_latest_small`: the item factors `reco train` learns from
//!   data/ml-latest-small (default ALS parameters, clusters as `reco train`
//!   makes them), queried with every trained member's vector, leaving out
//!   the member's rated items as serving does;
//! - `synthetic_1m`: 1,000,000 items of 64 factors from
//!   `reco_models::kmeans::synthetic_catalogue` (1,024 taste topics,
//!   log-normal norms), 1,000 clusters, queried with 500 member vectors.
//!
//! Before timing, each catalogue prints recall@10 and the share of items
//! read for several probe counts (the default, `DEFAULT_PROBES`, among
//! them). Then one criterion group per catalogue times `exact` (the
//! serving kernel, `Scan::Exact`) and `pruned` (`Scan::Pruned` with the
//! default probes) over the same queries, one request at a time.
//!
//! `cargo bench -p reco-models --bench pruned` (measurement times are short
//! on purpose: compare the two lines of one run, not runs).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use reco_messages::{ItemId, MemberId};
use reco_models::kmeans::{synthetic_catalogue, KMeansParams, DEFAULT_PROBES};
use reco_models::{parse_ratings, train_als, AlsParams, Interactions, ItemFactors, Scan};
use std::hint::black_box;
use std::io::BufReader;
use std::time::{Duration, Instant};

const RATINGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/ml-latest-small/ratings.csv"
);

const K: usize = 10;

/// A catalogue and its queries (user vector, exclusions).
struct Case {
    name: &'static str,
    model: ItemFactors,
    queries: Vec<(Vec<f32>, Vec<ItemId>)>,
}

fn movielens() -> Case {
    let file = std::fs::File::open(RATINGS).unwrap_or_else(|e| panic!("open {RATINGS}: {e}"));
    let ratings = parse_ratings(BufReader::new(file)).expect("ratings.csv parses");
    let data = Interactions::from_triples(ratings.iter().map(|r| (r.member, r.item, 1.0)));
    let trained = train_als(&data, &AlsParams::default(), "bench".into(), |_| {}).expect("trains");
    let model = trained.item_factors.clustered(&KMeansParams::default());
    let users = &trained.user_factors;
    let queries = users
        .members()
        .iter()
        .enumerate()
        .map(|(i, &m): (usize, &MemberId)| {
            let seen = data.member_items(m).iter().map(|p| p.0).collect();
            (users.row(i).to_vec(), seen)
        })
        .collect();
    Case {
        name: "ml_latest_small",
        model,
        queries,
    }
}

fn synthetic(items: usize) -> Case {
    let dim = 64;
    let (factors, users) = synthetic_catalogue(items, 500, dim, 1024, 11);
    let ids = (0..items as u64).map(ItemId).collect();
    let started = Instant::now();
    let model = ItemFactors::new("bench".into(), dim, ids, factors, 1.0, 1.0)
        .expect("valid model")
        .clustered(&KMeansParams::default());
    eprintln!(
        "synthetic {items}: {} clusters in {:.1} s",
        model.clusters(),
        started.elapsed().as_secs_f64()
    );
    Case {
        name: "synthetic_1m",
        model,
        queries: users.into_iter().map(|u| (u, Vec::new())).collect(),
    }
}

/// Mean recall@K of `scan` against the exact answers (`exact`, by query).
fn recall(case: &Case, exact: &[Vec<reco_models::Scored>], scan: Scan) -> f64 {
    let mut total = 0.0;
    for ((user, exclude), exact) in case.queries.iter().zip(exact) {
        let pruned = case.model.top_k_with(user, K, exclude, scan);
        let hits = pruned
            .iter()
            .filter(|s| exact.iter().any(|e| e.item == s.item))
            .count();
        total += hits as f64 / exact.len().max(1) as f64;
    }
    total / case.queries.len().max(1) as f64
}

fn run(c: &mut Criterion, case: &Case) {
    let clusters = case.model.clusters();
    let exact: Vec<_> = case
        .queries
        .iter()
        .map(|(user, exclude)| case.model.top_k(user, K, exclude))
        .collect();
    for probes in [4, 8, 16, 24, 32, 48, DEFAULT_PROBES, 96] {
        if probes > clusters {
            break;
        }
        let r = recall(case, &exact, Scan::Pruned { probes });
        eprintln!(
            "{}: {} items, {clusters} clusters, probes {probes:>3}: recall@{K} {r:.4} (~{:.1} % of items read)",
            case.name,
            case.model.len(),
            100.0 * probes as f64 / clusters as f64
        );
    }
    let mut group = c.benchmark_group(format!("pruned_{}", case.name));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let mut at = 0;
    group.bench_function(BenchmarkId::new("exact", K), |b| {
        b.iter(|| {
            at = (at + 1) % case.queries.len();
            let (user, exclude) = &case.queries[at];
            black_box(case.model.top_k(black_box(user), K, exclude))
        })
    });
    let scan = Scan::Pruned {
        probes: DEFAULT_PROBES,
    };
    group.bench_function(BenchmarkId::new("pruned", DEFAULT_PROBES), |b| {
        b.iter(|| {
            at = (at + 1) % case.queries.len();
            let (user, exclude) = &case.queries[at];
            black_box(case.model.top_k_with(black_box(user), K, exclude, scan))
        })
    });
    group.finish();
}

fn pruned(c: &mut Criterion) {
    run(c, &movielens());
    run(c, &synthetic(1_000_000));
}

criterion_group!(benches, pruned);
criterion_main!(benches);
