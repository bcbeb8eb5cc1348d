//! The children of a node's supervision tree (drawn in
//! [`crate::supervision`]'s docs) and how each one starts: what every
//! incarnation is built from, and the handle its supervisor stops it with.

use super::admin::rss_bytes;
use super::connect::round_trip;
use crate::config::Config;
use crate::supervision::{
    subtree, ChildSpec, Restart, RunningChild, Supervisor, SupervisorSettings,
};
use actix::prelude::*;
use reco_actors::admin::Admin;
use reco_actors::aggregates::AggregatesReader;
use reco_actors::faults::InjectedFaults;
use reco_actors::ingress::{dlq_headers, Inbound, Ingress, IngressSettings};
use reco_actors::lifecycle::{ExitHook, ExitReason, Stop};
use reco_actors::lists::ListsReader;
use reco_actors::loader::Loader;
use reco_actors::model::{ModelPool, WorkerChild};
use reco_actors::nearline::NearlineSettings;
use reco_actors::reply::InFlight;
use reco_actors::session::{DeadLetter, SessionDeps, SessionSettings};
use reco_actors::shard::{SessionShard, ShardSettings, ShardTable};
use reco_messages::metrics as nm;
use reco_messages::{encode, Subjects};
use reco_streaming::loader::AggregatesLoader;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where an incarnation of the ingress is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IngressState {
    Starting,
    Serving,
    Stopped,
}

/// What every incarnation of the ingress child is built from.
#[derive(Clone)]
pub(super) struct IngressWiring {
    pub(super) client: async_nats::Client,
    pub(super) subjects: Subjects,
    pub(super) settings: IngressSettings,
    pub(super) in_flight: InFlight,
    /// Becomes true when the node drains.
    pub(super) drain: tokio::sync::watch::Receiver<bool>,
    pub(super) state: Arc<tokio::sync::watch::Sender<IngressState>>,
    /// The owned partitions' traffic (cluster mode); `None`: subscribe the
    /// public subjects (a node alone).
    pub(super) traffic: Option<super::cluster::PartitionTraffic>,
    /// A node alone: its start-up replay, run by the first incarnation.
    pub(super) replay: Arc<std::sync::Mutex<Option<super::cluster::StartupReplay>>>,
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
pub(super) struct TreeParts {
    pub(super) config: Config,
    pub(super) pool: ModelPool,
    pub(super) nearline: Option<NearlineSettings>,
    pub(super) reader: ListsReader,
    /// The aggregate snapshot in service (rows `trending`, `billboard`).
    pub(super) aggregates: AggregatesReader,
    pub(super) shards: ShardTable,
    pub(super) arbiters: Vec<ArbiterHandle>,
    pub(super) dead_letter: DeadLetter,
    /// The breaker in front of the model pool, shared by every session.
    pub(super) breaker: reco_actors::breaker::ModelBreaker,
    /// What resident members have seen (sessions write it; the overload
    /// fallbacks of shards and the ingress read it).
    pub(super) seen: reco_actors::seen::SeenIndex,
    /// Where sessions send sampled late model answers.
    pub(super) counterfactual: reco_actors::counterfactual::CounterfactualLog,
    /// The injectable faults the sessions check (poisoned items).
    pub(super) faults: InjectedFaults,
    pub(super) ingress: IngressWiring,
    pub(super) telemetry: TelemetryWiring,
    pub(super) loader: Loader,
    /// Hot swap of aggregate snapshots (`None`: `aggregates.enabled` is off).
    pub(super) aggregates_loader: Option<AggregatesLoader>,
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
    pub(super) fn root(self, escalate: ExitHook) -> Supervisor {
        let sup = self.config.supervision.clone();
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
        let aggregates = self.aggregates_loader.clone().map(|loader| {
            let (wiring, reader) = (self.telemetry.clone(), self.aggregates.clone());
            ChildSpec {
                name: "aggregates".into(),
                restart: Restart::Permanent,
                start: Box::new(move |exit| {
                    start_aggregates(loader.clone(), reader.clone(), wiring.clone(), exit)
                }),
            }
        });
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
                Some(model),
                nearline,
                Some(sessions),
                Some(ingress),
                Some(telemetry),
                Some(loader),
                aggregates,
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
        let seen = self.seen.clone();
        actix::spawn(async move {
            let subjects = &wiring.subjects;
            let ingress = Ingress::new(
                wiring.client.clone(),
                wiring.subjects.clone(),
                wiring.settings.clone(),
                shards,
                reader,
                seen,
                wiring.in_flight.clone(),
            );
            let subscribed = async {
                let (events, requests) = match &wiring.traffic {
                    Some(traffic) => (traffic.events(), traffic.requests()),
                    None => {
                        // Live events first, then the start-up replay (the
                        // first incarnation only), then requests: the node
                        // answers once its members' recent events are back.
                        let subscribed_at = std::time::SystemTime::now();
                        let live = wiring.client.subscribe(subjects.events_wildcard()).await?;
                        round_trip(&wiring.client).await?;
                        let replay = wiring
                            .replay
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .take();
                        let events = match replay {
                            Some(replay) => Inbound::AfterReplay(
                                live,
                                replay.run(&ingress, subscribed_at).await,
                            ),
                            None => Inbound::Subscription(live),
                        };
                        let requests = wiring
                            .client
                            .subscribe(subjects.recommend_wildcard())
                            .await?;
                        (events, Inbound::Subscription(requests))
                    }
                };
                // Every node answers the fallback subject, in one group.
                let fallback = wiring
                    .client
                    .queue_subscribe(
                        subjects.fallback_recommend_wildcard(),
                        reco_messages::partition::FALLBACK_QUEUE_GROUP.into(),
                    )
                    .await?;
                round_trip(&wiring.client).await?;
                anyhow::Ok((events, requests, fallback))
            };
            let (events, requests, fallback) = match subscribed.await {
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
            ingress.run(events, requests, Some(fallback), stop).await;
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
            max_visitors: config.sessions.max_visitors.div_ceil(shard_count as u64),
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
                signals: Arc::new(signal_policy(&config.sessions)),
                reuse_max_age: Duration::from_millis(config.sessions.reuse_max_age_ms),
            },
            dead_letter: self.dead_letter.clone(),
            faults: self.faults.clone(),
            nearline: self.nearline.clone(),
            breaker: self.breaker.clone(),
            counterfactual: self.counterfactual.clone(),
            seen: self.seen.clone(),
            aggregates: self.aggregates.clone(),
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
pub(super) struct TelemetryWiring {
    pub(super) admin: Admin,
    /// Becomes true when the node, drained, stops its admin surface.
    pub(super) stop: tokio::sync::watch::Receiver<bool>,
    /// True while an admin surface runs (its subscriptions must be dropped
    /// inside the runtime, so the node waits for this to fall).
    pub(super) running: Arc<tokio::sync::watch::Sender<usize>>,
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

/// Starts the aggregates loader: loads the newest snapshot, then swaps in
/// each announced one (`reco_streaming::loader`), and sets the snapshot
/// gauges every second. Stopped, like telemetry, by the node's stop signal.
fn start_aggregates(
    loader: AggregatesLoader,
    reader: AggregatesReader,
    wiring: TelemetryWiring,
    exit: ExitHook,
) -> Box<dyn RunningChild> {
    let task = actix::spawn(async move {
        wiring.running.send_modify(|n| *n += 1);
        let mut stop = wiring.stop.clone();
        match loader.subscribe().await {
            Ok(serve) => {
                let gauges = async {
                    let mut every = tokio::time::interval(Duration::from_secs(1));
                    loop {
                        every.tick().await;
                        reader.publish_gauges(reco_actors::signals::now_ms());
                    }
                };
                tokio::select! {
                    () = serve => exit(ExitReason::Failed("aggregates notifications closed".into())),
                    () = gauges => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            }
            Err(error) => exit(ExitReason::Failed(format!(
                "cannot subscribe to aggregates notifications: {error}"
            ))),
        }
        wiring.running.send_modify(|n| *n -= 1);
    });
    Box::new(TelemetryChild(vec![task]))
}

/// Publishes quarantined events to the dead-letter subject with the reason.
pub(super) fn dead_letter(client: async_nats::Client, subjects: Subjects) -> DeadLetter {
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

/// The recent-signal policy of the node's sessions, from its configuration.
fn signal_policy(c: &crate::config::SessionsConfig) -> reco_actors::signals::SignalPolicy {
    reco_actors::signals::SignalPolicy {
        horizon_ms: c.signal_horizon_ms,
        max_skew_ms: c.signal_max_skew_ms,
        fold_in: reco_models::FoldInPolicy {
            history_weight: c.history_weight,
            recent_boost: c.recent_boost,
            half_life_ms: (c.recent_half_life_ms > 0).then_some(c.recent_half_life_ms),
            same_device_weight: c.same_device_weight,
        },
    }
}

/// The model breaker's settings, from the node's configuration.
pub(super) fn breaker_settings(
    c: &crate::config::ModelConfig,
) -> reco_actors::breaker::BreakerSettings {
    reco_actors::breaker::BreakerSettings {
        enabled: c.breaker_enabled,
        window: Duration::from_millis(c.breaker_window_ms),
        min_requests: c.breaker_min_requests,
        threshold: c.breaker_threshold,
        open_for: Duration::from_millis(c.breaker_open_ms),
        probes: c.breaker_probes,
    }
}
