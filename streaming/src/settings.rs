//! The job's typed settings: built by the composition root from the
//! `[streaming]` section of the config file; the job reads no file or
//! environment itself.

use reco_models::aggregates::AggregateParams;
use std::time::Duration;

/// Everything the aggregation job needs to know.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamingSettings {
    /// The JetStream stream of events to consume (the event log).
    pub stream: String,
    /// JetStream KV bucket holding the checkpoint record.
    pub checkpoint_bucket: String,
    /// How often the state and its last sequence are checkpointed: at most
    /// this much of the stream is re-read after a crash.
    pub checkpoint_interval: Duration,
    /// Object-store bucket of the published snapshots.
    pub snapshot_bucket: String,
    /// How often a snapshot is published (when anything changed, or at
    /// least every [`crate::snapshot::REFRESH_EVERY`] since windows roll).
    pub snapshot_interval: Duration,
    /// Snapshot versions kept in the bucket; older ones are deleted.
    pub keep_snapshots: usize,
    /// Titles in a snapshot's trending list.
    pub trending_n: usize,
    /// Largest event payload decoded, in bytes.
    pub max_payload: usize,
    /// The aggregation rules of a fresh state (a resumed state keeps the
    /// rules it was computed under).
    pub params: AggregateParams,
}

impl Default for StreamingSettings {
    fn default() -> Self {
        StreamingSettings {
            stream: "RECO_EVENTS".into(),
            checkpoint_bucket: "reco_aggregates_state".into(),
            checkpoint_interval: Duration::from_secs(2),
            snapshot_bucket: "reco_aggregates".into(),
            snapshot_interval: Duration::from_secs(5),
            keep_snapshots: 5,
            trending_n: 100,
            max_payload: 64 * 1024,
            params: AggregateParams::default(),
        }
    }
}
