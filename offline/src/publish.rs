//! Publishing model versions (the role of Netflix's Hermes): `reco train
//! --publish` stores a new, immutable version in a JetStream object store,
//! prunes old versions, then announces it on `<prefix>.published.model`.
//!
//! ```text
//!  bucket reco_models (object store, stream OBJ_reco_models)
//!  ├── <version>/model.bin       item factors (checksummed artifact)
//!  ├── <version>/lists.bin       precomputed lists (checksummed artifact)
//!  └── <version>/manifest.json   Manifest: sizes, digests, counts; written last
//! ```
//!
//! A version is complete once its manifest exists: readers ([`fetch_published`])
//! start from the manifest, so they never see half a version. A version name
//! is never reused: publishing refuses a version whose manifest exists, or
//! existed and was pruned (its tombstone stays in the bucket).
//!
//! With `publish.signing_key_file` the trainer also stores
//! `<version>/manifest.sig`, an ed25519 signature of the manifest, before
//! the manifest; a node with `publish.trusted_keys` puts in service only
//! versions signed by one of those keys ([`crate::signing`]).

use crate::settings::{check_name, range, OutOfRange};
use crate::signing::{KeyError, SignatureError, SigningKey, TrustedKeys, SIGNATURE_OBJECT};
use async_nats::jetstream::{self, object_store};
use futures::StreamExt;
use reco_messages::metrics as nm;
use reco_messages::{ModelPublished, Subjects};
use reco_models::{ArtifactError, ItemFactors, PrecomputedLists};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::io::AsyncReadExt;

/// Object name (after `<version>/`) of the item factors.
pub const MODEL_OBJECT: &str = "model.bin";
/// Object name (after `<version>/`) of the precomputed lists.
pub const LISTS_OBJECT: &str = "lists.bin";
/// Object name (after `<version>/`) of the manifest, written last.
pub const MANIFEST_OBJECT: &str = "manifest.json";

/// Longest wait for one object's download.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Published model versions: a JetStream object store holding
/// `<version>/model.bin`, `<version>/lists.bin` and `<version>/manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    /// Object-store bucket of the versions (letters, digits, '-', '_').
    pub bucket: String,
    /// Versions kept; publishing deletes the oldest beyond this count, so a
    /// node can still roll back to a recent one.
    pub keep_versions: usize,
    /// A starting node serves `--model` at once, then loads the newest
    /// version published in the bucket (if it is another one), so a
    /// restarted node does not serve an old model until the next
    /// publication.
    pub load_newest_at_start: bool,
    /// The trainer's ed25519 private key (`reco signing-key --out FILE`):
    /// `reco train --publish` signs every version's manifest with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<std::path::PathBuf>,
    /// Public keys (hex) of the trainers a node accepts versions from: when
    /// set, an unsigned or wrongly signed version is rejected and the
    /// current one keeps serving.
    pub trusted_keys: Vec<String>,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            bucket: "reco_models".into(),
            keep_versions: 5,
            load_newest_at_start: true,
            signing_key_file: None,
            trusted_keys: Vec::new(),
        }
    }
}

impl PublishConfig {
    /// Checks every value against its range.
    ///
    /// # Errors
    /// [`OutOfRange`] naming the first key out of range.
    pub fn validate(&self) -> Result<(), OutOfRange> {
        check_name("publish.bucket", &self.bucket)?;
        if let Err(error) = self.trusted() {
            return Err(OutOfRange {
                key: "publish.trusted_keys",
                value: error.to_string(),
                expected: "public keys of 64 hex digits (`reco signing-key` prints one)",
            });
        }
        range(
            "publish.keep_versions",
            self.keep_versions,
            1,
            1000,
            "1 to 1000",
        )
    }

    /// The keys versions must be signed with (none: no signature needed).
    ///
    /// # Errors
    /// [`KeyError`] naming the first key that is not one.
    pub fn trusted(&self) -> Result<TrustedKeys, KeyError> {
        TrustedKeys::parse(&self.trusted_keys)
    }
}

/// One stored object of a version, as recorded in its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// Full object name in the bucket.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The object store's digest (`SHA-256=…`), checked again on download.
    pub digest: String,
}

/// What a published version contains; stored as `<version>/manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The version (also inside both artifacts).
    pub version: String,
    /// When it was published, in ms since the Unix epoch: retention keeps the
    /// newest.
    pub created_at_ms: u64,
    /// The item factors.
    pub model: ObjectEntry,
    /// The precomputed lists.
    pub lists: ObjectEntry,
    /// Items in the model.
    pub items: usize,
    /// Factors per item.
    pub dim: usize,
    /// Members with a precomputed list.
    pub members_with_lists: usize,
    /// Seconds the training run took (for the serving side's metrics).
    pub train_seconds: f64,
}

/// A version could not be published or fetched.
#[derive(Debug, Error)]
pub enum PublishError {
    /// The bucket could not be created or opened.
    #[error("cannot open object store bucket {bucket}: {source}; is nats-server running with JetStream (-js)?")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// Why.
        #[source]
        source: async_nats::Error,
    },
    /// The version exists (or existed and was pruned): versions are
    /// immutable and their names are never reused.
    #[error("model version {version} is already published in bucket {bucket}; versions are immutable, choose another --version")]
    Exists {
        /// The version.
        version: String,
        /// The bucket.
        bucket: String,
    },
    /// An object could not be written, read, listed or deleted.
    #[error("cannot {action} object {object}: {source}")]
    Object {
        /// `put`, `get`, `list` or `delete`.
        action: &'static str,
        /// The object (or bucket for `list`).
        object: String,
        /// Why.
        #[source]
        source: async_nats::Error,
    },
    /// The version has no manifest: it is unknown, pruned or incomplete.
    #[error("model version {version} is not published in bucket {bucket}")]
    NotFound {
        /// The version.
        version: String,
        /// The bucket.
        bucket: String,
    },
    /// A manifest does not decode.
    #[error("manifest {object} is invalid: {source}")]
    Manifest {
        /// The object.
        object: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A downloaded object is not what the manifest promised.
    #[error("object {object} does not match its manifest: {why}")]
    Mismatch {
        /// The object.
        object: String,
        /// What differs.
        why: String,
    },
    /// A downloaded artifact does not decode.
    #[error("object {object} is not a valid reco artifact: {source}")]
    Artifact {
        /// The object.
        object: String,
        /// Why.
        #[source]
        source: ArtifactError,
    },
    /// A notice names another bucket than the deployment's.
    #[error("the notice names bucket {bucket}, not publish.bucket = {configured}; refused")]
    ForeignBucket {
        /// The bucket named (at most 64 characters of it).
        bucket: String,
        /// The configured bucket.
        configured: String,
    },
    /// The trainer's signing key cannot be used.
    #[error("cannot sign the version: {0}")]
    SigningKey(#[from] KeyError),
    /// The version's signature is missing or wrong while keys are trusted.
    #[error("model version {version} is refused: {source}")]
    Signature {
        /// The version.
        version: String,
        /// Why.
        #[source]
        source: SignatureError,
    },
    /// The notification could not be sent.
    #[error("cannot publish the notification on {subject}: {source}")]
    Notify {
        /// The subject.
        subject: String,
        /// Why.
        #[source]
        source: async_nats::Error,
    },
}

/// What a publication did.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    /// The manifest stored.
    pub manifest: Manifest,
    /// Versions deleted by retention, oldest first.
    pub deleted: Vec<String>,
}

fn object_name(version: &str, object: &str) -> String {
    format!("{version}/{object}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Opens the bucket, creating it when missing.
///
/// # Errors
/// [`PublishError::Bucket`] when JetStream is unavailable.
pub async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
) -> Result<object_store::ObjectStore, PublishError> {
    if let Ok(store) = js.get_object_store(bucket).await {
        return Ok(store);
    }
    js.create_object_store(object_store::Config {
        bucket: bucket.to_owned(),
        description: Some("reco model versions".into()),
        ..Default::default()
    })
    .await
    .map_err(|e| PublishError::Bucket {
        bucket: bucket.to_owned(),
        source: e.into(),
    })
}

/// Stores `model` and `lists` as the new version `model.version()`, deletes
/// versions beyond `config.keep_versions` (oldest first), then announces the
/// version on `<prefix>.published.model` and waits until the server has it.
///
/// # Errors
/// [`PublishError`]; nothing is announced unless the version is complete.
/// Counted in `reco_publish_total{outcome}`.
pub async fn publish(
    client: &async_nats::Client,
    subjects: &Subjects,
    config: &PublishConfig,
    model: &ItemFactors,
    lists: &PrecomputedLists,
    train_seconds: f64,
) -> Result<Published, PublishError> {
    let result = publish_inner(client, subjects, config, model, lists, train_seconds).await;
    let outcome = if result.is_ok() { "ok" } else { "failed" };
    metrics::counter!(nm::PUBLISH_TOTAL, "outcome" => outcome).increment(1);
    result
}

async fn publish_inner(
    client: &async_nats::Client,
    subjects: &Subjects,
    config: &PublishConfig,
    model: &ItemFactors,
    lists: &PrecomputedLists,
    train_seconds: f64,
) -> Result<Published, PublishError> {
    let signer = match &config.signing_key_file {
        Some(path) => Some(SigningKey::from_file(path)?),
        None => None,
    };
    let js = jetstream::new(client.clone());
    let store = open_bucket(&js, &config.bucket).await?;
    let version = model.version().to_owned();
    let manifest_name = object_name(&version, MANIFEST_OBJECT);
    if store.info(&manifest_name).await.is_ok() {
        return Err(PublishError::Exists {
            version,
            bucket: config.bucket.clone(),
        });
    }
    let model_entry = put(
        &store,
        object_name(&version, MODEL_OBJECT),
        model.to_bytes(),
    )
    .await?;
    let lists_entry = put(
        &store,
        object_name(&version, LISTS_OBJECT),
        lists.to_bytes(),
    )
    .await?;
    let manifest = Manifest {
        version: version.clone(),
        created_at_ms: now_ms(),
        model: model_entry,
        lists: lists_entry,
        items: model.len(),
        dim: model.dim(),
        members_with_lists: lists.members.len(),
        train_seconds,
    };
    // Serialising plain strings and numbers cannot fail.
    let body = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    if let Some(signer) = &signer {
        // Before the manifest: a complete version is a signed one.
        let signature = serde_json::to_vec(&signer.sign(&body)).unwrap_or_default();
        put(&store, object_name(&version, SIGNATURE_OBJECT), signature).await?;
    }
    put(&store, manifest_name, body).await?;
    let deleted = prune(&store, &config.bucket, config.keep_versions).await?;
    let subject = subjects.published_model();
    let notice = ModelPublished {
        version,
        bucket: config.bucket.clone(),
        published_at_ms: manifest.created_at_ms,
    };
    let notify = |source: async_nats::Error| PublishError::Notify {
        subject: subject.clone(),
        source,
    };
    client
        .publish(subject.clone(), reco_messages::encode(&notice).into())
        .await
        .map_err(|e| notify(e.into()))?;
    confirm(client).await.map_err(notify)?;
    Ok(Published { manifest, deleted })
}

/// Waits until the server has processed everything this client sent, so
/// the notification went out before this returns.
async fn confirm(client: &async_nats::Client) -> Result<(), async_nats::Error> {
    Ok(reco_client::round_trip_within(client, READ_TIMEOUT).await?)
}

async fn put(
    store: &object_store::ObjectStore,
    name: String,
    bytes: Vec<u8>,
) -> Result<ObjectEntry, PublishError> {
    let info = store
        .put(name.as_str(), &mut bytes.as_slice())
        .await
        .map_err(|e| PublishError::Object {
            action: "put",
            object: name.clone(),
            source: e.into(),
        })?;
    Ok(ObjectEntry {
        name,
        size: info.size as u64,
        digest: info.digest.unwrap_or_default(),
    })
}

async fn get(store: &object_store::ObjectStore, name: &str) -> Result<Vec<u8>, PublishError> {
    let failed = |source: async_nats::Error| PublishError::Object {
        action: "get",
        object: name.to_owned(),
        source,
    };
    let mut object = store.get(name).await.map_err(|e| failed(e.into()))?;
    if object.info().deleted {
        return Err(failed(format!("object {name} was deleted").into()));
    }
    let mut bytes = Vec::with_capacity(object.info().size);
    // Reading to the end also verifies the object store's SHA-256 digest.
    // The chunks are already stored, so only a stuck server makes it wait.
    tokio::time::timeout(READ_TIMEOUT, object.read_to_end(&mut bytes))
        .await
        .map_err(|e| failed(e.into()))?
        .map_err(|e| failed(e.into()))?;
    Ok(bytes)
}

/// The complete versions in `bucket` (those with a manifest), oldest first.
///
/// # Errors
/// [`PublishError`] when the bucket cannot be listed or a manifest is bad.
pub async fn published_versions(
    store: &object_store::ObjectStore,
    bucket: &str,
) -> Result<Vec<Manifest>, PublishError> {
    let list_failed = |source: async_nats::Error| PublishError::Object {
        action: "list",
        object: bucket.to_owned(),
        source,
    };
    let mut names = Vec::new();
    let mut list = store.list().await.map_err(|e| list_failed(e.into()))?;
    while let Some(info) = list.next().await {
        let info = info.map_err(|e| list_failed(e.into()))?;
        if !info.deleted {
            names.push(info.name);
        }
    }
    let mut manifests = Vec::new();
    for name in names
        .iter()
        .filter(|n| n.ends_with(&format!("/{MANIFEST_OBJECT}")))
    {
        let bytes = get(store, name).await?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| PublishError::Manifest {
                object: name.clone(),
                source,
            })?;
        manifests.push(manifest);
    }
    manifests.sort_by(|a, b| (a.created_at_ms, &a.version).cmp(&(b.created_at_ms, &b.version)));
    Ok(manifests)
}

/// Deletes every object of the versions beyond the newest `keep`, oldest
/// first; returns the versions deleted. Objects of incomplete versions (no
/// manifest) are left alone: a publication may be writing them right now.
async fn prune(
    store: &object_store::ObjectStore,
    bucket: &str,
    keep: usize,
) -> Result<Vec<String>, PublishError> {
    let versions = published_versions(store, bucket).await?;
    let excess = versions.len().saturating_sub(keep);
    let mut deleted = Vec::new();
    for manifest in versions.into_iter().take(excess) {
        // The manifest goes first, so a half-deleted version reads as absent.
        let names = [
            object_name(&manifest.version, MANIFEST_OBJECT),
            manifest.model.name.clone(),
            manifest.lists.name.clone(),
        ];
        for name in &names {
            store.delete(name).await.map_err(|e| PublishError::Object {
                action: "delete",
                object: name.clone(),
                source: e.into(),
            })?;
        }
        // An unsigned version has none.
        let signature = object_name(&manifest.version, SIGNATURE_OBJECT);
        if store.info(&signature).await.is_ok_and(|info| !info.deleted) {
            let _ = store.delete(&signature).await;
        }
        metrics::counter!(nm::PUBLISH_VERSIONS_DELETED_TOTAL).increment(1);
        deleted.push(manifest.version);
    }
    Ok(deleted)
}

/// Loads a published version and verifies it: the manifest exists, each
/// object has the size and digest the manifest recorded, both artifacts
/// decode (their own checksums pass) and carry `version`. This is what a
/// serving node's loader calls on a [`ModelPublished`] notification.
///
/// # Errors
/// [`PublishError`]; on any of them the caller keeps its current version.
pub async fn fetch_published(
    js: &jetstream::Context,
    bucket: &str,
    version: &str,
) -> Result<(ItemFactors, PrecomputedLists, Manifest), PublishError> {
    fetch_verified(js, bucket, version, &TrustedKeys::default()).await
}

/// [`fetch_published`], and when `trusted` names keys, the manifest must
/// be signed by one of them ([`crate::signing`]) before anything else is read.
///
/// # Errors
/// [`PublishError`] ([`PublishError::Signature`] for a missing or wrong
/// signature); on any of them the caller keeps its current version.
pub async fn fetch_verified(
    js: &jetstream::Context,
    bucket: &str,
    version: &str,
    trusted: &TrustedKeys,
) -> Result<(ItemFactors, PrecomputedLists, Manifest), PublishError> {
    let store = js
        .get_object_store(bucket)
        .await
        .map_err(|e| PublishError::Bucket {
            bucket: bucket.to_owned(),
            source: e.into(),
        })?;
    let manifest_name = object_name(version, MANIFEST_OBJECT);
    // A pruned version leaves a tombstone: info with `deleted` set.
    if !store
        .info(&manifest_name)
        .await
        .is_ok_and(|info| !info.deleted)
    {
        return Err(PublishError::NotFound {
            version: version.to_owned(),
            bucket: bucket.to_owned(),
        });
    }
    let manifest_bytes = get(&store, &manifest_name).await?;
    if !trusted.is_empty() {
        let signature_name = object_name(version, SIGNATURE_OBJECT);
        let signature = if store
            .info(&signature_name)
            .await
            .is_ok_and(|info| !info.deleted)
        {
            Some(get(&store, &signature_name).await?)
        } else {
            None
        };
        trusted
            .verify(&manifest_bytes, signature.as_deref())
            .map_err(|source| PublishError::Signature {
                version: version.to_owned(),
                source,
            })?;
    }
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|source| PublishError::Manifest {
            object: manifest_name.clone(),
            source,
        })?;
    let mismatch = |object: &str, why: String| PublishError::Mismatch {
        object: object.to_owned(),
        why,
    };
    if manifest.version != version {
        return Err(mismatch(
            &manifest_name,
            format!("manifest names version {}", manifest.version),
        ));
    }
    let fetch = |entry: ObjectEntry| {
        let store = store.clone();
        async move {
            let info = store
                .info(&entry.name)
                .await
                .map_err(|e| PublishError::Object {
                    action: "get",
                    object: entry.name.clone(),
                    source: e.into(),
                })?;
            if info.digest.as_deref() != Some(entry.digest.as_str()) {
                return Err(PublishError::Mismatch {
                    object: entry.name.clone(),
                    why: format!("digest {:?}, manifest says {}", info.digest, entry.digest),
                });
            }
            let bytes = get(&store, &entry.name).await?;
            if bytes.len() as u64 != entry.size {
                return Err(PublishError::Mismatch {
                    object: entry.name.clone(),
                    why: format!("{} bytes, manifest says {}", bytes.len(), entry.size),
                });
            }
            Ok::<_, PublishError>((entry.name, bytes))
        }
    };
    let (model_name, model_bytes) = fetch(manifest.model.clone()).await?;
    let model = ItemFactors::from_bytes(&model_bytes).map_err(|source| PublishError::Artifact {
        object: model_name.clone(),
        source,
    })?;
    let (lists_name, lists_bytes) = fetch(manifest.lists.clone()).await?;
    let lists =
        PrecomputedLists::from_bytes(&lists_bytes).map_err(|source| PublishError::Artifact {
            object: lists_name.clone(),
            source,
        })?;
    if model.version() != version {
        return Err(mismatch(
            &model_name,
            format!("artifact carries version {}", model.version()),
        ));
    }
    if lists.version != version {
        return Err(mismatch(
            &lists_name,
            format!("artifact carries version {}", lists.version),
        ));
    }
    Ok((model, lists, manifest))
}
