//! The `reco` command line: a thin shell over the library.

use crate::config::{Config, ENV_NATS_URL};
use crate::train::{self, Holdout, TrainOptions};
use crate::{artifacts, client, event_log, node, publish, telemetry};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use reco_messages::Subjects;
use reco_models::{AlsParams, PrecomputedLists};
use std::path::PathBuf;
use std::process::ExitCode;

/// reco: a personalization runtime (online serving over NATS, offline training).
#[derive(Debug, Parser)]
#[command(name = "reco", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve recommendations over NATS until SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Train a model and batch-compute the fallback lists from a ratings CSV
    /// or the event log; measure, write and publish them.
    Train(Box<TrainArgs>),
    /// Ask a running node for recommendations and print the reply as JSON.
    Recommend(client::RecommendArgs),
    /// Publish one member event to a running node.
    Event(client::EventArgs),
    /// Print a running node's live supervision tree.
    Tree(client::TreeArgs),
    /// Show, pin (roll back) or unpin a running node's model version.
    Model(client::ModelArgs),
    /// Run the near-real-time aggregation job (one per cluster, a process of
    /// its own) until SIGINT/SIGTERM: take rates and trending from the event
    /// stream, checkpointed, published as snapshots.
    Nearline(NearlineArgs),
    /// Print a title's early read from the newest aggregate snapshot: counts
    /// and take rate with a 95 % interval per window, against titles of the
    /// same age.
    Insights(InsightsArgs),
}

#[derive(Debug, Args)]
struct InsightsArgs {
    /// The title.
    #[arg(long)]
    item: u64,
    /// TOML configuration file (`[streaming]`, `[nats]`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// NATS server URL (overrides the file).
    #[arg(long, env = ENV_NATS_URL)]
    nats: Option<String>,
    /// Print the read as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct NearlineArgs {
    /// TOML configuration file (the `[streaming]` section and the shared
    /// `[nats]`, `[events_log]` keys).
    #[arg(long)]
    config: Option<PathBuf>,
    /// NATS server URL (overrides the file).
    #[arg(long, env = ENV_NATS_URL)]
    nats: Option<String>,
    /// Print the effective configuration, every default included, and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML configuration file (see the README's config reference).
    #[arg(long)]
    config: Option<PathBuf>,
    /// NATS server URL (overrides the file).
    #[arg(long, env = ENV_NATS_URL)]
    nats: Option<String>,
    /// Model directory written by `reco train --out` (overrides the file).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Prometheus exporter address; "" disables it (overrides the file).
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Print the effective configuration, every default included, and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// Ratings CSV in the MovieLens format (userId,movieId,rating,timestamp).
    #[arg(
        long,
        conflicts_with = "from_stream",
        required_unless_present = "from_stream"
    )]
    ratings: Option<PathBuf>,
    /// Train on the events recorded in JetStream by `reco serve` (plays,
    /// ratings and list adds become interactions) instead of a file.
    #[arg(long)]
    from_stream: bool,
    /// TOML configuration file: NATS URL, prefix, event stream and publish
    /// bucket (the same file `reco serve` reads).
    #[arg(long)]
    config: Option<PathBuf>,
    /// NATS server URL for --from-stream and --publish (overrides the file).
    #[arg(long, env = ENV_NATS_URL)]
    nats: Option<String>,
    /// Event stream to read with --from-stream (overrides events_log.stream).
    #[arg(long)]
    stream: Option<String>,
    /// Output model directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Publish the model and lists as a new version in JetStream and announce
    /// it on <prefix>.published.model.
    #[arg(long)]
    publish: bool,
    /// Object-store bucket to publish into (overrides publish.bucket).
    #[arg(long)]
    bucket: Option<String>,
    /// Versions to keep in the bucket (overrides publish.keep_versions).
    #[arg(long)]
    keep_versions: Option<usize>,
    /// Held-out ratings (MovieLens CSV) to measure quality on; the model
    /// trains on all of --ratings.
    #[arg(long, conflicts_with = "holdout_fraction")]
    test: Option<PathBuf>,
    /// Hold out this share of each member's ratings to measure quality on;
    /// the model trains on the rest.
    #[arg(long)]
    holdout_fraction: Option<f64>,
    /// Seed of the holdout split.
    #[arg(long, default_value_t = 42)]
    split_seed: u64,
    /// Members with fewer ratings than this are not held out from.
    #[arg(long, default_value_t = 5)]
    min_ratings: usize,
    /// Write the train/test split as train.csv and test.csv into this
    /// directory (to evaluate other tools on identical data).
    #[arg(long)]
    write_split: Option<PathBuf>,
    /// Cut-off of the quality metrics.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Latent factors.
    #[arg(long, default_value_t = AlsParams::default().factors)]
    factors: usize,
    /// ALS iterations.
    #[arg(long, default_value_t = AlsParams::default().iterations)]
    iterations: usize,
    /// L2 regularisation.
    #[arg(long, default_value_t = AlsParams::default().reg)]
    reg: f32,
    /// Confidence scaling: c = 1 + alpha * weight.
    #[arg(long, default_value_t = AlsParams::default().alpha)]
    alpha: f32,
    /// Frequency scaling of the regularisation: a row with n interactions
    /// gets reg * n^reg_exponent (0: constant reg).
    #[arg(long, default_value_t = AlsParams::default().reg_exponent)]
    reg_exponent: f32,
    /// Random seed of the factor initialisation.
    #[arg(long, default_value_t = AlsParams::default().seed)]
    seed: u64,
    /// Conjugate-gradient steps per row solve; 0 solves rows exactly
    /// (Cholesky, several times slower, same quality).
    #[arg(long, default_value_t = AlsParams::default().cg_steps)]
    cg_steps: usize,
    /// Training threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Items in each member's precomputed list.
    #[arg(long, default_value_t = 200)]
    top_n: usize,
    /// Items in the popular list.
    #[arg(long, default_value_t = 1000)]
    popular_n: usize,
    /// Model version to record (default: derived from the clock).
    #[arg(long)]
    version: Option<String>,
    /// Also compute the near-real-time aggregates in batch (the same
    /// function `reco nearline` streams) and write the snapshot artifact
    /// here: from --ratings each row is a play; --from-stream reads the
    /// stream's events as the job does.
    #[arg(long)]
    aggregates: Option<PathBuf>,
}

/// Runs the command line; the exit code says whether it worked.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Train(args) => train_command(*args),
        Command::Recommend(args) => block_on(client::recommend(args)),
        Command::Event(args) => block_on(client::event(args)),
        Command::Tree(args) => block_on(client::tree(args)),
        Command::Model(args) => block_on(client::model(args)),
        Command::Nearline(args) => nearline(args),
        Command::Insights(args) => insights(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("reco: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on(future: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

fn effective_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(url) = &args.nats {
        config.nats.url = url.clone();
    }
    if let Some(dir) = &args.model {
        config.model.dir = Some(dir.clone());
    }
    if let Some(addr) = &args.metrics_addr {
        config.node.metrics_addr = addr.clone();
    }
    config.validate()?;
    Ok(config)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = effective_config(&args)?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    telemetry::init_logging(config.node.log_format == "json");
    reco_actors::lifecycle::install_panic_hook();
    if !config.node.metrics_addr.is_empty() {
        telemetry::init_metrics(config.node.metrics_addr.parse()?)?;
    }
    let (model, lists) = match &config.model.dir {
        Some(dir) => {
            let (model, lists) = artifacts::load(dir)?;
            (Some(model), lists)
        }
        None => {
            tracing::warn!("No model directory given (--model): serving fallback lists only, and they are empty.");
            (None, PrecomputedLists::default())
        }
    };
    let system = actix::System::new();
    let result = system.block_on(node::run(
        config,
        model,
        lists,
        args.config.clone(),
        node::shutdown_signal(),
    ));
    actix::System::current().stop();
    result
}

fn train_command(args: TrainArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(url) = &args.nats {
        config.nats.url = url.clone();
    }
    if let Some(stream) = &args.stream {
        config.events_log.stream = stream.clone();
    }
    if let Some(bucket) = &args.bucket {
        config.publish.bucket = bucket.clone();
    }
    if let Some(keep) = args.keep_versions {
        config.publish.keep_versions = keep;
    }
    config.validate()?;
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
            let logged = block_on_value(read_stream(&config))?;
            (logged.ratings.clone(), Some(logged))
        }
    };
    if let Some(path) = &args.aggregates {
        write_aggregates(&config, &ratings, args.from_stream, path)?;
        if args.out.is_none()
            && !args.publish
            && args.test.is_none()
            && args.holdout_fraction.is_none()
        {
            return Ok(());
        }
    }
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
    };
    let outcome = train::run(&ratings, &options)?;
    let published = if args.publish {
        Some(block_on_value(publish_outcome(&config, &outcome))?)
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

fn block_on_value<T>(
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

async fn connect_for_train(config: &Config) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name("reco-train")
        .connection_timeout(std::time::Duration::from_millis(config.nats.connect_timeout_ms))
        .connect(config.nats.url.as_str())
        .await
        .with_context(|| {
            format!(
                "cannot connect to NATS at {}: is nats-server running? (set --nats or {ENV_NATS_URL})",
                config.nats.url
            )
        })
}

async fn read_stream(config: &Config) -> anyhow::Result<event_log::LoggedInteractions> {
    let subjects = Subjects::new(&config.nats.prefix)?;
    let client = connect_for_train(config).await?;
    let js = async_nats::jetstream::new(client);
    let logged = event_log::read_interactions(
        &js,
        &config.events_log.stream,
        &subjects,
        config.limits.max_payload_bytes,
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
    config: &Config,
    outcome: &train::TrainOutcome,
) -> anyhow::Result<publish::Published> {
    let subjects = Subjects::new(&config.nats.prefix)?;
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

/// `reco nearline`: the aggregation job lives in `reco_streaming`; this
/// only reads the config, connects and makes sure the event stream exists.
fn nearline(args: NearlineArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(url) = &args.nats {
        config.nats.url = url.clone();
    }
    config.validate()?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    telemetry::init_logging(config.node.log_format == "json");
    if !config.streaming.metrics_addr.is_empty() {
        telemetry::init_metrics(config.streaming.metrics_addr.parse()?)?;
    }
    block_on(async {
        let subjects = Subjects::new(&config.nats.prefix)?;
        let client = connect_for_train(&config).await?;
        let js = async_nats::jetstream::new(client.clone());
        event_log::ensure_stream(&js, &config.events_log, &subjects).await?;
        let settings = config.streaming.settings(&config);
        let report =
            reco_streaming::run(client, subjects, settings, node::shutdown_signal()).await?;
        tracing::info!(
            sequence = report.state.last_sequence(),
            applied = report.applied,
            "Aggregation job stopped."
        );
        Ok(())
    })
}

/// `reco insights --item ID`: reads the newest snapshot (logic in
/// `reco_streaming::insights`).
fn insights(args: InsightsArgs) -> anyhow::Result<()> {
    use reco_streaming::insights::{self, Read};
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(url) = &args.nats {
        config.nats.url = url.clone();
    }
    config.validate()?;
    let bucket = config.streaming.snapshot_bucket.clone();
    let read = block_on_value(async {
        let client = connect_for_train(&config).await?;
        let js = async_nats::jetstream::new(client);
        Ok(insights::read(&js, &bucket, reco_messages::ItemId(args.item)).await?)
    })?;
    match read {
        Read::Found { version, insight } if args.json => {
            let mut json = serde_json::to_value(&insight)?;
            json["snapshot"] = serde_json::json!(version);
            println!("{json:#}");
            Ok(())
        }
        Read::Found { version, insight } => {
            print!("{}", insights::render(&version, &insight));
            Ok(())
        }
        Read::NoSnapshot => anyhow::bail!(
            "no aggregate snapshot in bucket {bucket} yet: is `reco nearline` running against this NATS server?"
        ),
        Read::Unseen { version } => anyhow::bail!(
            "title {} has no events in the aggregates (snapshot {version})",
            args.item
        ),
    }
}

/// `reco train --aggregates FILE`: the batch side of the aggregation (logic
/// in `reco_models::aggregates` and `reco_streaming::batch`).
fn write_aggregates(
    config: &Config,
    ratings: &[reco_models::Rating],
    from_stream: bool,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    use reco_models::aggregates::{observed_from_ratings, AggregateState};
    let params = config.streaming.settings(config).params;
    let state = if from_stream {
        block_on_value(async {
            let client = connect_for_train(config).await?;
            let js = async_nats::jetstream::new(client);
            Ok(reco_streaming::batch::aggregate_stream(
                &js,
                &config.events_log.stream,
                config.limits.max_payload_bytes,
                params,
            )
            .await?)
        })?
    } else {
        AggregateState::batch(params, &observed_from_ratings(ratings))
    };
    // Read at the last event's time: a batch has no "now" of its own.
    let snapshot = state.snapshot(state.watermark_ms(), config.streaming.trending_n);
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
