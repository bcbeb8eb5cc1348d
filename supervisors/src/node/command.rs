//! `reco serve`: the command-line face of a serving node: configuration
//! sources (file, environment, flags), logging, the metrics exporter, the
//! model directory, then [`super::run`] inside an actix system.

use crate::config::{Config, ENV_NATS_URL};
use crate::telemetry;
use clap::Args;
use reco_models::PrecomputedLists;
use reco_offline::artifacts;
use std::path::PathBuf;

/// Arguments of `reco serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see the README's config reference).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// NATS server URL (overrides the file).
    #[arg(long, env = ENV_NATS_URL)]
    pub nats: Option<String>,
    /// Model directory written by `reco train --out` (overrides the file).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Prometheus exporter address; "" disables it (overrides the file).
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// NATS credentials and TLS (override the file's `[nats]` keys).
    #[command(flatten)]
    pub security: reco_client::SecurityArgs,
    /// Print the effective configuration, every default included, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// This node's name in a cluster (overrides cluster.node_id; default:
    /// host name and process id).
    #[arg(long)]
    pub node_id: Option<String>,
}

/// Arguments of `reco nats-config`.
#[derive(Debug, Args)]
pub struct NatsConfigArgs {
    /// Number of partitions (every node's cluster.partitions must match).
    #[arg(long, default_value_t = reco_messages::partition::DEFAULT_PARTITIONS)]
    pub partitions: u32,
    /// Subject prefix of the deployment.
    #[arg(long, default_value = reco_messages::subjects::DEFAULT_PREFIX)]
    pub prefix: String,
    /// Print only the top-level `mappings { … }` block, to add to an
    /// existing configuration.
    #[arg(long)]
    pub fragment: bool,
    /// Client listen address of the complete configuration.
    #[arg(long, default_value = "0.0.0.0:4222")]
    pub listen: String,
    /// JetStream store directory of the complete configuration.
    #[arg(long, default_value = "/var/lib/nats/jetstream")]
    pub store_dir: PathBuf,
    /// Add the users of every role (node, producer, caller, operator,
    /// trainer) with their permissions; passwords are the server variables
    /// $RECO_PASSWORD_<ROLE> (see the README's Security section).
    #[arg(long)]
    pub roles: bool,
    /// With --roles: the object-store bucket of the model versions
    /// (publish.bucket).
    #[arg(long, default_value = "reco_models", requires = "roles")]
    pub bucket: String,
    /// With --roles: the event stream (events_log.stream).
    #[arg(long, default_value = "RECO_EVENTS", requires = "roles")]
    pub events_stream: String,
    /// With --roles: ROLE=PUBLIC_KEY, the role authenticates with this user
    /// NKey instead of a password (repeatable).
    #[arg(long, value_name = "ROLE=PUBLIC_KEY", requires = "roles")]
    pub nkey: Vec<String>,
}

/// Prints the nats-server configuration that lets several nodes share a
/// prefix (complete, or only the mappings with `--fragment`).
///
/// # Errors
/// On an invalid prefix or partition count.
pub fn nats_config(args: &NatsConfigArgs) -> anyhow::Result<()> {
    let subjects = reco_messages::Subjects::new(&args.prefix)?;
    let mut config = reco_cluster::ServerConfig::new()
        .partitions(&subjects, args.partitions)?
        .listen(args.listen.clone())
        .store_dir(&args.store_dir);
    if args.roles {
        reco_offline::settings::check_name("--bucket", &args.bucket)?;
        reco_offline::settings::check_name("--events-stream", &args.events_stream)?;
        let mut users = reco_cluster::RoleUsers::new(reco_cluster::Deployment {
            subjects,
            model_bucket: args.bucket.clone(),
            events_stream: args.events_stream.clone(),
        });
        for given in &args.nkey {
            let (role, key) = given.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--nkey {given:?}: expected ROLE=PUBLIC_KEY, e.g. producer=UA…")
            })?;
            let role: reco_cluster::Role = role.parse().map_err(anyhow::Error::msg)?;
            users = users.nkey(role, key).map_err(anyhow::Error::msg)?;
        }
        config = config.roles(users);
    }
    if args.fragment {
        print!("{}", config.fragment());
    } else {
        print!("{}", config.render());
    }
    Ok(())
}

fn effective_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(url) = &args.nats {
        config.nats.url = url.clone();
    }
    let security = config
        .nats
        .security()
        .overridden_by(&args.security.security());
    config.nats.set_security(security);
    if let Some(dir) = &args.model {
        config.model.dir = Some(dir.clone());
    }
    if let Some(addr) = &args.metrics_addr {
        config.node.metrics_addr = addr.clone();
    }
    if let Some(id) = &args.node_id {
        config.cluster.node_id = id.clone();
    }
    config.validate()?;
    Ok(config)
}

/// Runs `reco serve`: loads the configuration and the model directory,
/// starts logging and metrics, and serves until SIGINT/SIGTERM.
///
/// # Errors
/// A bad configuration or model directory, an unreachable server, or the
/// root supervisor giving up.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
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
    let reload = args.config.clone();
    let result = system.block_on(async move {
        // Inside the runtime, before start-up: see `shutdown_signal`.
        let shutdown = super::shutdown_signal();
        super::run(config, model, lists, reload, shutdown).await
    });
    actix::System::current().stop();
    result
}

/// `reco config`: the effective configuration (file, flags and defaults)
/// as TOML, with every secret redacted ([`Config::to_toml`] uses
/// [`reco_client::redact_url`], the one redaction of URLs).
///
/// # Errors
/// A configuration that does not read or validate.
pub fn print_config(args: &ServeArgs) -> anyhow::Result<()> {
    let config = effective_config(args)?;
    print!("{}", config.to_toml());
    Ok(())
}
