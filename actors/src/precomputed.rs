//! `Precomputed`: the precomputed-list actor, the fallback of the online path.
//!
//! Purpose: hold the lists the offline job computed (a top-N per member and a
//! popular list) and answer from memory when the model cannot.
//!
//! Mailbox: [`ReplaceLists`] → `()` (swap in a new batch), [`ListsStatus`] →
//! [`ListsInfo`], [`Stop`] (control).
//!
//! State: one `Arc<PrecomputedLists>` behind an `ArcSwap`. The request path
//! does not go through the mailbox at all: sessions hold a [`ListsReader`]
//! and read the current lists with one atomic load, so the fallback has no
//! queue that could reject it or make it late, and does no I/O.
//!
//! Emits: `reco_lists_members`. Fails: it has no failure of its own; a
//! restart keeps the lists, which live in the shared cell.

use crate::lifecycle::Stop;
use crate::metrics as m;
use actix::prelude::*;
use arc_swap::ArcSwap;
use reco_messages::{ItemId, MemberId, ScoredItem, Source};
use reco_models::{PrecomputedLists, Scored};
use std::collections::HashSet;
use std::sync::Arc;

/// Read access to the lists in service, shared by every session.
#[derive(Clone, Debug)]
pub struct ListsReader {
    current: Arc<ArcSwap<PrecomputedLists>>,
}

/// A fallback answer, ready before the model is even asked.
#[derive(Clone, Debug, PartialEq)]
pub struct Fallback {
    /// `precomputed` when the member has a list of its own, else `popular`.
    pub source: Source,
    /// Up to k items, best first, without excluded items.
    pub items: Vec<ScoredItem>,
    /// The version of the model that computed the items: the batch run
    /// of the lists, or the model of a nearline list.
    pub version: Option<String>,
    /// The version of the precomputed lists in service.
    pub lists_version: Option<String>,
    /// How old a nearline list is, in ms (`None` for batch lists).
    pub age_ms: Option<u64>,
}

impl ListsReader {
    /// A reader over `lists`.
    pub fn new(lists: PrecomputedLists) -> Self {
        ListsReader {
            current: Arc::new(ArcSwap::from_pointee(lists)),
        }
    }

    /// The lists in service now.
    pub fn load(&self) -> Arc<PrecomputedLists> {
        self.current.load_full()
    }

    /// Puts `lists` in service (one atomic store; readers of the old lists
    /// finish with them) and returns the old ones.
    pub fn replace(&self, lists: Arc<PrecomputedLists>) -> Arc<PrecomputedLists> {
        let old = self.current.swap(lists);
        metrics::gauge!(m::LISTS_MEMBERS).set(self.current.load().members.len() as f64);
        old
    }

    /// The best fallback for `member`: its own precomputed list, padded from
    /// the popular list, without the items of `exclude` (sorted) and without
    /// duplicates, at most `k` items.
    pub fn fallback(&self, member: MemberId, k: usize, exclude: &[ItemId]) -> Fallback {
        let lists = self.current.load();
        let own = lists.member(member).filter(|l| !l.is_empty());
        let source = if own.is_some() {
            Source::Precomputed
        } else {
            Source::Popular
        };
        let mut items: Vec<ScoredItem> = Vec::with_capacity(k);
        // Duplicates come from padding with the popular list; a linear scan
        // is cheapest for the usual small k, a set for large ones.
        let mut taken = (k > 32).then(|| HashSet::with_capacity(k));
        let candidates = own.unwrap_or(&[]).iter().chain(lists.popular.iter());
        for &Scored { item, score } in candidates {
            if items.len() == k {
                break;
            }
            let duplicate = match taken.as_mut() {
                Some(taken) => !taken.insert(item),
                None => items.iter().any(|s| s.item == item),
            };
            if duplicate || exclude.binary_search(&item).is_ok() {
                continue;
            }
            items.push(ScoredItem { item, score });
        }
        let version = (!lists.version.is_empty()).then(|| lists.version.clone());
        Fallback {
            source,
            items,
            lists_version: version.clone(),
            version,
            age_ms: None,
        }
    }
}

/// The precomputed-list actor.
#[derive(Debug)]
pub struct Precomputed {
    reader: ListsReader,
}

impl Precomputed {
    /// An actor serving the lists that `reader` reads.
    pub fn new(reader: ListsReader) -> Self {
        Precomputed { reader }
    }
}

impl Actor for Precomputed {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        publish_gauges(&self.reader.load());
    }
}

fn publish_gauges(lists: &PrecomputedLists) {
    metrics::gauge!(m::LISTS_MEMBERS).set(lists.members.len() as f64);
}

/// Put a new batch of lists in service. Requests already reading the old
/// lists finish with them.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReplaceLists(pub Arc<PrecomputedLists>);

impl Handler<ReplaceLists> for Precomputed {
    type Result = ();

    fn handle(&mut self, msg: ReplaceLists, _ctx: &mut Self::Context) {
        let old = self.reader.replace(msg.0);
        let new = self.reader.load();
        tracing::info!(old = %old.version, new = %new.version, members = new.members.len(), "Precomputed lists replaced.");
    }
}

impl Handler<Stop> for Precomputed {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Ask what is in service.
#[derive(Debug, Message)]
#[rtype(result = "ListsInfo")]
pub struct ListsStatus;

/// What lists are in service.
#[derive(Clone, Debug, PartialEq, Eq, MessageResponse)]
pub struct ListsInfo {
    /// Batch version.
    pub version: String,
    /// Members with a list of their own.
    pub members: usize,
    /// Length of the popular list.
    pub popular: usize,
}

impl Handler<ListsStatus> for Precomputed {
    type Result = ListsInfo;

    fn handle(&mut self, _msg: ListsStatus, _ctx: &mut Self::Context) -> ListsInfo {
        let lists = self.reader.load();
        ListsInfo {
            version: lists.version.clone(),
            members: lists.members.len(),
            popular: lists.popular.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn scored(ids: &[u64]) -> Vec<Scored> {
        ids.iter()
            .map(|&i| Scored {
                item: ItemId(i),
                score: 100.0 - i as f32,
            })
            .collect()
    }

    fn lists() -> PrecomputedLists {
        PrecomputedLists {
            version: "v1".into(),
            popular: scored(&[1, 2, 3, 4, 5]),
            members: HashMap::from([(MemberId(7), scored(&[9, 2, 8]))]),
        }
    }

    fn ids(f: &Fallback) -> Vec<u64> {
        f.items.iter().map(|s| s.item.0).collect()
    }

    #[test]
    fn members_own_list_comes_first_then_popular_without_duplicates_or_seen() {
        let reader = ListsReader::new(lists());
        let f = reader.fallback(MemberId(7), 5, &[ItemId(1), ItemId(8)]);
        assert_eq!(f.source, Source::Precomputed);
        assert_eq!(ids(&f), vec![9, 2, 3, 4, 5]);
        assert_eq!(f.version.as_deref(), Some("v1"));
    }

    #[test]
    fn large_k_pads_from_popular_without_duplicates() {
        let mut big = lists();
        big.popular = scored(&(1..=200).collect::<Vec<_>>());
        let reader = ListsReader::new(big);
        let f = reader.fallback(MemberId(7), 100, &[ItemId(3)]);
        assert_eq!(f.items.len(), 100);
        let distinct: HashSet<_> = f.items.iter().map(|s| s.item).collect();
        assert_eq!(distinct.len(), 100);
        assert!(!distinct.contains(&ItemId(3)));
        assert_eq!(ids(&f)[..3], [9, 2, 8]);
    }

    #[test]
    fn unknown_members_get_the_popular_list() {
        let reader = ListsReader::new(lists());
        let f = reader.fallback(MemberId(1), 2, &[]);
        assert_eq!((f.source, ids(&f)), (Source::Popular, vec![1, 2]));
    }

    #[actix_rt::test]
    async fn replaced_lists_are_read_by_the_next_fallback() {
        let reader = ListsReader::new(lists());
        let actor = Precomputed::new(reader.clone()).start();
        let mut next = lists();
        next.version = "v2".into();
        next.popular = scored(&[42]);
        actor.send(ReplaceLists(Arc::new(next))).await.unwrap();
        let f = reader.fallback(MemberId(1), 3, &[]);
        assert_eq!((ids(&f), f.version.as_deref()), (vec![42], Some("v2")));
        let info = actor.send(ListsStatus).await.unwrap();
        assert_eq!(
            (info.version.as_str(), info.members, info.popular),
            ("v2", 1, 1)
        );
    }
}
