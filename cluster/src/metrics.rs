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
