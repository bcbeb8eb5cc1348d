//! Opening the key-value buckets of a cluster (leases, heartbeats).
//!
//! On 2.9 a bucket's `max_age` is its entries' time to live, for every key
//! at once: it *is* the lease length (or the heartbeat timeout). Every node
//! must use the same one, so a node that finds the bucket already there
//! takes the bucket's value instead of its own (and says so): two lengths
//! in one cluster would break fencing.

use async_nats::jetstream::{self, kv};
use reco_messages::Subjects;
use std::time::Duration;
use thiserror::Error;

/// A bucket that could not be opened or created.
#[derive(Debug, Error)]
#[error("cannot open or create JetStream key-value bucket {bucket}: {source}; is nats-server running with JetStream (-js, or a jetstream block)?")]
pub struct BucketError {
    /// The bucket.
    pub bucket: String,
    /// What the server said.
    #[source]
    pub source: async_nats::Error,
}

/// The name of the `kind` bucket (`leases`, `nodes`) of the deployment
/// under `subjects`: `RECO_<KIND>_<prefix>`, dots of the prefix as `_`.
pub fn bucket_name(kind: &str, subjects: &Subjects) -> String {
    format!(
        "RECO_{}_{}",
        kind.to_ascii_uppercase(),
        subjects.prefix().replace('.', "_")
    )
}

/// Opens bucket `name`, creating it with one value per key and `ttl` when it
/// does not exist; returns it with the time to live it really has.
pub(crate) async fn open(
    js: &jetstream::Context,
    name: &str,
    ttl: Duration,
    description: &str,
) -> Result<(kv::Store, Duration), BucketError> {
    let error = |source: async_nats::Error| BucketError {
        bucket: name.to_owned(),
        source,
    };
    let store = match js.get_key_value(name).await {
        Ok(store) => store,
        Err(_) => match js
            .create_key_value(kv::Config {
                bucket: name.to_owned(),
                description: description.to_owned(),
                history: 1,
                max_age: ttl,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
        {
            Ok(store) => store,
            // Another node created it meanwhile.
            Err(create) => js
                .get_key_value(name)
                .await
                .map_err(|_| error(create.into()))?,
        },
    };
    let found = store
        .status()
        .await
        .map_err(|e| error(e.into()))?
        .info
        .config
        .max_age;
    if found.is_zero() {
        return Err(error(
            "the bucket exists without a time to live (max_age); delete it and let reco create it"
                .into(),
        ));
    }
    if found != ttl {
        tracing::warn!(
            bucket = name,
            configured_ms = ttl.as_millis() as u64,
            bucket_ms = found.as_millis() as u64,
            "The bucket exists with another time to live; using the bucket's (every node must agree)."
        );
    }
    Ok((store, found))
}
