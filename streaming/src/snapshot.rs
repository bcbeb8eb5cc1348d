//! Publishing snapshots of the aggregates the way model versions are
//! published: stored as an immutable version in a JetStream object store,
//! old versions pruned, then announced on `<prefix>.published.aggregates`.
//!
//! ```text
//!  object store reco_aggregates (stream OBJ_reco_aggregates)
//!  ├── 00000000000000001234-1764600000000   AggregateSnapshot (checksummed artifact)
//!  └── …                                    newest `keep` versions
//! ```
//!
//! A version is named `<last sequence, 20 digits>-<ms since the epoch>`, so
//! names sort in publication order and are never reused. The object store
//! switches to an object only once all of it is stored and verifies its
//! SHA-256 digest on read; the artifact envelope's checksum is checked
//! again on decode. A reader that gets a notification therefore either
//! reads the whole snapshot or an error, never half of one.

use crate::error::StreamingError;
use async_nats::jetstream::{self, object_store};
use futures::StreamExt;
use reco_messages::{AggregatesPublished, Subjects};
use reco_models::aggregates::AggregateSnapshot;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// A snapshot is republished at least this often even when no event
/// arrived: its windows roll with the clock.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);
/// Longest wait for one object download.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The version name of a snapshot (see the module docs).
pub fn version_name(last_sequence: u64, published_at_ms: u64) -> String {
    format!("{last_sequence:020}-{published_at_ms:013}")
}

/// Opens the snapshot bucket, creating it when missing.
///
/// # Errors
/// [`StreamingError::Bucket`] when JetStream is unavailable.
pub async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
) -> Result<object_store::ObjectStore, StreamingError> {
    if let Ok(store) = js.get_object_store(bucket).await {
        return Ok(store);
    }
    js.create_object_store(object_store::Config {
        bucket: bucket.to_owned(),
        description: Some("reco near-real-time aggregate snapshots".into()),
        ..Default::default()
    })
    .await
    .map_err(|e| StreamingError::Bucket {
        bucket: bucket.to_owned(),
        source: e.into(),
    })
}

/// Stores `snapshot` as a new version, deletes versions beyond the newest
/// `keep`, and announces it.
///
/// # Errors
/// [`StreamingError`]; nothing is announced unless the version is stored.
pub async fn publish(
    client: &async_nats::Client,
    subjects: &Subjects,
    store: &object_store::ObjectStore,
    bucket: &str,
    snapshot: &AggregateSnapshot,
    keep: usize,
) -> Result<AggregatesPublished, StreamingError> {
    let version = version_name(snapshot.last_sequence, snapshot.now_ms);
    let bytes = snapshot.to_bytes();
    store
        .put(version.as_str(), &mut bytes.as_slice())
        .await
        .map_err(|e| StreamingError::Snapshot {
            action: "put",
            object: version.clone(),
            source: e.into(),
        })?;
    let versions = versions(store, bucket).await?;
    for old in versions
        .iter()
        .take(versions.len().saturating_sub(keep.max(1)))
    {
        store
            .delete(old.as_str())
            .await
            .map_err(|e| StreamingError::Snapshot {
                action: "delete",
                object: old.clone(),
                source: e.into(),
            })?;
    }
    let notice = AggregatesPublished {
        version,
        bucket: bucket.to_owned(),
        published_at_ms: snapshot.now_ms,
        last_sequence: snapshot.last_sequence,
    };
    let subject = subjects.published_aggregates();
    let notify = |source: async_nats::Error| StreamingError::Notify {
        subject: subject.clone(),
        source,
    };
    client
        .publish(subject.clone(), reco_messages::encode(&notice).into())
        .await
        .map_err(|e| notify(e.into()))?;
    client.flush().await.map_err(|e| notify(e.into()))?;
    Ok(notice)
}

/// The snapshot versions in the bucket, oldest first.
///
/// # Errors
/// [`StreamingError::Snapshot`] when the bucket cannot be listed.
pub async fn versions(
    store: &object_store::ObjectStore,
    bucket: &str,
) -> Result<Vec<String>, StreamingError> {
    let failed = |source: async_nats::Error| StreamingError::Snapshot {
        action: "list",
        object: bucket.to_owned(),
        source,
    };
    let mut names = Vec::new();
    let mut list = store.list().await.map_err(|e| failed(e.into()))?;
    while let Some(info) = list.next().await {
        let info = info.map_err(|e| failed(e.into()))?;
        if !info.deleted {
            names.push(info.name);
        }
    }
    names.sort();
    Ok(names)
}

/// Reads and verifies snapshot `version` from `bucket`.
///
/// # Errors
/// [`StreamingError`] when it is missing, cut off or damaged.
pub async fn fetch(
    js: &jetstream::Context,
    bucket: &str,
    version: &str,
) -> Result<AggregateSnapshot, StreamingError> {
    let failed = |source: async_nats::Error| StreamingError::Snapshot {
        action: "get",
        object: version.to_owned(),
        source,
    };
    let store = js
        .get_object_store(bucket)
        .await
        .map_err(|e| StreamingError::Bucket {
            bucket: bucket.to_owned(),
            source: e.into(),
        })?;
    let mut object = store.get(version).await.map_err(|e| failed(e.into()))?;
    let mut bytes = Vec::with_capacity(object.info().size);
    // Reading to the end also verifies the object store's SHA-256 digest.
    tokio::time::timeout(READ_TIMEOUT, object.read_to_end(&mut bytes))
        .await
        .map_err(|e| failed(e.into()))?
        .map_err(|e| failed(e.into()))?;
    AggregateSnapshot::from_bytes(&bytes).map_err(|source| StreamingError::DamagedSnapshot {
        object: version.to_owned(),
        source,
    })
}

/// The newest snapshot in `bucket`, if any.
///
/// # Errors
/// [`StreamingError`] when the bucket cannot be read.
pub async fn latest(
    js: &jetstream::Context,
    bucket: &str,
) -> Result<Option<(String, AggregateSnapshot)>, StreamingError> {
    let Ok(store) = js.get_object_store(bucket).await else {
        return Ok(None);
    };
    let Some(version) = versions(&store, bucket).await?.pop() else {
        return Ok(None);
    };
    let snapshot = fetch(js, bucket, &version).await?;
    Ok(Some((version, snapshot)))
}
