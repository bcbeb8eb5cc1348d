//! Names of the aggregation job's metrics, defined once.

/// Counter: events read from the stream, by `outcome`: `applied`,
/// `duplicate` (at or below the checkpoint's sequence: already counted),
/// `bad` (did not decode as an `Event`; skipped), `late` (older than the
/// day window: counted in totals only), `overflow` (beyond `max_titles`).
pub const EVENTS_TOTAL: &str = "reco_aggregates_events_total";
/// Gauge: events in the stream not yet applied (the consumer's pending
/// count): how far the aggregates lag behind the stream.
pub const LAG_EVENTS: &str = "reco_aggregates_lag_events";
/// Gauge: seconds since the last successful checkpoint.
pub const CHECKPOINT_AGE_SECONDS: &str = "reco_aggregates_checkpoint_age_seconds";
/// Counter: checkpoints written, by `outcome` (`ok`, `failed`) and `store`
/// (`kv`, `object`).
pub const CHECKPOINTS_TOTAL: &str = "reco_aggregates_checkpoints_total";
/// Counter: events re-read after a start that were already in the stream
/// when the job started, past its checkpoint: the work a restart redid or
/// caught up on (the crash cost).
pub const REPROCESSED_EVENTS_TOTAL: &str = "reco_aggregates_reprocessed_events_total";
/// Counter: snapshots published, by `outcome` (`ok`, `failed`).
pub const SNAPSHOTS_TOTAL: &str = "reco_aggregates_snapshots_total";
/// Gauge: the last stream sequence applied.
pub const LAST_SEQUENCE: &str = "reco_aggregates_last_sequence";
/// Gauge: titles tracked.
pub const TITLES: &str = "reco_aggregates_titles";
/// Histogram: seconds a snapshot took to build, store and announce.
pub const SNAPSHOT_SECONDS: &str = "reco_aggregates_snapshot_seconds";

/// Registers a description for every metric of this crate.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        EVENTS_TOTAL,
        "Events read by the aggregation job, by outcome."
    );
    describe_gauge!(LAG_EVENTS, "Events in the stream not yet aggregated.");
    describe_gauge!(
        CHECKPOINT_AGE_SECONDS,
        "Seconds since the aggregation job's last checkpoint."
    );
    describe_counter!(
        CHECKPOINTS_TOTAL,
        "Aggregate checkpoints, by outcome and store."
    );
    describe_counter!(
        REPROCESSED_EVENTS_TOTAL,
        "Events past the checkpoint that were already in the stream at start-up."
    );
    describe_counter!(
        SNAPSHOTS_TOTAL,
        "Aggregate snapshots published, by outcome."
    );
    describe_gauge!(LAST_SEQUENCE, "Last event-stream sequence aggregated.");
    describe_gauge!(TITLES, "Titles the aggregation job tracks.");
    describe_histogram!(
        SNAPSHOT_SECONDS,
        "Seconds to build, store and announce one aggregate snapshot."
    );
}
