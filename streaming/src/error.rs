//! What can stop the aggregation job. A bad event is not an error (it is
//! counted and skipped); these are the failures an operator must see.

use reco_models::ArtifactError;
use thiserror::Error;

/// The aggregation job could not start, read, checkpoint or publish.
#[derive(Debug, Error)]
pub enum StreamingError {
    /// A KV bucket or object store could not be created or opened.
    #[error("cannot open JetStream bucket {bucket}: {source}; is nats-server running with JetStream (-js)?")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// Why.
        #[source]
        source: async_nats::Error,
    },
    /// The event stream is missing or could not be consumed.
    #[error("cannot consume JetStream stream {stream}: {source}; start a `reco serve` node (it creates the stream) or check streaming.stream")]
    Stream {
        /// The stream.
        stream: String,
        /// Why.
        #[source]
        source: async_nats::Error,
    },
    /// The checkpoint could not be read or written.
    #[error("cannot {action} the checkpoint in bucket {bucket}: {source}")]
    Checkpoint {
        /// `read` or `write`.
        action: &'static str,
        /// The bucket.
        bucket: String,
        /// Why.
        #[source]
        source: async_nats::Error,
    },
    /// The stored checkpoint does not decode. The job refuses to start
    /// rather than silently recount from whatever the stream still holds.
    #[error("the checkpoint in bucket {bucket} is damaged: {source}; delete the key `checkpoint` to rebuild the aggregates from the stream (counts of events the stream no longer holds are lost)")]
    DamagedCheckpoint {
        /// The bucket.
        bucket: String,
        /// Why.
        #[source]
        source: ArtifactError,
    },
    /// A snapshot could not be stored, listed, read or deleted.
    #[error("cannot {action} snapshot {object}: {source}")]
    Snapshot {
        /// `put`, `get`, `list` or `delete`.
        action: &'static str,
        /// The object (or bucket for `list`).
        object: String,
        /// Why.
        #[source]
        source: async_nats::Error,
    },
    /// A stored snapshot does not decode.
    #[error("snapshot {object} is not a valid aggregate snapshot: {source}")]
    DamagedSnapshot {
        /// The object.
        object: String,
        /// Why.
        #[source]
        source: ArtifactError,
    },
    /// The snapshot notification could not be sent.
    #[error("cannot announce the snapshot on {subject}: {source}")]
    Notify {
        /// The subject.
        subject: String,
        /// Why.
        #[source]
        source: async_nats::Error,
    },
}
