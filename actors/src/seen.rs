//! What resident members have seen, readable without their sessions.
//!
//! Why: a request that a full mailbox refused (the member's shard or
//! session) is answered at once by whoever refused it — the ingress or the
//! shard — which cannot ask the member's session what it has seen. Without
//! this index those overload fallbacks would recommend a film the member
//! just watched, unlike every other fallback.
//!
//! State: a bounded concurrent cache `MemberId → sorted seen items`, written
//! by each session when it applies an event that marks an item seen, cleared
//! when the session restarts or stops. It holds at most the node's resident
//! sessions (`sessions.max_resident`); beyond that moka evicts, and a
//! member missing from it is answered without exclusions, as before. No
//! actor, no queue: one lookup on the overload path.
//!
//! Emits nothing of its own (the replies it shapes are counted by the
//! responder).

use moka::sync::Cache;
use reco_messages::{ItemId, MemberId};
use std::sync::Arc;

/// The seen items of resident members, shared by sessions, shards and the
/// ingress.
#[derive(Clone, Debug)]
pub struct SeenIndex {
    members: Cache<MemberId, Arc<[ItemId]>>,
}

impl Default for SeenIndex {
    fn default() -> Self {
        Self::new(10_000)
    }
}

impl SeenIndex {
    /// An index of at most `capacity` members.
    pub fn new(capacity: u64) -> Self {
        SeenIndex {
            members: Cache::new(capacity.max(1)),
        }
    }

    /// Records that `member` has seen `items` (sorted, as
    /// [`RecentSignals::seen`](crate::signals::RecentSignals::seen) gives
    /// them); an empty list forgets the member.
    pub fn set(&self, member: MemberId, items: Vec<ItemId>) {
        if items.is_empty() {
            self.members.invalidate(&member);
        } else {
            self.members.insert(member, items.into());
        }
    }

    /// Forgets `member` (its session stopped or restarted).
    pub fn forget(&self, member: MemberId) {
        self.members.invalidate(&member);
    }

    /// What `member` has seen, sorted (empty when unknown).
    pub fn get(&self, member: MemberId) -> Arc<[ItemId]> {
        self.members.get(&member).unwrap_or_else(|| Arc::from([]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_items_are_kept_per_member_until_forgotten() {
        let index = SeenIndex::new(100);
        index.set(MemberId(1), vec![ItemId(2), ItemId(5)]);
        assert_eq!(&*index.get(MemberId(1)), &[ItemId(2), ItemId(5)]);
        assert!(index.get(MemberId(2)).is_empty());
        index.forget(MemberId(1));
        assert!(index.get(MemberId(1)).is_empty());
        index.set(MemberId(3), vec![ItemId(1)]);
        index.set(MemberId(3), Vec::new());
        assert!(index.get(MemberId(3)).is_empty());
    }
}
