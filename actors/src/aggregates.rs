//! The near-real-time aggregates in service on a node, and the two rows
//! built from them: `trending` and `billboard`.
//!
//! Purpose: give the request path the newest aggregate snapshot (take-rate
//! table, trending list) published by `reco nearline`, and turn it into a
//! row. Like [`crate::lists`] there is no actor here on purpose: the
//! snapshot is one `Arc` behind an atomic pointer
//! ([`reco_streaming::loader::AggregatesHandle`]), written by the node's
//! aggregates loader (started by the composition root) and read with one
//! atomic load per request, so a swap never makes a request wait and a
//! request in flight keeps the snapshot it read.
//!
//! # `row: trending`
//! The snapshot's trending list (titles whose plays in the last hour run
//! furthest above their daily pace, [`reco_models::aggregates`]), without
//! the member's seen items, padded from the popular list when fewer than k
//! titles trend. Source `trending`; it needs no model, so it has no deadline
//! of its own. No usable snapshot (none yet, or older than
//! [`AggregatesSettings::max_age`]): the popular list, degraded, reason
//! `aggregates_unavailable`.
//!
//! # `row: billboard`
//! k titles (usually 1) to feature for this member, chosen by Thompson
//! sampling over take rates ([`reco_models::bandit`]). The arms:
//! - the member's top [`BillboardSettings::pool`] items under the model,
//!   with their scores (asked of the model pool under the request's
//!   deadline, like `top`): the prior and the lift of each arm;
//! - up to [`BillboardSettings::new_titles`] titles the snapshot has seen
//!   (impressions in the last day) that the model in service does not know:
//!   titles launched after it was trained. They have no score, so they
//!   start at the pool's take rate with a wide posterior and are featured
//!   early; their own takes then decide;
//! - without the model's answer (deadline, overload, cold member, no model),
//!   the popular list's head takes the place of the member's top items,
//!   without scores: the bandit over take rates alone, degraded, with the
//!   model's reason.
//!
//! Counts are the snapshot's day window. Seen items are never arms. No
//! usable snapshot: the member's model answer is not awaited; the popular
//! list answers, degraded, reason `aggregates_unavailable`.
//!
//! Emits: `reco_aggregates_snapshot_sequence`,
//! `reco_aggregates_snapshot_age_seconds` (by [`AggregatesReader::publish_gauges`],
//! called by the node every second), `reco_aggregate_rows_total{row,outcome}`,
//! `reco_billboard_new_titles_total`. Logs: nothing per request.
//!
//! Fails: nothing here can fail; a missing or stale snapshot is a fallback.

use crate::lists::{Fallback, ListsReader};
use crate::metrics as m;
use crate::reply::Responder;
use arc_swap::ArcSwapOption;
use reco_messages::{ItemId, MemberId, Reason, Recommendations, ScoredItem, Source};
use reco_models::aggregates::{AggregateSnapshot, Counts};
use reco_models::bandit::{self, Arm, BanditParams};
use reco_models::{ItemFactors, Scored};
use reco_streaming::loader::{AggregatesHandle, Loaded};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How the node uses the aggregates, from its configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregatesSettings {
    /// A snapshot older than this (since the job read its windows) is not
    /// used: the rows fall back as if there were none.
    pub max_age: Duration,
    /// The billboard's arms and bandit.
    pub billboard: BillboardSettings,
}

/// The billboard's arms and bandit.
#[derive(Clone, Debug, PartialEq)]
pub struct BillboardSettings {
    /// The member's top items under the model that become arms.
    pub pool: usize,
    /// Titles unknown to the model (launched after its training) that
    /// become arms, most impressions in the last day first.
    pub new_titles: usize,
    /// The bandit's tuning.
    pub bandit: BanditParams,
}

impl Default for AggregatesSettings {
    fn default() -> Self {
        AggregatesSettings {
            max_age: Duration::from_secs(600),
            billboard: BillboardSettings {
                pool: 30,
                new_titles: 20,
                bandit: BanditParams {
                    score_lift: 0.5,
                    ..BanditParams::default()
                },
            },
        }
    }
}

/// Read access to the aggregate snapshot in service, shared by every
/// session of a node.
#[derive(Clone, Debug)]
pub struct AggregatesReader {
    handle: AggregatesHandle,
    settings: Arc<AggregatesSettings>,
    /// Mixed into each billboard's seed, so two requests of one member draw
    /// differently (Thompson sampling explores by its draws).
    draws: Arc<AtomicU64>,
    /// The billboard's candidate new titles for the snapshot and model in
    /// service.
    new_titles: Arc<ArcSwapOption<NewTitles>>,
}

/// Titles a snapshot has seen that a model does not know, most impressions
/// first.
#[derive(Debug)]
struct NewTitles {
    snapshot: String,
    model: Option<String>,
    items: Vec<ItemId>,
}

/// A usable snapshot and its provenance.
#[derive(Clone, Debug)]
pub struct InService {
    loaded: Arc<Loaded>,
}

impl InService {
    /// The snapshot.
    pub fn snapshot(&self) -> &AggregateSnapshot {
        &self.loaded.snapshot
    }

    /// Its version.
    pub fn version(&self) -> &str {
        &self.loaded.version
    }
}

impl AggregatesReader {
    /// A reader over `handle` (the loader writes into the same handle).
    pub fn new(handle: AggregatesHandle, settings: AggregatesSettings) -> Self {
        AggregatesReader {
            handle,
            settings: Arc::new(settings),
            draws: Arc::new(AtomicU64::new(0)),
            new_titles: Arc::new(ArcSwapOption::empty()),
        }
    }

    /// The handle the loader swaps snapshots into.
    pub fn handle(&self) -> &AggregatesHandle {
        &self.handle
    }

    /// The settings.
    pub fn settings(&self) -> &AggregatesSettings {
        &self.settings
    }

    /// The snapshot in service and its age in ms at `now_ms`, usable or not.
    pub fn current(&self, now_ms: u64) -> Option<(String, u64)> {
        self.handle.load().map(|loaded| {
            (
                loaded.version.clone(),
                now_ms.saturating_sub(loaded.snapshot.now_ms),
            )
        })
    }

    /// The snapshot in service if it is younger than `max_age` at `now_ms`.
    pub fn usable(&self, now_ms: u64) -> Option<InService> {
        let loaded = self.handle.load()?;
        let age = now_ms.saturating_sub(loaded.snapshot.now_ms);
        (u128::from(age) <= self.settings.max_age.as_millis()).then_some(InService { loaded })
    }

    /// Sets the snapshot gauges (sequence, age) as of `now_ms`.
    pub fn publish_gauges(&self, now_ms: u64) {
        match self.handle.load() {
            Some(loaded) => {
                metrics::gauge!(m::AGGREGATES_SNAPSHOT_SEQUENCE)
                    .set(loaded.snapshot.last_sequence as f64);
                metrics::gauge!(m::AGGREGATES_SNAPSHOT_AGE_SECONDS)
                    .set(now_ms.saturating_sub(loaded.snapshot.now_ms) as f64 / 1000.0);
            }
            None => {
                metrics::gauge!(m::AGGREGATES_SNAPSHOT_SEQUENCE).set(0.0);
                metrics::gauge!(m::AGGREGATES_SNAPSHOT_AGE_SECONDS).set(-1.0);
            }
        }
    }

    /// The `trending` row for `member` (see the module docs): never waits.
    pub fn trending(
        &self,
        member: MemberId,
        k: usize,
        exclude: &[ItemId],
        lists: &ListsReader,
        now_ms: u64,
    ) -> Recommendations {
        let Some(service) = self.usable(now_ms) else {
            return unavailable("trending", member, lists.fallback_popular(k, exclude));
        };
        let mut items: Vec<ScoredItem> = service
            .snapshot()
            .trending
            .iter()
            .filter(|t| exclude.binary_search(&t.item).is_err())
            .take(k)
            .map(|t| ScoredItem {
                item: t.item,
                score: t.score as f32,
            })
            .collect();
        let pad = lists.fallback_popular(k, exclude);
        for scored in pad.items {
            if items.len() >= k {
                break;
            }
            if !items.iter().any(|s| s.item == scored.item) {
                // Below every trending title (their scores are > 0).
                items.push(ScoredItem {
                    item: scored.item,
                    score: 0.0,
                });
            }
        }
        metrics::counter!(m::AGGREGATE_ROWS_TOTAL, "row" => "trending", "outcome" => "served")
            .increment(1);
        let mut reply = served(member, items, Source::Trending, &service);
        reply.lists_version = pad.lists_version;
        reply
    }

    /// The billboard's arms for a member (see the module docs): `scored` are
    /// the member's top items under `model` (empty when the model did not
    /// answer: the popular head stands in for them), plus the titles the
    /// snapshot has seen that `model` does not know. Seen items are left
    /// out; counts are the snapshot's day window.
    pub fn billboard_arms(
        &self,
        service: &InService,
        scored: &[Scored],
        model: Option<&ItemFactors>,
        lists: &ListsReader,
        exclude: &[ItemId],
    ) -> Vec<Arm> {
        let settings = &self.settings.billboard;
        let snapshot = service.snapshot();
        let counts = |item: ItemId| snapshot.title(item).map_or(Counts::default(), |t| t.day);
        let arm = |item: ItemId, score: Option<f32>| {
            let day = counts(item);
            Arm {
                item,
                impressions: day.impressions,
                plays: day.plays,
                score,
            }
        };
        let mut arms: Vec<Arm> = Vec::with_capacity(settings.pool + settings.new_titles);
        if scored.is_empty() {
            let popular = lists.fallback_popular(settings.pool, exclude);
            arms.extend(popular.items.iter().map(|s| arm(s.item, None)));
        } else {
            arms.extend(
                scored
                    .iter()
                    .filter(|s| exclude.binary_search(&s.item).is_err())
                    .take(settings.pool)
                    .map(|s| arm(s.item, Some(s.score))),
            );
        }
        let new = self.new_titles(service, model);
        let unseen = new
            .items
            .iter()
            .filter(|item| exclude.binary_search(item).is_err());
        for &item in unseen.take(settings.new_titles) {
            if !arms.iter().any(|a| a.item == item) {
                arms.push(arm(item, None));
            }
        }
        arms
    }

    /// The titles of the snapshot that `model` does not know, with
    /// impressions in the last day, most first: computed once per (snapshot,
    /// model) pair and shared, so a request does not scan the take-rate
    /// table.
    fn new_titles(&self, service: &InService, model: Option<&ItemFactors>) -> Arc<NewTitles> {
        let model_version = model.map(|m| m.version().to_owned());
        if let Some(cached) = self.new_titles.load_full() {
            if cached.snapshot == service.version() && cached.model == model_version {
                return cached;
            }
        }
        let mut new: Vec<(u64, ItemId)> = service
            .snapshot()
            .titles
            .iter()
            .filter(|t| t.day.impressions > 0)
            .filter(|t| model.is_some_and(|m| m.index_of(t.item).is_none()))
            .map(|t| (t.day.impressions, t.item))
            .collect();
        new.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let computed = Arc::new(NewTitles {
            snapshot: service.version().to_owned(),
            model: model_version,
            items: new.into_iter().map(|(_, item)| item).collect(),
        });
        self.new_titles.store(Some(computed.clone()));
        computed
    }

    /// Draws the billboard over `arms` for `member`: the k featured titles,
    /// best first, scored by their Thompson draws.
    pub fn billboard_choose(
        &self,
        member: MemberId,
        arms: &[Arm],
        k: usize,
        model: Option<&ItemFactors>,
    ) -> Vec<ScoredItem> {
        let draw = self.draws.fetch_add(1, Ordering::Relaxed);
        let seed = member
            .0
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(draw.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let chosen = bandit::thompson(arms, &self.settings.billboard.bandit, k, seed);
        let new = chosen
            .iter()
            .filter(|c| model.is_none_or(|m| m.index_of(c.item).is_none()))
            .count();
        if new > 0 {
            metrics::counter!(m::BILLBOARD_NEW_TITLES_TOTAL).increment(new as u64);
        }
        chosen
            .into_iter()
            .map(|c| ScoredItem {
                item: c.item,
                score: c.value as f32,
            })
            .collect()
    }

    /// The billboard reply: `items` drawn over `service`; `reason` is why the
    /// member's model scores were not used (then it is degraded).
    pub fn billboard_reply(
        &self,
        member: MemberId,
        items: Vec<ScoredItem>,
        service: &InService,
        model_version: Option<String>,
        reason: Option<Reason>,
    ) -> Recommendations {
        let outcome = if reason.is_some() {
            "no_model_scores"
        } else {
            "served"
        };
        metrics::counter!(m::AGGREGATE_ROWS_TOTAL, "row" => "billboard", "outcome" => outcome)
            .increment(1);
        let mut reply = served(member, items, Source::Billboard, service);
        reply.model_version = model_version;
        reply.degraded = reason.is_some();
        reply.reason = reason;
        reply
    }

    /// A billboard draw for `member` over the snapshot in service, or `None`
    /// when no snapshot is usable (then [`Self::billboard_unavailable`]).
    /// `model` is the model in service (which titles it knows), `exclude`
    /// the member's seen items (sorted).
    pub fn billboard(
        &self,
        member: MemberId,
        k: usize,
        exclude: Vec<ItemId>,
        lists: ListsReader,
        model: Option<Arc<ItemFactors>>,
        now_ms: u64,
    ) -> Option<BillboardDraw> {
        let service = self.usable(now_ms)?;
        Some(BillboardDraw {
            reader: self.clone(),
            lists,
            service,
            model,
            exclude,
            member,
            k,
        })
    }

    /// The billboard's answer when no snapshot is usable: the popular list,
    /// degraded.
    pub fn billboard_unavailable(
        &self,
        member: MemberId,
        k: usize,
        exclude: &[ItemId],
        lists: &ListsReader,
    ) -> Recommendations {
        unavailable("billboard", member, lists.fallback_popular(k, exclude))
    }
}

/// One billboard request between reading the snapshot and drawing: it
/// waits, if it must, for the member's model scores.
#[derive(Debug)]
pub struct BillboardDraw {
    reader: AggregatesReader,
    lists: ListsReader,
    service: InService,
    model: Option<Arc<ItemFactors>>,
    exclude: Vec<ItemId>,
    member: MemberId,
    k: usize,
}

impl BillboardDraw {
    /// Answers with the member's top items under the model (`scored`, from
    /// model `version`) among the arms.
    pub fn with_scores(self, scored: &[Scored], version: String, responder: Responder) {
        let r = &self.reader;
        let model = self.model.as_deref();
        let arms = r.billboard_arms(&self.service, scored, model, &self.lists, &self.exclude);
        let items = r.billboard_choose(self.member, &arms, self.k, model);
        responder.reply(r.billboard_reply(self.member, items, &self.service, Some(version), None));
    }

    /// Answers without the member's scores (the model did not answer, for
    /// `reason`): the bandit over take rates alone, degraded.
    pub fn without_scores(self, reason: Reason, responder: Responder) {
        let r = &self.reader;
        let model = self.model.as_deref();
        let arms = r.billboard_arms(&self.service, &[], model, &self.lists, &self.exclude);
        let items = r.billboard_choose(self.member, &arms, self.k, model);
        responder.reply(r.billboard_reply(self.member, items, &self.service, None, Some(reason)));
    }
}

fn served(
    member: MemberId,
    items: Vec<ScoredItem>,
    source: Source,
    service: &InService,
) -> Recommendations {
    Recommendations {
        member,
        items,
        source,
        model_version: None,
        degraded: false,
        reason: None,
        served_us: 0,
        lists_version: None,
        list_age_ms: None,
        signals: None,
        newest_signal_age_ms: None,
        aggregates_version: Some(service.version().to_owned()),
        // Stamped by the responder.
        row: None,
        details: None,
        reused: false,
    }
}

fn unavailable(row: &'static str, member: MemberId, popular: Fallback) -> Recommendations {
    metrics::counter!(m::AGGREGATE_ROWS_TOTAL, "row" => row, "outcome" => "unavailable")
        .increment(1);
    crate::reply::fallback_reply(member, popular, Reason::AggregatesUnavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_messages::{Event, EventKind};
    use reco_models::aggregates::{AggregateParams, AggregateState, Observed, HOUR_MS};
    use reco_models::PrecomputedLists;
    use std::collections::HashMap;

    const T0: u64 = 1_700_000_000_000;

    fn observed(seq: u64, item: u64, kind: EventKind, time_ms: u64) -> Observed {
        Observed {
            sequence: seq,
            event: Event {
                member: MemberId(seq),
                item: ItemId(item),
                kind,
                value: 0.0,
                at_ms: None,
                device: None,
            },
            time_ms,
        }
    }

    /// Title 1 plays steadily all day, title 2 surged this hour, title 3
    /// was shown 100 times and played 40 times this hour.
    fn snapshot() -> AggregateSnapshot {
        let mut events = Vec::new();
        let mut seq = 0;
        let mut push = |item, kind, time| {
            seq += 1;
            events.push(observed(seq, item, kind, time));
        };
        for h in 0..24 {
            for _ in 0..10 {
                push(1, EventKind::Play, T0 + h * HOUR_MS);
            }
        }
        let now = T0 + 23 * HOUR_MS + 1000;
        for _ in 0..30 {
            push(2, EventKind::Play, now);
        }
        for i in 0..100 {
            push(3, EventKind::Impression, now);
            if i < 40 {
                push(3, EventKind::Play, now);
            }
        }
        AggregateState::batch(AggregateParams::default(), &events).snapshot(now, 10)
    }

    fn lists() -> ListsReader {
        ListsReader::new(PrecomputedLists {
            version: "lists-1".into(),
            popular: [7u64, 8, 9]
                .iter()
                .map(|&i| Scored {
                    item: ItemId(i),
                    score: 1.0,
                })
                .collect(),
            members: HashMap::new(),
            computed_at_ms: None,
            ..PrecomputedLists::default()
        })
    }

    fn reader_with(snapshot: Option<AggregateSnapshot>) -> AggregatesReader {
        let handle = AggregatesHandle::default();
        if let Some(snapshot) = snapshot {
            handle.swap_in("v1".into(), snapshot);
        }
        AggregatesReader::new(handle, AggregatesSettings::default())
    }

    fn ids(items: &[ScoredItem]) -> Vec<u64> {
        items.iter().map(|s| s.item.0).collect()
    }

    #[test]
    fn trending_leaves_out_seen_titles_and_pads_from_popular() {
        let snap = snapshot();
        let now = snap.now_ms;
        let reader = reader_with(Some(snap));
        let reply = reader.trending(MemberId(1), 4, &[ItemId(2)], &lists(), now);
        assert_eq!(reply.source, Source::Trending);
        assert!(!reply.degraded);
        assert_eq!(reply.aggregates_version.as_deref(), Some("v1"));
        let got = ids(&reply.items);
        assert!(!got.contains(&2), "{got:?}");
        assert_eq!(got.len(), 4);
        assert_eq!(&got[2..], &[7, 8]);
    }

    #[test]
    fn without_a_usable_snapshot_the_rows_fall_back_to_popular_and_say_so() {
        let reader = reader_with(None);
        for reply in [
            reader.trending(MemberId(1), 2, &[], &lists(), T0),
            reader.billboard_unavailable(MemberId(1), 2, &[], &lists()),
        ] {
            assert_eq!(reply.source, Source::Popular);
            assert!(reply.degraded);
            assert_eq!(reply.reason, Some(Reason::AggregatesUnavailable));
            assert_eq!(ids(&reply.items), vec![7, 8]);
        }
        // A snapshot older than max_age is not used either.
        let snap = snapshot();
        let late = snap.now_ms + 601_000;
        let reader = reader_with(Some(snap));
        let reply = reader.trending(MemberId(1), 2, &[], &lists(), late);
        assert_eq!(reply.reason, Some(Reason::AggregatesUnavailable));
        assert_eq!(reader.current(late).unwrap().1, 601_000);
    }

    #[test]
    fn billboard_arms_are_the_members_top_items_and_titles_the_model_does_not_know() {
        let snap = snapshot();
        let now = snap.now_ms;
        let reader = reader_with(Some(snap));
        let service = reader.usable(now).unwrap();
        // A model that knows titles 1 and 2 only: title 3 is "new".
        let model = ItemFactors::new(
            "m1".into(),
            2,
            vec![ItemId(1), ItemId(2)],
            vec![1.0, 0.0, 0.0, 1.0],
            0.1,
            1.0,
        )
        .unwrap();
        let scored = [
            Scored {
                item: ItemId(1),
                score: 0.9,
            },
            Scored {
                item: ItemId(2),
                score: 0.1,
            },
        ];
        let arms = reader.billboard_arms(&service, &scored, Some(&model), &lists(), &[]);
        let items: Vec<u64> = arms.iter().map(|a| a.item.0).collect();
        assert_eq!(items, vec![1, 2, 3]);
        assert_eq!((arms[2].impressions, arms[2].plays), (100, 40));
        assert_eq!(arms[2].score, None);
        // Without the model's answer the popular head stands in.
        let arms = reader.billboard_arms(&service, &[], Some(&model), &lists(), &[ItemId(8)]);
        let items: Vec<u64> = arms.iter().map(|a| a.item.0).collect();
        assert_eq!(items, vec![7, 9, 3]);
        // The unshown titles start at the pool's rate (the new title's 40 %)
        // with wide posteriors: all three share the draws.
        let mut wins = 0;
        for _ in 0..200 {
            let chosen = reader.billboard_choose(MemberId(5), &arms, 1, Some(&model));
            wins += usize::from(chosen[0].item == ItemId(3));
        }
        assert!(
            (30..150).contains(&wins),
            "new title featured {wins} of 200"
        );
        let reply = reader.billboard_reply(
            MemberId(5),
            reader.billboard_choose(MemberId(5), &arms, 1, Some(&model)),
            &service,
            None,
            Some(Reason::Deadline),
        );
        assert_eq!(reply.source, Source::Billboard);
        assert!(reply.degraded);
        assert_eq!(reply.items.len(), 1);
    }
}
