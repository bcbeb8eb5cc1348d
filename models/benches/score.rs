//! The hot kernel of the request path, `ItemFactors::top_k`, against the
//! memory-bandwidth floor of reading the same factor matrix once.
//!
//! For 10k, 100k and 1M items at 64 factors, one group per size holds
//! `top_k(user, 10, &[])` (the AVX2 + FMA kernel where the processor has
//! it), `top_k_portable` (the same scan on the portable kernel),
//! `one_row_at_a_time` (the kernel `top_k` had
//! before rows were scored in blocks: one 16-lane dot product per row, the
//! same bounded heap), eight members scored one scan each and in one batched
//! pass (`top_k_batch`), and a plain sum of every f32 of the same matrix; all
//! report `Throughput::Bytes` of the matrix, so their ratio is how far
//! scoring is from a pure streaming read.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reco_messages::ItemId;
use reco_models::{ItemFactors, Query};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
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

/// The previous kernel, kept as a same-run baseline: one dot product per
/// row (16 independent lanes, then a pairwise reduction) and a bounded heap.
fn one_row_at_a_time(factors: &[f32], user: &[f32], k: usize) -> Vec<(usize, f32)> {
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; 16];
        for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
            for l in 0..16 {
                acc[l] += x[l] * y[l];
            }
        }
        let mut width = 8;
        while width > 0 {
            for l in 0..width {
                acc[l] += acc[l + width];
            }
            width /= 2;
        }
        acc[0]
    }
    let mut heap: BinaryHeap<Kept> = BinaryHeap::with_capacity(k + 1);
    let mut threshold = f32::NEG_INFINITY;
    for (index, row) in factors.chunks_exact(user.len()).enumerate() {
        let score = dot(user, row);
        if heap.len() == k && score <= threshold {
            continue;
        }
        if heap.len() == k {
            heap.pop();
        }
        heap.push(Kept(score, index));
        if heap.len() == k {
            threshold = heap.peek().map_or(f32::NEG_INFINITY, |e| e.0);
        }
    }
    heap.into_sorted_vec()
        .into_iter()
        .map(|Kept(s, i)| (i, s))
        .collect()
}

/// A kept (score, row); the heap's top is the worst one.
struct Kept(f32, usize);

impl Ord for Kept {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Kept {}

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
        group.bench_function(BenchmarkId::new("top_k_portable", 10), |b| {
            b.iter(|| black_box(model.top_k_portable(black_box(&user), 10)))
        });
        group.bench_function(BenchmarkId::new("one_row_at_a_time", 10), |b| {
            b.iter(|| {
                black_box(one_row_at_a_time(
                    black_box(model.factors()),
                    black_box(&user),
                    10,
                ))
            })
        });
        // Eight members: one pass for all of them vs. one scan each.
        let users: Vec<Vec<f32>> = (0..8)
            .map(|_| (0..DIM).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
            .collect();
        let queries: Vec<Query<'_>> = users
            .iter()
            .map(|user| Query {
                user,
                k: 10,
                exclude: &[],
            })
            .collect();
        group.bench_function(BenchmarkId::new("eight_members_each", 10), |b| {
            b.iter(|| {
                for q in &queries {
                    black_box(model.top_k(black_box(q.user), 10, &[]));
                }
            })
        });
        group.bench_function(BenchmarkId::new("eight_members_batch", 10), |b| {
            b.iter(|| black_box(model.top_k_batch(black_box(&queries))))
        });
        group.bench_function("read_baseline", |b| {
            b.iter(|| black_box(sum_all(black_box(model.factors()))))
        });
        group.finish();
    }
}

criterion_group!(benches, score);
criterion_main!(benches);
