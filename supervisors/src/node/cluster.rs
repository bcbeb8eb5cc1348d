//! How a node takes part in a cluster — or runs alone.
//!
//! At start-up the node asks the server whether it maps
//! `<prefix>.recommend.*` into partitions ([`probe_mapping`]):
//!
//! ```text
//!  no mapping ─► single mode: take the `single` lease (a second node on the
//!                prefix refuses to start and says how to enable the mapping),
//!                subscribe <prefix>.events.*, replay the event stream's last
//!                cluster.replay_window_secs into the sessions (StartupReplay),
//!                then subscribe <prefix>.recommend.*
//!  mapping    ─► cluster mode: event stream over the partitioned subjects,
//!                Rebalancer (leases, heartbeats) ─► PartitionHost (replay,
//!                then a plain subscription per owned partition) ─► ingress
//! ```
//!
//! In both modes the node answers `<prefix>.fallback.recommend.*` in one
//! queue group from its precomputed lists, and nearline refreshes are held
//! back ([`ReplayHold`]) while any replay runs. The whole cluster layer lives in
//! `reco-cluster`; this module only wires it to the node's configuration
//! and to the ingress.

use crate::config::Config;
use anyhow::Context as _;
use async_nats::jetstream;
use async_nats::Message;
use reco_actors::ingress::{Inbound, Ingress, ReplayOverlap};
use reco_actors::nearline::ReplayHold;
use reco_cluster::bucket::bucket_name;
use reco_cluster::intake::{PartitionIntake, Start};
use reco_cluster::probe::{hold_single, keep_single, probe_mapping, MappingProbe};
use reco_cluster::{
    Fence, HostSettings, HostStatus, Leases, Membership, NodeId, PartitionHost, Rebalancer,
    RebalancerSettings,
};
use reco_messages::admin::ClusterHealth;
use reco_messages::Subjects;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Mutex};

/// The traffic of the owned partitions, shared by every incarnation of
/// the ingress (a restarted ingress picks up the same channels).
#[derive(Clone, Debug)]
pub struct PartitionTraffic {
    events: Arc<Mutex<mpsc::Receiver<Message>>>,
    requests: Arc<Mutex<mpsc::Receiver<Message>>>,
}

fn shared(rx: Arc<Mutex<mpsc::Receiver<Message>>>) -> Inbound {
    Inbound::Channel(Box::pin(futures::stream::unfold(rx, |rx| async move {
        let next = rx.lock().await.recv().await;
        next.map(|message| (message, rx))
    })))
}

impl PartitionTraffic {
    /// The events, as the ingress reads them.
    pub fn events(&self) -> Inbound {
        shared(self.events.clone())
    }

    /// The requests, as the ingress reads them.
    pub fn requests(&self) -> Inbound {
        shared(self.requests.clone())
    }
}

/// A node alone replays the recent events of the event stream once, at
/// start-up, into its sessions before it answers: a restart no longer
/// forgets what members just did. The live subscription is made first (so
/// nothing falls between the two); what both deliver is applied once
/// ([`ReplayOverlap`]).
#[derive(Debug)]
pub struct StartupReplay {
    client: async_nats::Client,
    stream: String,
    filter: String,
    window: Duration,
    hold: ReplayHold,
}

/// How far before the live subscription a stored event may be and still
/// have reached it too (clocks of the server and the node differ a little).
const OVERLAP_MARGIN: Duration = Duration::from_secs(2);

impl StartupReplay {
    /// Replays the window through `ingress` (nearline refreshes held back
    /// meanwhile); `subscribed_at` is when the live subscription was made.
    /// A replay that cannot run is logged and the node serves anyway (its
    /// members start from their training history, as before).
    pub async fn run(
        self,
        ingress: &Ingress,
        subscribed_at: std::time::SystemTime,
    ) -> ReplayOverlap {
        let _held = self.hold.enter();
        let started = std::time::Instant::now();
        let js = jetstream::new(self.client.clone());
        let intake = match PartitionIntake::open(
            &js,
            &self.stream,
            self.filter.clone(),
            Start::Since(self.window),
        )
        .await
        {
            Ok(intake) => intake,
            Err(error) => {
                tracing::warn!(%error, "Recent events not replayed: members start from their training history.");
                return ReplayOverlap::default();
            }
        };
        let overlap_from = subscribed_at
            .checked_sub(OVERLAP_MARGIN)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        let mut overlap = ReplayOverlap::default();
        let mut failed = None;
        let messages = futures::StreamExt::filter_map(intake.replay(), |item| {
            let message = match item {
                Ok(event) => {
                    if event.published.unix_timestamp_nanos() >= overlap_from {
                        overlap.insert(&event.subject, &event.payload);
                    }
                    Some(Message {
                        subject: event.subject.into(),
                        reply: None,
                        length: event.payload.len(),
                        payload: event.payload,
                        headers: None,
                        status: None,
                        description: None,
                    })
                }
                Err(error) => {
                    failed = Some(error);
                    None
                }
            };
            futures::future::ready(message)
        });
        let applied = ingress.replay(messages).await;
        if let Some(error) = failed {
            tracing::warn!(%error, applied, "Replay of recent events stopped early; serving with what it applied.");
        }
        tracing::info!(
            applied,
            window_secs = self.window.as_secs(),
            took_ms = started.elapsed().as_millis() as u64,
            "Recent events replayed from the event stream; answering now."
        );
        overlap
    }
}

/// Which way the node runs.
#[derive(Debug)]
pub enum Mode {
    /// Alone on a server without the mapping.
    Single,
    /// One of the owners of the partitions.
    Cluster {
        /// The owned partitions' traffic.
        traffic: PartitionTraffic,
        /// Which partitions replay and which are served.
        status: watch::Receiver<HostStatus>,
        /// Which leases are held.
        fence: Fence,
        /// Per partition: events stored and not yet delivered.
        lag: Arc<[std::sync::atomic::AtomicU64]>,
    },
}

/// A node's place in the cluster, running.
#[derive(Debug)]
pub struct ClusterRole {
    /// This node's name.
    pub node: NodeId,
    /// How it runs.
    pub mode: Mode,
    /// The tasks that hand partitions over (or release the single lease)
    /// once the drain signal is given.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Alone: the start-up replay, taken by the first ingress.
    replay: Arc<std::sync::Mutex<Option<StartupReplay>>>,
}

impl ClusterRole {
    /// `single` or `cluster`.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Single => "single",
            Mode::Cluster { .. } => "cluster",
        }
    }

    /// The partitions served now (empty alone).
    pub fn serving(&self) -> Vec<u32> {
        match &self.mode {
            Mode::Single => Vec::new(),
            Mode::Cluster { status, .. } => status.borrow().serving.iter().map(|k| k.0).collect(),
        }
    }

    /// What health requests report about this node's place (read live).
    pub fn health(&self) -> Arc<dyn Fn() -> ClusterHealth + Send + Sync> {
        let (node, mode) = (self.node.to_string(), self.mode_name());
        let status = match &self.mode {
            Mode::Single => None,
            Mode::Cluster { status, .. } => Some(status.clone()),
        };
        Arc::new(move || ClusterHealth {
            node: node.clone(),
            mode: mode.into(),
            partitions: status
                .as_ref()
                .map(|s| s.borrow().serving.iter().map(|k| k.0).collect())
                .unwrap_or_default(),
        })
    }

    /// What the node's micro-service reports about it (read live).
    pub fn status_source(
        &self,
        config: &Config,
        subjects: &Subjects,
        counters: Arc<reco_actors::ingress::IngressCounters>,
    ) -> super::service::StatusSource {
        super::service::StatusSource {
            node: self.node.to_string(),
            mode: self.mode_name(),
            prefix: subjects.prefix().to_owned(),
            partitions: match self.mode {
                Mode::Single => 0,
                Mode::Cluster { .. } => config.cluster.partitions,
            },
            lease: Duration::from_millis(config.cluster.lease_ms),
            started: std::time::Instant::now(),
            owned: match &self.mode {
                Mode::Single => None,
                Mode::Cluster {
                    status, fence, lag, ..
                } => Some((status.clone(), fence.clone(), lag.clone())),
            },
            counters,
        }
    }

    /// The start-up replay of a node alone (taken once, by the first
    /// ingress to start).
    pub fn startup_replay(&self) -> Arc<std::sync::Mutex<Option<StartupReplay>>> {
        self.replay.clone()
    }

    /// The partition traffic, in cluster mode.
    pub fn traffic(&self) -> Option<PartitionTraffic> {
        match &self.mode {
            Mode::Single => None,
            Mode::Cluster { traffic, .. } => Some(traffic.clone()),
        }
    }

    /// Waits (at most `limit`) for the partitions to be handed over and the
    /// leases released, after the drain signal.
    pub async fn stopped(self, limit: Duration) {
        for task in self.tasks {
            if tokio::time::timeout(limit, task).await.is_err() {
                tracing::warn!(
                    "Cluster hand-over did not finish in time; leases expire by themselves."
                );
            }
        }
    }
}

/// The node id: `--node-id`/`cluster.node_id`, else host name and pid.
pub fn node_id(config: &Config) -> anyhow::Result<NodeId> {
    if config.cluster.node_id.is_empty() {
        Ok(NodeId::default_for_process())
    } else {
        Ok(NodeId::new(&config.cluster.node_id)?)
    }
}

/// Finds out how this node runs and starts its cluster side; `drain`
/// becoming true hands everything over.
///
/// `hold` is held while a replay runs (nearline refreshes wait).
///
/// # Errors
/// When the probe cannot run, another node runs alone on a plain server,
/// the server's partition count differs from `cluster.partitions`, or the
/// cluster's buckets and event stream cannot be set up.
pub async fn start(
    client: &async_nats::Client,
    config: &Config,
    subjects: &Subjects,
    drain: watch::Receiver<bool>,
    hold: ReplayHold,
) -> anyhow::Result<ClusterRole> {
    let node = node_id(config)?;
    let cluster = &config.cluster;
    let lease = Duration::from_millis(cluster.lease_ms);
    let js = jetstream::new(client.clone());
    let drained = move || {
        let mut drain = drain.clone();
        async move {
            let _ = drain.wait_for(|d| *d).await;
        }
    };
    let probe = probe_mapping(client, subjects, cluster.partitions).await?;
    match probe {
        MappingProbe::Absent => {
            let leases = Leases::open(&js, &bucket_name("leases", subjects), lease, node.clone())
                .await
                .context("cannot set up the single-mode lease")?;
            let held = hold_single(&leases, subjects).await?;
            tracing::info!(
                %node,
                prefix = subjects.prefix(),
                "No partition mapping on the NATS server: this node serves the prefix alone (single mode); \
                 `reco nats-config --fragment` prints the mapping that lets several nodes share it."
            );
            let task = tokio::spawn(async move {
                if let Err(error) = keep_single(leases, held, drained()).await {
                    tracing::error!(%error, "Single-mode lease lost: another node may be answering this prefix too.");
                }
            });
            let replay = (config.events_log.enabled && cluster.replay_window_secs > 0).then(|| {
                StartupReplay {
                    client: client.clone(),
                    stream: config.events_log.stream.clone(),
                    filter: subjects.events_wildcard(),
                    window: Duration::from_secs(cluster.replay_window_secs),
                    hold,
                }
            });
            Ok(ClusterRole {
                node,
                mode: Mode::Single,
                tasks: vec![task],
                replay: Arc::new(std::sync::Mutex::new(replay)),
            })
        }
        MappingProbe::Partitioned {
            partitions_agree: false,
        } => anyhow::bail!(
            "the NATS server maps prefix {:?} into another number of partitions than cluster.partitions = {}: \
             set cluster.partitions to the server's number, or regenerate the server's mappings with \
             `reco nats-config --partitions {} --prefix {} --fragment`",
            subjects.prefix(),
            cluster.partitions,
            cluster.partitions,
            subjects.prefix()
        ),
        MappingProbe::Partitioned {
            partitions_agree: true,
        } => {
            anyhow::ensure!(
                config.events_log.enabled,
                "a cluster reads events from the JetStream event stream: set events_log.enabled = true"
            );
            reco_offline::event_log::ensure_stream(&js, &config.events_log, subjects)
                .await
                .context("a cluster needs the event stream")?;
            let leases = Leases::open(&js, &bucket_name("leases", subjects), lease, node.clone())
                .await
                .context("cannot set up the partition leases")?;
            let membership =
                Membership::open(&js, &bucket_name("nodes", subjects), leases.length(), node.clone())
                    .await
                    .context("cannot set up the node heartbeats")?;
            let rebalancer = Rebalancer::new(
                leases,
                membership,
                RebalancerSettings::new(cluster.partitions),
            );
            let fence = rebalancer.fence();
            let (changes, ownership) = mpsc::channel(4 * cluster.partitions as usize);
            let host = PartitionHost::new(
                client.clone(),
                subjects.clone(),
                HostSettings {
                    stream: config.events_log.stream.clone(),
                    replay_window: Duration::from_secs(cluster.replay_window_secs),
                    partitions: cluster.partitions,
                    events_capacity: cluster.events_buffer,
                    requests_capacity: config.nats.subscription_capacity,
                },
                fence.clone(),
            );
            let (traffic, host_task) = host.start(ownership);
            let rebalancer_task = tokio::spawn(rebalancer.run(changes, drained()));
            tracing::info!(
                %node,
                prefix = subjects.prefix(),
                partitions = cluster.partitions,
                lease_ms = cluster.lease_ms,
                "Partition mapping found on the NATS server: this node joins the cluster."
            );
            let host_task = tokio::spawn(async move {
                let _ = host_task.await;
            });
            // Nearline refreshes wait while any owned partition replays.
            let mut replaying = traffic.status.clone();
            tokio::spawn(async move {
                let mut held = None;
                loop {
                    if replaying.borrow_and_update().replaying.is_empty() {
                        held = None;
                    } else if held.is_none() {
                        held = Some(hold.enter());
                    }
                    if replaying.changed().await.is_err() {
                        break;
                    }
                }
                drop(held);
            });
            Ok(ClusterRole {
                node,
                mode: Mode::Cluster {
                    traffic: PartitionTraffic {
                        events: Arc::new(Mutex::new(traffic.events)),
                        requests: Arc::new(Mutex::new(traffic.requests)),
                    },
                    status: traffic.status,
                    fence,
                    lag: traffic.lag,
                },
                tasks: vec![rebalancer_task, host_task],
                replay: Arc::default(),
            })
        }
    }
}
