//! `reco train`: the offline job. Learns item factors with implicit ALS,
//! batch-computes the precomputed lists (per-member top-N and popular),
//! optionally scores every serving tier on held-out ratings, and writes the
//! model directory that `reco serve --model` loads (publishing to JetStream
//! is [`crate::publish`]).
//!
//! Where the ratings come from (a CSV file or the event log) is the caller's
//! business: [`run`] takes them as a slice.

use crate::artifacts;
use anyhow::Context as _;
use reco_messages::metrics as nm;
use reco_models::eval::{split_per_member, Metrics};
use reco_models::items::{first_times, RowListSizes};
use reco_models::{
    AlsParams, Catalogue, Interactions, ItemFactors, PrecomputedLists, Rating, RowLists,
    TierMetrics, TrainedModel,
};
use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Which ratings are held out to measure quality.
#[derive(Clone, Debug, PartialEq)]
pub enum Holdout {
    /// Train on everything, measure nothing.
    None,
    /// Train on all given ratings and score on these (e.g. `--test FILE`).
    Given(Vec<Rating>),
    /// Split the given ratings per member ([`split_per_member`]).
    Split {
        /// Share of each member's ratings held out (0 < f < 1).
        fraction: f64,
        /// Seed of the split.
        seed: u64,
        /// Members with fewer ratings stay entirely in training.
        min_ratings: usize,
    },
}

/// What the `value` of the ratings given to [`run`] is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RatingValues {
    /// Stars: every rating is a `rate` event, weighted by
    /// [`reco_models::confidence::event_weight`] (a MovieLens CSV).
    #[default]
    Stars,
    /// Already the interaction's weight (the event log's, see
    /// [`crate::event_log::read_interactions`]).
    Weights,
}

impl RatingValues {
    /// The training weight of `rating`.
    pub fn weight(self, rating: &Rating) -> f32 {
        match self {
            RatingValues::Stars => {
                reco_models::confidence::event_weight(reco_messages::EventKind::Rate, rating.value)
            }
            RatingValues::Weights => rating.value,
        }
    }
}

/// Options of one training run.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// ALS hyper-parameters.
    pub params: AlsParams,
    /// Length of each member's precomputed list.
    pub top_n: usize,
    /// Length of the popular list.
    pub popular_n: usize,
    /// Model version; derived from the clock when absent.
    pub version: Option<String>,
    /// Held-out ratings to measure quality on.
    pub holdout: Holdout,
    /// Cut-off of the quality metrics (P@k, R@k, NDCG@k, HR@k).
    pub k: usize,
    /// Where to write the train/test split as MovieLens CSVs (`train.csv`,
    /// `test.csv`), so other tools evaluate on exactly the same data.
    pub write_split: Option<PathBuf>,
    /// Where to write the model directory, if anywhere.
    pub out: Option<PathBuf>,
    /// What the ratings' values are (stars or weights).
    pub values: RatingValues,
    /// Item data (titles, genres; `--items movies.csv`): published with
    /// the lists, with the row fallbacks computed from it.
    pub items: Option<Catalogue>,
    /// Item clusters for the pruned scan (k-means over the item factors,
    /// stored in the model): `None` stores none, `Some(0)` about
    /// `sqrt(items)`, `Some(n)` n.
    pub clusters: Option<usize>,
}

/// What a training run produced.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    /// Version trained.
    pub version: String,
    /// Members in the training data.
    pub members: usize,
    /// Items in the model.
    pub items: usize,
    /// Interactions trained on.
    pub interactions: usize,
    /// Held-out ratings scored (0 without a holdout).
    pub test_ratings: usize,
    /// Seconds spent in ALS.
    pub als_seconds: f64,
    /// Seconds spent in total (reading excluded).
    pub total_seconds: f64,
}

/// A finished training run: the artifacts and what they are worth.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// Counts and timings.
    pub summary: TrainSummary,
    /// Quality of every tier, when ratings were held out.
    pub tiers: Option<TierMetrics>,
    /// The item factors to serve.
    pub model: ItemFactors,
    /// The precomputed lists to serve.
    pub lists: PrecomputedLists,
}

/// Reads a MovieLens ratings CSV.
pub fn read_ratings(path: &Path) -> anyhow::Result<Vec<Rating>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open ratings file {}", path.display()))?;
    reco_models::parse_ratings(BufReader::new(file))
        .with_context(|| format!("ratings file {} is invalid", path.display()))
}

/// Reads a MovieLens `movies.csv` (movieId,title,genres).
pub fn read_items(path: &Path) -> anyhow::Result<Catalogue> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open items file {}", path.display()))?;
    reco_models::parse_movies(BufReader::new(file))
        .with_context(|| format!("items file {} is invalid", path.display()))
}

/// The items file used when `--items` is not given: `movies.csv` beside
/// the ratings file, when there is one.
pub fn items_beside(ratings: &Path) -> Option<PathBuf> {
    let candidate = ratings.parent()?.join("movies.csv");
    candidate.is_file().then_some(candidate)
}

/// Writes ratings as a MovieLens CSV (`userId,movieId,rating,timestamp`,
/// timestamp in seconds).
pub fn write_ratings(path: &Path, ratings: &[Rating]) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    writeln!(out, "userId,movieId,rating,timestamp")?;
    for r in ratings {
        writeln!(
            out,
            "{},{},{},{}",
            r.member.0,
            r.item.0,
            r.value,
            r.at_ms / 1000
        )?;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Trains on `ratings` (weighted as `options.values` says: the one
/// weighting of `reco_models::confidence`),
/// computes the lists, scores the tiers on the holdout and writes the model
/// directory, reporting progress on stderr.
pub fn run(ratings: &[Rating], options: &TrainOptions) -> anyhow::Result<TrainOutcome> {
    let started = Instant::now();
    anyhow::ensure!(
        !ratings.is_empty(),
        "there are no ratings to train on: check the --ratings file, or that reco serve records events (events_log.enabled) and producers have sent some"
    );
    let (train, test) = match &options.holdout {
        Holdout::None => (ratings.to_vec(), Vec::new()),
        Holdout::Given(test) => (ratings.to_vec(), test.clone()),
        Holdout::Split {
            fraction,
            seed,
            min_ratings,
        } => {
            anyhow::ensure!(
                *fraction > 0.0 && *fraction < 1.0,
                "--holdout-fraction must be between 0 and 1 (exclusive), not {fraction}"
            );
            split_per_member(ratings, *fraction, *min_ratings, *seed)
        }
    };
    if let Some(dir) = &options.write_split {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write_ratings(&dir.join("train.csv"), &train)?;
        write_ratings(&dir.join("test.csv"), &test)?;
        eprintln!(
            "Wrote the split ({} train, {} test ratings) to {}.",
            train.len(),
            test.len(),
            dir.display()
        );
    }
    // The one weighting serving also uses (reco_models::confidence): every
    // rating is an interaction of weight 1, whatever its stars.
    let values = options.values;
    let data =
        Interactions::from_triples(train.iter().map(|r| (r.member, r.item, values.weight(r))));
    eprintln!(
        "Training on {} ratings: {} members, {} items ({} held out).",
        train.len(),
        data.num_members(),
        data.num_items(),
        test.len()
    );
    let version = options.version.clone().unwrap_or_else(|| {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("als-{ms}")
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
    metrics::gauge!(nm::TRAIN_ALS_SECONDS).set(als_seconds);
    let (catalogue, rows) = match &options.items {
        Some(catalogue) => {
            let first = first_times(train.iter().map(|r| (r.item, r.at_ms)));
            let rows = RowLists::build(
                catalogue,
                &data,
                &first,
                &model.item_factors,
                RowListSizes::default(),
            );
            let known = data
                .items()
                .iter()
                .filter(|&&i| catalogue.get(i).is_some())
                .count();
            eprintln!(
                "Item data: {} titles, {} genres; {known} of the {} trained items have a title.",
                catalogue.len(),
                rows.genres.len(),
                data.num_items()
            );
            (catalogue.clone(), rows)
        }
        None => (Catalogue::default(), RowLists::default()),
    };
    let lists = PrecomputedLists {
        version: version.clone(),
        popular: reco_models::popular(&data, options.popular_n),
        members: reco_models::batch_top_n(&model, &data, options.top_n, options.params.threads),
        catalogue,
        rows,
        computed_at_ms: None,
    }
    .computed_now();
    let tiers = (!test.is_empty()).then(|| evaluate(&model, &lists, &data, &test, options.k));
    let TrainedModel { item_factors, .. } = model;
    let item_factors = match options.clusters {
        Some(clusters) => {
            let started = Instant::now();
            let params = reco_models::KMeansParams {
                clusters,
                seed: options.params.seed,
                threads: options.params.threads,
                ..reco_models::KMeansParams::default()
            };
            let clustered = item_factors.clustered(&params);
            eprintln!(
                "Clustered {} items into {} clusters in {:.1} s.",
                clustered.len(),
                clustered.clusters(),
                started.elapsed().as_secs_f64()
            );
            clustered
        }
        None => item_factors,
    };
    if let Some(out) = &options.out {
        artifacts::save(out, &item_factors, &lists)?;
        eprintln!("Wrote model {version} to {}.", out.display());
    }
    let summary = TrainSummary {
        version,
        members: data.num_members(),
        items: item_factors.len(),
        interactions: data.nnz(),
        test_ratings: test.len(),
        als_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    metrics::gauge!(nm::TRAIN_DURATION_SECONDS).set(summary.total_seconds);
    eprintln!(
        "Trained model {} ({} items, {} member lists) in {:.1} s (ALS {:.2} s).",
        summary.version,
        summary.items,
        lists.members.len(),
        summary.total_seconds,
        summary.als_seconds
    );
    Ok(TrainOutcome {
        summary,
        tiers,
        model: item_factors,
        lists,
    })
}

fn evaluate(
    model: &TrainedModel,
    lists: &PrecomputedLists,
    data: &Interactions,
    test: &[Rating],
    k: usize,
) -> TierMetrics {
    // The popular tier is scored over the whole catalogue (as the peers'
    // popularity baseline is), whatever the length of the served list.
    let full = PrecomputedLists {
        popular: reco_models::popular(data, data.num_items()),
        ..lists.clone()
    };
    reco_models::evaluate_tiers(model, &full, data, test, k)
}

/// The results as a human-readable table.
pub fn render_text(outcome: &TrainOutcome, k: usize) -> String {
    let s = &outcome.summary;
    let mut text = format!(
        "model {}: {} members, {} items, {} interactions; ALS {:.2} s, total {:.2} s\n",
        s.version, s.members, s.items, s.interactions, s.als_seconds, s.total_seconds
    );
    if let Some(tiers) = &outcome.tiers {
        text.push_str(&format!(
            "{:<12} {:>8} {:>8} {:>9} {:>8} {:>8}\n",
            "tier",
            format!("P@{k}"),
            format!("R@{k}"),
            format!("NDCG@{k}"),
            format!("HR@{k}"),
            "members"
        ));
        for (name, m) in tiers.named() {
            text.push_str(&format!(
                "{name:<12} {:>8.4} {:>8.4} {:>9.4} {:>8.4} {:>8}\n",
                m.precision, m.recall, m.ndcg, m.hit_rate, m.members
            ));
        }
    }
    text
}

fn metrics_json(m: &Metrics) -> serde_json::Value {
    serde_json::json!({
        "precision": m.precision,
        "recall": m.recall,
        "ndcg": m.ndcg,
        "hit_rate": m.hit_rate,
        "members": m.members,
    })
}

/// The results as JSON (`--json`).
pub fn render_json(outcome: &TrainOutcome, k: usize) -> serde_json::Value {
    let s = &outcome.summary;
    let tiers = outcome.tiers.as_ref().map(|t| {
        t.named()
            .into_iter()
            .map(|(name, m)| (name.to_owned(), metrics_json(m)))
            .collect::<serde_json::Map<_, _>>()
    });
    serde_json::json!({
        "version": s.version,
        "members": s.members,
        "items": s.items,
        "interactions": s.interactions,
        "test_ratings": s.test_ratings,
        "als_seconds": s.als_seconds,
        "total_seconds": s.total_seconds,
        "k": k,
        "tiers": tiers,
    })
}
