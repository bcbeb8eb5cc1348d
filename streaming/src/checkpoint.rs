//! Checkpoints: the aggregate state together with the last stream sequence
//! it reflects (the sequence lives inside the state, so the two can never
//! disagree), in a JetStream KV bucket.
//!
//! ```text
//!  KV bucket reco_aggregates_state          key `checkpoint`
//!    b"I" + state bytes                     small state: inline (one KV put is atomic)
//!    b"O" + object name                     large state: a pointer into the object store
//!  object store reco_aggregates_state       `state.bin` (written before the pointer)
//! ```
//!
//! A KV value is bounded by the server's max payload (1 MiB by default), so
//! a state above [`INLINE_LIMIT`] goes to the object store under the same
//! bucket name. Overwriting the object is safe even if the job dies midway:
//! the object store switches to the new object only once all of it is
//! stored, and any complete state is a consistent (state, sequence) pair.

use crate::error::StreamingError;
use crate::metrics as m;
use async_nats::jetstream::{self, kv, object_store};
use reco_models::aggregates::AggregateState;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The key of the checkpoint record.
pub const CHECKPOINT_KEY: &str = "checkpoint";
/// States larger than this (bytes) are stored in the object store.
pub const INLINE_LIMIT: usize = 512 * 1024;
/// Object name of a large state.
const STATE_OBJECT: &str = "state.bin";
/// Longest wait for one object download.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

const INLINE: u8 = b'I';
const OBJECT: u8 = b'O';

/// Where a checkpoint went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Inline in the KV record.
    Kv,
    /// In the object store, pointed to by the KV record.
    Object,
}

impl Stored {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Stored::Kv => "kv",
            Stored::Object => "object",
        }
    }
}

/// Reads and writes the checkpoint.
#[derive(Clone)]
pub struct Checkpoints {
    bucket: String,
    kv: kv::Store,
    js: jetstream::Context,
}

impl Checkpoints {
    /// Opens the KV bucket, creating it when missing.
    ///
    /// # Errors
    /// [`StreamingError::Bucket`] when JetStream is unavailable.
    pub async fn open(js: &jetstream::Context, bucket: &str) -> Result<Self, StreamingError> {
        let kv = match js.get_key_value(bucket).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: bucket.to_owned(),
                    description: "reco aggregation job checkpoints".into(),
                    history: 1,
                    ..Default::default()
                })
                .await
                .map_err(|e| StreamingError::Bucket {
                    bucket: bucket.to_owned(),
                    source: e.into(),
                })?,
        };
        Ok(Checkpoints {
            bucket: bucket.to_owned(),
            kv,
            js: js.clone(),
        })
    }

    fn failed(&self, action: &'static str) -> impl Fn(async_nats::Error) -> StreamingError + '_ {
        move |source| StreamingError::Checkpoint {
            action,
            bucket: self.bucket.clone(),
            source,
        }
    }

    async fn objects(&self) -> Result<object_store::ObjectStore, StreamingError> {
        if let Ok(store) = self.js.get_object_store(&self.bucket).await {
            return Ok(store);
        }
        self.js
            .create_object_store(object_store::Config {
                bucket: self.bucket.clone(),
                description: Some("reco aggregation job: large checkpoints".into()),
                ..Default::default()
            })
            .await
            .map_err(|e| StreamingError::Bucket {
                bucket: self.bucket.clone(),
                source: e.into(),
            })
    }

    /// The last checkpoint, or `None` when there is none yet.
    ///
    /// # Errors
    /// [`StreamingError::Checkpoint`] when it cannot be read,
    /// [`StreamingError::DamagedCheckpoint`] when it does not decode.
    pub async fn load(&self) -> Result<Option<AggregateState>, StreamingError> {
        let Some(record) = self
            .kv
            .get(CHECKPOINT_KEY)
            .await
            .map_err(|e| self.failed("read")(e.into()))?
        else {
            return Ok(None);
        };
        let damaged = |source| StreamingError::DamagedCheckpoint {
            bucket: self.bucket.clone(),
            source,
        };
        let state_bytes = match record.split_first() {
            Some((&INLINE, bytes)) => bytes.to_vec(),
            Some((&OBJECT, name)) => {
                let name = String::from_utf8_lossy(name).into_owned();
                let store = self.objects().await?;
                let mut object = store
                    .get(name.as_str())
                    .await
                    .map_err(|e| self.failed("read")(e.into()))?;
                let mut bytes = Vec::with_capacity(object.info().size);
                tokio::time::timeout(READ_TIMEOUT, object.read_to_end(&mut bytes))
                    .await
                    .map_err(|e| self.failed("read")(e.into()))?
                    .map_err(|e| self.failed("read")(e.into()))?;
                bytes
            }
            _ => {
                return Err(damaged(reco_models::ArtifactError::Malformed(
                    "unknown checkpoint record tag",
                )))
            }
        };
        AggregateState::from_bytes(&state_bytes)
            .map(Some)
            .map_err(damaged)
    }

    /// Writes `state` (and so its last sequence) as the checkpoint.
    ///
    /// # Errors
    /// [`StreamingError::Checkpoint`]; the previous checkpoint stays.
    pub async fn save(&self, state: &AggregateState) -> Result<Stored, StreamingError> {
        let bytes = state.to_bytes();
        let result = self.write(bytes).await;
        let (outcome, store) = match &result {
            Ok(stored) => ("ok", stored.as_str()),
            Err(_) => ("failed", "none"),
        };
        metrics::counter!(m::CHECKPOINTS_TOTAL, "outcome" => outcome, "store" => store)
            .increment(1);
        result
    }

    async fn write(&self, bytes: Vec<u8>) -> Result<Stored, StreamingError> {
        let (record, stored) = if bytes.len() <= INLINE_LIMIT {
            let mut record = Vec::with_capacity(bytes.len() + 1);
            record.push(INLINE);
            record.extend_from_slice(&bytes);
            (record, Stored::Kv)
        } else {
            let store = self.objects().await?;
            store
                .put(STATE_OBJECT, &mut bytes.as_slice())
                .await
                .map_err(|e| self.failed("write")(e.into()))?;
            let mut record = vec![OBJECT];
            record.extend_from_slice(STATE_OBJECT.as_bytes());
            (record, Stored::Object)
        };
        self.kv
            .put(CHECKPOINT_KEY, record.into())
            .await
            .map_err(|e| self.failed("write")(e.into()))?;
        Ok(stored)
    }
}
