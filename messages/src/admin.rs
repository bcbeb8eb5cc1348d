//! Payloads of the operator surface, `<prefix>.admin.…` (request/reply,
//! MessagePack maps like the rest of the contract).

use serde::{Deserialize, Serialize};

/// Header carrying the operator token on state-changing admin requests
/// (`faults`, `model` pin/unpin, `reload`) to a node configured with
/// `admin.operator_token`.
pub const HEADER_OPERATOR_TOKEN: &str = "Reco-Operator-Token";

/// Reply to `<prefix>.admin.health`: what a node is serving right now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `serving`, or `draining` once shutdown has begun.
    pub status: String,
    /// Version of the model in service, if any.
    #[serde(default)]
    pub model_version: Option<String>,
    /// Version of the precomputed lists in service (empty when none).
    #[serde(default)]
    pub lists_version: String,
    /// Recommend requests received and not yet answered.
    #[serde(default)]
    pub in_flight: u64,
    /// Member sessions resident in memory.
    #[serde(default)]
    pub resident_members: u64,
    /// Resident set size of the node process, in bytes (0 where unknown).
    #[serde(default)]
    pub rss_bytes: u64,
    /// The node's place among the nodes sharing the prefix (absent from
    /// nodes of earlier versions).
    #[serde(default)]
    pub cluster: Option<ClusterHealth>,
    /// State of the breaker in front of the model pool: `closed`, `open`
    /// (requests skip the model) or `half_open`; nil from older nodes.
    #[serde(default)]
    pub model_breaker: Option<String>,
    /// Version of the near-real-time aggregate snapshot in service (nil:
    /// none loaded, or an older node).
    #[serde(default)]
    pub aggregates_version: Option<String>,
    /// Age of that snapshot in ms (since the job read its windows).
    #[serde(default)]
    pub aggregates_age_ms: Option<u64>,
}

/// A node's place among the nodes sharing a prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterHealth {
    /// The node's name.
    pub node: String,
    /// `single` (alone on a server without the partition mapping) or
    /// `cluster`.
    pub mode: String,
    /// The partitions it answers for now (empty alone).
    #[serde(default)]
    pub partitions: Vec<u32>,
}

/// The NATS micro-service every node registers (`$SRV.PING.reco`,
/// `$SRV.INFO.reco`, `$SRV.STATS.reco`); its metadata names the node
/// ([`SERVICE_META_NODE`]) and the deployment ([`SERVICE_META_PREFIX`]).
pub const SERVICE_NAME: &str = "reco";
/// Service metadata key: the node's name.
pub const SERVICE_META_NODE: &str = "node";
/// Service metadata key: the subject prefix the node serves.
pub const SERVICE_META_PREFIX: &str = "prefix";
/// Service metadata key: `single` or `cluster`.
pub const SERVICE_META_MODE: &str = "mode";
/// Service metadata key: the partitions the node answered for when it
/// registered (comma-separated; the live set is in [`NodeStatus`]).
pub const SERVICE_META_PARTITIONS: &str = "partitions";

/// A node's live place in the cluster: the `data` of its service's
/// `status` endpoint in `$SRV.STATS.reco`, and the reply of that endpoint
/// (`<prefix>.node.<node>.status`). `reco cluster` prints them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's name.
    pub node: String,
    /// `single` or `cluster`.
    pub mode: String,
    /// The subject prefix.
    pub prefix: String,
    /// Number of partitions of the deployment (0 alone).
    #[serde(default)]
    pub partitions: u32,
    /// Lease length in milliseconds.
    #[serde(default)]
    pub lease_ms: u64,
    /// Partitions answered now (replay done).
    #[serde(default)]
    pub serving: Vec<u32>,
    /// Partitions owned whose replay runs (not answered yet).
    #[serde(default)]
    pub replaying: Vec<u32>,
    /// Held leases: (partition, milliseconds since the lease was last
    /// taken or renewed).
    #[serde(default)]
    pub lease_ages_ms: Vec<(u32, u64)>,
    /// Events stored in the owned partitions and not yet delivered to this
    /// node (the replay / consumer lag).
    #[serde(default)]
    pub lag_events: u64,
    /// Events this node's ingress received.
    #[serde(default)]
    pub events: u64,
    /// Recommend requests this node's ingress received (its partitions or,
    /// alone, the public subject).
    #[serde(default)]
    pub requests: u64,
    /// Requests it answered on the fallback subject.
    #[serde(default)]
    pub fallback_requests: u64,
    /// Milliseconds since the node started.
    #[serde(default)]
    pub uptime_ms: u64,
}

/// Request on `<prefix>.admin.faults`: change the injected faults of a node
/// started with `node.fault_injection = true` (for the simulator and tests;
/// refused otherwise). Fields left out keep their value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SetFaults {
    /// Make every scoring pass (a request, or a batch of them) sleep this
    /// long first (0 = off).
    #[serde(default)]
    pub model_delay_ms: Option<u64>,
    /// Make every nth scoring request panic its worker (0 = off).
    #[serde(default)]
    pub model_panic_every: Option<u64>,
    /// Make every event for this item crash its member's session
    /// (`Some(None)`, i.e. nil, clears it).
    #[serde(default)]
    pub poison_item: Option<Option<u64>>,
    /// Limit the model faults (delay, panics) to the members of this
    /// cohort (`Some(None)`, i.e. nil, makes them hit every member again):
    /// an experiment cohort gets the fault, the rest is the control.
    #[serde(default)]
    pub model_cohort: Option<Option<FaultCohort>>,
}

/// The members whose id is `remainder` modulo `modulus`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCohort {
    /// At least 1.
    pub modulus: u64,
    /// Below `modulus`.
    pub remainder: u64,
}

impl FaultCohort {
    /// Whether the member with this id belongs to the cohort.
    pub fn contains(&self, member: u64) -> bool {
        self.modulus > 0 && member % self.modulus == self.remainder
    }
}

/// The faults in force, replied to a [`SetFaults`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// Injected delay of every scoring pass, in ms.
    pub model_delay_ms: u64,
    /// Every how many scoring requests a worker panics (0 = never).
    #[serde(default)]
    pub model_panic_every: u64,
    /// The item whose events crash sessions, if any.
    #[serde(default)]
    pub poison_item: Option<u64>,
    /// The members the model faults are limited to (none: every member).
    #[serde(default)]
    pub model_cohort: Option<FaultCohort>,
}

/// One node of the live supervision tree, replied to `<prefix>.admin.tree`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TreeNode {
    /// The child's name, unique among its siblings.
    pub name: String,
    /// `supervisor` or `worker`.
    pub kind: String,
    /// A supervisor's strategy (`one_for_one`, `one_for_all`, `rest_for_one`).
    #[serde(default)]
    pub strategy: Option<String>,
    /// Restart type (`permanent`, `transient`, `temporary`).
    pub restart: String,
    /// `running`, `restarting`, `stopped` or `escalated`.
    pub state: String,
    /// Times this child was restarted.
    pub restarts: u64,
    /// Why it last failed, if it ever did.
    #[serde(default)]
    pub last_failure: Option<String>,
    /// When it last failed, ms since the Unix epoch.
    #[serde(default)]
    pub last_failure_at_ms: Option<u64>,
    /// Free-form detail (e.g. resident sessions of a shard).
    #[serde(default)]
    pub detail: Option<String>,
    /// A supervisor's children, in start order.
    #[serde(default)]
    pub children: Vec<TreeNode>,
}

/// Reply to `<prefix>.admin.reload`: the supervision settings of the config
/// file were applied to these supervisors, or the file was refused.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reloaded {
    /// Supervisors that took the new settings.
    #[serde(default)]
    pub applied: Vec<String>,
    /// Why the file was refused (the settings in force stay).
    #[serde(default)]
    pub error: Option<String>,
}

/// Request on `<prefix>.admin.model`: pin the node to a published version
/// (also how an operator rolls back: pin the previous one), or unpin it so
/// that it follows new publications again. An empty request only asks for
/// the status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelCommand {
    /// Load this published version, serve it, and ignore new publications.
    #[serde(default)]
    pub pin: Option<String>,
    /// Follow new publications again.
    #[serde(default)]
    pub unpin: bool,
}

/// Reply to a [`ModelCommand`]: what the node serves now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelStatus {
    /// The model version in service.
    #[serde(default)]
    pub version: Option<String>,
    /// Whether the node is pinned to it.
    #[serde(default)]
    pub pinned: bool,
    /// Versions available in the bucket, oldest first.
    #[serde(default)]
    pub available: Vec<String>,
    /// Why the command was refused (nothing changed).
    #[serde(default)]
    pub error: Option<String>,
}
