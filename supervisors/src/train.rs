//! `reco train`: the offline job. Learns item factors with implicit ALS and
//! batch-computes the precomputed lists (per-member top-N and popular), then
//! writes them as a model directory that `reco serve --model` loads.

use crate::artifacts;
use anyhow::Context as _;
use reco_models::{AlsParams, Interactions, PrecomputedLists};
use std::io::BufReader;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Options of one training run.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The ratings CSV (MovieLens format).
    pub ratings: PathBuf,
    /// Where to write the model directory.
    pub out: PathBuf,
    /// ALS hyper-parameters.
    pub params: AlsParams,
    /// Length of each member's precomputed list.
    pub top_n: usize,
    /// Length of the popular list.
    pub popular_n: usize,
    /// Model version; derived from the clock when absent.
    pub version: Option<String>,
}

/// What a training run produced.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    /// Version written.
    pub version: String,
    /// Members in the data.
    pub members: usize,
    /// Items in the model.
    pub items: usize,
    /// Interactions trained on.
    pub interactions: usize,
    /// Seconds spent in ALS.
    pub als_seconds: f64,
    /// Seconds spent in total.
    pub total_seconds: f64,
}

/// Trains and writes the model directory, reporting progress on stderr.
pub fn run(options: &TrainOptions) -> anyhow::Result<TrainSummary> {
    let started = Instant::now();
    let file = std::fs::File::open(&options.ratings)
        .with_context(|| format!("cannot open ratings file {}", options.ratings.display()))?;
    let ratings = reco_models::parse_ratings(BufReader::new(file))
        .with_context(|| format!("ratings file {} is invalid", options.ratings.display()))?;
    anyhow::ensure!(
        !ratings.is_empty(),
        "ratings file {} has no ratings",
        options.ratings.display()
    );
    // Every rating is an interaction: having watched a title says more about
    // taste than the stars given to it.
    let data = Interactions::from_triples(ratings.iter().map(|r| (r.member, r.item, 1.0)));
    eprintln!(
        "Read {} ratings: {} members, {} items.",
        ratings.len(),
        data.num_members(),
        data.num_items()
    );
    let version = options.version.clone().unwrap_or_else(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("als-{secs}")
    });
    let als_started = Instant::now();
    let model = reco_models::train_als(&data, &options.params, version.clone(), |p| {
        eprintln!(
            "ALS iteration {}/{} ({:.1} s)",
            p.iteration,
            p.iterations,
            p.elapsed.as_secs_f64()
        );
    })
    .context("training failed")?;
    let als_seconds = als_started.elapsed().as_secs_f64();
    let lists = PrecomputedLists {
        version: version.clone(),
        popular: reco_models::popular(&data, options.popular_n),
        members: reco_models::batch_top_n(&model, &data, options.top_n, options.params.threads),
    };
    artifacts::save(&options.out, &model.item_factors, &lists)?;
    let summary = TrainSummary {
        version,
        members: data.num_members(),
        items: model.item_factors.len(),
        interactions: data.nnz(),
        als_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    eprintln!(
        "Wrote model {} ({} items, {} member lists) to {} in {:.1} s (ALS {:.1} s).",
        summary.version,
        summary.items,
        lists.members.len(),
        options.out.display(),
        summary.total_seconds,
        summary.als_seconds
    );
    Ok(summary)
}
