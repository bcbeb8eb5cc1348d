//! Leases: who owns a partition, held in a JetStream key-value bucket.
//!
//! ```text
//!  bucket RECO_LEASES_<prefix>  (history 1, max_age = lease length)
//!    p0  = "node-a"   rev 812   ── acquire: create (exclusive)
//!    p1  = "node-b"   rev 815   ── renew:   update(key, node, rev) (CAS)
//!    …                          ── release: delete expecting rev
//! ```
//!
//! A lease nobody renews disappears with the bucket's `max_age`, so the
//! partitions of a node that died are free again one lease length after its
//! last renewal. The server stamps a renewal when it stores it, later than
//! the node sent it: counting from the moment it *sent* the request, the
//! node knows a time before which nobody else can hold the lease. It stops
//! using the lease [`Lease::valid_until`] — a margin before that — whether or
//! not the server could be reached: that is the fencing that keeps two
//! nodes from answering for one partition.
//!
//! A renewal that comes back "wrong revision" means the lease expired or
//! was taken: the lease is [`LeaseError::Lost`] and the caller must stop at
//! once. A renewal that timed out may still have been stored; the next one
//! recognises our own value under a newer revision and carries on.
//!
//! Emits `reco_lease_operations_total{op, outcome}`.

use crate::bucket::{self, BucketError};
use crate::metrics as m;
use crate::node_id::NodeId;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use std::time::{Duration, Instant};
use thiserror::Error;

/// A lease operation that did not go through.
#[derive(Debug, Error)]
pub enum LeaseError {
    /// Another node holds it ([`Leases::holder`] tells which).
    #[error("lease {key} is held by another node")]
    Held {
        /// The lease's key.
        key: String,
    },
    /// The lease expired or was taken: stop using it now.
    #[error("lease {key} was lost (it expired or another node took it)")]
    Lost {
        /// The lease's key.
        key: String,
    },
    /// The lease passed its local validity before it could be renewed:
    /// stop using it now.
    #[error("lease {key} ran out before it could be renewed")]
    Expired {
        /// The lease's key.
        key: String,
    },
    /// The bucket could not be reached; the lease stays usable until its
    /// local validity ends.
    #[error("cannot reach the lease bucket for {key}: {source}")]
    Unavailable {
        /// The lease's key.
        key: String,
        /// What went wrong.
        #[source]
        source: async_nats::Error,
    },
    /// The bucket could not be opened.
    #[error(transparent)]
    Bucket(#[from] BucketError),
}

impl LeaseError {
    /// Whether the lease is gone for good (the caller must stop using it).
    pub fn is_lost(&self) -> bool {
        matches!(self, LeaseError::Lost { .. } | LeaseError::Expired { .. })
    }
}

/// The key of partition `k`'s lease.
pub fn partition_key(k: reco_messages::partition::Partition) -> String {
    format!("p{k}")
}

/// A lease this node holds.
#[derive(Clone, Debug)]
pub struct Lease {
    key: String,
    revision: u64,
    valid_until: Instant,
    renewed_at: Instant,
}

impl Lease {
    /// The lease's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The bucket revision of the last successful acquire or renewal.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Until when this node may act on the lease.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// When the last successful acquire or renewal was sent.
    pub fn renewed_at(&self) -> Instant {
        self.renewed_at
    }

    /// Whether the node may still act on the lease at `now`.
    pub fn is_valid(&self, now: Instant) -> bool {
        now < self.valid_until
    }
}

/// Who holds a lease, as the bucket says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The node.
    pub node: String,
    /// The revision of its last acquire or renewal.
    pub revision: u64,
    /// How long ago it was acquired or renewed (server clock).
    pub age: Duration,
}

/// The lease bucket of a cluster, as one node uses it.
#[derive(Clone)]
pub struct Leases {
    kv: kv::Store,
    node: NodeId,
    length: Duration,
    margin: Duration,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("node", &self.node)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl Leases {
    /// Opens (or creates) bucket `bucket` with lease length `length` for
    /// node `node`. If the bucket exists, its length wins.
    ///
    /// # Errors
    /// [`LeaseError::Bucket`] when JetStream is unavailable.
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        length: Duration,
        node: NodeId,
    ) -> Result<Self, LeaseError> {
        let (kv, length) = bucket::open(js, bucket, length, "reco partition leases").await?;
        Ok(Leases {
            kv,
            node,
            length,
            margin: (length / 10).max(Duration::from_millis(100)),
        })
    }

    /// The lease length (the bucket's time to live).
    pub fn length(&self) -> Duration {
        self.length
    }

    /// The node these leases are taken for.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    fn value(&self) -> Bytes {
        Bytes::copy_from_slice(self.node.as_str().as_bytes())
    }

    fn lease(&self, key: &str, revision: u64, sent: Instant) -> Lease {
        Lease {
            key: key.to_owned(),
            revision,
            valid_until: sent + self.length.saturating_sub(self.margin),
            renewed_at: sent,
        }
    }

    /// Takes lease `key` if nobody holds it.
    ///
    /// # Errors
    /// [`LeaseError::Held`] when another node holds it;
    /// [`LeaseError::Unavailable`] when the bucket cannot be reached.
    pub async fn acquire(&self, key: &str) -> Result<Lease, LeaseError> {
        let sent = Instant::now();
        match self.kv.create(key, self.value()).await {
            Ok(revision) => {
                count("acquire", "ok");
                Ok(self.lease(key, revision, sent))
            }
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                count("acquire", "held");
                Err(LeaseError::Held {
                    key: key.to_owned(),
                })
            }
            Err(error) => {
                count("acquire", "unavailable");
                Err(LeaseError::Unavailable {
                    key: key.to_owned(),
                    source: error.into(),
                })
            }
        }
    }

    /// Renews `lease` by compare-and-swap on its revision.
    ///
    /// # Errors
    /// [`LeaseError::Expired`] when its local validity already ended (it is
    /// not even tried); [`LeaseError::Lost`] when it expired on the server
    /// or another node took it; [`LeaseError::Unavailable`] when the bucket
    /// could not be reached (the lease stays valid until
    /// [`Lease::valid_until`]).
    pub async fn renew(&self, lease: &mut Lease) -> Result<(), LeaseError> {
        let sent = Instant::now();
        if !lease.is_valid(sent) {
            count("renew", "expired");
            return Err(LeaseError::Expired {
                key: lease.key.clone(),
            });
        }
        match self
            .kv
            .update(&lease.key, self.value(), lease.revision)
            .await
        {
            Ok(revision) => {
                count("renew", "ok");
                *lease = self.lease(&lease.key, revision, sent);
                Ok(())
            }
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // A renewal that timed out may have been stored after all:
                // our own value under a newer revision is still our lease,
                // but only as valid as that revision is old.
                if let Ok(Some(entry)) = self.kv.entry(&lease.key).await {
                    if entry.operation == kv::Operation::Put
                        && entry.value == self.value()
                        && entry.revision > lease.revision
                    {
                        lease.revision = entry.revision;
                        count("renew", "recovered");
                        return Box::pin(self.renew(lease)).await;
                    }
                }
                count("renew", "lost");
                Err(LeaseError::Lost {
                    key: lease.key.clone(),
                })
            }
            Err(error) => {
                count("renew", "unavailable");
                Err(LeaseError::Unavailable {
                    key: lease.key.clone(),
                    source: error.into(),
                })
            }
        }
    }

    /// Gives `lease` up (a delete that only applies if it is still ours),
    /// so that the next owner can take it at once.
    ///
    /// # Errors
    /// [`LeaseError::Lost`] when it was no longer ours;
    /// [`LeaseError::Unavailable`] when the bucket could not be reached (the
    /// lease then expires by itself).
    pub async fn release(&self, lease: Lease) -> Result<(), LeaseError> {
        match self
            .kv
            .delete_expect_revision(&lease.key, Some(lease.revision))
            .await
        {
            Ok(()) => {
                count("release", "ok");
                Ok(())
            }
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                count("release", "lost");
                Err(LeaseError::Lost { key: lease.key })
            }
            Err(error) => {
                count("release", "unavailable");
                Err(LeaseError::Unavailable {
                    key: lease.key,
                    source: error.into(),
                })
            }
        }
    }

    /// Follows every lease change (the current leases first). A release is a
    /// delete and shows up at once; an expiry shows up as nothing.
    ///
    /// # Errors
    /// [`LeaseError::Unavailable`] when the watch cannot be created.
    pub async fn watch(&self) -> Result<kv::Watch, LeaseError> {
        self.kv
            .watch_all()
            .await
            .map_err(|e| LeaseError::Unavailable {
                key: ">".to_owned(),
                source: e.into(),
            })
    }

    /// Who holds lease `key` now, if anyone.
    ///
    /// # Errors
    /// [`LeaseError::Unavailable`] when the bucket could not be reached.
    pub async fn holder(&self, key: &str) -> Result<Option<Holder>, LeaseError> {
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|e| LeaseError::Unavailable {
                key: key.to_owned(),
                source: e.into(),
            })?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| {
                let age = time::OffsetDateTime::now_utc() - e.created;
                Holder {
                    node: String::from_utf8_lossy(&e.value).into_owned(),
                    revision: e.revision,
                    age: age.try_into().unwrap_or_default(),
                }
            }))
    }
}

fn count(op: &'static str, outcome: &'static str) {
    metrics::counter!(m::LEASE_OPERATIONS_TOTAL, "op" => op, "outcome" => outcome).increment(1);
}
