//! Names of the metrics the cluster layer emits, defined once.
//!
//! (When `messages::metrics` gathers every crate's names, these move there.)

/// Gauge: partitions this node holds a lease for.
pub const PARTITIONS_OWNED: &str = "reco_partitions_owned";
/// Counter: ownership changes of this node, by `change` (`acquired`,
/// `released`, `lost`).
pub const PARTITION_MOVES_TOTAL: &str = "reco_partition_moves_total";
/// Gauge: live nodes as this node sees them (itself included).
pub const CLUSTER_NODES_LIVE: &str = "reco_cluster_nodes_live";
/// Counter: lease operations, by `op` (`acquire`, `renew`, `release`) and
/// `outcome` (`ok`, `held`, `lost`, `expired`, `recovered`, `unavailable`).
pub const LEASE_OPERATIONS_TOTAL: &str = "reco_lease_operations_total";
/// Histogram: seconds from opening a partition's intake to caught up.
pub const REPLAY_SECONDS: &str = "reco_replay_seconds";
/// Counter: events delivered during replays.
pub const REPLAY_EVENTS_TOTAL: &str = "reco_replay_events_total";
/// Gauge: partitions this node answers requests for (replay done).
pub const PARTITION_SERVING: &str = "reco_partition_serving";
/// Gauge: events of a partition stored and not yet delivered to its owner
/// (consumer lag), by `partition`.
pub const PARTITION_LAG_EVENTS: &str = "reco_partition_lag_events";
/// Counter: requests not answered because the partition's lease had run out.
pub const PARTITION_REQUESTS_FENCED_TOTAL: &str = "reco_partition_requests_fenced_total";
/// Counter: requests shed because the ingress had no room (the caller falls
/// back).
pub const PARTITION_REQUESTS_SHED_TOTAL: &str = "reco_partition_requests_shed_total";
/// Counter: events delivered in a partition their member does not belong
/// to by this node's count (server and node disagree on partitions).
pub const PARTITION_MISMATCH_TOTAL: &str = "reco_partition_mismatch_total";
/// Counter: messages on a partition's request subject without a reply
/// subject (other nodes' mapping probes), dropped.
pub const PARTITION_REQUESTS_WITHOUT_REPLY_TOTAL: &str =
    "reco_partition_requests_without_reply_total";
