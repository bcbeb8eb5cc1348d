//! The rows' kernels against top picks on the same model (10k items, 64
//! factors, the size of MovieLens small): `top_k(user, 10)` (the whole
//! catalogue, the scan kernel), `top_k_within` over a genre-sized 40% of
//! the catalogue (the genre and new rows) and `similar` (the `because:` row,
//! cosine over the whole catalogue). Run:
//! `cargo bench -p reco-models --bench rows`.

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reco_messages::ItemId;
use reco_models::rows::{similar, top_k_within};
use reco_models::ItemFactors;
use std::hint::black_box;
use std::time::Duration;

const DIM: usize = 64;
const ITEMS: usize = 10_000;

fn rows(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let factors = (0..ITEMS * DIM)
        .map(|_| rng.gen_range(-0.1f32..0.1))
        .collect();
    let ids: Vec<ItemId> = (0..ITEMS as u64).map(ItemId).collect();
    let model = ItemFactors::new("bench".into(), DIM, ids.clone(), factors, 1.0, 1.0).unwrap();
    let user: Vec<f32> = (0..DIM).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let genre: Vec<ItemId> = ids.iter().copied().filter(|_| rng.gen_bool(0.4)).collect();
    let mut group = c.benchmark_group("rows_10k_items");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("top_k_catalogue", |b| {
        b.iter(|| black_box(model.top_k(black_box(&user), 10, &[])))
    });
    group.bench_function("top_k_within_genre_40pct", |b| {
        b.iter(|| black_box(top_k_within(&model, black_box(&user), &genre, 10, &[])))
    });
    group.bench_function("similar_cosine", |b| {
        b.iter(|| black_box(similar(&model, black_box(ItemId(260)), 10, &[])))
    });
    group.finish();
}

criterion_group!(benches, rows);
criterion_main!(benches);
