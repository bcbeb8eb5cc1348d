//! Notifications of the offline job (the role of Netflix's Hermes): published
//! on `<prefix>.published.…` once an artifact version is complete in
//! JetStream, so serving nodes can fetch and hot-swap it.

use serde::{Deserialize, Serialize};

/// Published on `<prefix>.published.model` after `reco train --publish` has
/// stored every object of a new model version (item factors, precomputed
/// lists, manifest). Versions are immutable: a version named here never
/// changes afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPublished {
    /// The new version (names the objects `<version>/…` in the bucket).
    pub version: String,
    /// The JetStream object-store bucket holding it.
    #[serde(default)]
    pub bucket: String,
    /// When the version was published, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub published_at_ms: u64,
}

/// Published on `<prefix>.published.aggregates` by the aggregation job
/// (`reco nearline`) after it has stored a new snapshot of the near-real-time
/// aggregates (take-rate table, trending list). Like model versions,
/// snapshot versions are immutable; nodes fetch and hot-swap the newest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregatesPublished {
    /// The new snapshot version (the object's name in the bucket).
    pub version: String,
    /// The JetStream object-store bucket holding it.
    #[serde(default)]
    pub bucket: String,
    /// When it was published, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub published_at_ms: u64,
    /// The last event-stream sequence the snapshot reflects.
    #[serde(default)]
    pub last_sequence: u64,
}
