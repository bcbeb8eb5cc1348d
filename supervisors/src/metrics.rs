//! Names of the metrics the composition root emits, defined once.

/// Gauge: 1 while the node serves, 0 while it drains.
pub const NODE_UP: &str = "reco_node_up";
/// Gauge: resident set size of the node process, in bytes.
pub const PROCESS_RSS_BYTES: &str = "reco_process_resident_memory_bytes";
/// Counter: child restarts, by `supervisor` and `child`.
pub const SUPERVISOR_RESTARTS_TOTAL: &str = "reco_supervisor_restarts_total";
/// Counter: supervisors that exceeded their restart intensity, by `supervisor`.
pub const SUPERVISOR_ESCALATIONS_TOTAL: &str = "reco_supervisor_escalations_total";
/// Counter: subtrees that exhausted their restart intensity and stayed down
/// (`on_exhausted = "stay_down"`), by `supervisor`.
pub const SUPERVISOR_EXHAUSTED_TOTAL: &str = "reco_supervisor_exhausted_total";
/// Gauge: 1 while a `stay_down` subtree is down waiting for its retry, by
/// `supervisor`.
pub const SUPERVISOR_DOWN: &str = "reco_supervisor_down";
/// Counter: hot swaps of published model versions, by `outcome`.
pub const MODEL_SWAPS_TOTAL: &str = "reco_model_swaps_total";
/// Gauge: when the model in service was swapped in (Unix seconds).
pub const MODEL_LOADED_TIMESTAMP_SECONDS: &str = "reco_model_version_loaded_timestamp_seconds";
/// Counter: requests still in flight when a drain timed out.
pub const DRAIN_ABANDONED_TOTAL: &str = "reco_node_drain_abandoned_total";
/// Gauge: seconds the last `reco train` run spent in ALS.
pub const TRAIN_ALS_SECONDS: &str = "reco_train_als_seconds";
/// Gauge: seconds the last `reco train` run took in total (read, train,
/// lists, evaluation, write, publish).
pub const TRAIN_DURATION_SECONDS: &str = "reco_train_duration_seconds";
/// Counter: events read by `reco train --from-stream`, by `outcome` (`used`,
/// `ignored`, `bad`).
pub const TRAIN_STREAM_EVENTS_TOTAL: &str = "reco_train_stream_events_total";
/// Counter: model publications, by `outcome` (`ok`, `failed`).
pub const PUBLISH_TOTAL: &str = "reco_publish_total";
/// Counter: old model versions deleted by publication retention.
pub const PUBLISH_VERSIONS_DELETED_TOTAL: &str = "reco_publish_versions_deleted_total";
/// Counter: node start-ups where the event log could not be set up (events
/// are then not recorded).
pub const EVENTS_LOG_SETUP_FAILED_TOTAL: &str = "reco_events_log_setup_failed_total";

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
    describe_gauge!(
        TRAIN_ALS_SECONDS,
        "Seconds the last training run spent in ALS."
    );
    describe_gauge!(
        TRAIN_DURATION_SECONDS,
        "Seconds the last training run took in total."
    );
    describe_counter!(
        TRAIN_STREAM_EVENTS_TOTAL,
        "Events read from the event log for training, by outcome."
    );
    describe_counter!(PUBLISH_TOTAL, "Model publications, by outcome.");
    describe_counter!(
        SUPERVISOR_EXHAUSTED_TOTAL,
        "Subtrees that exhausted their restart intensity and stayed down, by supervisor."
    );
    describe_gauge!(
        SUPERVISOR_DOWN,
        "1 while a stay_down subtree waits for its retry, by supervisor."
    );
    describe_counter!(
        PUBLISH_VERSIONS_DELETED_TOTAL,
        "Old model versions deleted by publication retention."
    );
    describe_counter!(
        EVENTS_LOG_SETUP_FAILED_TOTAL,
        "Node start-ups where the event log could not be set up."
    );
}
