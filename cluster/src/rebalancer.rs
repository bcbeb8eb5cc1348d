//! `Rebalancer`: takes, keeps and gives up this node's partitions.
//!
//! One task per node. Each round it:
//!
//! 1. drops every partition whose lease ran out locally ([`Ownership::Lost`]);
//! 2. renews the leases due (every third of the lease length; a lost lease
//!    is dropped at once, an unreachable bucket is retried while the lease
//!    is still valid);
//! 3. puts its heartbeat when due (every third of the heartbeat timeout);
//! 4. computes, by rendezvous hashing over the live nodes, the partitions it
//!    should own;
//! 5. hands over at most `max_releases` partitions it should no longer own
//!    ([`Ownership::Revoke`]: the node stops serving, acknowledges, then the
//!    lease is deleted so the next owner takes it at once);
//! 6. tries to take every partition it should own and does not
//!    ([`Ownership::Acquired`]); a partition held by another node is tried
//!    again after a short back-off, or at once when its lease is deleted.
//!
//! Rounds run every `tick`, and at once when a node joins or leaves (a
//! heartbeat watch event) or a lease is released (a lease watch event). On
//! shutdown every partition is handed over and the heartbeat deleted, so
//! the others take over within a round.
//!
//! Emits `reco_partitions_owned`, `reco_partition_moves_total{change}`,
//! `reco_cluster_nodes_live`.

use crate::assignment;
use crate::fence::Fence;
use crate::lease::{partition_key, Lease, LeaseError, Leases};
use crate::membership::{LiveNodes, Membership};
use crate::metrics as m;
use crate::node_id::NodeId;
use async_nats::jetstream::kv;
use futures::StreamExt;
use reco_messages::partition::Partition;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How the rebalancer paces itself.
#[derive(Clone, Debug)]
pub struct RebalancerSettings {
    /// Number of partitions of the deployment.
    pub partitions: u32,
    /// How often a round runs when nothing happens.
    pub tick: Duration,
    /// Most partitions handed over per round (joins move a few at a time).
    pub max_releases: usize,
    /// How long a hand-over waits for the node to stop serving the
    /// partition before the lease is deleted anyway.
    pub revoke_timeout: Duration,
    /// How long after finding a partition held by another node it is tried
    /// again (an expiry sends no event).
    pub retry_held: Duration,
}

impl RebalancerSettings {
    /// Defaults for `partitions` partitions.
    pub fn new(partitions: u32) -> Self {
        RebalancerSettings {
            partitions,
            tick: Duration::from_millis(100),
            max_releases: 4,
            revoke_timeout: Duration::from_secs(2),
            retry_held: Duration::from_millis(250),
        }
    }
}

/// A change of what this node owns, for the node to act on.
#[derive(Debug)]
pub enum Ownership {
    /// The partition's lease is ours: replay its events, then serve it.
    Acquired(Partition),
    /// Hand the partition over: stop serving it, then answer `done` (or drop
    /// it); the lease is deleted after that.
    Revoke {
        /// The partition.
        partition: Partition,
        /// Answer when the partition is no longer served.
        done: oneshot::Sender<()>,
    },
    /// The lease is gone (expired, taken, or ran out while the bucket was
    /// unreachable): stop serving the partition now.
    Lost(Partition),
}

/// Takes, keeps and gives up the partitions of one node.
#[derive(Debug)]
pub struct Rebalancer {
    leases: Leases,
    membership: Membership,
    settings: RebalancerSettings,
    fence: Fence,
}

/// Mutable state of a running rebalancer.
struct Round {
    owned: BTreeMap<Partition, Lease>,
    live: LiveNodes,
    /// Partitions found held by another node: not tried before this time.
    retry_at: BTreeMap<Partition, Instant>,
    last_beat: Option<Instant>,
    node_watch: Option<kv::Watch>,
    lease_watch: Option<kv::Watch>,
}

impl Rebalancer {
    /// A rebalancer for the node of `leases` and `membership` (they must be
    /// for the same node).
    pub fn new(leases: Leases, membership: Membership, settings: RebalancerSettings) -> Self {
        let fence = Fence::new(settings.partitions);
        Rebalancer {
            leases,
            membership,
            settings,
            fence,
        }
    }

    /// What the request path checks before answering.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// The node.
    pub fn node(&self) -> &NodeId {
        self.leases.node()
    }

    /// Runs until `shutdown` resolves, then hands every partition over and
    /// leaves. Ownership changes go to `changes`; the task stops early if
    /// nobody listens there any more (after dropping what it owns).
    pub async fn run(self, changes: mpsc::Sender<Ownership>, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut round = Round {
            owned: BTreeMap::new(),
            live: LiveNodes::new(self.membership.ttl()),
            retry_at: BTreeMap::new(),
            last_beat: None,
            node_watch: None,
            lease_watch: None,
        };
        self.beat(&mut round).await;
        self.open_watches(&mut round).await;
        tracing::info!(
            node = %self.node(),
            partitions = self.settings.partitions,
            lease_ms = self.leases.length().as_millis() as u64,
            heartbeat_ttl_ms = self.membership.ttl().as_millis() as u64,
            "Rebalancer started."
        );
        let mut ticker = tokio::time::interval(self.settings.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                entry = next_entry(&mut round.node_watch) => match entry {
                    Some(entry) => { round.live.observe(&entry, Instant::now()); }
                    None => round.node_watch = None,
                },
                entry = next_entry(&mut round.lease_watch) => match entry {
                    Some(entry) => self.on_lease_entry(&mut round, &entry),
                    None => round.lease_watch = None,
                },
                _ = ticker.tick() => {}
            }
            if changes.is_closed() {
                break;
            }
            self.round(&mut round, &changes).await;
        }
        self.hand_over_all(&mut round, &changes).await;
        if let Err(error) = self.membership.leave().await {
            tracing::warn!(%error, "Heartbeat could not be deleted; it expires by itself.");
        }
        metrics::gauge!(m::PARTITIONS_OWNED).set(0.0);
        tracing::info!(node = %self.node(), "Rebalancer stopped; partitions handed over.");
    }

    async fn open_watches(&self, round: &mut Round) {
        if round.node_watch.is_none() {
            match self.membership.watch().await {
                Ok(mut watch) => {
                    // The current heartbeats come first (ours among them):
                    // take them in before deciding anything.
                    let until = Instant::now() + Duration::from_secs(2);
                    while let Ok(Some(Ok(entry))) =
                        tokio::time::timeout_at(until.into(), watch.next()).await
                    {
                        round.live.observe(&entry, Instant::now());
                        if entry.delta == 0 {
                            break;
                        }
                    }
                    round.node_watch = Some(watch);
                }
                Err(error) => tracing::warn!(%error, "Cannot watch heartbeats; retrying."),
            }
        }
        if round.lease_watch.is_none() {
            match self.leases.watch().await {
                Ok(watch) => round.lease_watch = Some(watch),
                Err(error) => tracing::warn!(%error, "Cannot watch leases; retrying."),
            }
        }
    }

    fn on_lease_entry(&self, round: &mut Round, entry: &kv::Entry) {
        let Some(k) = entry
            .key
            .strip_prefix('p')
            .and_then(|k| k.parse::<u32>().ok())
            .filter(|&k| k < self.settings.partitions)
            .map(Partition)
        else {
            return;
        };
        if matches!(
            entry.operation,
            kv::Operation::Delete | kv::Operation::Purge
        ) {
            // Released: whoever should own it may take it now.
            round.retry_at.remove(&k);
        }
    }

    async fn beat(&self, round: &mut Round) {
        let owned = round.owned.keys().map(|k| k.0).collect();
        match self.membership.beat(owned).await {
            Ok(()) => {
                let now = Instant::now();
                round.last_beat = Some(now);
                round.live.saw(self.node().clone(), now);
            }
            Err(error) => tracing::warn!(%error, "Heartbeat not stored."),
        }
    }

    async fn round(&self, round: &mut Round, changes: &mpsc::Sender<Ownership>) {
        if round.node_watch.is_none() || round.lease_watch.is_none() {
            self.open_watches(round).await;
        }
        let now = Instant::now();
        // 1. Fencing: a lease past its local validity is dropped first.
        let expired: Vec<Partition> = round
            .owned
            .iter()
            .filter(|(_, lease)| !lease.is_valid(now))
            .map(|(&k, _)| k)
            .collect();
        for k in expired {
            round.owned.remove(&k);
            self.lost(k, "expired before it could be renewed", changes)
                .await;
        }
        // 2. Renewals due.
        let renew_every = self.leases.length() / 3;
        let leases = &self.leases;
        let renewals = round
            .owned
            .iter_mut()
            .filter(|(_, lease)| now.saturating_duration_since(lease.renewed_at()) >= renew_every)
            .map(|(&k, lease)| async move { (k, leases.renew(lease).await) });
        let outcomes = futures::future::join_all(renewals).await;
        for (k, outcome) in outcomes {
            match outcome {
                Ok(()) => {
                    if let Some(lease) = round.owned.get(&k) {
                        self.fence.hold(k, lease.valid_until());
                    }
                }
                Err(error) if error.is_lost() => {
                    round.owned.remove(&k);
                    self.lost(k, "renewal refused", changes).await;
                }
                Err(error) => {
                    tracing::warn!(partition = %k, %error, "Lease renewal failed; retrying while it is valid.")
                }
            }
        }
        // 3. Heartbeat.
        let beat_every = self.membership.ttl() / 3;
        if round
            .last_beat
            .is_none_or(|at| now.saturating_duration_since(at) >= beat_every)
        {
            self.beat(round).await;
        }
        // 4. What this node should own.
        let now = Instant::now();
        round.live.expire(now);
        let nodes = round.live.nodes(self.node(), now);
        metrics::gauge!(m::CLUSTER_NODES_LIVE).set(nodes.len() as f64);
        let desired = assignment::desired(self.node(), self.settings.partitions, &nodes);
        // 5. Hand over a few.
        let surplus: Vec<Partition> = round
            .owned
            .keys()
            .filter(|k| !desired.contains(k))
            .take(self.settings.max_releases)
            .copied()
            .collect();
        if !surplus.is_empty() {
            let leases: Vec<(Partition, Lease)> = surplus
                .into_iter()
                .filter_map(|k| round.owned.remove(&k).map(|l| (k, l)))
                .collect();
            self.hand_over(leases, changes).await;
        }
        // 6. Take what is ours and free.
        self.acquire(round, &desired, changes).await;
        metrics::gauge!(m::PARTITIONS_OWNED).set(round.owned.len() as f64);
    }

    async fn acquire(
        &self,
        round: &mut Round,
        desired: &BTreeSet<Partition>,
        changes: &mpsc::Sender<Ownership>,
    ) {
        let now = Instant::now();
        let wanted: Vec<Partition> = desired
            .iter()
            .filter(|k| !round.owned.contains_key(k))
            .filter(|k| round.retry_at.get(k).is_none_or(|&at| now >= at))
            .copied()
            .collect();
        let leases = &self.leases;
        let attempts = wanted
            .into_iter()
            .map(|k| async move { (k, leases.acquire(&partition_key(k)).await) });
        for (k, outcome) in futures::future::join_all(attempts).await {
            match outcome {
                Ok(lease) => {
                    round.retry_at.remove(&k);
                    self.fence.hold(k, lease.valid_until());
                    round.owned.insert(k, lease);
                    metrics::counter!(m::PARTITION_MOVES_TOTAL, "change" => "acquired")
                        .increment(1);
                    tracing::info!(partition = %k, node = %self.node(), "Partition acquired.");
                    let _ = changes.send(Ownership::Acquired(k)).await;
                }
                Err(LeaseError::Held { .. }) => {
                    round
                        .retry_at
                        .insert(k, Instant::now() + self.settings.retry_held);
                }
                Err(error) => {
                    round
                        .retry_at
                        .insert(k, Instant::now() + self.settings.retry_held);
                    tracing::warn!(partition = %k, %error, "Partition lease could not be taken.");
                }
            }
        }
    }

    async fn lost(&self, k: Partition, why: &'static str, changes: &mpsc::Sender<Ownership>) {
        self.fence.drop_partition(k);
        metrics::counter!(m::PARTITION_MOVES_TOTAL, "change" => "lost").increment(1);
        tracing::warn!(partition = %k, node = %self.node(), why, "Partition lease lost: no longer serving it.");
        let _ = changes.send(Ownership::Lost(k)).await;
    }

    /// Revokes every lease of `leases` (the node stops serving), then
    /// deletes them.
    async fn hand_over(&self, leases: Vec<(Partition, Lease)>, changes: &mpsc::Sender<Ownership>) {
        let mut acks = Vec::with_capacity(leases.len());
        for (k, _) in &leases {
            let (done, ack) = oneshot::channel();
            let _ = changes
                .send(Ownership::Revoke {
                    partition: *k,
                    done,
                })
                .await;
            acks.push(ack);
        }
        let limit = self.settings.revoke_timeout;
        for ack in acks {
            // A dropped sender counts as done.
            let _ = tokio::time::timeout(limit, ack).await;
        }
        let releases = leases.into_iter().map(|(k, lease)| {
            self.fence.drop_partition(k);
            async move { (k, self.leases.release(lease).await) }
        });
        for (k, outcome) in futures::future::join_all(releases).await {
            metrics::counter!(m::PARTITION_MOVES_TOTAL, "change" => "released").increment(1);
            match outcome {
                Ok(()) => {
                    tracing::info!(partition = %k, node = %self.node(), "Partition handed over.")
                }
                Err(error) => {
                    tracing::warn!(partition = %k, %error, "Partition lease not deleted; it expires by itself.")
                }
            }
        }
    }

    async fn hand_over_all(&self, round: &mut Round, changes: &mpsc::Sender<Ownership>) {
        let all: Vec<(Partition, Lease)> = std::mem::take(&mut round.owned).into_iter().collect();
        self.hand_over(all, changes).await;
    }
}

/// The next entry of an optional watch; pending forever without one, `None`
/// when it failed or ended (the caller drops it and opens another).
async fn next_entry(watch: &mut Option<kv::Watch>) -> Option<kv::Entry> {
    match watch {
        Some(watch) => match watch.next().await {
            Some(Ok(entry)) => Some(entry),
            Some(Err(error)) => {
                tracing::warn!(%error, "Key-value watch failed; reopening it.");
                None
            }
            None => None,
        },
        None => std::future::pending().await,
    }
}
