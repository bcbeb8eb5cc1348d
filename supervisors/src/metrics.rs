//! Names of the metrics the composition root emits, defined once.

/// Gauge: 1 while the node serves, 0 while it drains.
pub const NODE_UP: &str = "reco_node_up";
/// Gauge: resident set size of the node process, in bytes.
pub const PROCESS_RSS_BYTES: &str = "reco_process_resident_memory_bytes";
/// Counter: child restarts, by `supervisor` and `child`.
pub const SUPERVISOR_RESTARTS_TOTAL: &str = "reco_supervisor_restarts_total";
/// Counter: supervisors that exceeded their restart intensity, by `supervisor`.
pub const SUPERVISOR_ESCALATIONS_TOTAL: &str = "reco_supervisor_escalations_total";
/// Counter: requests still in flight when a drain timed out.
pub const DRAIN_ABANDONED_TOTAL: &str = "reco_node_drain_abandoned_total";

/// Registers a description for every metric of this crate.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        PROCESS_RSS_BYTES,
        "Resident set size of the node process, in bytes."
    );
    describe_gauge!(NODE_UP, "1 while the node serves, 0 while it drains.");
    describe_counter!(
        DRAIN_ABANDONED_TOTAL,
        "Requests still in flight when a drain timed out."
    );
}
