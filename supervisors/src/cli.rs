//! The `reco` command line: a thin shell over the library.

use crate::config::{Config, ENV_NATS_URL};
use crate::train::{self, TrainOptions};
use crate::{artifacts, client, node, telemetry};
use clap::{Args, Parser, Subcommand};
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
    /// Train a model and batch-compute the fallback lists from a ratings CSV.
    Train(TrainArgs),
    /// Ask a running node for recommendations and print the reply as JSON.
    Recommend(client::RecommendArgs),
    /// Publish one member event to a running node.
    Event(client::EventArgs),
    /// Print a running node's live supervision tree.
    Tree(client::TreeArgs),
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
    #[arg(long)]
    ratings: PathBuf,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
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
    /// Random seed of the factor initialisation.
    #[arg(long, default_value_t = AlsParams::default().seed)]
    seed: u64,
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
}

/// Runs the command line; the exit code says whether it worked.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Train(args) => train_command(args),
        Command::Recommend(args) => block_on(client::recommend(args)),
        Command::Event(args) => block_on(client::event(args)),
        Command::Tree(args) => block_on(client::tree(args)),
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
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let options = TrainOptions {
        ratings: args.ratings,
        out: args.out,
        params: AlsParams {
            factors: args.factors,
            iterations: args.iterations,
            reg: args.reg,
            alpha: args.alpha,
            seed: args.seed,
            threads,
        },
        top_n: args.top_n,
        popular_n: args.popular_n,
        version: args.version,
    };
    train::run(&options)?;
    Ok(())
}
