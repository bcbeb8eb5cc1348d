//! Nearline: a member's list, recomputed between requests after an
//! important event.
//!
//! After a `play`, `rate` or `list_add`, the member's session schedules a
//! refresh (debounced: a burst of events costs one refresh). The refresh
//! runs off the request path, on the nearline worker pool (model workers of
//! their own, so it never takes admission from online requests): it folds
//! the member's user vector in from its recent events against the current
//! item factors and keeps the top N, with the time it was computed. The
//! request path then uses that list as its first fallback tier (`source:
//! nearline`), and — when the node is configured to — as a cheap answer
//! while it is fresh and reflects every event of the member. A list older
//! than `max_age` is not served at all.
//!
//! The behaviour lives here, in [`MemberNearline`] (the per-member state a
//! session keeps: its list and its scheduled refresh); the session only
//! supplies its actor context (the debounce timer, the spawned refresh).
//!
//! While a replay runs (a restarted node or a new partition owner rebuilding
//! members' recent events from the event stream, see [`ReplayHold`]),
//! refreshes are held back: a member's refresh that falls due is put off
//! until no replay runs, so a burst of replayed events does not cost a
//! refresh per member on half-rebuilt state.
//!
//! Emits: `reco_nearline_refreshes_total{outcome}` (`stored`, `cold`,
//! `shed`, `failed`, `held` — put off once more because a replay runs), `reco_nearline_refresh_seconds` (compute time),
//! `reco_nearline_freshness_seconds` (first event of the batch → list
//! stored). The scoring itself is counted by the nearline pool
//! (`reco_model_requests_total{pool="nearline"}`).
//!
//! Fails: a refresh that the pool sheds, that finds the member cold or that
//! fails is counted and dropped; the member keeps its previous list (if not
//! too old) and the request path its precomputed fallback. A refresh that
//! takes longer than [`REFRESH_BUDGET`] is skipped by its worker.

use crate::lists::Fallback;
use crate::metrics as m;
use crate::model::{ModelPool, Score, ScoreOutcome};
use crate::signals::RecentSignals;
use reco_messages::{EventKind, ItemId, MemberId, ScoredItem, Source};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a nearline refresh may take before its worker skips it.
pub const REFRESH_BUDGET: Duration = Duration::from_secs(2);

/// Nearline settings of a node.
#[derive(Clone, Debug)]
pub struct NearlineSettings {
    /// The workers that compute refreshes.
    pub pool: ModelPool,
    /// Wait this long after the first important event before refreshing,
    /// so that a burst of events costs one refresh.
    pub debounce: Duration,
    /// Length of a nearline list.
    pub top_n: usize,
    /// A list older than this is not served.
    pub max_age: Duration,
    /// Answer with a fresh list that reflects every event, without asking
    /// the model.
    pub answer_when_fresh: bool,
    /// Refreshes wait while this is held (a replay runs).
    pub hold: ReplayHold,
}

/// How long a held-back refresh waits before it looks again.
pub const HELD_REFRESH_RETRY: Duration = Duration::from_millis(100);

/// Whether a replay of recent events runs on this node: nearline refreshes
/// wait until none does. Shared by everything that replays (the single
/// node's start-up replay, each partition a cluster node takes over) and
/// every session; cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct ReplayHold(Arc<AtomicUsize>);

/// One running replay; refreshes are held back until every guard is gone.
#[derive(Debug)]
#[must_use = "the hold ends when the guard is dropped"]
pub struct ReplayGuard(Arc<AtomicUsize>);

impl ReplayHold {
    /// A replay starts; it ends when the guard is dropped.
    pub fn enter(&self) -> ReplayGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        metrics::gauge!(m::REPLAYS_RUNNING).increment(1.0);
        ReplayGuard(self.0.clone())
    }

    /// True while some replay runs.
    pub fn is_held(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }
}

impl Drop for ReplayGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(m::REPLAYS_RUNNING).decrement(1.0);
    }
}

/// Whether an event of this kind is important enough to refresh the
/// member's nearline list.
pub fn triggers_refresh(kind: EventKind) -> bool {
    matches!(kind, EventKind::Play | EventKind::Rate | EventKind::ListAdd)
}

/// A member's nearline list.
#[derive(Clone, Debug)]
pub struct NearlineList {
    /// Best first, without the items seen when it was computed.
    pub items: Vec<ScoredItem>,
    /// Version of the model that computed it.
    pub version: String,
    /// When it was stored.
    pub computed_at: Instant,
    /// How many of the member's events it reflects (the session's event
    /// count when the refresh started).
    pub reflects: u64,
}

impl NearlineList {
    /// How old the list is.
    pub fn age(&self) -> Duration {
        self.computed_at.elapsed()
    }

    /// The list as a fallback of at most `k` items without `exclude`
    /// (sorted), padded from `padding` (the precomputed/popular fallback).
    pub fn fallback(&self, k: usize, exclude: &[ItemId], padding: Fallback) -> Fallback {
        let mut items: Vec<ScoredItem> = self
            .items
            .iter()
            .filter(|s| exclude.binary_search(&s.item).is_err())
            .take(k)
            .copied()
            .collect();
        let padding_lists = padding.lists_version;
        for extra in padding.items {
            if items.len() == k {
                break;
            }
            if !items.iter().any(|s| s.item == extra.item) {
                items.push(extra);
            }
        }
        Fallback {
            source: Source::Nearline,
            items,
            version: Some(self.version.clone()),
            lists_version: padding_lists,
            age_ms: Some(self.age().as_millis() as u64),
        }
    }
}

/// A member's nearline state, kept by its session: the list last computed
/// and the refresh scheduled after an important event.
#[derive(Debug, Default)]
pub struct MemberNearline {
    /// The member's nearline list, once one was computed.
    list: Option<Box<NearlineList>>,
    /// When the first event of a refresh batch arrived, while a refresh is
    /// scheduled.
    refresh_due: Option<Instant>,
}

impl MemberNearline {
    /// Marks a refresh as due after an important event. Returns how long to
    /// wait before running it when this event scheduled it, `None` when one
    /// is already scheduled (debounce: a burst costs one refresh).
    pub fn schedule(&mut self, settings: &NearlineSettings) -> Option<Duration> {
        if self.refresh_due.is_some() {
            return None;
        }
        self.refresh_due = Some(Instant::now());
        Some(settings.debounce)
    }

    /// Whether a refresh is scheduled (still due).
    pub fn is_due(&self) -> bool {
        self.refresh_due.is_some()
    }

    /// Starts the scheduled refresh: asks the nearline pool to score the
    /// member's recent `signals`, which reflect `reflects` events. Returns
    /// the future of the list to store (`None`: nothing to store, counted),
    /// or `None` when there is nothing to refresh or the pool shed it —
    /// or while a replay runs ([`ReplayHold`]): then the refresh stays due
    /// ([`MemberNearline::is_due`]) and the caller tries again later.
    pub fn start_refresh(
        &mut self,
        settings: &NearlineSettings,
        member: MemberId,
        signals: &RecentSignals,
        reflects: u64,
    ) -> Option<impl Future<Output = Option<NearlineList>> + 'static> {
        if self.refresh_due.is_some() && settings.hold.is_held() {
            metrics::counter!(m::NEARLINE_REFRESHES_TOTAL, "outcome" => "held").increment(1);
            return None;
        }
        let since = self.refresh_due.take()?;
        // The nearline list serves any device: no device weighting.
        let interactions = signals.interactions(None);
        if interactions.is_empty() {
            return None;
        }
        let started = Instant::now();
        let score = Score::new(
            member,
            interactions,
            settings.top_n,
            signals.seen(),
            started + REFRESH_BUDGET,
        );
        let Ok(pending) = settings.pool.try_score(score) else {
            metrics::counter!(m::NEARLINE_REFRESHES_TOTAL, "outcome" => "shed").increment(1);
            return None;
        };
        Some(async move {
            let (outcome, list) = match pending.await {
                Ok(ScoreOutcome::Scored { items, version }) => {
                    let now = Instant::now();
                    metrics::histogram!(m::NEARLINE_REFRESH_SECONDS)
                        .record(now.duration_since(started).as_secs_f64());
                    metrics::histogram!(m::NEARLINE_FRESHNESS_SECONDS)
                        .record(now.duration_since(since).as_secs_f64());
                    let list = NearlineList {
                        items,
                        version,
                        computed_at: now,
                        reflects,
                    };
                    ("stored", Some(list))
                }
                Ok(ScoreOutcome::Cold) => ("cold", None),
                _ => ("failed", None),
            };
            metrics::counter!(m::NEARLINE_REFRESHES_TOTAL, "outcome" => outcome).increment(1);
            list
        })
    }

    /// Keeps `list` as the member's nearline list.
    pub fn store(&mut self, list: NearlineList) {
        self.list = Some(Box::new(list));
    }

    /// Forgets the list (a session restarted after a panic cannot trust
    /// it); a scheduled refresh still runs.
    pub fn forget_list(&mut self) {
        self.list = None;
    }

    /// The list if it may be served (nearline enabled, not older than the
    /// bound).
    pub fn servable(&self, settings: Option<&NearlineSettings>) -> Option<&NearlineList> {
        let max_age = settings?.max_age;
        self.list.as_deref().filter(|list| list.age() <= max_age)
    }

    /// The fallback of a request: the servable nearline list padded from
    /// `offline` (the precomputed/popular fallback), or `offline` itself.
    /// The flag says the list may answer the request outright: it reflects
    /// every one of the `applied` events and the node answers with fresh
    /// lists.
    pub fn fallback(
        &self,
        settings: Option<&NearlineSettings>,
        applied: u64,
        k: usize,
        exclude: &[ItemId],
        offline: Fallback,
    ) -> (Fallback, bool) {
        match self.servable(settings) {
            Some(list) => {
                let fresh =
                    list.reflects == applied && settings.is_some_and(|n| n.answer_when_fresh);
                (list.fallback(k, exclude, offline), fresh)
            }
            None => (offline, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_models::Scored;

    #[test]
    fn a_refresh_waits_while_a_replay_runs_and_starts_once_it_is_done() {
        let settings = NearlineSettings {
            pool: ModelPool::new(
                "nearline",
                1,
                1,
                crate::model::ModelHandle::new(None),
                crate::faults::InjectedFaults::default(),
            ),
            debounce: Duration::from_millis(1),
            top_n: 5,
            max_age: Duration::from_secs(60),
            answer_when_fresh: false,
            hold: ReplayHold::default(),
        };
        let mut signals = RecentSignals::new(
            8,
            std::sync::Arc::new(crate::signals::SignalPolicy::default()),
        );
        signals.push(&reco_messages::Event {
            member: MemberId(1),
            item: ItemId(7),
            kind: EventKind::Play,
            value: 600.0,
            at_ms: None,
            device: None,
        });
        let mut nearline = MemberNearline::default();
        assert!(nearline.schedule(&settings).is_some());
        let replay = settings.hold.enter();
        assert!(nearline
            .start_refresh(&settings, MemberId(1), &signals, 1)
            .is_none());
        assert!(nearline.is_due(), "a held refresh stays due");
        drop(replay);
        // Released, the refresh goes to the pool (which sheds it here: no
        // model, no worker) and is no longer due.
        let _ = nearline.start_refresh(&settings, MemberId(1), &signals, 1);
        assert!(!nearline.is_due(), "the refresh ran once the replay ended");
    }

    #[test]
    fn a_replay_hold_lasts_while_any_guard_lives() {
        let hold = ReplayHold::default();
        assert!(!hold.is_held());
        let first = hold.enter();
        let second = hold.clone().enter();
        assert!(hold.is_held());
        drop(first);
        assert!(hold.is_held());
        drop(second);
        assert!(!hold.is_held());
    }

    #[test]
    fn nearline_fallback_drops_seen_items_and_pads_without_duplicates() {
        let list = NearlineList {
            items: [5, 6, 7]
                .map(|i| Scored {
                    item: ItemId(i),
                    score: i as f32,
                })
                .to_vec(),
            version: "v1".into(),
            computed_at: Instant::now(),
            reflects: 1,
        };
        let padding = Fallback {
            source: Source::Popular,
            items: [7, 8, 9]
                .map(|i| ScoredItem {
                    item: ItemId(i),
                    score: 0.0,
                })
                .to_vec(),
            version: None,
            lists_version: Some("l1".into()),
            age_ms: None,
        };
        let f = list.fallback(4, &[ItemId(6)], padding);
        let ids: Vec<u64> = f.items.iter().map(|s| s.item.0).collect();
        assert_eq!(ids, vec![5, 7, 8, 9]);
        assert_eq!(f.source, Source::Nearline);
        assert_eq!(f.version.as_deref(), Some("v1"));
        assert_eq!(f.lists_version.as_deref(), Some("l1"));
        assert!(f.age_ms.is_some());
    }
}
