//! The composition root of the near-real-time aggregation job: `reco
//! nearline` (run the job) and `reco insights` (an early read on a title).
//! This reads the config file, sets up logging and metrics, connects and
//! makes sure the event stream exists; the job itself is
//! [`reco_streaming::run`] (why it is a process of its own: see the
//! `reco_streaming` crate docs).

use crate::config::{Config, ENV_NATS_URL};
use crate::{node, telemetry};
use clap::Args;
use reco_messages::Subjects;
use std::path::PathBuf;

/// `reco nearline`'s arguments.
#[derive(Debug, Args)]
pub struct NearlineArgs {
    /// TOML configuration file (the `[streaming]` section and the shared
    /// `[nats]`, `[events_log]` keys).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// NATS server URL (overrides the file).
    #[arg(long, env = ENV_NATS_URL)]
    pub nats: Option<String>,
    /// Print the effective configuration, every default included, and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// `reco insights`'s arguments.
#[derive(Debug, Args)]
pub struct InsightsArgs {
    /// The title.
    #[arg(long)]
    pub item: u64,
    /// TOML configuration file (`[streaming]`, `[nats]`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// NATS server URL (overrides the file).
    #[arg(long, env = ENV_NATS_URL)]
    pub nats: Option<String>,
    /// Print the read as JSON.
    #[arg(long)]
    pub json: bool,
}

fn load(path: Option<&std::path::Path>, nats: Option<&String>) -> anyhow::Result<Config> {
    let mut config = match path {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(url) = nats {
        config.nats.url = url.clone();
    }
    config.validate()?;
    Ok(config)
}

fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

/// `reco nearline`: runs the aggregation job until SIGINT/SIGTERM.
///
/// # Errors
/// A bad config, no NATS, no JetStream, or a job failure.
pub fn nearline(args: NearlineArgs) -> anyhow::Result<()> {
    let config = load(args.config.as_deref(), args.nats.as_ref())?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    telemetry::init_logging(config.node.log_format == "json");
    if !config.streaming.metrics_addr.is_empty() {
        telemetry::init_metrics(config.streaming.metrics_addr.parse()?)?;
    }
    block_on(async {
        // Installed before connecting: a SIGTERM during start-up stops the
        // job cleanly instead of killing it.
        let shutdown = node::shutdown_signal();
        let subjects = Subjects::new(&config.nats.prefix)?;
        let client = node::connect(&config).await?;
        let js = async_nats::jetstream::new(client.clone());
        reco_offline::event_log::ensure_stream(&js, &config.events_log, &subjects).await?;
        let settings = config.streaming.settings(&config);
        let report = reco_streaming::run(client, subjects, settings, shutdown).await?;
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
///
/// # Errors
/// A bad config, no NATS, no snapshot yet, or an unseen title.
pub fn insights(args: InsightsArgs) -> anyhow::Result<()> {
    use reco_streaming::insights::{self, Read};
    let config = load(args.config.as_deref(), args.nats.as_ref())?;
    let bucket = config.streaming.snapshot_bucket.clone();
    let read = block_on(async {
        let client = node::connect(&config).await?;
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
