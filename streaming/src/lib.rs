//! reco's near-real-time aggregation job (`reco nearline`): consumes the
//! event stream, keeps per-title windowed counts and take rates as
//! checkpointed state, and publishes snapshots (take-rate table, trending
//! list) that serving nodes hot-swap.
//!
//! The aggregation itself is the pure fold
//! [`reco_models::aggregates::AggregateState::apply`]; this crate is the I/O
//! around it: the ordered consumer, checkpoints, snapshot publishing,
//! metrics. It uses tokio and async-nats only (no actix).
//!
//! # Why a process of its own, not a subtree of a node
//! - It consumes the **whole** stream, every member's events: one instance
//!   per cluster, not one per serving node (nodes own a share of members).
//! - Its cost (a full read of the stream after a cold start, a snapshot
//!   every few seconds) must not compete with a node's request path.
//! - It is restartable alone: a crash costs re-reading what followed the
//!   last checkpoint, and nodes keep serving the last snapshot meanwhile.
//!
//! Run it under the same process supervisor as nodes (systemd, Kubernetes):
//! exit status non-zero means "restart me".
//!
//! # Layout
//! - [`job`]: the loop (consume, apply, checkpoint, publish) and [`run`].
//! - [`batch`]: the same aggregation over everything the stream holds.
//! - [`checkpoint`]: state + last sequence in a JetStream KV bucket (object
//!   store when large).
//! - [`snapshot`]: versioned snapshots in an object store, announced on
//!   `<prefix>.published.aggregates`; [`snapshot::latest`] for readers.
//! - [`insights`]: `reco insights`, an early read on one title.
//! - [`loader`]: a node's hot swap of published snapshots.
//! - [`settings`]: the job's typed settings.
//! - [`error`]: the job's error type, [`StreamingError`].
//! - [`metrics`]: metric names.

pub mod batch;
pub mod checkpoint;
pub mod error;
pub mod insights;
pub mod job;
pub mod loader;
pub mod metrics;
pub mod settings;
pub mod snapshot;

pub use error::StreamingError;
pub use job::{run, Report};
pub use settings::StreamingSettings;
