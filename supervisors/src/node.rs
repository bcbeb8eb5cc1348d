//! The serving node: wires the actors of the online path together.
//!
//! ```text
//!  node
//!  ├── NATS client (one connection; slow consumers counted)
//!  ├── Ingress            events + requests subscriptions → shards
//!  ├── SessionShard × S   one per arbiter thread, each owning its sessions
//!  │   └── Session × members (bounded, passivated when idle)
//!  ├── ModelPool          ModelWorker × W on a SyncArbiter, bounded admission
//!  └── Precomputed        batch lists, read without a queue
//! ```
//!
//! [`run`] must be called inside an actix `System`. It returns once the
//! shutdown future has resolved and the node has drained: subscriptions
//! unsubscribed, messages already received handled, every in-flight request
//! answered (or the drain timeout passed).

use crate::config::Config;
use crate::loader::Loader;
use crate::metrics as nm;
use crate::supervision::{
    subtree, ChildSpec, GetTree, Reconfigure, Restart, RunningChild, Shutdown, Supervisor,
    SupervisorSettings,
};
use actix::prelude::*;
use anyhow::Context as _;
use futures::StreamExt;
use reco_actors::admin::Admin;
use reco_actors::ingress::{dlq_headers, Ingress, IngressSettings};
use reco_actors::lifecycle::{ExitHook, ExitReason, Stop};
use reco_actors::metrics as m;
use reco_actors::model::{InjectedFaults, ModelHandle, ModelPool, WorkerChild};
use reco_actors::nearline::NearlineSettings;
use reco_actors::precomputed::{ListsReader, Precomputed};
use reco_actors::responder::InFlight;
use reco_actors::session::{DeadLetter, SessionDeps, SessionSettings};
use reco_actors::shard::{SessionShard, ShardSettings, ShardTable};
use reco_messages::admin::Reloaded;
use reco_messages::{encode, ErrorCode, ErrorReply, Subjects};
use reco_models::{ItemFactors, PrecomputedLists};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Connects to NATS with the node's options: counted slow consumers and
/// connection events, bounded subscription buffers.
pub async fn connect(config: &Config) -> anyhow::Result<async_nats::Client> {
    let options = async_nats::ConnectOptions::new()
        .name("reco-serve")
        .subscription_capacity(config.nats.subscription_capacity)
        .connection_timeout(Duration::from_millis(config.nats.connect_timeout_ms))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::SlowConsumer(sid) => {
                    metrics::counter!(m::NATS_SLOW_CONSUMER_TOTAL).increment(1);
                    tracing::warn!(
                        sid,
                        "NATS subscription is a slow consumer: messages were dropped."
                    );
                }
                other => {
                    let name = match other {
                        async_nats::Event::Connected => "connected",
                        async_nats::Event::Disconnected => "disconnected",
                        async_nats::Event::LameDuckMode => "lame_duck",
                        async_nats::Event::Draining => "draining",
                        async_nats::Event::Closed => "closed",
                        _ => "other",
                    };
                    metrics::counter!(m::NATS_EVENTS_TOTAL, "event" => name).increment(1);
                    tracing::info!(event = %other, "NATS connection event.");
                }
            }
        });
    options
        .connect(config.nats.url.as_str())
        .await
        .with_context(|| {
            format!(
                "cannot connect to NATS at {}: is nats-server running? (set --nats or {})",
                config.nats.url,
                crate::config::ENV_NATS_URL
            )
        })
}

/// Waits until the server has processed everything this client sent so far
/// (`Client::flush` only writes to the socket): a message to our own inbox
/// comes back only after earlier subscriptions are registered.
pub async fn round_trip(client: &async_nats::Client) -> anyhow::Result<()> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await?;
    client.publish(inbox, bytes::Bytes::new()).await?;
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .context("NATS server did not answer a round trip within 10 s")?;
    Ok(())
}

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
    crate::event_log::start_recording(&client, &config, &subjects).await;

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
    );
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
        .with_nice(config.nearline.nice),
        debounce: Duration::from_millis(config.nearline.debounce_ms),
        top_n: config.nearline.top_n,
        max_age: Duration::from_millis(config.nearline.max_age_ms),
        answer_when_fresh: config.nearline.answer_when_fresh,
    });
    let reader = ListsReader::new(lists);
    let shard_count = config.shard_count();
    let shards = ShardTable::new(shard_count);
    let arbiters: Vec<Arbiter> = (0..shard_count).map(|_| Arbiter::new()).collect();

    let (escalated_tx, mut escalated_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let root_hook: ExitHook = Arc::new(move |reason| {
        let _ = escalated_tx.send(reason.to_string());
    });
    let in_flight = InFlight::new();
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let (ingress_tx, mut ingress_rx) = tokio::sync::watch::channel(IngressState::Starting);
    let draining = Arc::new(AtomicBool::new(false));
    let (telemetry_stop_tx, telemetry_stop_rx) = tokio::sync::watch::channel(false);
    // Tasks holding subscriptions that must end inside the runtime.
    let (telemetry_tx, mut telemetry_rx) = tokio::sync::watch::channel(0usize);
    let tree = TreeParts {
        config: config.clone(),
        pool: pool.clone(),
        nearline,
        reader: reader.clone(),
        shards: shards.clone(),
        arbiters: arbiters.iter().map(Arbiter::handle).collect(),
        dead_letter: dead_letter(client.clone(), subjects.clone()),
        ingress: IngressWiring {
            client: client.clone(),
            subjects: subjects.clone(),
            settings: IngressSettings {
                max_payload: config.limits.max_payload_bytes,
                default_deadline: Duration::from_millis(config.recommend.default_deadline_ms),
                drain_timeout: Duration::from_millis(config.node.drain_timeout_ms),
            },
            in_flight: in_flight.clone(),
            drain: drain_rx,
            state: Arc::new(ingress_tx),
        },
        telemetry: TelemetryWiring {
            admin: Admin {
                client: client.clone(),
                subjects: subjects.clone(),
                model: handle.clone(),
                lists: reader.clone(),
                in_flight: in_flight.clone(),
                shards: shards.clone(),
                faults: config.node.fault_injection.then_some(faults),
                draining: draining.clone(),
                rss_bytes: Arc::new(rss_bytes),
            },
            stop: telemetry_stop_rx,
            running: Arc::new(telemetry_tx),
        },
        loader: Loader {
            pinned: Arc::new(AtomicBool::new(false)),
            client: client.clone(),
            subjects: subjects.clone(),
            bucket: config.publish.bucket.clone(),
            model: handle.clone(),
            lists: reader.clone(),
            load_newest_at_start: config.publish.load_newest_at_start,
        },
    };
    let root = tree.root(root_hook).start_now();
    let tree_view = serve_tree(client.clone(), subjects.clone(), root.clone()).await?;
    let reloader = reload.map(|path| {
        actix::spawn(reload_on_request(
            path,
            root.clone(),
            client.clone(),
            subjects.clone(),
        ))
    });

    let mut cause = StopCause::Requested;
    tokio::select! {
        ready = ingress_rx.wait_for(|s| *s == IngressState::Serving) => {
            ready.map_err(|_| anyhow::anyhow!("the ingress stopped before it served"))?;
            metrics::gauge!(nm::NODE_UP).set(1.0);
            tracing::info!(
                nats = %config.nats.url,
                prefix = subjects.prefix(),
                shards = shard_count,
                workers = config.model.workers,
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

/// Where an incarnation of the ingress is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IngressState {
    Starting,
    Serving,
    Stopped,
}

/// What every incarnation of the ingress child is built from.
#[derive(Clone)]
struct IngressWiring {
    client: async_nats::Client,
    subjects: Subjects,
    settings: IngressSettings,
    in_flight: InFlight,
    /// Becomes true when the node drains.
    drain: tokio::sync::watch::Receiver<bool>,
    state: Arc<tokio::sync::watch::Sender<IngressState>>,
}

/// A running ingress: stopping it drains its subscriptions.
struct IngressChild(Option<tokio::sync::oneshot::Sender<()>>);

impl RunningChild for IngressChild {
    fn stop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

/// The admin surface and process gauges as a supervised child.
struct TelemetryChild(Vec<tokio::task::JoinHandle<()>>);

impl RunningChild for TelemetryChild {
    fn stop(&mut self) {
        for task in self.0.drain(..) {
            task.abort();
        }
    }
}

/// Everything the supervision tree of a node is built from.
struct TreeParts {
    config: Config,
    pool: ModelPool,
    nearline: Option<NearlineSettings>,
    reader: ListsReader,
    shards: ShardTable,
    arbiters: Vec<ArbiterHandle>,
    dead_letter: DeadLetter,
    ingress: IngressWiring,
    telemetry: TelemetryWiring,
    loader: Loader,
}

/// A supervised actix actor that stops on [`Stop`].
struct ActorChild<A: Actor<Context = actix::Context<A>> + Handler<Stop>> {
    addr: Addr<A>,
    on_stop: Option<Box<dyn FnOnce() + Send>>,
}

impl<A: Actor<Context = actix::Context<A>> + Handler<Stop>> RunningChild for ActorChild<A> {
    fn stop(&mut self) {
        if let Some(on_stop) = self.on_stop.take() {
            on_stop();
        }
        self.addr.do_send(Stop);
    }
}

/// A model worker as a supervised child.
struct WorkerChildOf(WorkerChild);

impl RunningChild for WorkerChildOf {
    fn stop(&mut self) {
        self.0.stop();
    }
}

impl TreeParts {
    fn root(self, escalate: ExitHook) -> Supervisor {
        let sup = self.config.supervision.clone();
        let lists = {
            let reader = self.reader.clone();
            ChildSpec {
                name: "lists".into(),
                restart: Restart::Permanent,
                start: Box::new(move |_exit| {
                    Box::new(ActorChild {
                        addr: Precomputed::new(reader.clone()).start(),
                        on_stop: None,
                    })
                }),
            }
        };
        let model = workers_subtree("model", self.pool.clone(), sup.model.settings());
        let nearline = self
            .nearline
            .as_ref()
            .map(|n| workers_subtree("nearline", n.pool.clone(), sup.nearline.settings()));
        let telemetry = self.telemetry.clone();
        let loader = {
            let (wiring, loader) = (self.telemetry.clone(), self.loader.clone());
            ChildSpec {
                name: "loader".into(),
                restart: Restart::Permanent,
                start: Box::new(move |exit| start_loader(loader.clone(), wiring.clone(), exit)),
            }
        };
        let parts = Arc::new(self);
        let sessions = {
            let settings = sup.sessions.settings();
            let parts = parts.clone();
            subtree("sessions", Restart::Permanent, move |exit| {
                let shards = (0..parts.arbiters.len())
                    .map(|index| {
                        let parts = parts.clone();
                        ChildSpec {
                            name: format!("shard-{index}"),
                            restart: Restart::Permanent,
                            start: Box::new(move |exit| parts.start_shard(index, exit)),
                        }
                    })
                    .collect();
                Supervisor::new("sessions", settings.clone(), shards, exit)
            })
        };
        let ingress = ChildSpec {
            name: "ingress".into(),
            // A drained ingress exits normally and stays down; one whose
            // subscriptions broke is restarted.
            restart: Restart::Transient,
            start: Box::new(move |exit| parts.start_ingress(exit)),
        };
        let telemetry = ChildSpec {
            name: "telemetry".into(),
            restart: Restart::Permanent,
            start: Box::new(move |exit| start_telemetry(telemetry.clone(), exit)),
        };
        Supervisor::new(
            "root",
            sup.root.settings(),
            [
                Some(lists),
                Some(model),
                nearline,
                Some(sessions),
                Some(ingress),
                Some(telemetry),
                Some(loader),
            ]
            .into_iter()
            .flatten()
            .collect(),
            escalate,
        )
    }

    fn start_ingress(&self, exit: ExitHook) -> Box<dyn RunningChild> {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let wiring = self.ingress.clone();
        let (shards, reader) = (self.shards.clone(), self.reader.clone());
        actix::spawn(async move {
            let subjects = &wiring.subjects;
            let subscribed = async {
                let events = wiring.client.subscribe(subjects.events_wildcard()).await?;
                let requests = wiring
                    .client
                    .subscribe(subjects.recommend_wildcard())
                    .await?;
                round_trip(&wiring.client).await?;
                anyhow::Ok((events, requests))
            };
            let (events, requests) = match subscribed.await {
                Ok(subscriptions) => subscriptions,
                Err(error) => {
                    return exit(ExitReason::Failed(format!("cannot subscribe: {error:#}")));
                }
            };
            wiring.state.send_replace(IngressState::Serving);
            let asked = Arc::new(AtomicBool::new(false));
            let stop = {
                let (asked, mut drain) = (asked.clone(), wiring.drain.clone());
                async move {
                    tokio::select! {
                        _ = stop_rx => {}
                        _ = drain.wait_for(|d| *d) => {}
                    }
                    asked.store(true, Ordering::Release);
                }
            };
            let ingress = Ingress::new(
                wiring.client.clone(),
                wiring.subjects.clone(),
                wiring.settings.clone(),
                shards,
                reader,
                wiring.in_flight.clone(),
            );
            ingress.run(events, requests, stop).await;
            wiring.state.send_replace(IngressState::Stopped);
            exit(if asked.load(Ordering::Acquire) {
                ExitReason::Normal
            } else {
                ExitReason::Failed("the NATS subscriptions closed".into())
            });
        });
        Box::new(IngressChild(Some(stop_tx)))
    }

    fn start_shard(&self, index: usize, exit: ExitHook) -> Box<dyn RunningChild> {
        let config = &self.config;
        let shard_count = self.arbiters.len();
        let settings = ShardSettings {
            max_resident: config.sessions.max_resident.div_ceil(shard_count as u64),
            idle_timeout: Duration::from_millis(config.sessions.idle_timeout_ms),
            mailbox: config.sessions.shard_mailbox,
        };
        let deps = SessionDeps {
            model: self.pool.clone(),
            lists: self.reader.clone(),
            settings: SessionSettings {
                recent_events: config.sessions.recent_events,
                mailbox: config.sessions.mailbox,
                reply_margin: Duration::from_micros(config.recommend.reply_margin_us),
                quarantine_after: config.sessions.quarantine_after,
            },
            dead_letter: self.dead_letter.clone(),
            nearline: self.nearline.clone(),
        };
        let addr = SessionShard::start_in_arbiter(&self.arbiters[index], move |_| {
            SessionShard::new(index, settings, deps, exit)
        });
        self.shards.set(index, addr.clone());
        let shards = self.shards.clone();
        Box::new(ActorChild {
            addr,
            on_stop: Some(Box::new(move || shards.clear(index))),
        })
    }
}

/// What every incarnation of the telemetry child is built from.
#[derive(Clone)]
struct TelemetryWiring {
    admin: Admin,
    /// Becomes true when the node, drained, stops its admin surface.
    stop: tokio::sync::watch::Receiver<bool>,
    /// True while an admin surface runs (its subscriptions must be dropped
    /// inside the runtime, so the node waits for this to fall).
    running: Arc<tokio::sync::watch::Sender<usize>>,
}

/// Starts the admin surface and the process gauges.
fn start_telemetry(wiring: TelemetryWiring, exit: ExitHook) -> Box<dyn RunningChild> {
    let admin = actix::spawn(async move {
        wiring.running.send_modify(|n| *n += 1);
        let mut stop = wiring.stop.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let result = wiring.admin.run(stopped).await;
        wiring.running.send_modify(|n| *n -= 1);
        if let Err(error) = result {
            exit(ExitReason::Failed(format!(
                "admin surface cannot subscribe: {error}"
            )));
        }
    });
    let rss = actix::spawn(async {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            metrics::gauge!(nm::PROCESS_RSS_BYTES).set(rss_bytes() as f64);
        }
    });
    Box::new(TelemetryChild(vec![admin, rss]))
}

/// A supervisor over the worker threads of `pool`, one child per worker.
fn workers_subtree(name: &'static str, pool: ModelPool, settings: SupervisorSettings) -> ChildSpec {
    subtree(name, Restart::Permanent, move |exit| {
        let workers = (0..pool.workers())
            .map(|index| {
                let pool = pool.clone();
                ChildSpec {
                    name: format!("worker-{index}"),
                    restart: Restart::Permanent,
                    start: Box::new(move |exit| {
                        Box::new(WorkerChildOf(pool.start_worker(index, exit)))
                    }),
                }
            })
            .collect();
        Supervisor::new(name, settings.clone(), workers, exit)
    })
}

/// Starts the hot-swap loader (stopped, like telemetry, by the node's stop
/// signal so that its subscription ends inside the runtime).
fn start_loader(loader: Loader, wiring: TelemetryWiring, exit: ExitHook) -> Box<dyn RunningChild> {
    let task = actix::spawn(async move {
        wiring.running.send_modify(|n| *n += 1);
        let mut stop = wiring.stop.clone();
        match loader.subscribe().await {
            Ok(serve) => tokio::select! {
                () = serve => exit(ExitReason::Failed("model notifications closed".into())),
                _ = stop.wait_for(|s| *s) => {}
            },
            Err(error) => exit(ExitReason::Failed(format!(
                "cannot subscribe to model notifications: {error}"
            ))),
        }
        wiring.running.send_modify(|n| *n -= 1);
    });
    Box::new(TelemetryChild(vec![task]))
}

/// Publishes quarantined events to the dead-letter subject with the reason.
fn dead_letter(client: async_nats::Client, subjects: Subjects) -> DeadLetter {
    let runtime = tokio::runtime::Handle::current();
    Arc::new(move |event, reason| {
        let headers = dlq_headers(reason, &subjects.events(event.member));
        let (client, subject, payload) = (client.clone(), subjects.dlq_events(), encode(event));
        runtime.spawn(async move {
            if let Err(error) = client
                .publish_with_headers(subject, headers, payload.into())
                .await
            {
                tracing::warn!(%error, "Quarantined event could not be dead-lettered.");
            }
        });
    })
}

/// Answers `<prefix>.admin.tree` with the live supervision tree.
async fn serve_tree(
    client: async_nats::Client,
    subjects: Subjects,
    root: Addr<Supervisor>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut requests = client.subscribe(subjects.admin_tree()).await?;
    Ok(actix::spawn(async move {
        while let Some(message) = requests.next().await {
            let Some(reply) = message.reply else { continue };
            let tree = match root
                .send(GetTree {
                    restart: Restart::Permanent,
                })
                .await
            {
                Ok(tree) => encode(&tree),
                Err(_) => encode(&ErrorReply::new(
                    ErrorCode::Unavailable,
                    "the supervision tree is shutting down",
                )),
            };
            if let Err(error) = client.publish(reply, tree.into()).await {
                tracing::warn!(%error, "Tree reply could not be published.");
            }
        }
    }))
}

/// On every SIGHUP, or request on `<prefix>.admin.reload`, re-reads the
/// config file and applies its supervision settings to the running tree; an
/// invalid file is logged (and answered) and the settings in force stay.
async fn reload_on_request(
    path: PathBuf,
    root: Addr<Supervisor>,
    client: async_nats::Client,
    subjects: Subjects,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())
        .map_err(
            |error| tracing::warn!(%error, "Cannot listen for SIGHUP; use <prefix>.admin.reload."),
        )
        .ok();
    let mut requests = match client.subscribe(subjects.admin_reload()).await {
        Ok(requests) => Some(requests),
        Err(error) => {
            tracing::warn!(%error, "Cannot subscribe to the reload subject; use SIGHUP.");
            None
        }
    };
    loop {
        let reply = tokio::select! {
            Some(()) = async { hangups.as_mut()?.recv().await } => None,
            Some(message) = async { requests.as_mut()?.next().await } => Some(message.reply),
            else => return,
        };
        let outcome = reload(&path, &root).await;
        if let Some(Some(reply)) = reply {
            if let Err(error) = client.publish(reply, encode(&outcome).into()).await {
                tracing::warn!(%error, "Reload reply could not be published.");
            }
        }
    }
}

async fn reload(path: &std::path::Path, root: &Addr<Supervisor>) -> Reloaded {
    let config = match Config::from_file(path).and_then(|c| c.validate().map(|()| c)) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "Configuration not reloaded; the old one stays in force.");
            return Reloaded {
                applied: Vec::new(),
                error: Some(error.to_string()),
            };
        }
    };
    let sup = &config.supervision;
    let mut applied = Vec::new();
    for (name, subtree) in [
        ("root", &sup.root),
        ("model", &sup.model),
        ("nearline", &sup.nearline),
        ("sessions", &sup.sessions),
    ] {
        let found = root
            .send(Reconfigure {
                name: name.into(),
                settings: subtree.settings(),
            })
            .await
            .unwrap_or(false);
        if found {
            applied.push(name.to_owned());
        } else {
            tracing::warn!(
                supervisor = name,
                "Supervisor not found (restarting?); not reconfigured."
            );
        }
    }
    tracing::info!(path = %path.display(), "Supervision settings reloaded.");
    Reloaded {
        applied,
        error: None,
    }
}

/// The resident set size of this process, from `/proc/self/statm` (0 where
/// that cannot be read).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "Cannot listen for SIGTERM; only Ctrl-C stops the node.");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "Shutdown requested."),
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "Shutdown requested."),
    }
}
