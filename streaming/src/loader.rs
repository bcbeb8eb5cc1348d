//! Hot swap of aggregate snapshots on a serving node: the same shape as the
//! model loader. The loader watches `<prefix>.published.aggregates`,
//! fetches and verifies each announced snapshot off the request path
//! (object-store digest, artifact checksum), and swaps it in with one
//! atomic pointer store: a request in flight keeps the snapshot it read,
//! the next one sees the new one, nothing waits. A damaged or unreadable
//! snapshot is rejected with a logged reason and the old one keeps serving;
//! a notice older than the snapshot in service (by stream sequence) is
//! ignored, so a late or replayed notice never moves the rows backwards.
//!
//! Emits `reco_aggregates_swaps_total{outcome}` (`ok`, `rejected`, `stale`).

use crate::snapshot;
use arc_swap::ArcSwapOption;
use futures::StreamExt;
use reco_messages::{decode, AggregatesPublished, Subjects};
use reco_models::aggregates::AggregateSnapshot;
use std::sync::Arc;

use crate::metrics::SWAPS_TOTAL;
/// Largest notification accepted, in bytes.
const MAX_NOTICE: usize = 64 * 1024;

/// The snapshot in service: cheap to clone, read without locks by the
/// request path.
#[derive(Clone, Debug, Default)]
pub struct AggregatesHandle {
    current: Arc<ArcSwapOption<Loaded>>,
}

/// A snapshot in service with its version.
#[derive(Debug)]
pub struct Loaded {
    /// The snapshot version (object name).
    pub version: String,
    /// The snapshot.
    pub snapshot: AggregateSnapshot,
}

impl AggregatesHandle {
    /// The snapshot in service, if any has been loaded.
    pub fn load(&self) -> Option<Arc<Loaded>> {
        self.current.load_full()
    }

    /// Puts `snapshot` in service as `version` at once, without the
    /// loader's staleness check (tests and embedding; a node's loader
    /// swaps through [`AggregatesLoader`]).
    pub fn swap_in(&self, version: String, snapshot: AggregateSnapshot) {
        self.swap(Loaded { version, snapshot });
    }

    fn swap(&self, loaded: Loaded) {
        self.current.store(Some(Arc::new(loaded)));
    }
}

/// Watches the notifications and swaps snapshots into `handle`.
#[derive(Clone, Debug)]
pub struct AggregatesLoader {
    /// NATS connection (notifications and the object store).
    pub client: async_nats::Client,
    /// Subjects of the deployment.
    pub subjects: Subjects,
    /// Bucket to read when a notice names none.
    pub bucket: String,
    /// Where the snapshot in service lives.
    pub handle: AggregatesHandle,
}

impl AggregatesLoader {
    /// Subscribes (so no notice published after this returns is missed)
    /// and returns the loop that serves the notices, which first loads the
    /// newest snapshot already published.
    ///
    /// # Errors
    /// When the subscription cannot be made.
    pub async fn subscribe(
        self,
    ) -> Result<impl std::future::Future<Output = ()>, async_nats::SubscribeError> {
        let mut notices = self
            .client
            .subscribe(self.subjects.published_aggregates())
            .await?;
        Ok(async move {
            let js = async_nats::jetstream::new(self.client.clone());
            match snapshot::latest(&js, &self.bucket).await {
                Ok(Some((version, snapshot))) => self.offer(version, snapshot),
                Ok(None) => tracing::debug!(bucket = %self.bucket, "No aggregate snapshot yet."),
                Err(error) => {
                    tracing::warn!(%error, "Newest aggregate snapshot could not be read.")
                }
            }
            while let Some(message) = notices.next().await {
                match decode::<AggregatesPublished>(&message.payload, MAX_NOTICE) {
                    Ok(notice) => self.on_notice(&js, notice).await,
                    Err(error) => {
                        metrics::counter!(SWAPS_TOTAL, "outcome" => "rejected").increment(1);
                        tracing::warn!(%error, "Aggregates notification does not decode; ignored.");
                    }
                }
            }
        })
    }

    async fn on_notice(&self, js: &async_nats::jetstream::Context, notice: AggregatesPublished) {
        if self.is_stale(notice.last_sequence, &notice.version) {
            metrics::counter!(SWAPS_TOTAL, "outcome" => "stale").increment(1);
            return;
        }
        let bucket = if notice.bucket.is_empty() {
            &self.bucket
        } else {
            &notice.bucket
        };
        match snapshot::fetch(js, bucket, &notice.version).await {
            Ok(snapshot) => self.offer(notice.version, snapshot),
            Err(error) => {
                metrics::counter!(SWAPS_TOTAL, "outcome" => "rejected").increment(1);
                tracing::error!(
                    version = %notice.version,
                    %error,
                    serving = self.handle.load().map_or_else(|| "none".to_owned(), |l| l.version.clone()),
                    "Aggregate snapshot rejected; the current one keeps serving."
                );
            }
        }
    }

    fn is_stale(&self, last_sequence: u64, version: &str) -> bool {
        self.handle.load().is_some_and(|current| {
            current.version.as_str() >= version && current.snapshot.last_sequence >= last_sequence
        })
    }

    fn offer(&self, version: String, snapshot: AggregateSnapshot) {
        if self.is_stale(snapshot.last_sequence, &version) {
            metrics::counter!(SWAPS_TOTAL, "outcome" => "stale").increment(1);
            return;
        }
        tracing::debug!(%version, titles = snapshot.titles.len(), "Aggregate snapshot swapped in.");
        self.handle.swap(Loaded { version, snapshot });
        metrics::counter!(SWAPS_TOTAL, "outcome" => "ok").increment(1);
    }
}
