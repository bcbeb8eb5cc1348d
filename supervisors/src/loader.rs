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
//! Emits: `reco_model_swaps_total{outcome}` (`ok`, `rejected`, `same`),
//! `reco_model_version_loaded_timestamp_seconds`.

use crate::metrics as nm;
use crate::publish;
use futures::StreamExt;
use reco_actors::model::ModelHandle;
use reco_actors::precomputed::ListsReader;
use reco_messages::{decode, ModelPublished, Subjects};
use std::sync::Arc;

/// Largest notification accepted, in bytes.
const MAX_NOTICE: usize = 64 * 1024;

/// What the loader swaps.
#[derive(Clone, Debug)]
pub struct Loader {
    /// NATS connection (notifications and the object store).
    pub client: async_nats::Client,
    /// Subjects of the deployment.
    pub subjects: Subjects,
    /// Bucket to read when a notification names none.
    pub bucket: String,
    /// The model in service.
    pub model: ModelHandle,
    /// The lists in service.
    pub lists: ListsReader,
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
        Ok(async move {
            while let Some(message) = notices.next().await {
                match decode::<ModelPublished>(&message.payload, MAX_NOTICE) {
                    Ok(notice) => self.load(notice).await,
                    Err(error) => {
                        metrics::counter!(nm::MODEL_SWAPS_TOTAL, "outcome" => "rejected")
                            .increment(1);
                        tracing::warn!(%error, "Model notification is not a ModelPublished; ignored.");
                    }
                }
            }
        })
    }

    async fn load(&self, notice: ModelPublished) {
        let current = self.model.load().map(|m| m.version().to_owned());
        if current.as_deref() == Some(notice.version.as_str()) {
            metrics::counter!(nm::MODEL_SWAPS_TOTAL, "outcome" => "same").increment(1);
            return;
        }
        let bucket = if notice.bucket.is_empty() {
            self.bucket.clone()
        } else {
            notice.bucket.clone()
        };
        let js = async_nats::jetstream::new(self.client.clone());
        match publish::fetch_published(&js, &bucket, &notice.version).await {
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
            }
            Err(error) => {
                metrics::counter!(nm::MODEL_SWAPS_TOTAL, "outcome" => "rejected").increment(1);
                tracing::error!(
                    version = %notice.version,
                    bucket,
                    %error,
                    serving = current.as_deref().unwrap_or("none"),
                    "Published model version rejected; the current one keeps serving."
                );
            }
        }
    }
}
