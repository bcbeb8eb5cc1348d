//! The `reco` binary: parses the command line and hands each subcommand to
//! the crate that owns it (serve → `reco_supervisors::node`, train →
//! `reco_offline`, recommend/event/tree/model → `reco_client`). Nothing
//! else happens here.

use clap::{Parser, Subcommand};
use reco_client::command as client;
use std::process::ExitCode;

/// reco serves personalized recommendations over NATS: it learns from what
/// members play, rate and add to their lists, answers "what next for this
/// member?" within a deadline (falling back to precomputed lists rather than
/// failing), and trains and publishes new models offline.
#[derive(Debug, Parser)]
#[command(name = "reco", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve recommendations over NATS until SIGINT/SIGTERM.
    Serve(reco_supervisors::node::command::ServeArgs),
    /// Train a model and batch-compute the fallback lists from a ratings CSV
    /// or the event log; measure, write and publish them.
    Train(Box<reco_offline::command::TrainArgs>),
    /// Ask a running node for recommendations and print the reply as JSON.
    Recommend(client::RecommendArgs),
    /// Publish one member event to a running node.
    Event(client::EventArgs),
    /// Print a running node's live supervision tree (`--node ID` or `all`).
    Tree(client::TreeArgs),
    /// Print the nodes of a deployment (from their NATS micro-service):
    /// partitions per node, lease ages, replay lag, events and requests.
    Cluster(reco_client::cluster::ClusterArgs),
    /// Show, pin (roll back) or unpin a running node's model version.
    Model(client::ModelArgs),
    /// Print the nats-server configuration that lets several nodes share a
    /// prefix (subject mappings into partitions, JetStream; --roles adds a
    /// user per role with its permissions).
    NatsConfig(reco_supervisors::node::command::NatsConfigArgs),
    /// Run the near-real-time aggregation job (one per cluster, a process of
    /// its own) until SIGINT/SIGTERM: take rates and trending from the event
    /// stream, checkpointed, published as snapshots.
    Nearline(reco_supervisors::nearline::NearlineArgs),
    /// Print a title's early read from the newest aggregate snapshot: counts
    /// and take rate with a 95 % interval per window, against titles of the
    /// same age.
    Insights(reco_supervisors::nearline::InsightsArgs),
    /// Ask a running node whether it serves, and with which model and lists.
    Health(client::AdminArgs),
    /// Have a running node re-read its config file's supervision settings
    /// (like SIGHUP).
    Reload(client::AdminArgs),
    /// Make a trainer's ed25519 key for signing model versions: writes the
    /// private key to --out, prints the public key for the nodes.
    SigningKey(reco_offline::signing::SigningKeyArgs),
    /// Print the effective configuration `reco serve` would run with (file,
    /// flags, every default), credentials redacted.
    Config(reco_supervisors::node::command::ServeArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve(args) => reco_supervisors::node::command::serve(args),
        Command::Train(args) => reco_supervisors::config::train_target(args.config.as_deref())
            .map_err(anyhow::Error::from)
            .and_then(|target| reco_offline::command::train(*args, target)),
        Command::Recommend(args) => block_on(client::recommend(args)),
        Command::Event(args) => block_on(client::event(args)),
        Command::Tree(args) => block_on(client::tree(args)),
        Command::Cluster(args) => block_on(reco_client::cluster::cluster(args)),
        Command::Model(args) => block_on(client::model(args)),
        Command::NatsConfig(args) => reco_supervisors::node::command::nats_config(&args),
        Command::Nearline(args) => reco_supervisors::nearline::nearline(args),
        Command::Insights(args) => reco_supervisors::nearline::insights(args),
        Command::Health(args) => block_on(client::health(args)),
        Command::Reload(args) => block_on(client::reload(args)),
        Command::SigningKey(args) => reco_offline::signing::signing_key(&args),
        Command::Config(args) => reco_supervisors::node::command::print_config(&args),
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
