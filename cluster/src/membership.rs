//! Membership: which nodes are alive, from heartbeats in a key-value bucket.
//!
//! ```text
//!  bucket RECO_NODES_<prefix>  (history 1, max_age = heartbeat timeout)
//!    node-a = {"node":"node-a","pid":…,"owned":[0,3,…],"at_ms":…}
//!    node-b = …
//! ```
//!
//! Each node puts its heartbeat every third of the timeout and deletes it
//! when it leaves. Others follow the bucket with one watch (all keys, last
//! value first, which 2.9 serves; `watch_many` would need 2.10). An expiry by `max_age`
//! sends no watch event, so [`LiveNodes`] also ages entries out by itself:
//! a node is live while its last heartbeat is younger than the timeout.

use crate::bucket::{self, BucketError};
use crate::node_id::NodeId;
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use thiserror::Error;

/// A membership operation that did not go through.
#[derive(Debug, Error)]
pub enum MembershipError {
    /// The bucket could not be opened.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// The bucket could not be written or read.
    #[error("cannot reach the membership bucket: {0}")]
    Unavailable(#[source] async_nats::Error),
}

/// What a node says about itself in its heartbeat (shown by operators'
/// tools; only the key's presence and age decide liveness).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node.
    pub node: String,
    /// Its process id.
    pub pid: u32,
    /// The partitions it owns.
    pub owned: Vec<u32>,
    /// When it was sent (Unix milliseconds).
    pub at_ms: u64,
}

/// The membership bucket of a cluster, as one node uses it.
#[derive(Clone)]
pub struct Membership {
    kv: kv::Store,
    node: NodeId,
    ttl: Duration,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node", &self.node)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Opens (or creates) bucket `bucket` with heartbeat timeout `ttl` for
    /// node `node`. If the bucket exists, its timeout wins.
    ///
    /// # Errors
    /// [`MembershipError::Bucket`] when JetStream is unavailable.
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        ttl: Duration,
        node: NodeId,
    ) -> Result<Self, MembershipError> {
        let (kv, ttl) = bucket::open(js, bucket, ttl, "reco node heartbeats").await?;
        Ok(Membership { kv, node, ttl })
    }

    /// The heartbeat timeout.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// This node.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// Puts this node's heartbeat.
    ///
    /// # Errors
    /// [`MembershipError::Unavailable`] when the bucket cannot be reached.
    pub async fn beat(&self, owned: Vec<u32>) -> Result<(), MembershipError> {
        let heartbeat = Heartbeat {
            node: self.node.to_string(),
            pid: std::process::id(),
            owned,
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let value = serde_json::to_vec(&heartbeat).unwrap_or_default();
        self.kv
            .put(self.node.as_str(), value.into())
            .await
            .map(|_| ())
            .map_err(|e| MembershipError::Unavailable(e.into()))
    }

    /// Deletes this node's heartbeat: the others see it leave at once.
    ///
    /// # Errors
    /// [`MembershipError::Unavailable`] when the bucket cannot be reached.
    pub async fn leave(&self) -> Result<(), MembershipError> {
        self.kv
            .delete(self.node.as_str())
            .await
            .map_err(|e| MembershipError::Unavailable(e.into()))
    }

    /// Follows every heartbeat (the current ones first).
    ///
    /// # Errors
    /// [`MembershipError::Unavailable`] when the watch cannot be created.
    pub async fn watch(&self) -> Result<kv::Watch, MembershipError> {
        // `watch_all` starts with new changes only; the current heartbeats
        // matter as much.
        self.kv
            .watch_with_history(">")
            .await
            .map_err(|e| MembershipError::Unavailable(e.into()))
    }

    /// The heartbeats in the bucket now, with their age (for operators).
    ///
    /// # Errors
    /// [`MembershipError::Unavailable`] when the bucket cannot be read.
    pub async fn heartbeats(&self) -> Result<Vec<(Heartbeat, Duration)>, MembershipError> {
        let unavailable = |e: async_nats::Error| MembershipError::Unavailable(e);
        let mut keys = self.kv.keys().await.map_err(|e| unavailable(e.into()))?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| unavailable(e.into()))?;
            let Some(entry) = self
                .kv
                .entry(&key)
                .await
                .map_err(|e| unavailable(e.into()))?
            else {
                continue;
            };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            let heartbeat = serde_json::from_slice(&entry.value).unwrap_or(Heartbeat {
                node: key,
                ..Heartbeat::default()
            });
            out.push((heartbeat, age_of(&entry)));
        }
        Ok(out)
    }
}

/// How long ago the server stored `entry` (0 if the clocks disagree).
fn age_of(entry: &kv::Entry) -> Duration {
    (time::OffsetDateTime::now_utc() - entry.created)
        .try_into()
        .unwrap_or_default()
}

/// The live nodes as one node sees them, from the heartbeats it watched.
#[derive(Clone, Debug)]
pub struct LiveNodes {
    ttl: Duration,
    /// Node → when its last heartbeat was stored (in this process's clock).
    beats: BTreeMap<NodeId, Instant>,
}

impl LiveNodes {
    /// No node yet; a node is live while its last heartbeat is younger
    /// than `ttl`.
    pub fn new(ttl: Duration) -> Self {
        LiveNodes {
            ttl,
            beats: BTreeMap::new(),
        }
    }

    /// Takes in one watched entry; returns whether the set of live nodes
    /// changed.
    pub fn observe(&mut self, entry: &kv::Entry, now: Instant) -> bool {
        let Ok(node) = NodeId::new(&entry.key) else {
            return false;
        };
        match entry.operation {
            kv::Operation::Put => {
                let age = age_of(entry).min(self.ttl);
                let stored = now.checked_sub(age).unwrap_or(now);
                let was_live = self.is_live(&node, now);
                self.beats.insert(node.clone(), stored);
                !was_live && self.is_live(&node, now)
            }
            kv::Operation::Delete | kv::Operation::Purge => self.beats.remove(&node).is_some(),
        }
    }

    /// Records a heartbeat of `node` stored at `at` (what `observe` does
    /// with a watched entry).
    pub fn saw(&mut self, node: NodeId, at: Instant) {
        self.beats.insert(node, at);
    }

    fn is_live(&self, node: &NodeId, now: Instant) -> bool {
        self.beats
            .get(node)
            .is_some_and(|&at| now.saturating_duration_since(at) < self.ttl)
    }

    /// Forgets nodes whose heartbeat is older than the timeout; returns
    /// whether any was forgotten.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.beats.len();
        let ttl = self.ttl;
        self.beats
            .retain(|_, &mut at| now.saturating_duration_since(at) < ttl);
        self.beats.len() != before
    }

    /// The live nodes, sorted, always including `me`.
    pub fn nodes(&self, me: &NodeId, now: Instant) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self
            .beats
            .keys()
            .filter(|n| self.is_live(n, now))
            .cloned()
            .collect();
        if !nodes.contains(me) {
            nodes.push(me.clone());
            nodes.sort();
        }
        nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_age_out_without_a_heartbeat_and_include_me() {
        let t0 = Instant::now();
        let mut live = LiveNodes::new(Duration::from_secs(3));
        let (me, other) = (NodeId::new("me").unwrap(), NodeId::new("other").unwrap());
        live.saw(other.clone(), t0);
        assert_eq!(live.nodes(&me, t0), vec![me.clone(), other.clone()]);
        let later = t0 + Duration::from_secs(3);
        assert_eq!(live.nodes(&me, later), vec![me.clone()]);
        assert!(live.expire(later));
        assert!(!live.expire(later));
    }
}
