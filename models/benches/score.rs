//! The hot kernel of the request path, `ItemFactors::top_k`, against the
//! memory-bandwidth floor of reading the same factor matrix once.
//!
//! For 10k, 100k and 1M items at 64 factors, one group per size holds
//! `top_k(user, 10, &[])` and a plain sum of every f32 of the same matrix;
//! both report `Throughput::Bytes` of the matrix, so their ratio is how far
//! scoring is from a pure streaming read.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reco_messages::ItemId;
use reco_models::ItemFactors;
use std::hint::black_box;
use std::time::Duration;

const DIM: usize = 64;

fn model(len: usize) -> ItemFactors {
    let mut rng = ChaCha8Rng::seed_from_u64(len as u64);
    let factors = (0..len * DIM)
        .map(|_| rng.gen_range(-0.1f32..0.1))
        .collect();
    let items = (0..len as u64).map(ItemId).collect();
    ItemFactors::new("bench".into(), DIM, items, factors, 1.0, 1.0).expect("valid model")
}

/// The bandwidth baseline: sum every value, with independent lanes so the
/// adds are not the bottleneck.
fn sum_all(values: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for chunk in values.chunks_exact(16) {
        for l in 0..16 {
            acc[l] += chunk[l];
        }
    }
    acc.iter().sum()
}

fn score(c: &mut Criterion) {
    for len in [10_000usize, 100_000, 1_000_000] {
        let model = model(len);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let user: Vec<f32> = (0..DIM).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let mut group = c.benchmark_group(format!("score_{len}_items"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3))
            .throughput(Throughput::Bytes((model.factors().len() * 4) as u64));
        group.bench_function(BenchmarkId::new("top_k", 10), |b| {
            b.iter(|| black_box(model.top_k(black_box(&user), 10, &[])))
        });
        group.bench_function("read_baseline", |b| {
            b.iter(|| black_box(sum_all(black_box(model.factors()))))
        });
        group.finish();
    }
}

criterion_group!(benches, score);
criterion_main!(benches);
