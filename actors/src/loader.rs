//! Hot swap: a serving node watches `<prefix>.published.model` and puts each
//! new version in service without a restart.
//!
//! On a [`ModelPublished`] notification the loader fetches the version from
//! the JetStream object store and verifies it ([`publish::fetch_published`]:
//! manifest, sizes, SHA-256 digests, artifact checksums, version names) off
//! the request path, then swaps the item factors and the precomputed lists.
//! Each swap is one atomic pointer store: a request in flight finishes on the
//! version it read, the next one uses the new version, and every reply names
//! the version that produced it. A version that fails any check is rejected
//! with a logged reason and the old one keeps serving.
//!
//! At start-up (`publish.load_newest_at_start`) the loader also loads the
//! newest version already in the bucket, so a node restarted after a
//! publication serves it instead of the model it was started with.
//!
//! Operators pin a version (or roll back by pinning an older one) and unpin
//! on `<prefix>.admin.model` (`reco model --pin VERSION`, `--unpin`); while
//! pinned, publications are logged and not swapped in.
//!
//! Guarded: a notice naming another bucket than `publish.bucket` is
//! refused (anyone who may publish the notice could otherwise make every
//! node serve a bucket of their own), and with `publish.trusted_keys` a
//! version must carry a manifest signed by one of those keys
//! ([`reco_offline::signing`]); refusals are counted and logged and the
//! current version keeps serving.
//!
//! Emits: `reco_model_swaps_total{outcome}` (`ok`, `rejected`, `same`, `pinned`),
//! `reco_model_versions_rejected_total{reason}` (`bucket`, `unsigned`,
//! `untrusted_key`, `bad_signature`, `invalid`),
//! `reco_model_version_loaded_timestamp_seconds`.

use crate::lists::ListsReader;
use crate::model::ModelHandle;
use futures::StreamExt;
use reco_messages::admin::{ModelCommand, ModelStatus};
use reco_messages::metrics as nm;
use reco_messages::{decode, encode, ModelPublished, Subjects};
use reco_offline::publish::{self, PublishError};
use reco_offline::signing::TrustedKeys;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Largest notification accepted, in bytes.
const MAX_NOTICE: usize = 64 * 1024;

/// A published version that was not put in service.
#[derive(Debug, thiserror::Error)]
#[error("version {version} rejected")]
pub struct LoadError {
    /// The version.
    pub version: String,
    /// Why it was rejected (missing, incomplete, corrupt…).
    #[source]
    pub source: PublishError,
}

/// `error` and its sources, one after the other (for the wire, where only a
/// string travels).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        text.push_str(": ");
        text.push_str(&source.to_string());
        next = source.source();
    }
    text
}

/// What the loader swaps.
#[derive(Clone, Debug)]
pub struct Loader {
    /// Set while an operator has pinned a version: publications are then
    /// not swapped in.
    pub pinned: Arc<AtomicBool>,
    /// NATS connection (notifications and the object store).
    pub client: async_nats::Client,
    /// Subjects of the deployment.
    pub subjects: Subjects,
    /// The bucket of the deployment's versions: a notification naming
    /// another one is refused.
    pub bucket: String,
    /// Keys a version must be signed with (empty: none needed).
    pub trusted: TrustedKeys,
    /// The model in service.
    pub model: ModelHandle,
    /// The lists in service.
    pub lists: ListsReader,
    /// Load the newest published version when the loader starts.
    pub load_newest_at_start: bool,
    /// The operator token check on pin/unpin.
    pub guard: crate::guard::OperatorGuard,
}

impl Loader {
    /// Subscribes to the notifications (so none published after this
    /// returns is missed) and returns the loop that serves them.
    pub async fn subscribe(
        self,
    ) -> Result<impl std::future::Future<Output = ()>, async_nats::SubscribeError> {
        let mut notices = self
            .client
            .subscribe(self.subjects.published_model())
            .await?;
        let mut commands = crate::admin::subscribe_admin(
            &self.client,
            &self.subjects,
            self.subjects.admin_model(),
        )
        .await?;
        Ok(async move {
            // Subscribed first: a publication during the catch-up waits in
            // the subscription and is handled after it.
            if self.load_newest_at_start {
                self.load_newest().await;
            } else {
                tracing::info!(
                    "Not loading the newest published version at start (publish.load_newest_at_start = false)."
                );
            }
            loop {
                tokio::select! {
                    Some(message) = notices.next() => self.on_notice(message).await,
                    Some(message) = commands.next() => self.command(message).await,
                    else => return,
                }
            }
        })
    }

    /// Loads the newest complete version in the bucket, unless it is the
    /// one in service or a version is pinned (a restarted loader keeps an
    /// operator's pin).
    async fn load_newest(&self) {
        if self.pinned.load(Ordering::Acquire) {
            return;
        }
        let js = async_nats::jetstream::new(self.client.clone());
        let Ok(store) = js.get_object_store(&self.bucket).await else {
            tracing::debug!(bucket = %self.bucket, "No published versions yet.");
            return;
        };
        let newest = match publish::published_versions(&store, &self.bucket).await {
            Ok(mut manifests) => manifests.pop(),
            Err(error) => {
                tracing::warn!(bucket = %self.bucket, %error, "Published versions could not be listed; serving the model the node started with.");
                return;
            }
        };
        let Some(newest) = newest else {
            return;
        };
        tracing::info!(version = %newest.version, bucket = %self.bucket, "Loading the newest published version.");
        let _ = self
            .load(ModelPublished {
                version: newest.version,
                bucket: self.bucket.clone(),
                published_at_ms: newest.created_at_ms,
            })
            .await;
    }

    async fn on_notice(&self, message: async_nats::Message) {
        match decode::<ModelPublished>(&message.payload, MAX_NOTICE) {
            Ok(notice) if self.pinned.load(Ordering::Acquire) => {
                metrics::counter!(nm::MODEL_SWAPS_TOTAL, "outcome" => "pinned").increment(1);
                tracing::info!(version = %notice.version, "Model version published; not swapped in while pinned.");
            }
            Ok(notice) => {
                let _ = self.load(notice).await;
            }
            Err(error) => {
                metrics::counter!(nm::MODEL_SWAPS_TOTAL, "outcome" => "rejected").increment(1);
                tracing::warn!(%error, "Model notification is not a ModelPublished; ignored.");
            }
        }
    }

    /// Pin, roll back (pin an older version) or unpin, and say what is
    /// served.
    async fn command(&self, message: async_nats::Message) {
        let error = match decode::<ModelCommand>(&message.payload, MAX_NOTICE) {
            Err(_) if message.payload.is_empty() => None, // a status request
            Err(error) => Some(error.to_string()),
            Ok(command)
                if (command.pin.is_some() || command.unpin)
                    && !self.guard.allows(&message, "model") =>
            {
                Some(crate::guard::REFUSED.to_owned())
            }
            Ok(command) => {
                if let Some(version) = command.pin {
                    let notice = ModelPublished {
                        version: version.clone(),
                        bucket: String::new(),
                        published_at_ms: 0,
                    };
                    match self.load(notice).await {
                        Ok(()) => {
                            self.pinned.store(true, Ordering::Release);
                            tracing::warn!(%version, "Model version pinned by an operator.");
                            None
                        }
                        Err(why) => Some(chain(&why)),
                    }
                } else if command.unpin {
                    self.pinned.store(false, Ordering::Release);
                    tracing::info!(
                        "Model version unpinned: new publications are swapped in again."
                    );
                    None
                } else {
                    None
                }
            }
        };
        let js = async_nats::jetstream::new(self.client.clone());
        let available = match js.get_object_store(&self.bucket).await {
            Ok(store) => publish::published_versions(&store, &self.bucket)
                .await
                .map(|manifests| manifests.into_iter().map(|m| m.version).collect())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let status = ModelStatus {
            version: self.model.load().map(|m| m.version().to_owned()),
            pinned: self.pinned.load(Ordering::Acquire),
            available,
            error,
        };
        if let Some(reply) = message.reply {
            if let Err(error) = self.client.publish(reply, encode(&status).into()).await {
                tracing::warn!(%error, "Model status reply could not be published.");
            }
        }
    }

    async fn load(&self, notice: ModelPublished) -> Result<(), LoadError> {
        let current = self.model.load().map(|m| m.version().to_owned());
        if current.as_deref() == Some(notice.version.as_str()) {
            metrics::counter!(nm::MODEL_SWAPS_TOTAL, "outcome" => "same").increment(1);
            return Ok(());
        }
        if !notice.bucket.is_empty() && notice.bucket != self.bucket {
            metrics::counter!(nm::MODEL_SWAPS_TOTAL, "outcome" => "rejected").increment(1);
            metrics::counter!(nm::MODEL_VERSIONS_REJECTED_TOTAL, "reason" => "bucket").increment(1);
            let named: String = notice.bucket.chars().take(64).collect();
            tracing::error!(
                version = %notice.version,
                bucket = %named,
                configured = %self.bucket,
                serving = current.as_deref().unwrap_or("none"),
                "Model notice names another bucket than publish.bucket; refused, the current version keeps serving."
            );
            return Err(LoadError {
                version: notice.version,
                source: PublishError::ForeignBucket {
                    bucket: named,
                    configured: self.bucket.clone(),
                },
            });
        }
        let bucket = self.bucket.clone();
        let js = async_nats::jetstream::new(self.client.clone());
        match publish::fetch_verified(&js, &bucket, &notice.version, &self.trusted).await {
            Ok((model, lists, manifest)) => {
                // Lists first: a fallback reply of the new version never
                // precedes the model's.
                self.lists.replace(Arc::new(lists));
                self.model.swap(Arc::new(model));
                metrics::counter!(nm::MODEL_SWAPS_TOTAL, "outcome" => "ok").increment(1);
                metrics::gauge!(nm::MODEL_LOADED_TIMESTAMP_SECONDS).set(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64()),
                );
                tracing::info!(
                    old = current.as_deref().unwrap_or("none"),
                    new = %manifest.version,
                    bucket,
                    "Model version swapped in."
                );
                Ok(())
            }
            Err(error) => {
                metrics::counter!(nm::MODEL_SWAPS_TOTAL, "outcome" => "rejected").increment(1);
                let reason = match &error {
                    PublishError::Signature { source, .. } => source.reason(),
                    _ => "invalid",
                };
                metrics::counter!(nm::MODEL_VERSIONS_REJECTED_TOTAL, "reason" => reason)
                    .increment(1);
                tracing::error!(
                    reason,
                    version = %notice.version,
                    bucket,
                    %error,
                    serving = current.as_deref().unwrap_or("none"),
                    "Published model version rejected; the current one keeps serving."
                );
                Err(LoadError {
                    version: notice.version,
                    source: error,
                })
            }
        }
    }
}
