//! The one-command demo, and the stack (server, model, node) a
//! self-contained run stands up.
//!
//! The demo is the README's main command: it must work from a clean clone
//! with only `nats-server` installed, so it owns every process it needs,
//! trains on MovieLens in-process, and lets synthetic members (whose tastes
//! live in the trained model's latent space) use the node for about a minute
//! with one injected fault.

use crate::driver::{self, DriveConfig, Load};
use crate::faults::{schedule, FaultName};
use crate::process::{NatsServer, Node};
use crate::report::Report;
use crate::setup::{train_world_model, TrainPlan};
use crate::world::{Catalogue, World, WorldConfig};
use anyhow::{Context, Result};
use reco_models::AlsParams;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Node configuration for simulated runs: faults on, deadline as requested.
pub fn node_toml(deadline_ms: u64) -> String {
    format!("[node]\nfault_injection = true\n[recommend]\ndefault_deadline_ms = {deadline_ms}\n")
}

/// A NATS server (owned or not) and a node the run owns.
pub struct Stack {
    /// The server, when the simulator started it.
    pub nats: Option<Arc<Mutex<NatsServer>>>,
    /// Where to connect.
    pub url: String,
    /// The node.
    pub node: Node,
    _model: tempfile::TempDir,
}

/// Starts a private server unless `nats` names one.
pub fn nats_or_private(nats: Option<&str>) -> Result<(Option<Arc<Mutex<NatsServer>>>, String)> {
    match nats {
        Some(url) => Ok((None, url.to_owned())),
        None => {
            let server = NatsServer::start()?;
            let url = server.url();
            Ok((Some(Arc::new(Mutex::new(server))), url))
        }
    }
}

/// A server (unless given), a model trained on the world's past, a node.
pub fn world_stack(world: &World, nats: Option<&str>, deadline_ms: u64) -> Result<Stack> {
    world_stack_with(world, nats, deadline_ms, "")
}

/// [`world_stack`] with `extra_toml` appended to the node's configuration:
/// whole tables that [`node_toml`] does not write (e.g. `[nearline]`), for
/// runs that need the node tuned (the quality test pins the nearline
/// debounce).
pub fn world_stack_with(
    world: &World,
    nats: Option<&str>,
    deadline_ms: u64,
    extra_toml: &str,
) -> Result<Stack> {
    let (server, url) = nats_or_private(nats)?;
    let model = world_model(world)?;
    let config = node_toml(deadline_ms) + extra_toml;
    let node = Node::start(&url, Some(model.path()), &config)?;
    Ok(Stack {
        nats: server,
        url,
        node,
        _model: model,
    })
}

/// A model directory trained on the world's past (what every node of a
/// run serves).
fn world_model(world: &World) -> Result<tempfile::TempDir> {
    let model = tempfile::tempdir()?;
    let members = world.config().members;
    train_world_model(
        world,
        model.path(),
        &TrainPlan {
            history_members: members.min(20_000),
            history_plays: 20,
            list_members: members.min(20_000) / 2,
            list_plays: 2,
            factors: world.catalogue().dim().clamp(4, 64),
            iterations: 8,
            version: format!("world-{}", world.config().seed),
            held_out: Vec::new(),
        },
    )?;
    Ok(model)
}

/// A server with the partition mapping (unless given: it must have it),
/// a model trained on the world's past, and `nodes` nodes sharing it.
pub struct ClusterStack {
    /// The server, when the simulator started it.
    pub nats: Option<Arc<Mutex<NatsServer>>>,
    /// Where to connect.
    pub url: String,
    /// The nodes.
    pub nodes: Arc<crate::cluster::NodeSet>,
    _model: tempfile::TempDir,
}

/// Starts [`ClusterStack`]: `nodes` nodes over `partitions` partitions.
pub fn world_cluster(
    world: &World,
    nats: Option<&str>,
    deadline_ms: u64,
    nodes: usize,
    partitions: u32,
) -> Result<ClusterStack> {
    let subjects = reco_messages::Subjects::default();
    let (server, url) = match nats {
        Some(url) => (None, url.to_owned()),
        None => {
            let server = NatsServer::start_with_config(&crate::cluster::mapping_config(
                &subjects, partitions,
            ))?;
            let url = server.url();
            (Some(Arc::new(Mutex::new(server))), url)
        }
    };
    let model = world_model(world)?;
    let set = crate::cluster::NodeSet::start(
        &url,
        model.path().to_owned(),
        &node_toml(deadline_ms),
        nodes,
        partitions,
        subjects,
    )?;
    Ok(ClusterStack {
        nats: server,
        url,
        nodes: Arc::new(set),
        _model: model,
    })
}

/// Where MovieLens is: the copy shipped in the repository's `data/`, found
/// from the working directory or from this source tree.
pub fn default_ratings() -> PathBuf {
    let relative = PathBuf::from("data/ml-latest-small/ratings.csv");
    if relative.exists() {
        return relative;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/ml-latest-small/ratings.csv")
}

/// Options of the demo.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// NATS URL; a private server when absent.
    pub nats: Option<String>,
    /// MovieLens ratings.csv.
    pub ratings: PathBuf,
    /// World seed.
    pub seed: u64,
    /// Synthetic members.
    pub members: u64,
    /// Length of the load.
    pub duration: Duration,
    /// Requests per second (open loop).
    pub rps: f64,
    /// Events per second.
    pub events_per_sec: f64,
    /// Show the live progress line.
    pub progress: bool,
}

/// What the demo needs, checked before it spends time training: the
/// ratings file, the `reco` binary, and the NATS server given with
/// `--nats` (a private one is started right after, which checks that
/// `nats-server` is installed).
pub fn check_prerequisites(options: &DemoOptions) -> Result<()> {
    std::fs::File::open(&options.ratings).with_context(|| {
        format!(
            "cannot read the ratings file {}: pass a MovieLens ratings.csv with --ratings",
            options.ratings.display()
        )
    })?;
    crate::process::check_reco_binary()?;
    if let Some(url) = &options.nats {
        crate::process::check_nats_reachable(url)?;
    }
    Ok(())
}

/// Runs the demo and returns its report.
pub async fn demo(options: DemoOptions, log: impl Fn(&str)) -> Result<Report> {
    check_prerequisites(&options)?;
    let (server, url) = nats_or_private(options.nats.as_deref())?;
    log(&format!("NATS at {url}"));
    let model = tempfile::tempdir()?;
    log(&format!("Training on {}", options.ratings.display()));
    let ratings = reco_offline::train::read_ratings(&options.ratings)?;
    let trained = reco_offline::train::run(
        &ratings,
        &reco_offline::train::TrainOptions {
            params: AlsParams::default(),
            top_n: 200,
            popular_n: 1_000,
            version: Some("demo-movielens".into()),
            holdout: reco_offline::train::Holdout::None,
            k: 10,
            write_split: None,
            out: Some(model.path().to_owned()),
            clusters: Some(0),
            values: reco_offline::train::RatingValues::Stars,
            items: None,
        },
    )
    .with_context(|| format!("cannot train on {}", options.ratings.display()))?;
    log(&format!(
        "Trained {} items in {:.1} s; starting reco serve",
        trained.summary.items, trained.summary.total_seconds
    ));
    let node = Node::start(&url, Some(model.path()), &node_toml(50))?;
    let (factors, _) = reco_offline::artifacts::load(model.path())?;
    let counts = item_counts(&options.ratings)?;
    let weights = factors
        .items()
        .iter()
        .map(|i| counts.get(&i.0).copied().unwrap_or(1) as f64)
        .collect();
    let catalogue = Catalogue::new(
        factors.items().to_vec(),
        factors.dim(),
        factors.factors().to_vec(),
        weights,
    );
    let world = Arc::new(World::with_catalogue(
        WorldConfig {
            seed: options.seed,
            members: options.members,
            ..WorldConfig::default()
        },
        catalogue,
    ));
    let faults = schedule(options.seed, options.duration, &[FaultName::ModelSlow], 50);
    log(&format!(
        "Driving {} synthetic members for {:?} with {} fault(s)",
        options.members,
        options.duration,
        faults.len()
    ));
    let config = DriveConfig {
        duration: options.duration,
        events_per_sec: options.events_per_sec,
        load: Load::Open { rps: options.rps },
        deadline_ms: 50,
        faults,
        metrics_addr: Some(node.metrics_addr()),
        progress: options.progress,
        ..DriveConfig::default()
    };
    let slow = Arc::new(AtomicU64::new(0));
    let client = driver::connect(&url, slow.clone()).await?;
    let actions = Box::new(world.actions());
    let report = driver::drive(client, slow, world, actions, config, server.clone()).await?;
    // The server outlives the node, which outlives the run.
    drop(node);
    drop(server);
    Ok(report)
}

fn item_counts(ratings: &Path) -> Result<HashMap<u64, u64>> {
    let file = std::fs::File::open(ratings)
        .with_context(|| format!("cannot open {}", ratings.display()))?;
    let mut counts = HashMap::new();
    for r in reco_models::parse_ratings(std::io::BufReader::new(file))? {
        *counts.entry(r.item.0).or_default() += 1;
    }
    Ok(counts)
}
