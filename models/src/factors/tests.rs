use super::*;
use proptest::prelude::*;

fn model(len: usize, dim: usize, seed: u64) -> ItemFactors {
    // A small deterministic generator is enough here; scores in [-1, 1].
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let factors = (0..len * dim)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let items = (0..len as u64).map(|i| ItemId(i * 3 + 1)).collect();
    ItemFactors::new("v1".into(), dim, items, factors, 0.5, 2.0).unwrap()
}

/// The obvious implementation top_k must agree with.
fn naive_top_k(m: &ItemFactors, user: &[f32], k: usize, exclude: &[ItemId]) -> Vec<Scored> {
    let mut all: Vec<(usize, f32)> = (0..m.len())
        .filter(|&i| !exclude.contains(&m.item_at(i)))
        .map(|i| (i, top_k::score_dot(user, m.row(i))))
        .filter(|(_, s)| !s.is_nan())
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.into_iter()
        .take(k)
        .map(|(i, score)| Scored {
            item: m.item_at(i),
            score,
        })
        .collect()
}

#[test]
fn new_rejects_invalid_parts() {
    let ok = |dim, items: Vec<u64>, factors: Vec<f32>| {
        ItemFactors::new(
            "v".into(),
            dim,
            items.into_iter().map(ItemId).collect(),
            factors,
            1.0,
            1.0,
        )
    };
    assert!(matches!(
        ok(0, vec![], vec![]),
        Err(ModelError::Dim { dim: 0 })
    ));
    assert!(matches!(
        ok(1025, vec![], vec![]),
        Err(ModelError::Dim { .. })
    ));
    assert!(matches!(
        ok(2, vec![1], vec![1.0]),
        Err(ModelError::Length {
            expected: 2,
            found: 1,
            ..
        })
    ));
    assert!(matches!(
        ok(1, vec![1, 2], vec![1.0, f32::INFINITY]),
        Err(ModelError::NonFinite { index: 1 })
    ));
    assert!(matches!(
        ok(1, vec![4, 4], vec![1.0, 2.0]),
        Err(ModelError::DuplicateId { id: 4 })
    ));
    let bad_reg = ItemFactors::new("v".into(), 1, vec![ItemId(1)], vec![1.0], 0.0, 1.0);
    assert!(matches!(bad_reg, Err(ModelError::Params { .. })));
    let empty = ok(4, vec![], vec![]).unwrap();
    assert!(empty.is_empty());
    assert!(empty.top_k(&[0.0; 4], 10, &[]).is_empty());
    assert!(empty.fold_in(&[(ItemId(1), 1.0)]).is_none());
}

#[test]
fn accessors_describe_the_rows() {
    let m = model(5, 3, 1);
    assert_eq!((m.len(), m.dim(), m.version()), (5, 3, "v1"));
    assert_eq!(m.index_of(ItemId(7)), Some(2));
    assert_eq!(m.index_of(ItemId(8)), None);
    assert_eq!(m.item_at(2), ItemId(7));
    assert_eq!(m.row(2), &m.factors()[6..9]);
    let user = [1.0, 0.5, -0.5];
    assert_eq!(
        m.score(&user, ItemId(7)),
        Some(top_k::score_dot(&user, m.row(2)))
    );
    assert_eq!(m.score(&user, ItemId(8)), None);
    assert_eq!(m.score(&[1.0], ItemId(7)), None);
}

#[test]
fn top_k_edge_cases() {
    let m = model(20, 8, 3);
    let user = vec![0.3f32; 8];
    assert!(m.top_k(&user, 0, &[]).is_empty());
    assert_eq!(m.top_k(&user, 100, &[]).len(), 20);
    assert_eq!(
        m.top_k(&user, 100, &[ItemId(1), ItemId(1), ItemId(999)])
            .len(),
        19
    );
    assert!(
        m.top_k(&[1.0; 7], 5, &[]).is_empty(),
        "wrong user length scores nothing"
    );
    // Ties: all-equal scores come back by ascending row index.
    let zero = m.top_k(&[0.0; 8], 5, &[ItemId(4)]);
    let ids: Vec<u64> = zero.iter().map(|s| s.item.0).collect();
    assert_eq!(ids, vec![1, 7, 10, 13, 16]);
}

#[test]
fn fold_in_ignores_unknown_items_and_bad_weights_and_sums_duplicates() {
    let m = model(30, 4, 9);
    assert!(m.fold_in(&[]).is_none());
    assert!(
        m.fold_in(&[(ItemId(2), 1.0)]).is_none(),
        "unknown item only"
    );
    assert!(m
        .fold_in(&[(ItemId(1), 0.0), (ItemId(4), f32::NAN)])
        .is_none());
    let base = m.fold_in(&[(ItemId(1), 2.0), (ItemId(4), 1.0)]).unwrap();
    let noisy = m
        .fold_in(&[
            (ItemId(4), 1.0),
            (ItemId(2), 5.0),
            (ItemId(1), 1.5),
            (ItemId(7), -1.0),
            (ItemId(1), 0.5),
        ])
        .unwrap();
    for (a, b) in base.iter().zip(&noisy) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[test]
fn artifact_round_trip_is_exact() {
    let m = model(50, 7, 5);
    let bytes = m.to_bytes();
    let back = ItemFactors::from_bytes(&bytes).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.gram, m.gram);
    assert_eq!(back.to_bytes(), bytes);
    let user = [0.1f32; 7];
    assert_eq!(back.top_k(&user, 5, &[]), m.top_k(&user, 5, &[]));
}

#[test]
fn reg_exponent_survives_the_artifact_and_zero_keeps_the_old_layout() {
    let plain = model(20, 4, 3);
    let scaled = plain.clone().with_reg_exponent(0.4).unwrap();
    assert_ne!(plain, scaled);
    assert_eq!(scaled.to_bytes().len(), plain.to_bytes().len() + 4);
    let back = ItemFactors::from_bytes(&scaled.to_bytes()).unwrap();
    assert_eq!(back, scaled);
    assert_eq!(back.reg_exponent(), 0.4);
    assert_eq!(
        ItemFactors::from_bytes(&plain.to_bytes())
            .unwrap()
            .reg_exponent(),
        0.0
    );
    assert!(plain.clone().with_reg_exponent(-0.1).is_err());
    assert!(plain.with_reg_exponent(f32::NAN).is_err());
    // Fold-in applies the stored exponent: a different penalty, a different vector.
    let items = [(scaled.item_at(0), 1.0), (scaled.item_at(1), 2.0)];
    assert_ne!(
        back.fold_in(&items).unwrap(),
        model(20, 4, 3).fold_in(&items).unwrap()
    );
}

#[test]
fn artifact_errors_are_specific() {
    let bytes = model(4, 2, 5).to_bytes();
    assert!(matches!(
        ItemFactors::from_bytes(b"nope"),
        Err(ArtifactError::BadMagic { .. })
    ));
    assert!(matches!(
        ItemFactors::from_bytes(&bytes[..30]),
        Err(ArtifactError::Truncated { .. })
    ));
    let mut lists = crate::PrecomputedLists::default().to_bytes();
    assert!(matches!(
        ItemFactors::from_bytes(&lists),
        Err(ArtifactError::BadMagic { .. })
    ));
    lists[0] = b'X';
    let mut corrupt = bytes.clone();
    corrupt[40] ^= 1;
    assert!(matches!(
        ItemFactors::from_bytes(&corrupt),
        Err(ArtifactError::ChecksumMismatch { .. })
    ));
    // A well-sealed body that lies about its size is malformed, not a panic.
    let mut body = Vec::new();
    body.extend_from_slice(&4u32.to_le_bytes());
    body.extend_from_slice(&u64::MAX.to_le_bytes());
    body.extend_from_slice(&[0; 12]);
    let sealed = artifact::seal(MAGIC, &body);
    assert!(matches!(
        ItemFactors::from_bytes(&sealed),
        Err(ArtifactError::Malformed(_))
    ));
    // A well-formed body describing an invalid model is Invalid.
    let bad = ItemFactors {
        reg: -1.0,
        ..model(2, 2, 1)
    };
    assert!(matches!(
        ItemFactors::from_bytes(&bad.to_bytes()),
        Err(ArtifactError::Invalid(ModelError::Params { .. }))
    ));
}

proptest! {
    #[test]
    fn a_batch_answers_each_query_as_top_k_alone(
        len in 1usize..90,
        dim in 1usize..20,
        seed in any::<u64>(),
        users in proptest::collection::vec((proptest::collection::vec(-1.0f32..1.0, 20), 0usize..12, proptest::collection::vec(0u64..300, 0..6)), 0..7),
    ) {
        let m = model(len, dim, seed);
        let owned: Vec<(Vec<f32>, usize, Vec<ItemId>)> = users
            .into_iter()
            .enumerate()
            .map(|(n, (u, k, ex))| {
                // One query in five has the wrong length: it scores nothing.
                let width = if n % 5 == 4 { dim + 1 } else { dim };
                (u[..width.min(20)].to_vec(), k, ex.into_iter().map(ItemId).collect())
            })
            .collect();
        let queries: Vec<Query<'_>> = owned
            .iter()
            .map(|(user, k, exclude)| Query { user, k: *k, exclude })
            .collect();
        let batch = m.top_k_batch(&queries);
        prop_assert_eq!(batch.len(), queries.len());
        for (q, got) in queries.iter().zip(&batch) {
            prop_assert_eq!(got, &m.top_k(q.user, q.k, q.exclude));
        }
    }

    #[test]
    fn top_k_matches_a_naive_sort(
        len in 0usize..200,
        dim in 1usize..40,
        seed in any::<u64>(),
        k in 0usize..250,
        user_seed in any::<u64>(),
        exclude in prop::collection::vec(0u64..700, 0..30),
    ) {
        let m = model(len, dim, seed);
        let user: Vec<f32> = model(1, dim, user_seed).factors().to_vec();
        let exclude: Vec<ItemId> = exclude.into_iter().map(ItemId).collect();
        prop_assert_eq!(m.top_k(&user, k, &exclude), naive_top_k(&m, &user, k, &exclude));
    }

    #[test]
    fn top_k_breaks_ties_by_lower_index(len in 1usize..100, k in 1usize..120, levels in 1u8..4) {
        // Few distinct scores, many ties.
        let factors: Vec<f32> = (0..len).map(|i| f32::from((i * 7 % 5) as u8 % levels)).collect();
        let items = (0..len as u64).map(ItemId).collect();
        let m = ItemFactors::new("t".into(), 1, items, factors, 1.0, 1.0).unwrap();
        prop_assert_eq!(m.top_k(&[1.0], k, &[]), naive_top_k(&m, &[1.0], k, &[]));
    }

    #[test]
    fn artifacts_round_trip(len in 0usize..40, dim in 1usize..20, seed in any::<u64>(), version in ".{0,16}") {
        let mut m = model(len, dim, seed);
        m.version = version;
        prop_assert_eq!(ItemFactors::from_bytes(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn hostile_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = ItemFactors::from_bytes(&bytes);
    }

    #[test]
    fn hostile_bytes_behind_a_valid_prefix_never_panic(tail in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut bytes = model(3, 2, 1).to_bytes()[..20].to_vec();
        bytes.extend_from_slice(&tail);
        let _ = ItemFactors::from_bytes(&bytes);
        // And with a correct seal around arbitrary bodies.
        let _ = ItemFactors::from_bytes(&artifact::seal(MAGIC, &tail));
    }

    #[test]
    fn bit_flipped_artifacts_are_refused(seed in any::<u64>(), bit in any::<prop::sample::Index>()) {
        let mut bytes = model(6, 3, seed).to_bytes();
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(ItemFactors::from_bytes(&bytes).is_err());
    }
}

#[test]
fn the_fused_and_portable_kernels_agree_up_to_rounding() {
    let m = model(997, 64, 11);
    let mut state = 7u64;
    for _ in 0..20 {
        let user: Vec<f32> = (0..64)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        let fast = m.top_k(&user, 25, &[]);
        let portable = m.top_k_portable(&user, 25);
        assert_eq!(fast.len(), portable.len());
        // Position by position (near-ties may swap items, not scores).
        for (a, b) in fast.iter().zip(&portable) {
            assert!(
                (a.score - b.score).abs() <= 1e-4 * (1.0 + a.score.abs()),
                "{a:?} vs {b:?}"
            );
        }
        // And each score is the one score() gives that item.
        for s in &fast {
            assert_eq!(m.score(&user, s.item), Some(s.score));
        }
    }
}

#[test]
fn member_history_survives_the_artifact_and_old_artifacts_still_load() {
    use crate::{Interactions, MemberHistory};
    let plain = model(20, 4, 3).with_reg_exponent(0.4).unwrap();
    // An artifact written before member history existed.
    let old = plain.to_bytes();
    let loaded = ItemFactors::from_bytes(&old).unwrap();
    assert!(loaded.history().is_none());
    assert!(!loaded.knows_member(MemberId(1)));
    assert!(loaded.history_items(MemberId(1)).is_empty());
    // Rows follow the model's items: history over items 1, 4, 7 ... (rows 0, 1, 2).
    let data = Interactions::from_triples([
        (MemberId(1), plain.item_at(0), 1.0),
        (MemberId(1), plain.item_at(2), 0.5),
        (MemberId(2), plain.item_at(1), 1.0),
    ]);
    let with = plain
        .clone()
        .with_history(MemberHistory::from_interactions(&data))
        .unwrap();
    let bytes = with.to_bytes();
    let back = ItemFactors::from_bytes(&bytes).unwrap();
    assert_eq!(back, with);
    assert_ne!(back, loaded);
    assert_eq!(
        back.history_items(MemberId(1)),
        vec![plain.item_at(0), plain.item_at(2)],
    );
    // Cut inside the history section: refused, never a panic.
    for cut in [old.len() - 8, old.len() - 4, bytes.len() - 12] {
        let mut body = bytes[..cut].to_vec();
        body.extend_from_slice(&bytes[bytes.len() - 8..]);
        assert!(ItemFactors::from_bytes(&body).is_err());
    }
}

#[test]
fn a_trained_members_reply_excludes_its_history_and_folds_it_in() {
    use crate::{train_als, AlsParams, Interactions};
    // Two taste groups; member 0 knows items 0..4 of group A.
    let mut triples = Vec::new();
    for m in 0..20u64 {
        let base = if m < 10 { 0 } else { 10 };
        for i in base..base + 8 {
            if m == 0 && i >= 5 {
                continue;
            }
            triples.push((MemberId(m), ItemId(i), 1.0));
        }
    }
    let data = Interactions::from_triples(triples);
    let params = AlsParams {
        factors: 4,
        iterations: 10,
        reg: 0.1,
        alpha: 10.0,
        reg_exponent: 0.0,
        seed: 7,
        threads: 1,
        cg_steps: 0,
    };
    let trained = train_als(&data, &params, "v".into(), |_| {}).unwrap();
    let model = ItemFactors::from_bytes(&trained.item_factors.to_bytes()).unwrap();
    let member = MemberId(0);
    assert!(model.knows_member(member));
    let history = model.history_items(member);
    assert_eq!(history, (0..5).map(ItemId).collect::<Vec<_>>());
    // No recent event: the trained vector, ranked without the history.
    let user = model.fold_in_member(member, &[], 1.0).unwrap();
    for (a, b) in user.iter().zip(trained.user_factors.get(member).unwrap()) {
        assert!((a - b).abs() < 1e-3);
    }
    let top = model.top_k(&user, 3, &history);
    assert!(top.iter().all(|s| !history.contains(&s.item)));
    assert!(top.iter().all(|s| (5..8).contains(&s.item.0)), "{top:?}");
    // An unknown member folds in from its recent events alone.
    let stranger = model
        .fold_in_member(MemberId(99), &[(ItemId(12), 1.0)], 1.0)
        .unwrap();
    assert_eq!(stranger, model.fold_in(&[(ItemId(12), 1.0)]).unwrap());
    assert!(model.fold_in_member(MemberId(99), &[], 1.0).is_none());
}

/// `m` with its rows spread over `clusters` clusters by a seeded hash (the
/// exactness properties hold for any assignment, good or bad).
fn with_some_clusters(m: ItemFactors, clusters: u32, seed: u64) -> ItemFactors {
    let assignment = (0..m.len() as u64)
        .map(|r| ((r.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed) % u64::from(clusters)) as u32)
        .collect();
    m.with_clusters(assignment).unwrap()
}

proptest! {
    #[test]
    fn pruned_with_every_probe_and_exact_on_clusters_equal_the_exact_scan(
        len in 1usize..150,
        dim in 1usize..24,
        seed in any::<u64>(),
        clusters in 1u32..20,
        k in 1usize..30,
        exclude in prop::collection::vec(0u64..450, 0..10),
        ties in any::<bool>(),
    ) {
        let plain = if ties {
            // Few distinct scores: ties must resolve by row, whatever order the
            // clustered layout reads rows in.
            let factors = (0..len * dim).map(|i| f32::from((i * 7 % 3) as u8)).collect();
            let items = (0..len as u64).map(|i| ItemId(i * 3 + 1)).collect();
            ItemFactors::new("t".into(), dim, items, factors, 1.0, 1.0).unwrap()
        } else {
            model(len, dim, seed)
        };
        let clustered = with_some_clusters(plain.clone(), clusters.min(len as u32), seed);
        let user: Vec<f32> = model(1, dim, seed ^ 1).factors().to_vec();
        let exclude: Vec<ItemId> = exclude.into_iter().map(ItemId).collect();
        let exact = plain.top_k(&user, k, &exclude);
        prop_assert_eq!(&clustered.top_k(&user, k, &exclude), &exact);
        let all = Scan::Pruned { probes: clustered.clusters() };
        prop_assert_eq!(&clustered.top_k_with(&user, k, &exclude, all), &exact);
        // A model without clusters scans exactly whatever is asked.
        prop_assert_eq!(&plain.top_k_with(&user, k, &exclude, Scan::Pruned { probes: 1 }), &exact);
        // Fewer probes: as many items as the exact scan (a short answer is
        // scanned exactly), still best first, no excluded item.
        let one = clustered.top_k_with(&user, k, &exclude, Scan::Pruned { probes: 1 });
        prop_assert_eq!(one.len(), exact.len());
        prop_assert!(one.windows(2).all(|w| w[0].score >= w[1].score));
        prop_assert!(one.iter().all(|s| !exclude.contains(&s.item)));
    }

    #[test]
    fn clustered_artifacts_round_trip(len in 1usize..60, dim in 1usize..12, seed in any::<u64>(), clusters in 1u32..9) {
        let m = with_some_clusters(model(len, dim, seed), clusters.min(len as u32), seed);
        let back = ItemFactors::from_bytes(&m.to_bytes()).unwrap();
        prop_assert_eq!(back.cluster_assignment(), m.cluster_assignment());
        prop_assert_eq!(&back, &m);
        let user = vec![0.3f32; dim];
        let scan = Scan::Pruned { probes: 1 };
        prop_assert_eq!(back.top_k_with(&user, 5, &[], scan), m.top_k_with(&user, 5, &[], scan));
    }
}

#[test]
fn clusters_are_validated_and_old_artifacts_load_and_score_exactly() {
    let m = model(30, 4, 9);
    assert!(matches!(
        m.clone().with_clusters(vec![0; 29]),
        Err(ModelError::Clusters(_))
    ));
    assert!(matches!(
        m.clone().with_clusters((0..30).map(|r| r + 1).collect()),
        Err(ModelError::Clusters(_))
    ));
    // An artifact written before clusters existed: no section, exact scans.
    let old = ItemFactors::from_bytes(&m.to_bytes()).unwrap();
    assert_eq!(old.clusters(), 0);
    let user = [0.2f32, -0.1, 0.4, 0.05];
    let pruned = old.top_k_with(&user, 7, &[], Scan::Pruned { probes: 1 });
    assert_eq!(pruned, m.top_k(&user, 7, &[]));
    // A cluster section naming a cluster out of range is refused.
    let clustered = with_some_clusters(m, 3, 1);
    let bytes = clustered.to_bytes();
    let body = artifact::open(MAGIC, "item factors", &bytes).unwrap();
    let mut body = body.to_vec();
    let last = body.len() - 4;
    body[last..].copy_from_slice(&7u32.to_le_bytes());
    assert!(matches!(
        ItemFactors::from_bytes(&artifact::seal(MAGIC, &body)),
        Err(ArtifactError::Malformed(_))
    ));
    // A section this build does not know is refused, not skipped.
    let mut body = artifact::open(MAGIC, "item factors", &bytes)
        .unwrap()
        .to_vec();
    let at = body.len() - 4 - 4 - 30 * 4;
    body[at..at + 4].copy_from_slice(b"XXXX");
    assert!(matches!(
        ItemFactors::from_bytes(&artifact::seal(MAGIC, &body)),
        Err(ArtifactError::Malformed(_))
    ));
}

/// The recall bound on a synthetic catalogue with the shape of trained
/// factors: the default probe count finds at least 98 % of the exact top 10.
#[test]
fn pruned_recall_at_10_is_at_least_0_98_on_a_synthetic_catalogue() {
    let (dim, items) = (32, 40_000);
    let (factors, users) = crate::kmeans::synthetic_catalogue(items, 200, dim, 128, 5);
    let ids = (0..items as u64).map(ItemId).collect();
    let m = ItemFactors::new("s".into(), dim, ids, factors, 1.0, 1.0)
        .unwrap()
        .clustered(&crate::KMeansParams::default());
    assert_eq!(m.clusters(), 200);
    let scan = Scan::Pruned {
        probes: crate::kmeans::DEFAULT_PROBES,
    };
    let mut hits = 0;
    for user in &users {
        let exact = m.top_k(user, 10, &[]);
        let pruned = m.top_k_with(user, 10, &[], scan);
        hits += pruned
            .iter()
            .filter(|s| exact.iter().any(|e| e.item == s.item))
            .count();
    }
    let recall = hits as f64 / (users.len() * 10) as f64;
    assert!(recall >= 0.98, "recall@10 {recall}");
}
