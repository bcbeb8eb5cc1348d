//! `reco train`: the command-line face of the offline job. Reads ratings
//! (a CSV file or the event log), trains, measures, writes and publishes,
//! as the flags say.
//!
//! The NATS URL, subject prefix, event stream and publish bucket come from the
//! node's config file, which the `reco` binary reads and hands over as a
//! [`TrainTarget`]: one file configures `reco serve` and `reco train` alike.

use crate::event_log::{self, EventsLogConfig};
use crate::publish::{self, PublishConfig};
use crate::train::{self, Holdout, TrainOptions};
use clap::Args;
use reco_client::{ConnectOptions, NatsSecurity, SecurityArgs, ENV_NATS_URL};
use reco_messages::Subjects;
use reco_models::AlsParams;
use std::path::PathBuf;
use std::time::Duration;

/// Where the offline job finds NATS, its stream and its bucket (from the
/// node's config file, defaults otherwise).
#[derive(Clone, Debug)]
pub struct TrainTarget {
    /// NATS server URL.
    pub nats_url: String,
    /// Credentials and TLS.
    pub security: NatsSecurity,
    /// How long to try to connect.
    pub connect_timeout: Duration,
    /// Subject prefix of the deployment.
    pub prefix: String,
    /// The event log read by `--from-stream`.
    pub events_log: EventsLogConfig,
    /// Where `--publish` puts versions.
    pub publish: PublishConfig,
    /// Largest event payload accepted when reading the log.
    pub max_payload_bytes: usize,
    /// The rules of `--aggregates` (the `[streaming]` section's).
    pub aggregate_params: reco_models::aggregates::AggregateParams,
    /// Titles in the trending list of `--aggregates`.
    pub trending_n: usize,
}

/// Arguments of `reco train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Ratings CSV in the MovieLens format (userId,movieId,rating,timestamp).
    #[arg(
        long,
        conflicts_with = "from_stream",
        required_unless_present = "from_stream"
    )]
    pub ratings: Option<PathBuf>,
    /// Item data in the MovieLens `movies.csv` format (movieId,title,genres):
    /// titles and genres are published with the lists and the genre, new and
    /// because rows get their fallbacks (default: movies.csv beside
    /// --ratings, when there is one).
    #[arg(long)]
    pub items: Option<PathBuf>,
    /// Train on the events recorded in JetStream by `reco serve` (plays,
    /// ratings and list adds become interactions) instead of a file.
    #[arg(long)]
    pub from_stream: bool,
    /// TOML configuration file: NATS URL, prefix, event stream and publish
    /// bucket (the same file `reco serve` reads).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// NATS server URL for --from-stream and --publish (overrides the file).
    #[arg(long, env = ENV_NATS_URL)]
    pub nats: Option<String>,
    /// NATS credentials and TLS (override the file's `[nats]` keys).
    #[command(flatten)]
    pub security: SecurityArgs,
    /// Event stream to read with --from-stream (overrides events_log.stream).
    #[arg(long)]
    pub stream: Option<String>,
    /// Output model directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Publish the model and lists as a new version in JetStream and announce
    /// it on <prefix>.published.model.
    #[arg(long)]
    pub publish: bool,
    /// Object-store bucket to publish into (overrides publish.bucket).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Versions to keep in the bucket (overrides publish.keep_versions).
    #[arg(long)]
    pub keep_versions: Option<usize>,
    /// Sign the published version's manifest with this ed25519 key file
    /// (overrides publish.signing_key_file; `reco signing-key` makes one).
    #[arg(long)]
    pub signing_key_file: Option<std::path::PathBuf>,
    /// Held-out ratings (MovieLens CSV) to measure quality on; the model
    /// trains on all of --ratings.
    #[arg(long, conflicts_with = "holdout_fraction")]
    pub test: Option<PathBuf>,
    /// Hold out this share of each member's ratings to measure quality on;
    /// the model trains on the rest.
    #[arg(long)]
    pub holdout_fraction: Option<f64>,
    /// Seed of the holdout split.
    #[arg(long, default_value_t = 42)]
    pub split_seed: u64,
    /// Members with fewer ratings than this are not held out from.
    #[arg(long, default_value_t = 5)]
    pub min_ratings: usize,
    /// Write the train/test split as train.csv and test.csv into this
    /// directory (to evaluate other tools on identical data).
    #[arg(long)]
    pub write_split: Option<PathBuf>,
    /// Cut-off of the quality metrics.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Latent factors.
    #[arg(long, default_value_t = AlsParams::default().factors)]
    pub factors: usize,
    /// ALS iterations.
    #[arg(long, default_value_t = AlsParams::default().iterations)]
    pub iterations: usize,
    /// L2 regularisation.
    #[arg(long, default_value_t = AlsParams::default().reg)]
    pub reg: f32,
    /// Confidence scaling: c = 1 + alpha * weight.
    #[arg(long, default_value_t = AlsParams::default().alpha)]
    pub alpha: f32,
    /// Frequency scaling of the regularisation: a row with n interactions
    /// gets reg * n^reg_exponent (0: constant reg).
    #[arg(long, default_value_t = AlsParams::default().reg_exponent)]
    pub reg_exponent: f32,
    /// Random seed of the factor initialisation.
    #[arg(long, default_value_t = AlsParams::default().seed)]
    pub seed: u64,
    /// Conjugate-gradient steps per row solve; 0 solves rows exactly
    /// (Cholesky, several times slower, same quality).
    #[arg(long, default_value_t = AlsParams::default().cg_steps)]
    pub cg_steps: usize,
    /// Training threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Items in each member's precomputed list.
    #[arg(long, default_value_t = 200)]
    pub top_n: usize,
    /// Items in the popular list.
    #[arg(long, default_value_t = 1000)]
    pub popular_n: usize,
    /// Model version to record (default: derived from the clock).
    #[arg(long)]
    pub version: Option<String>,
    /// Item clusters stored in the model for the pruned scan (k-means over
    /// the item factors, seeded by --seed); default about sqrt(items), 0
    /// stores none (nodes then always scan exactly).
    #[arg(long)]
    pub clusters: Option<usize>,
    /// Also compute the near-real-time aggregates in batch (the same
    /// function `reco nearline` streams) and write the snapshot artifact
    /// here: from --ratings each row is a play; --from-stream reads the
    /// stream's events as the job does.
    #[arg(long)]
    pub aggregates: Option<PathBuf>,
}

/// Runs `reco train` with `args` against `target` (the config file's
/// settings, which the flags override).
///
/// # Errors
/// Bad flags, unreadable ratings, an unreachable server, a failed
/// publication: each says what to fix.
pub fn train(args: TrainArgs, target: TrainTarget) -> anyhow::Result<()> {
    let mut config = target;
    if let Some(url) = &args.nats {
        config.nats_url = url.clone();
    }
    config.security = config.security.overridden_by(&args.security.security());
    if let Some(stream) = &args.stream {
        config.events_log.stream = stream.clone();
    }
    if let Some(bucket) = &args.bucket {
        config.publish.bucket = bucket.clone();
    }
    if let Some(keep) = args.keep_versions {
        config.publish.keep_versions = keep;
    }
    if let Some(path) = &args.signing_key_file {
        config.publish.signing_key_file = Some(path.clone());
    }
    config.events_log.validate()?;
    config.publish.validate()?;
    anyhow::ensure!(
        args.out.is_some()
            || args.aggregates.is_some()
            || args.publish
            || args.test.is_some()
            || args.holdout_fraction.is_some(),
        "nothing to do: give --out DIR, --aggregates FILE, --publish, --test FILE or --holdout-fraction F"
    );
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let (ratings, logged) = match &args.ratings {
        Some(path) => (train::read_ratings(path)?, None),
        None => {
            let logged = block_on(read_stream(&config))?;
            (logged.ratings.clone(), Some(logged))
        }
    };
    if let Some(path) = &args.aggregates {
        write_aggregates(&config, &ratings, args.ratings.is_none(), path)?;
        if args.out.is_none()
            && !args.publish
            && args.test.is_none()
            && args.holdout_fraction.is_none()
        {
            return Ok(());
        }
    }
    let items_path = args
        .items
        .clone()
        .or_else(|| args.ratings.as_deref().and_then(train::items_beside));
    let items = match &items_path {
        Some(path) => Some(train::read_items(path)?),
        None => {
            eprintln!(
                "No item data (--items movies.csv): replies carry no titles and the genre, new \
and because rows have no fallback lists."
            );
            None
        }
    };
    let holdout = match (&args.test, args.holdout_fraction) {
        (Some(path), _) => Holdout::Given(train::read_ratings(path)?),
        (None, Some(fraction)) => Holdout::Split {
            fraction,
            seed: args.split_seed,
            min_ratings: args.min_ratings,
        },
        (None, None) => Holdout::None,
    };
    let options = TrainOptions {
        params: AlsParams {
            factors: args.factors,
            iterations: args.iterations,
            reg: args.reg,
            alpha: args.alpha,
            reg_exponent: args.reg_exponent,
            seed: args.seed,
            threads,
            cg_steps: args.cg_steps,
        },
        top_n: args.top_n,
        popular_n: args.popular_n,
        version: args.version,
        holdout,
        k: args.k,
        write_split: args.write_split,
        out: args.out,
        clusters: match args.clusters {
            None => Some(0),
            Some(0) => None,
            Some(n) => Some(n),
        },
        values: if logged.is_some() {
            train::RatingValues::Weights
        } else {
            train::RatingValues::Stars
        },
        items,
    };
    let outcome = train::run(&ratings, &options)?;
    let published = if args.publish {
        Some(block_on(publish_outcome(&config, &outcome))?)
    } else {
        None
    };
    if args.json {
        let mut json = train::render_json(&outcome, options.k);
        if let Some(logged) = &logged {
            json["stream"] = serde_json::json!({
                "name": config.events_log.stream,
                "events": logged.events,
                "interactions": logged.ratings.len(),
                "ignored": logged.ignored,
                "bad": logged.bad,
            });
        }
        if let Some(p) = &published {
            json["published"] = serde_json::json!({
                "version": p.manifest.version,
                "bucket": config.publish.bucket,
                "deleted": p.deleted,
            });
        }
        println!("{json:#}");
    } else {
        print!("{}", train::render_text(&outcome, options.k));
        if let Some(p) = &published {
            println!(
                "published {} to bucket {} (deleted: {:?})",
                p.manifest.version, config.publish.bucket, p.deleted
            );
        }
    }
    Ok(())
}

fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

async fn connect_for_train(config: &TrainTarget) -> anyhow::Result<async_nats::Client> {
    Ok(ConnectOptions::new(&config.nats_url)
        .security(config.security.clone())
        .name("reco-train")
        .connect_timeout(config.connect_timeout)
        .connect()
        .await?)
}

async fn read_stream(config: &TrainTarget) -> anyhow::Result<event_log::LoggedInteractions> {
    let subjects = Subjects::new(&config.prefix)?;
    let client = connect_for_train(config).await?;
    let js = async_nats::jetstream::new(client);
    let logged = event_log::read_interactions(
        &js,
        &config.events_log.stream,
        &subjects,
        config.max_payload_bytes,
    )
    .await?;
    eprintln!(
        "Read {} events from stream {}: {} interactions, {} ignored, {} bad (skipped).",
        logged.events,
        config.events_log.stream,
        logged.ratings.len(),
        logged.ignored,
        logged.bad
    );
    Ok(logged)
}

async fn publish_outcome(
    config: &TrainTarget,
    outcome: &train::TrainOutcome,
) -> anyhow::Result<publish::Published> {
    let subjects = Subjects::new(&config.prefix)?;
    let client = connect_for_train(config).await?;
    let published = publish::publish(
        &client,
        &subjects,
        &config.publish,
        &outcome.model,
        &outcome.lists,
        outcome.summary.total_seconds,
    )
    .await?;
    eprintln!(
        "Published model {} to bucket {} and announced it on {}.",
        published.manifest.version,
        config.publish.bucket,
        subjects.published_model()
    );
    Ok(published)
}

/// `reco train --aggregates FILE`: the batch side of the near-real-time
/// aggregation (logic in `reco_models::aggregates` and
/// `reco_streaming::batch`).
fn write_aggregates(
    config: &TrainTarget,
    ratings: &[reco_models::Rating],
    from_stream: bool,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use reco_models::aggregates::{observed_from_ratings, AggregateState};
    let params = config.aggregate_params.clone();
    let state = if from_stream {
        block_on(async {
            let client = connect_for_train(config).await?;
            let js = async_nats::jetstream::new(client);
            Ok(reco_streaming::batch::aggregate_stream(
                &js,
                &config.events_log.stream,
                config.max_payload_bytes,
                params,
            )
            .await?)
        })?
    } else {
        AggregateState::batch(params, &observed_from_ratings(ratings))
    };
    // Read at the last event's time: a batch has no "now" of its own.
    let snapshot = state.snapshot(state.watermark_ms(), config.trending_n);
    std::fs::write(path, snapshot.to_bytes())
        .with_context(|| format!("cannot write aggregates to {}", path.display()))?;
    eprintln!(
        "Aggregates of {} events over {} titles (last sequence {}) written to {}; trending: {:?}.",
        state.events_applied(),
        state.titles(),
        state.last_sequence(),
        path.display(),
        snapshot
            .trending
            .iter()
            .take(5)
            .map(|t| t.item.0)
            .collect::<Vec<_>>()
    );
    Ok(())
}
