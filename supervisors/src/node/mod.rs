//! The serving node: connects, wires the actors of the online path into
//! their supervision tree, serves, and drains.
//!
//! The tree itself is drawn once, in [`crate::supervision`]'s docs.
//!
//! [`run`] must be called inside an actix `System`. It returns once the
//! shutdown future has resolved and the node has drained: subscriptions
//! unsubscribed, messages already received handled, every in-flight request
//! answered (or the drain timeout passed).
//!
//! # Files
//! - `mod.rs`: [`run`], start-up and drain.
//! - [`connect`](mod@connect): the node's NATS connection.
//! - `tree.rs`: the supervision tree's children and how each starts.
//! - `admin.rs`: the operator surface the node itself answers
//!   (`admin.tree`, `admin.reload`) and the process gauges.
//! - `signals.rs`: SIGINT/SIGTERM (shutdown).
//! - [`cluster`]: single or cluster mode (the partition mapping probe,
//!   leases, replay) and what it feeds the ingress.
//! - [`service`]: the node as a NATS micro-service (`$SRV.PING/INFO/STATS`,
//!   its status endpoint; what `reco cluster` reads).
//! - [`command`]: `reco serve` and `reco nats-config`.
//! - [`counterfactual`](mod@counterfactual): the counterfactual log's
//!   publisher and its JetStream stream.

use crate::config::Config;
use crate::supervision::Shutdown;
use actix::prelude::*;
use admin::{reload_on_request, serve_tree};
use reco_actors::admin::Admin;
use reco_actors::aggregates::AggregatesReader;
use reco_actors::faults::InjectedFaults;
use reco_actors::ingress::IngressSettings;
use reco_actors::lifecycle::ExitHook;
use reco_actors::lists::ListsReader;
use reco_actors::loader::Loader;
use reco_actors::model::{ModelHandle, ModelPool};
use reco_actors::nearline::NearlineSettings;
use reco_actors::reply::InFlight;
use reco_actors::shard::ShardTable;
use reco_messages::metrics as nm;
use reco_messages::Subjects;
use reco_models::{ItemFactors, PrecomputedLists};
use reco_streaming::loader::AggregatesLoader;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tree::{dead_letter, IngressState, IngressWiring, TelemetryWiring, TreeParts};

mod admin;
pub mod cluster;
pub mod command;
pub mod connect;
pub mod counterfactual;
pub mod service;
mod signals;
mod tree;

pub use admin::rss_bytes;
pub use connect::{connect, round_trip};
pub use signals::shutdown_signal;

/// What made a node stop serving.
#[derive(Debug)]
enum StopCause {
    /// SIGINT/SIGTERM (or the caller's shutdown future).
    Requested,
    /// The root supervisor gave up.
    Escalated(String),
}

/// Runs a node until `shutdown` resolves (or its root supervisor gives up),
/// then drains it. `reload` is the config file re-read on SIGHUP to apply
/// new supervision limits without a restart.
pub async fn run(
    config: Config,
    model: Option<ItemFactors>,
    lists: PrecomputedLists,
    reload: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate()?;
    let subjects = Subjects::new(&config.nats.prefix)?;
    let client = connect(&config).await?;
    crate::operator::attach(client.clone(), subjects.clone());
    reco_offline::event_log::start_recording(&client, &config.events_log, &subjects).await;

    let model_version = model.as_ref().map(|m| m.version().to_owned());
    let lists_version = lists.version.clone();
    let handle = ModelHandle::new(model);
    let faults = InjectedFaults::new(config.model.test_delay_ms);
    if config.model.test_delay_ms > 0 {
        tracing::warn!(
            delay_ms = config.model.test_delay_ms,
            "model.test_delay_ms is set: every scoring request is slowed on purpose (test only)."
        );
    }
    let pool = ModelPool::new(
        "online",
        config.model.workers,
        config.model.max_in_flight,
        handle.clone(),
        faults.clone(),
    )
    .with_scan(config.model.scan());
    // Held while a replay of recent events runs: nearline refreshes wait.
    let replay_hold = reco_actors::nearline::ReplayHold::default();
    // Nearline refreshes get workers of their own (and no injected faults),
    // so they never take admission from online requests.
    let nearline = config.nearline.enabled.then(|| NearlineSettings {
        pool: ModelPool::new(
            "nearline",
            config.nearline.workers,
            config.nearline.max_in_flight,
            handle.clone(),
            InjectedFaults::default(),
        )
        .with_scan(config.model.scan())
        .with_nice(config.nearline.nice),
        debounce: Duration::from_millis(config.nearline.debounce_ms),
        top_n: config.nearline.top_n,
        max_age: Duration::from_millis(config.nearline.max_age_ms),
        answer_when_fresh: config.nearline.answer_when_fresh,
        hold: replay_hold.clone(),
    });
    let reader = ListsReader::new(lists);
    let aggregates = AggregatesReader::new(
        reco_streaming::loader::AggregatesHandle::default(),
        config.aggregates.settings(),
    );
    let shard_count = config.shard_count();
    let shards = ShardTable::new(shard_count);
    let arbiters: Vec<Arbiter> = (0..shard_count).map(|_| Arbiter::new()).collect();

    let (escalated_tx, mut escalated_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let root_hook: ExitHook = Arc::new(move |reason| {
        let _ = escalated_tx.send(reason.to_string());
    });
    let in_flight = InFlight::new();
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let role = cluster::start(&client, &config, &subjects, drain_rx.clone(), replay_hold).await?;
    let counters = Arc::new(reco_actors::ingress::IngressCounters::default());
    // Admin requests addressed to this node alone are answered too.
    let admin_subjects = subjects.clone().with_node(role.node.as_str());
    let (ingress_tx, mut ingress_rx) = tokio::sync::watch::channel(IngressState::Starting);
    let draining = Arc::new(AtomicBool::new(false));
    let guard = reco_actors::guard::OperatorGuard::new(
        config.admin.operator_token.as_ref().map(|t| t.expose()),
    );
    let (telemetry_stop_tx, telemetry_stop_rx) = tokio::sync::watch::channel(false);
    // Tasks holding subscriptions that must end inside the runtime.
    let (telemetry_tx, mut telemetry_rx) = tokio::sync::watch::channel(0usize);
    let breaker = reco_actors::breaker::ModelBreaker::new(tree::breaker_settings(&config.model));
    let counterfactual = counterfactual::start(
        &client,
        &config.counterfactual,
        &subjects,
        role.node.to_string(),
    )
    .await;
    let tree = TreeParts {
        config: config.clone(),
        pool: pool.clone(),
        nearline,
        reader: reader.clone(),
        aggregates: aggregates.clone(),
        shards: shards.clone(),
        arbiters: arbiters.iter().map(Arbiter::handle).collect(),
        dead_letter: dead_letter(client.clone(), subjects.clone()),
        breaker: breaker.clone(),
        counterfactual,
        seen: reco_actors::seen::SeenIndex::new(config.sessions.max_resident),
        faults: faults.clone(),
        ingress: IngressWiring {
            client: client.clone(),
            subjects: subjects.clone(),
            settings: IngressSettings {
                max_payload: config.limits.max_payload_bytes,
                default_deadline: Duration::from_millis(config.recommend.default_deadline_ms),
                drain_timeout: Duration::from_millis(config.node.drain_timeout_ms),
                counters: counters.clone(),
            },
            in_flight: in_flight.clone(),
            drain: drain_rx,
            state: Arc::new(ingress_tx),
            traffic: role.traffic(),
            replay: role.startup_replay(),
        },
        telemetry: TelemetryWiring {
            admin: Admin {
                client: client.clone(),
                subjects: admin_subjects.clone(),
                model: handle.clone(),
                lists: reader.clone(),
                in_flight: in_flight.clone(),
                shards: shards.clone(),
                faults: config.node.fault_injection.then_some(faults),
                draining: draining.clone(),
                guard: guard.clone(),
                breaker: breaker.clone(),
                rss_bytes: Arc::new(rss_bytes),
                cluster: Some(role.health()),
                aggregates: Some(aggregates.clone()),
            },
            stop: telemetry_stop_rx,
            running: Arc::new(telemetry_tx),
        },
        loader: Loader {
            pinned: Arc::new(AtomicBool::new(false)),
            client: client.clone(),
            subjects: admin_subjects.clone(),
            bucket: config.publish.bucket.clone(),
            // Checked by Config::validate.
            trusted: config.publish.trusted()?,
            model: handle.clone(),
            lists: reader.clone(),
            load_newest_at_start: config.publish.load_newest_at_start,
            guard: guard.clone(),
        },
        aggregates_loader: config.aggregates.enabled.then(|| AggregatesLoader {
            client: client.clone(),
            subjects: subjects.clone(),
            bucket: config.streaming.snapshot_bucket.clone(),
            handle: aggregates.handle().clone(),
        }),
    };
    let status = role.status_source(&config, &subjects, counters.clone());
    let root = tree.root(root_hook).start_now();
    // Seen from NATS: $SRV.PING/INFO/STATS and the status endpoint. A server
    // that refuses it (permissions) costs the view, not the node.
    let service = match service::register(&client, &subjects, status, drain_tx.subscribe()).await {
        Ok(task) => Some(task),
        Err(error) => {
            tracing::warn!(%error, "The node is not visible as a NATS micro-service (reco cluster will not list it).");
            None
        }
    };
    let tree_view = serve_tree(
        client.clone(),
        admin_subjects.clone(),
        root.clone(),
        breaker,
    )
    .await?;
    let reloader = reload.map(|path| {
        actix::spawn(reload_on_request(
            path,
            root.clone(),
            client.clone(),
            admin_subjects.clone(),
            guard.clone(),
        ))
    });

    let mut cause = StopCause::Requested;
    tokio::select! {
        ready = ingress_rx.wait_for(|s| *s == IngressState::Serving) => {
            ready.map_err(|_| anyhow::anyhow!("the ingress stopped before it served"))?;
            metrics::gauge!(nm::NODE_UP).set(1.0);
            tracing::info!(
                nats = %reco_client::redact_url(&config.nats.url),
                prefix = subjects.prefix(),
                shards = shard_count,
                workers = config.model.workers,
                node = %role.node,
                mode = role.mode_name(),
                model = model_version.as_deref().unwrap_or("none"),
                lists = %lists_version,
                "Node ready."
            );
            tokio::select! {
                () = shutdown => {}
                Some(why) = escalated_rx.recv() => cause = StopCause::Escalated(why),
            }
        }
        Some(why) = escalated_rx.recv() => cause = StopCause::Escalated(why),
    }
    if let StopCause::Escalated(why) = &cause {
        tracing::error!(why = %why, "Root supervisor gave up: shutting the node down.");
    }
    draining.store(true, Ordering::Release);
    metrics::gauge!(nm::NODE_UP).set(0.0);
    let drain_limit = Duration::from_millis(config.node.drain_timeout_ms);
    let _ = drain_tx.send(true);
    if tokio::time::timeout(
        drain_limit,
        ingress_rx.wait_for(|s| *s == IngressState::Stopped),
    )
    .await
    .is_err()
    {
        tracing::warn!("The ingress did not finish draining in time.");
    }
    let left = in_flight.wait_idle(drain_limit).await;
    role.stopped(drain_limit).await;
    if let Some(service) = service {
        let _ = tokio::time::timeout(Duration::from_secs(2), service).await;
    }
    if left > 0 {
        metrics::counter!(nm::DRAIN_ABANDONED_TOTAL).increment(left as u64);
        tracing::error!(left, "Drain timed out with requests still in flight.");
    }
    // Bounded: without a server neither would return.
    match tokio::time::timeout(Duration::from_secs(2), client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "Final NATS flush failed."),
        Err(_) => tracing::warn!("Final NATS flush timed out (is the server gone?)."),
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), round_trip(&client)).await;
    // Everything holding a subscription ends inside the runtime: async-nats
    // unsubscribes from `Drop` by spawning a task.
    let _ = telemetry_stop_tx.send(true);
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        telemetry_rx.wait_for(|running| *running == 0),
    )
    .await;
    tree_view.abort();
    let _ = tree_view.await;
    if let Some(reloader) = reloader {
        reloader.abort();
        let _ = reloader.await;
    }
    let _ = root.send(Shutdown).await;
    for arbiter in arbiters {
        arbiter.stop();
    }
    tracing::info!(abandoned = left, "Node drained.");
    match cause {
        StopCause::Requested => Ok(()),
        StopCause::Escalated(why) => Err(anyhow::anyhow!("the root supervisor gave up: {why}")),
    }
}
