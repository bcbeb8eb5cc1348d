//! `reco-sim`: a thin shell over the `reco_sim` library.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use reco_sim::bench::{self, BenchConfig};
use reco_sim::demo::{self, DemoOptions};
use reco_sim::driver::{self, DriveConfig, Load};
use reco_sim::faults::{schedule, FaultName};
use reco_sim::report::Report;
use reco_sim::world::{digest, movielens_actions, Action, World, WorldConfig};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// reco-sim: synthetic members driving a reco node over NATS.
#[derive(Debug, Parser)]
#[command(name = "reco-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The demo: private NATS, train on MovieLens, a reco node, a minute of
    /// synthetic members with one fault, then the report.
    Demo(DemoArgs),
    /// Drive a node with a synthetic world (or MovieLens replay) and report.
    Run(Box<RunArgs>),
    /// Measure reco beside its NATS ceilings.
    Bench(BenchArgs),
    /// Print the digest of a world's first events (determinism check).
    Digest(DigestArgs),
    /// Replay evaluation against a live node: train on each member's first
    /// 80 % of ratings in time order, then ask and rate the rest; next-item
    /// HR@10 / NDCG@10 of reco's replies beside the static top-10 and
    /// popularity.
    Replay(ReplayArgs),
    /// Launch new titles mid-run: reco's billboard (bandit over near-real-
    /// time take rates) beside a pure-model and a static popular billboard,
    /// regret against an oracle; how soon a launched title's take rate is
    /// known within ±20 %.
    Launch(LaunchArgs),
    /// Device context: the same visits with `sessions.same_device_weight`
    /// off (1) and on, quality against members' true tastes per device.
    Device(DeviceArgs),
}

#[derive(Debug, Args)]
struct DeviceArgs {
    #[command(flatten)]
    world: WorldArgs,
    /// How much tastes depend on the device (0 = not at all).
    #[arg(long, default_value_t = 0.6)]
    device_taste: f64,
    /// Members visited.
    #[arg(long, default_value_t = 1_000)]
    visited: u64,
    /// Plays per device in a visit.
    #[arg(long, default_value_t = 4)]
    plays: usize,
    /// Same-device weights to compare (1 = off).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,5,10")]
    weights: Vec<f32>,
    /// Items per list.
    #[arg(long, default_value_t = 10)]
    k: u32,
    /// Deadline of each request, ms.
    #[arg(long, default_value_t = 1_000)]
    deadline_ms: u64,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct LaunchArgs {
    #[command(flatten)]
    world: WorldArgs,
    /// Titles launched mid-run.
    #[arg(long, default_value_t = 5)]
    launched: usize,
    /// Seconds into the run when they launch.
    #[arg(long, default_value_t = 30)]
    launch_at: u64,
    /// Length of the run, seconds.
    #[arg(long, default_value_t = 120)]
    duration: u64,
    /// Extra appeal of a launched title (logit).
    #[arg(long, default_value_t = 1.0)]
    launch_appeal: f64,
    /// Titles per slate.
    #[arg(long, default_value_t = 5)]
    slate: usize,
    /// Deadline of each request, ms.
    #[arg(long, default_value_t = 500)]
    deadline_ms: u64,
    /// Extra TOML for the node, e.g. "[aggregates]\nbillboard_score_lift = 0.3".
    #[arg(long, default_value = "")]
    node_toml: String,
    /// NATS URL; a private nats-server when absent.
    #[arg(long)]
    nats: Option<String>,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// MovieLens ratings.csv (default: the repository's ml-latest-small).
    #[arg(long)]
    ratings: Option<PathBuf>,
    /// NATS URL; a private nats-server when absent.
    #[arg(long)]
    nats: Option<String>,
    /// Replay at most this many members.
    #[arg(long)]
    members: Option<usize>,
    /// Members replayed at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Deadline of each request, ms.
    #[arg(long, default_value_t = 1_000)]
    deadline_ms: u64,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct WorldArgs {
    /// Seed of the world (and of the fault schedule).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Synthetic members.
    #[arg(long, default_value_t = 10_000)]
    members: u64,
    /// Catalogue items.
    #[arg(long, default_value_t = 2_000)]
    items: usize,
    /// Latent dimension of the world (and factors of its trained model).
    #[arg(long, default_value_t = 16)]
    dim: usize,
    /// How strongly members prefer what they like (0 = random).
    #[arg(long, default_value_t = 8.0)]
    taste_strength: f64,
}

impl WorldArgs {
    fn config(&self) -> WorldConfig {
        WorldConfig {
            seed: self.seed,
            members: self.members,
            items: self.items,
            dim: self.dim,
            taste_strength: self.taste_strength,
            ..WorldConfig::default()
        }
    }
}

#[derive(Debug, Args)]
struct OutputArgs {
    /// Write the report as JSON to FILE.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw the timeline (latency against the deadline, fallbacks by
    /// reason, throughput) to FILE.svg and FILE.png (give either name).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Use this NATS server instead of starting a private one.
    #[arg(long)]
    nats: Option<String>,
    /// MovieLens ratings.csv to train on.
    #[arg(long)]
    ratings: Option<PathBuf>,
    /// Seed of the synthetic members and of the fault.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Synthetic members.
    #[arg(long, default_value_t = 5_000)]
    members: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Requests per second (open loop).
    #[arg(long, default_value_t = 200.0)]
    rps: f64,
    /// Events per second.
    #[arg(long, default_value_t = 2_000.0)]
    events_per_sec: f64,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// NATS server; a private one when absent.
    #[arg(long)]
    nats: Option<String>,
    /// Drive the node already serving on --nats instead of starting one.
    #[arg(long, requires = "nats")]
    attach: bool,
    /// Metrics address of the attached node (e.g. 127.0.0.1:9464).
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Subject prefix of the node.
    #[arg(long, default_value = "reco")]
    prefix: String,
    /// Credentials and TLS for --nats (`reco serve` and `reco train`
    /// started here read the same `RECO_NATS_*` variables).
    #[command(flatten)]
    security: reco_client::SecurityArgs,
    #[command(flatten)]
    world: WorldArgs,
    /// Replay MovieLens ratings (a ratings.csv) as events instead of the world's stream.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Seconds of load.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Stop after this many events.
    #[arg(long)]
    events: Option<u64>,
    /// Events per second (0 = as fast as possible).
    #[arg(long, default_value_t = 5_000.0)]
    events_per_sec: f64,
    /// Open loop: requests per second.
    #[arg(long, conflicts_with = "concurrency")]
    rps: Option<f64>,
    /// Closed loop: requests in flight (default 16 unless --rps).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Deadline of each request, ms.
    #[arg(long, default_value_t = 50)]
    deadline_ms: u64,
    /// Faults to inject, scheduled from the seed: model_slow, model_crash,
    /// malformed, spike, nats_restart, big_payloads, member_flood, and with
    /// --nodes node_kill, node_hang, node_stop, node_join (repeat or
    /// comma-separate).
    #[arg(long, value_delimiter = ',')]
    fault: Vec<FaultName>,
    /// Start this many nodes sharing the prefix through the server's
    /// partition mapping (a private server started with it, or --nats
    /// with the mapping already on: `reco nats-config --fragment`).
    #[arg(long, conflicts_with = "attach")]
    nodes: Option<usize>,
    /// Partitions of a --nodes run (the server's mapping).
    #[arg(long, default_value_t = 16)]
    partitions: u32,
    /// Split members into experiment (even ids) and control (odd ids)
    /// cohorts: targetable faults hit the experiment only; the report
    /// compares them.
    #[arg(long)]
    cohorts: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Use this NATS server instead of a private one.
    #[arg(long)]
    nats: Option<String>,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Events in the ingest scenario.
    #[arg(long, default_value_t = 500_000)]
    events: u64,
    /// Catalogue items.
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Model factors.
    #[arg(long, default_value_t = 64)]
    factors: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds per request scenario.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Deadline, ms.
    #[arg(long, default_value_t = 50)]
    deadline_ms: u64,
    /// Members made resident (0 skips the scenario).
    #[arg(long, default_value_t = 1_000_000)]
    residents: u64,
    /// Write the figures as JSON to FILE.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DigestArgs {
    #[command(flatten)]
    world: WorldArgs,
    /// Events to digest.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // On Ctrl-C or SIGTERM the run is dropped, and with it every process it
    // started (nats-server, reco serve): nothing is left orphaned.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(cli) => outcome,
            signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}; stopped every process the simulator started")),
        }
    });
    drop(runtime);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn interrupted() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

fn say(line: &str) {
    eprintln!("==> {line}");
}

/// Refuses a plot format the simulator cannot write before a run, not after.
fn check_plot(args: &OutputArgs) -> Result<()> {
    if let Some(path) = &args.plot {
        let known = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("svg") || e.eq_ignore_ascii_case("png"));
        anyhow::ensure!(
            known,
            "--plot {}: name the file .svg or .png (both are written, side by side)",
            path.display()
        );
    }
    Ok(())
}

/// Where the demo writes its report and plot when not told: under
/// `target/` (ignored by git), so that every demo leaves something to open.
fn demo_outputs(mut args: OutputArgs) -> OutputArgs {
    let dir = PathBuf::from("target/reco-demo");
    if args.json.is_none() {
        args.json = Some(dir.join("report.json"));
    }
    if args.plot.is_none() {
        args.plot = Some(dir.join("timeline.svg"));
    }
    args
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(mut args) => {
            args.output = demo_outputs(args.output);
            check_plot(&args.output)?;
            let report = demo::demo(
                DemoOptions {
                    nats: args.nats,
                    ratings: args.ratings.unwrap_or_else(demo::default_ratings),
                    seed: args.seed,
                    members: args.members,
                    duration: Duration::from_secs_f64(args.duration),
                    rps: args.rps,
                    events_per_sec: args.events_per_sec,
                    progress: !args.output.quiet && std::io::stderr().is_terminal(),
                },
                say,
            )
            .await?;
            output(&report, &args.output)
        }
        Command::Run(args) => run_world(*args).await,
        Command::Bench(args) => {
            let config = BenchConfig {
                seed: args.seed,
                events: args.events,
                items: args.items,
                factors: args.factors,
                concurrency: args.concurrency,
                duration_s: args.duration,
                deadline_ms: args.deadline_ms,
                residents: args.residents,
                nats: args.nats,
            };
            let report = bench::run(config, say).await?;
            print_and_save(&report.table(), &report, args.json)
        }
        Command::Launch(args) => {
            let world = args.world.config();
            let report = reco_sim::launch::run(
                reco_sim::launch::LaunchConfig {
                    world,
                    launched: args.launched,
                    launch_at: Duration::from_secs(args.launch_at),
                    duration: Duration::from_secs(args.duration),
                    launch_appeal: args.launch_appeal,
                    slate: args.slate,
                    deadline_ms: args.deadline_ms,
                    node_toml: args.node_toml.replace("\\n", "\n"),
                    nats: args.nats,
                },
                say,
            )
            .await?;
            print_and_save(&report.table(), &report, args.json)
        }
        Command::Device(args) => {
            let world = WorldConfig {
                device_taste: args.device_taste,
                ..args.world.config()
            };
            let report = reco_sim::device::run(
                reco_sim::device::DeviceConfig {
                    world,
                    visited: args.visited,
                    plays: args.plays,
                    weights: args.weights,
                    k: args.k,
                    deadline_ms: args.deadline_ms,
                },
                say,
            )
            .await?;
            print_and_save(&report.table(), &report, args.json)
        }
        Command::Replay(args) => {
            let figures = reco_sim::replay::replay(
                reco_sim::replay::ReplayOptions {
                    nats: args.nats,
                    ratings: args.ratings.unwrap_or_else(demo::default_ratings),
                    members: args.members,
                    concurrency: args.concurrency,
                    deadline_ms: args.deadline_ms,
                },
                say,
            )
            .await?;
            print_and_save(&figures.table(), &figures, args.json)
        }
        Command::Digest(args) => {
            let world = World::synthetic(args.world.config());
            let actions: Vec<Action> = world
                .actions()
                .filter(|a| matches!(a, Action::Event(_)))
                .take(args.events)
                .collect();
            println!("{:016x}", digest(&actions));
            Ok(())
        }
    }
}

async fn run_world(args: RunArgs) -> Result<()> {
    check_plot(&args.output)?;
    let world = Arc::new(World::synthetic(args.world.config()));
    let mut cluster = None;
    let (stack, url, metrics, server) = if args.attach {
        let url = args.nats.clone().context("--attach needs --nats")?;
        (None, url, args.metrics, None)
    } else if let Some(nodes) = args.nodes {
        anyhow::ensure!(nodes >= 1, "--nodes needs at least one node");
        say(&format!(
            "Training a model on the world's past and starting {nodes} nodes over {} partitions",
            args.partitions
        ));
        let started = demo::world_cluster(
            &world,
            args.nats.as_deref(),
            args.deadline_ms,
            nodes,
            args.partitions,
        )?;
        let (url, metrics, server) = (
            started.url.clone(),
            started.nodes.metrics_addr(),
            started.nats.clone(),
        );
        cluster = Some(started);
        (None, url, metrics, server)
    } else {
        say("Training a model on the world's past and starting reco serve");
        let stack = demo::world_stack(&world, args.nats.as_deref(), args.deadline_ms)?;
        let url = stack.url.clone();
        let metrics = Some(stack.node.metrics_addr());
        let server = stack.nats.clone();
        (Some(stack), url, metrics, server)
    };
    let duration = Duration::from_secs_f64(args.duration);
    let load = match (args.rps, args.concurrency) {
        (Some(rps), _) => Load::Open { rps },
        (None, Some(0)) => Load::None,
        (None, c) => Load::Closed {
            concurrency: c.unwrap_or(16),
        },
    };
    let config = DriveConfig {
        prefix: args.prefix.clone(),
        duration,
        max_events: args.events,
        events_per_sec: args.events_per_sec,
        load,
        deadline_ms: args.deadline_ms,
        faults: schedule(args.world.seed, duration, &args.fault, args.deadline_ms),
        metrics_addr: metrics,
        progress: !args.output.quiet && std::io::stderr().is_terminal(),
        cohorts: args.cohorts,
        nodes: cluster.as_ref().map(|c| c.nodes.clone()),
        ..DriveConfig::default()
    };
    let actions: Box<dyn Iterator<Item = Action> + Send> = match &args.replay {
        Some(path) => Box::new(movielens_actions(path)?.into_iter()),
        None => Box::new(world.actions()),
    };
    let slow = Arc::new(AtomicU64::new(0));
    let client = driver::connect_with(&url, slow.clone(), args.security.security()).await?;
    say(&format!(
        "Driving {} for {duration:?}",
        reco_client::redact_url(&url)
    ));
    let report = driver::drive(client, slow, world, actions, config, server).await?;
    drop(stack);
    drop(cluster);
    output(&report, &args.output)
}

fn output(report: &Report, args: &OutputArgs) -> Result<()> {
    print!("{}", report.table());
    let mut files = Vec::new();
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        files.push(format!("report (JSON)  {}", path.display()));
    }
    if let Some(path) = &args.plot {
        let (svg, png) = reco_sim::plot::write(report, path)?;
        files.push(format!(
            "timeline plot {} and {}",
            svg.display(),
            png.display()
        ));
    }
    if !files.is_empty() {
        println!("files:");
        for file in files {
            println!("  {file}");
        }
    }
    Ok(())
}

/// Prints a command's `table` and, with `--json PATH`, writes its report
/// there as JSON (bench, launch, device and replay share this ending).
fn print_and_save(
    table: &str,
    report: &impl serde::Serialize,
    json: Option<std::path::PathBuf>,
) -> Result<()> {
    print!("{table}");
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
