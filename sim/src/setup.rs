//! Model directories for synthetic worlds, written with `reco_models` so a
//! node can serve a world it has never seen.
//!
//! Two recipes: [`train_world_model`] trains ALS on a simulated past, so the
//! node's model, precomputed lists and popular list are as good as the data
//! allows and quality comparisons between sources mean something; and
//! [`latent_model`] serves the world's own latent vectors as item factors
//! (no training: the benchmark needs a 10k x 64 model in seconds, not a good
//! one).

use crate::world::World;
use anyhow::{Context, Result};
use reco_messages::{ItemId, MemberId};
use reco_models::{
    popular, train_als, AlsParams, Interactions, ItemFactors, PrecomputedLists, Scored,
};
use std::path::Path;

/// How to train a world's model.
#[derive(Clone, Debug)]
pub struct TrainPlan {
    /// Members `1..=history_members` have a past.
    pub history_members: u64,
    /// Plays per member in that past.
    pub history_plays: usize,
    /// Members `1..=list_members` get a precomputed list; the others fall
    /// back to the popular list.
    pub list_members: u64,
    /// Plays of a member's past its precomputed list is computed from: the
    /// lists are yesterday's, from a thinner profile than the model sees
    /// live, as in production.
    pub list_plays: usize,
    /// ALS factors.
    pub factors: usize,
    /// ALS iterations.
    pub iterations: usize,
    /// Version tag of the artifacts.
    pub version: String,
    /// Items left out of the past (titles launched after training: the
    /// model does not know them).
    pub held_out: Vec<ItemId>,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Trained {
    /// Items the model can score.
    pub items: usize,
    /// Members with a precomputed list.
    pub lists: usize,
}

/// Trains ALS on the world's past and writes `model.bin` + `lists.bin` to `dir`.
pub fn train_world_model(world: &World, dir: &Path, plan: &TrainPlan) -> Result<Trained> {
    let mut history = world.history(plan.history_members, plan.history_plays);
    history.retain(|(_, item, _)| !plan.held_out.contains(item));
    let mut by_member: std::collections::BTreeMap<MemberId, Vec<ItemId>> =
        std::collections::BTreeMap::new();
    for &(member, item, _) in &history {
        by_member.entry(member).or_default().push(item);
    }
    let data = Interactions::from_triples(history);
    let params = AlsParams {
        factors: plan.factors,
        iterations: plan.iterations,
        reg: 1.0,
        alpha: 5.0,
        seed: world.config().seed,
        threads: 2,
        ..AlsParams::default()
    };
    let model = train_als(&data, &params, plan.version.clone(), |_| {})
        .context("cannot train the world's model")?;
    let items = &model.item_factors;
    let mut members = std::collections::HashMap::new();
    for (member, plays) in &by_member {
        if member.0 > plan.list_members {
            continue;
        }
        let profile: Vec<(ItemId, f32)> = plays
            .iter()
            .take(plan.list_plays)
            .map(|&i| (i, 1.0))
            .collect();
        let Some(user) = items.fold_in(&profile) else {
            continue;
        };
        let mut seen: Vec<ItemId> = plays.clone();
        seen.sort_unstable();
        seen.dedup();
        members.insert(*member, items.top_k(&user, 100, &seen));
    }
    let lists = PrecomputedLists {
        version: plan.version.clone(),
        popular: popular(&data, 500),
        members,
        computed_at_ms: None,
        ..PrecomputedLists::default()
    }
    .computed_now();
    let clustered = model
        .item_factors
        .clone()
        .clustered(&reco_models::KMeansParams::default());
    reco_offline::artifacts::save(dir, &clustered, &lists)
        .context("cannot write the model directory")?;
    Ok(Trained {
        items: model.item_factors.len(),
        lists: lists.members.len(),
    })
}

/// Writes the world's latent vectors as the model (popular list by the
/// world's popularity, no precomputed lists) to `dir`.
pub fn latent_model(world: &World, dir: &Path, version: &str) -> Result<()> {
    let catalogue = world.catalogue();
    let model = ItemFactors::new(
        version.to_owned(),
        catalogue.dim(),
        catalogue.ids().to_vec(),
        catalogue.vectors().to_vec(),
        0.1,
        1.0,
    )
    .context("the world's catalogue is not a valid model")?
    // Clustered as `reco train` clusters, so a node can scan it pruned.
    .clustered(&reco_models::KMeansParams::default());
    let mut order: Vec<usize> = (0..catalogue.len()).collect();
    order.sort_by(|&a, &b| {
        catalogue
            .popularity(b)
            .total_cmp(&catalogue.popularity(a))
            .then(a.cmp(&b))
    });
    let popular = order
        .into_iter()
        .take(500)
        .map(|i| Scored {
            item: catalogue.ids()[i],
            score: (catalogue.popularity(i) * 1e6) as f32,
        })
        .collect();
    let lists = PrecomputedLists {
        version: version.to_owned(),
        popular,
        members: std::collections::HashMap::<MemberId, Vec<Scored>>::new(),
        computed_at_ms: None,
        ..PrecomputedLists::default()
    }
    .computed_now();
    reco_offline::artifacts::save(dir, &model, &lists).context("cannot write the model directory")
}
