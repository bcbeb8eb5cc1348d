//! `Session`: one actor per member, the member's place in a node.
//!
//! Purpose: apply the member's events in order, remember its recent signals,
//! and answer its recommend requests — from the model when the model is on
//! time, from the fallback otherwise, saying which. Rows `trending` and
//! `billboard` are answered from the aggregate snapshot in service
//! ([`crate::aggregates`]); the billboard asks the model for the member's
//! top items under the same deadline and breaker.
//!
//! Mailbox: [`ApplyEvent`] → `()`, [`Recommend`] → `()` (the reply goes out
//! through the request's [`Responder`](crate::reply::Responder)), [`Passivate`] → `()`. Data mailbox
//! capacity comes from [`SessionSettings::mailbox`].
//!
//! State: the member's [`RecentSignals`] (bounded ring). The session lives
//! while its shard's registry keeps it (bounded number, time-to-idle); when
//! passivated its state is dropped, and the member starts cold on its next
//! contact — the precomputed list is there for exactly that.
//!
//! The member's last model answer is kept (one, bounded by `k`) and served
//! again without a scan while nothing it depended on changed (answer
//! reuse, `reused: true`; see `Reusable`).
//!
//! Emits: `reco_session_active`, `reco_events_ingested_total{kind}`,
//! `reco_model_answers_reused_total`,
//! `reco_session_restarts_total`, `reco_events_quarantined_total`,
//! `reco_events_out_of_order_total` (an event whose producer time is older
//! than one the session applied before: per-member order broken), the
//! nearline metrics (see [`crate::nearline`]) and the reply metrics through
//! the responder, and the counterfactual log's (see [`crate::counterfactual`]:
//! a sampled request that missed its deadline keeps waiting for the model
//! after the fallback replied); quarantined events go to the dead-letter subject through
//! [`SessionDeps::dead_letter`]. Logs: WARN "Session restarted after a
//! panic…", ERROR "Poisoned event quarantined.".
//!
//! Fails: a request is never left unanswered: the fallback is computed before
//! the model is asked, and a lost responder answers `internal` on drop. A
//! panic in a handler is caught and the session restarts in place (fresh
//! state, same mailbox: what was queued behind the crash is still applied in
//! order). An event that crashes the session `quarantine_after` times in a
//! row is quarantined — dropped and dead-lettered with the reason — instead
//! of crashing it forever. Sessions are `transient` children of their shard:
//! passivation is a normal exit and nothing restarts them until the member
//! comes back.

use crate::aggregates::AggregatesReader;
use crate::breaker::{Admission, ModelBreaker};
use crate::counterfactual::{CounterfactualLog, Served};
use crate::faults::InjectedFaults;
use crate::lifecycle::isolate;
use crate::lists::ListsReader;
use crate::metrics as m;
use crate::model::{ModelPool, Refusal, RowQuery, Score, ScoreOutcome};
use crate::nearline::{triggers_refresh, MemberNearline, NearlineSettings, HELD_REFRESH_RETRY};
use crate::reply::{fallback_reply, Recommend};
use crate::rows;
use crate::seen::SeenIndex;
use crate::signals::{RecentSignals, SignalPolicy};
use actix::prelude::*;
use reco_messages::{Event, ItemId, MemberId, Reason, Recommendations, Row, Source};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Where quarantined events go: the node publishes them to the dead-letter
/// subject with the reason.
pub type DeadLetter = Arc<dyn Fn(&Event, &str) + Send + Sync>;

/// What every session needs, shared by all sessions of a node.
#[derive(Clone)]
pub struct SessionDeps {
    /// The model worker pool.
    pub model: ModelPool,
    /// The precomputed lists in service.
    pub lists: ListsReader,
    /// Settings of every session.
    pub settings: SessionSettings,
    /// Where poisoned events are quarantined.
    pub dead_letter: DeadLetter,
    /// The injected faults (a poisoned item crashes the sessions that apply
    /// its events).
    pub faults: InjectedFaults,
    /// Nearline refreshes, when enabled.
    pub nearline: Option<NearlineSettings>,
    /// The breaker in front of the model pool.
    pub breaker: ModelBreaker,
    /// Where sampled late model answers go.
    pub counterfactual: CounterfactualLog,
    /// What resident members have seen, for the overload fallbacks.
    pub seen: SeenIndex,
    /// The near-real-time aggregate snapshot in service (rows `trending`
    /// and `billboard`).
    pub aggregates: AggregatesReader,
}

impl std::fmt::Debug for SessionDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionDeps")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Per-session settings, from the node's configuration.
#[derive(Clone, Debug)]
pub struct SessionSettings {
    /// Events remembered per member.
    pub recent_events: usize,
    /// Capacity of a session's data mailbox.
    pub mailbox: usize,
    /// The fallback answers this long before the caller's deadline, to leave
    /// time for the reply to travel.
    pub reply_margin: Duration,
    /// Crashes on the same event after which it is quarantined.
    pub quarantine_after: u32,
    /// How recent signals are timed, aged and weighed.
    pub signals: Arc<SignalPolicy>,
    /// How long a model answer may be served again while nothing it
    /// depends on changed (zero: never reused).
    pub reuse_max_age: Duration,
}

/// The actor of one member.
#[derive(Debug)]
pub struct Session {
    member: MemberId,
    signals: RecentSignals,
    /// Shared by every session of the node (one pointer per member).
    deps: Arc<SessionDeps>,
    /// Events applied so far (to tell whether a nearline list reflects
    /// them all).
    applied: u64,
    /// The member's nearline list and its scheduled refresh.
    nearline: MemberNearline,
    /// The newest producer time (`at_ms`) applied: an older one after it
    /// breaks the member's order (counted).
    newest_at_ms: u64,
    /// The member's last model answer, while it may be reused (see
    /// [`Reusable`]); allocated at the first model request.
    reusable: Option<ReuseSlot>,
}

/// Where a model answer lands for reuse: the reply future (on the session's
/// own arbiter thread) fills it, the session reads it.
type ReuseSlot = std::rc::Rc<std::cell::RefCell<Option<Reusable>>>;

/// A model answer and what it depended on: answer reuse serves it again,
/// without a scan, to a request of the same shape while the member applied
/// no event, the model in service is the same version, and it is younger
/// than `reuse_max_age`; never while an injected model fault hits the
/// member. One per member, at most `k` (≤ 500) items: bounded
/// by the resident members; dropped on the member's next event.
///
/// The request's shape is `k`, `exclude_seen`, the device and the row (only rows the
/// model answers are kept: top picks, `genre:`, `new`, `because:`).
#[derive(Debug)]
struct Reusable {
    applied: u64,
    version: String,
    k: usize,
    exclude_seen: bool,
    row: Row,
    /// The request's device: it changes the fold-in
    /// ([`crate::signals`]).
    device: Option<String>,
    at: Instant,
    items: Vec<reco_models::Scored>,
}

impl Session {
    /// A session for `member` with no history.
    pub fn new(member: MemberId, deps: Arc<SessionDeps>) -> Self {
        Session {
            member,
            signals: RecentSignals::new(deps.settings.recent_events, deps.settings.signals.clone()),
            deps,
            applied: 0,
            nearline: MemberNearline::default(),
            newest_at_ms: 0,
            reusable: None,
        }
    }

    /// Schedules a nearline refresh after an important event, unless one is
    /// already scheduled (debounce).
    fn schedule_refresh(&mut self, ctx: &mut Context<Self>) {
        let Some(settings) = &self.deps.nearline else {
            return;
        };
        if let Some(debounce) = self.nearline.schedule(settings) {
            ctx.run_later(debounce, |session, ctx| session.refresh(ctx));
        }
    }

    /// Runs the scheduled refresh off the request path and stores its list.
    fn refresh(&mut self, ctx: &mut Context<Self>) {
        let Some(settings) = &self.deps.nearline else {
            return;
        };
        let started =
            self.nearline
                .start_refresh(settings, self.member, &self.signals, self.applied);
        match started {
            Some(refresh) => {
                ctx.spawn(refresh.into_actor(self).map(|list, session, _ctx| {
                    if let Some(list) = list {
                        session.nearline.store(list);
                    }
                }));
            }
            // Held back while a replay rebuilds recent events: try again.
            None if self.nearline.is_due() => {
                ctx.run_later(HELD_REFRESH_RETRY, |session, ctx| session.refresh(ctx));
            }
            None => {}
        }
    }

    fn apply(&mut self, event: &Event) {
        self.deps.faults.check_poison(event.item);
        if let Some(at_ms) = event.at_ms {
            if at_ms < self.newest_at_ms {
                metrics::counter!(m::EVENTS_OUT_OF_ORDER_TOTAL).increment(1);
            } else {
                self.newest_at_ms = at_ms;
            }
        }
        self.signals.push(event);
        if event.kind.marks_seen() {
            self.deps.seen.set(self.member, self.signals.seen());
        }
    }

    /// Restarts the session in place after a panic: its state is replaced
    /// by a fresh one (the state a panic interrupted cannot be trusted); its
    /// address and mailbox stay, so the messages queued behind the one that
    /// crashed are still handled, in order.
    fn restart(&mut self, message: &'static str) {
        self.signals = RecentSignals::new(
            self.deps.settings.recent_events,
            self.deps.settings.signals.clone(),
        );
        self.nearline.forget_list();
        self.deps.seen.forget(self.member);
        self.reusable = None;
        metrics::counter!(m::SESSION_RESTARTS_TOTAL).increment(1);
        tracing::warn!(member = %self.member, message, "Session restarted after a panic; its recent signals were reset.");
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.deps.settings.mailbox);
        metrics::gauge!(m::SESSION_ACTIVE).increment(1.0);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        metrics::gauge!(m::SESSION_ACTIVE).decrement(1.0);
        self.deps.seen.forget(self.member);
        tracing::debug!(member = %self.member, events = self.signals.len(), "Session passivated.");
    }
}

/// Apply one validated event of the member.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ApplyEvent(pub Event);

impl Handler<ApplyEvent> for Session {
    type Result = ();

    fn handle(&mut self, msg: ApplyEvent, ctx: &mut Self::Context) {
        let event = msg.0;
        let mut crashes = 0;
        loop {
            match isolate("session", "ApplyEvent", || self.apply(&event)) {
                Ok(()) => {
                    metrics::counter!(m::EVENTS_INGESTED_TOTAL, "kind" => event.kind.as_str())
                        .increment(1);
                    self.applied += 1;
                    // What the last model answer depended on changed.
                    self.reusable = None;
                    if triggers_refresh(event.kind) {
                        self.schedule_refresh(ctx);
                    }
                    return;
                }
                Err(why) => {
                    crashes += 1;
                    self.restart("ApplyEvent");
                    if crashes >= self.deps.settings.quarantine_after {
                        // Poisoned: delivering it again would crash again.
                        metrics::counter!(m::EVENTS_QUARANTINED_TOTAL).increment(1);
                        let reason = format!(
                            "quarantined: crashed the session of member {} {crashes} times: {why}",
                            self.member
                        );
                        tracing::error!(member = %self.member, item = %event.item, crashes, "Poisoned event quarantined.");
                        (self.deps.dead_letter)(&event, &reason);
                        return;
                    }
                }
            }
        }
    }
}

/// Stop the session (control message: sent with `do_send`, never shed).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Passivate;

impl Handler<Passivate> for Session {
    type Result = ();

    fn handle(&mut self, _msg: Passivate, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Recommend> for Session {
    type Result = ();

    fn handle(&mut self, msg: Recommend, _ctx: &mut Self::Context) {
        // A panic drops the responder, which answers `internal`; a request
        // is not retried.
        if isolate("session", "Recommend", || self.recommend(msg)).is_err() {
            self.restart("Recommend");
        }
    }
}

impl Session {
    fn recommend(&mut self, msg: Recommend) {
        let Recommend {
            member,
            request_id,
            k,
            exclude_seen,
            row,
            device,
            deadline,
            responder,
            span,
        } = msg;
        let _entered = span.enter();
        let (signals, newest_age_ms) = self.signals.freshness_at(crate::signals::now_ms());
        let used = Used {
            signals: u32::try_from(signals).unwrap_or(u32::MAX),
            newest_age_ms,
        };
        let device = device.as_deref();
        if let Some(reply) = self.reuse(member, k, exclude_seen, &row, device) {
            // Nothing the last model answer depended on changed: no scan.
            responder.reply(used.stamp(reply));
            return;
        }
        let exclude: Vec<ItemId> = if exclude_seen {
            self.signals.seen()
        } else {
            Vec::new()
        };
        // The row decides what the model ranks and what answers without it
        // (crate::rows); top picks keep the nearline tier.
        let model = self.deps.model.model().load();
        let (fallback, query) = match rows::plan(
            &row,
            k,
            &exclude,
            &self.deps.lists,
            model.as_deref(),
            &self.signals,
        ) {
            rows::Plan::Refuse(message) => {
                return responder.error(reco_messages::ErrorCode::BadRequest, message)
            }
            // The near-real-time rows (crate::aggregates).
            rows::Plan::Aggregates => {
                if row == Row::Billboard {
                    drop(_entered);
                    return self.billboard(
                        member,
                        device,
                        k,
                        exclude,
                        exclude_seen,
                        deadline,
                        responder,
                        span,
                    );
                }
                let reply = self.deps.aggregates.trending(
                    member,
                    k,
                    &exclude,
                    &self.deps.lists,
                    crate::signals::now_ms(),
                );
                return responder.reply(used.stamp(reply));
            }
            rows::Plan::Direct(answer) => {
                return responder.reply(rows::direct_reply(member, answer))
            }
            rows::Plan::Model { query, fallback } => (fallback, query),
            rows::Plan::Top => {
                // The fallback is taken before the model is asked:
                // whatever happens next, an answer is ready. The
                // nearline list comes first.
                let offline = self.deps.lists.fallback(member, k, &exclude);
                let (fallback, fresh) = self.nearline.fallback(
                    self.deps.nearline.as_ref(),
                    self.applied,
                    k,
                    &exclude,
                    offline,
                );
                // The nearline list weighs every device alike: not fresh
                // for a request whose device changes the fold-in.
                if fresh && !self.signals.device_matters(device) {
                    // Cheap answer: the list already reflects every event.
                    let mut reply = fallback_reply(member, fallback, Reason::Deadline);
                    reply.degraded = false;
                    reply.reason = None;
                    responder.reply(used.stamp(reply));
                    return;
                }
                (fallback, RowQuery::Top)
            }
        };
        let lists_version = self.deps.lists.load().version.clone();
        let lists_version = (!lists_version.is_empty()).then_some(lists_version);
        let counterfactual = self.deps.counterfactual.clone();
        let sampled = counterfactual.sample();
        let keep = self.keep_slot(k, exclude_seen, &row, device);
        // The neighbours of an item need no member vector.
        let needs_member = !matches!(query, RowQuery::Near(_));
        let offered = self.offer_to_model(
            member,
            device,
            (k, exclude, exclude_seen),
            deadline,
            needs_member,
            move |score| {
                score.row = query;
                score.keep_late = sampled;
            },
        );
        let Offered {
            pending,
            answer_by,
            verdict,
        } = match offered {
            Ok(offered) => offered,
            Err(reason) => {
                responder.reply(used.stamp(fallback_reply(member, fallback, reason)));
                return;
            }
        };
        let wait = async move {
            let mut pending = std::pin::pin!(pending);
            let outcome = tokio::time::timeout_at(
                tokio::time::Instant::from_std(answer_by),
                pending.as_mut(),
            )
            .await;
            // Still pending (not polled to its end): the model may answer late.
            let timed_out = outcome.is_err();
            let reason = match verdict.judge(outcome) {
                Ok((items, version)) => {
                    if let Some((slot, mut kept)) = keep {
                        kept.items.clone_from(&items);
                        kept.version.clone_from(&version);
                        *slot.borrow_mut() = Some(kept);
                    }
                    return responder.reply(used.stamp(Recommendations {
                        member,
                        items,
                        source: Source::Model,
                        model_version: Some(version),
                        degraded: false,
                        reason: None,
                        served_us: 0,
                        lists_version,
                        list_age_ms: None,
                        signals: None,
                        newest_signal_age_ms: None,
                        aggregates_version: None,
                        row: None,
                        details: None,
                        reused: false,
                    }));
                }
                Err(reason) => reason,
            };
            let late = reason == Reason::Deadline;
            let served = (timed_out && sampled).then(|| Served {
                member,
                request_id,
                k,
                items: fallback.items.clone(),
                source: fallback.source,
                reason,
                version: fallback.version.clone(),
                replied: Instant::now(),
            });
            responder.reply(used.stamp(fallback_reply(member, fallback, reason)));
            // The caller has its answer; what the model says next is the
            // counterfactual.
            match served {
                Some(served) => counterfactual.follow(pending, served).await,
                None if late => counterfactual.unsampled(),
                None => {}
            }
        };
        drop(_entered);
        actix::spawn(wait.instrument(span));
    }
}

impl Session {
    /// The `billboard` row (see [`crate::aggregates`]): the member's top
    /// items under the model, asked under the deadline, and the titles the
    /// model does not know become the bandit's arms; without the model's
    /// answer, the bandit runs over take rates alone (degraded, with the
    /// model's reason); without a usable snapshot, the popular list answers.
    #[allow(clippy::too_many_arguments)]
    fn billboard(
        &mut self,
        member: MemberId,
        device: Option<&str>,
        k: usize,
        exclude: Vec<ItemId>,
        exclude_seen: bool,
        deadline: Instant,
        responder: crate::reply::Responder,
        span: tracing::Span,
    ) {
        let now = crate::signals::now_ms();
        let model = self.deps.model.model().load();
        let seen = exclude.clone();
        let Some(draw) =
            self.deps
                .aggregates
                .billboard(member, k, exclude, self.deps.lists.clone(), model, now)
        else {
            let reply =
                self.deps
                    .aggregates
                    .billboard_unavailable(member, k, &seen, &self.deps.lists);
            return responder.reply(reply);
        };
        // The member's top items under the model are the bandit's arms.
        let pool = self.deps.aggregates.settings().billboard.pool.max(k);
        let offered = self.offer_to_model(
            member,
            device,
            (pool, seen, exclude_seen),
            deadline,
            true,
            |_| {},
        );
        let Offered {
            pending,
            answer_by,
            verdict,
        } = match offered {
            Ok(offered) => offered,
            Err(reason) => return draw.without_scores(reason, responder),
        };
        let wait = async move {
            let outcome =
                tokio::time::timeout_at(tokio::time::Instant::from_std(answer_by), pending).await;
            match verdict.judge(outcome) {
                Ok((items, version)) => draw.with_scores(&items, version, responder),
                Err(reason) => draw.without_scores(reason, responder),
            }
        };
        actix::spawn(wait.instrument(span));
    }

    /// The member's last model answer again, when nothing it depended on
    /// changed (see [`Reusable`]); counted in
    /// `reco_model_answers_reused_total`.
    fn reuse(
        &self,
        member: MemberId,
        k: usize,
        exclude_seen: bool,
        row: &Row,
        device: Option<&str>,
    ) -> Option<Recommendations> {
        let slot = self.reusable.as_ref()?.borrow();
        let kept = slot.as_ref()?;
        let faults = &self.deps.faults;
        if (!faults.model_delay().is_zero() || faults.model_panic_every() > 0)
            && faults.hits(member)
        {
            // An injected model fault (tests, chaos) must reach the model
            // path: a reused answer would hide it.
            return None;
        }
        let max_age = self.deps.settings.reuse_max_age;
        if kept.applied != self.applied
            || kept.k != k
            || kept.exclude_seen != exclude_seen
            || kept.row != *row
            || kept.device.as_deref() != device
            || kept.at.elapsed() > max_age
        {
            return None;
        }
        let model = self.deps.model.model().load()?;
        if model.version() != kept.version {
            return None;
        }
        metrics::counter!(m::MODEL_ANSWERS_REUSED_TOTAL).increment(1);
        let lists_version = self.deps.lists.load().version.clone();
        Some(Recommendations {
            member,
            items: kept.items.clone(),
            source: Source::Model,
            model_version: Some(kept.version.clone()),
            degraded: false,
            reason: None,
            served_us: 0,
            lists_version: (!lists_version.is_empty()).then_some(lists_version),
            list_age_ms: None,
            signals: None,
            newest_signal_age_ms: None,
            aggregates_version: None,
            row: None,
            details: None,
            reused: true,
        })
    }

    /// Where the model answer of this request is kept for reuse, and its
    /// key; `None` when reuse is off.
    fn keep_slot(
        &mut self,
        k: usize,
        exclude_seen: bool,
        row: &Row,
        device: Option<&str>,
    ) -> Option<(ReuseSlot, Reusable)> {
        if self.deps.settings.reuse_max_age.is_zero() {
            return None;
        }
        let slot = self.reusable.get_or_insert_with(ReuseSlot::default).clone();
        let key = Reusable {
            applied: self.applied,
            version: String::new(),
            k,
            exclude_seen,
            row: row.clone(),
            device: device.map(str::to_owned),
            at: Instant::now(),
            items: Vec::new(),
        };
        Some((slot, key))
    }
}

/// A request the model pool took: its pending answer, when the session
/// stops waiting for it, and how its outcome is judged.
struct Offered<F> {
    pending: F,
    answer_by: Instant,
    verdict: Verdict,
}

/// Judges a model outcome for the reply and reports it to the breaker
/// that admitted the request.
struct Verdict {
    breaker: ModelBreaker,
    admission: Admission,
}

impl Verdict {
    /// The model's list, or the reason the fallback answers instead; the
    /// breaker hears whether the model was on time (a cold member is not
    /// its fault).
    fn judge(
        self,
        outcome: Result<Result<ScoreOutcome, MailboxError>, tokio::time::error::Elapsed>,
    ) -> Result<(Vec<reco_models::Scored>, String), Reason> {
        self.report(matches!(
            outcome,
            Ok(Ok(ScoreOutcome::Scored { .. } | ScoreOutcome::Cold))
        ));
        match outcome {
            Ok(Ok(ScoreOutcome::Scored { items, version })) => Ok((items, version)),
            Ok(Ok(ScoreOutcome::Cold)) => Err(Reason::ColdStart),
            Ok(Ok(ScoreOutcome::Expired)) | Err(_) => Err(Reason::Deadline),
            Ok(Ok(ScoreOutcome::Unavailable)) | Ok(Err(_)) => Err(Reason::ModelUnavailable),
        }
    }

    fn report(&self, ok: bool) {
        match self.admission {
            Admission::Ask => self.breaker.record(Instant::now(), ok),
            Admission::Probe => self.breaker.record_probe(Instant::now(), ok),
            Admission::Skip => {}
        }
    }
}

impl Session {
    /// The steps every model-bound request shares (top picks, the rows the
    /// model ranks, the billboard's arms): the cold check, the breaker, the
    /// deadline less the reply margin, the score request (the member's
    /// signals weighed for the request's `device`; `k`, `exclude` and
    /// `exclude_seen` in `shape`; `prepare` sets the rest) and the pool's
    /// admission. `Err` is the reason the fallback answers at once.
    fn offer_to_model(
        &self,
        member: MemberId,
        device: Option<&str>,
        shape: (usize, Vec<ItemId>, bool),
        deadline: Instant,
        needs_member: bool,
        prepare: impl FnOnce(&mut Score),
    ) -> Result<Offered<impl Future<Output = Result<ScoreOutcome, MailboxError>>>, Reason> {
        let (k, exclude, exclude_seen) = shape;
        let interactions = self.signals.interactions(device);
        // A member the model was trained on is never cold: its history is
        // in the model.
        let known = || {
            self.deps
                .model
                .model()
                .load()
                .is_some_and(|m| m.knows_member(member))
        };
        if needs_member && interactions.is_empty() && !known() {
            return Err(Reason::ColdStart);
        }
        let verdict = Verdict {
            breaker: self.deps.breaker.clone(),
            admission: self.deps.breaker.admit(Instant::now()),
        };
        if verdict.admission == Admission::Skip {
            return Err(Reason::ModelSkipped);
        }
        let answer_by = deadline
            .checked_sub(self.deps.settings.reply_margin)
            .unwrap_or(deadline);
        let mut score = Score::new(member, interactions, k, exclude, answer_by);
        score.exclude_history = exclude_seen;
        score.history_weight = self.deps.settings.signals.fold_in.history_weight;
        prepare(&mut score);
        match self.deps.model.try_score(score) {
            Ok(pending) => Ok(Offered {
                pending,
                answer_by,
                verdict,
            }),
            Err(refusal) => {
                verdict.report(false);
                Err(match refusal {
                    Refusal::Overloaded => Reason::Overloaded,
                    Refusal::Unavailable => Reason::ModelUnavailable,
                })
            }
        }
    }
}

/// The recent events a reply used: how many, and the newest one's age.
#[derive(Clone, Copy, Debug)]
struct Used {
    signals: u32,
    newest_age_ms: Option<u64>,
}

impl Used {
    /// `reply` saying it used these events (model and nearline answers).
    fn stamp(self, mut reply: Recommendations) -> Recommendations {
        if matches!(reply.source, Source::Model | Source::Nearline) {
            reply.signals = Some(self.signals);
            reply.newest_signal_age_ms = self.newest_age_ms;
        }
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelHandle;
    use crate::reply::Responder;
    use reco_messages::EventKind;
    use reco_models::PrecomputedLists;
    use std::time::Instant;

    fn deps(mailbox: usize) -> SessionDeps {
        SessionDeps {
            model: ModelPool::new(
                "online",
                1,
                1,
                ModelHandle::new(None),
                InjectedFaults::default(),
            ),
            lists: ListsReader::new(PrecomputedLists::default()),
            settings: SessionSettings {
                recent_events: 8,
                mailbox,
                reply_margin: Duration::ZERO,
                quarantine_after: 3,
                signals: Arc::new(SignalPolicy::default()),
                reuse_max_age: Duration::from_secs(60),
            },
            dead_letter: Arc::new(|_, _| {}),
            faults: InjectedFaults::default(),
            nearline: None,
            breaker: ModelBreaker::new(crate::breaker::BreakerSettings::default()),
            counterfactual: CounterfactualLog::disabled(),
            seen: SeenIndex::default(),
            aggregates: AggregatesReader::new(
                Default::default(),
                crate::aggregates::AggregatesSettings::default(),
            ),
        }
    }

    fn event(item: u64) -> Event {
        Event {
            member: MemberId(1),
            item: ItemId(item),
            kind: EventKind::Play,
            value: 1.0,
            at_ms: None,
            device: None,
        }
    }

    #[actix_rt::test]
    async fn a_full_data_mailbox_sheds_data_but_a_stop_still_gets_through() {
        let session = Session::new(MemberId(1), Arc::new(deps(4))).start();
        tokio::task::yield_now().await; // let `started` set the capacity
        let mut accepted = 0;
        let mut shed = 0;
        for item in 0..100 {
            match session.try_send(ApplyEvent(event(item))) {
                Ok(()) => accepted += 1,
                Err(SendError::Full(_)) => shed += 1,
                Err(SendError::Closed(_)) => panic!("the session is alive"),
            }
        }
        assert!(
            accepted <= 5,
            "data beyond the capacity is refused ({accepted} accepted)"
        );
        assert!(shed >= 95);
        // Control goes through a full mailbox.
        session.do_send(Passivate);
        for _ in 0..1_000 {
            if !session.connected() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the session did not stop");
    }

    fn scored(item: u64) -> reco_models::Scored {
        reco_models::Scored {
            item: ItemId(item),
            score: 100.0 - item as f32,
        }
    }

    fn items(reply: &[u8]) -> (Option<Reason>, Vec<u64>) {
        match reco_messages::decode(reply, 1 << 20).unwrap() {
            reco_messages::RecommendReply::Ok(r) => {
                (r.reason, r.items.iter().map(|s| s.item.0).collect())
            }
            other => panic!("{other:?}"),
        }
    }

    #[actix_rt::test]
    async fn an_overload_fallback_leaves_out_what_the_member_has_seen() {
        let mut d = deps(16);
        d.lists = ListsReader::new(PrecomputedLists {
            version: "v".into(),
            popular: (1..=20).map(scored).collect(),
            members: std::collections::HashMap::from([(
                MemberId(1),
                vec![scored(3), scored(4), scored(5)],
            )]),
            computed_at_ms: None,
            ..PrecomputedLists::default()
        });
        let deps = Arc::new(d);
        let session = Session::new(MemberId(1), deps.clone()).start();
        session.send(ApplyEvent(event(3))).await.unwrap();
        session.send(ApplyEvent(event(1))).await.unwrap();
        let in_flight = crate::reply::InFlight::new();
        // What a full shard or ingress does with a request it cannot route.
        let refuse = |exclude_seen: bool| {
            let (responder, reply) = Responder::channel(Instant::now(), &in_flight);
            Recommend {
                member: MemberId(1),
                request_id: 1,
                k: 4,
                exclude_seen,
                row: Row::Top,
                device: None,
                deadline: Instant::now() + Duration::from_secs(5),
                responder,
                span: tracing::Span::none(),
            }
            .refused(&deps.lists, &deps.seen);
            reply
        };
        let reply = refuse(true).await.unwrap();
        assert_eq!(items(&reply), (Some(Reason::Overloaded), vec![4, 5, 2, 6]));
        // Asked to keep seen items, it does.
        let reply = refuse(false).await.unwrap();
        assert_eq!(items(&reply), (Some(Reason::Overloaded), vec![3, 4, 5, 1]));
        // A passivated member is forgotten (it starts cold on its return).
        session.do_send(Passivate);
        for _ in 0..1_000 {
            if deps.seen.get(MemberId(1)).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the stopped session's seen items were not forgotten");
    }

    #[actix_rt::test]
    async fn a_cold_member_is_answered_by_the_fallback_at_once() {
        let session = Session::new(MemberId(1), Arc::new(deps(16))).start();
        let in_flight = crate::reply::InFlight::new();
        let (responder, reply) = Responder::channel(Instant::now(), &in_flight);
        session.do_send(Recommend {
            member: MemberId(1),
            request_id: 1,
            k: 5,
            exclude_seen: true,
            row: Row::Top,
            device: None,
            deadline: Instant::now() + Duration::from_secs(5),
            responder,
            span: tracing::Span::none(),
        });
        let reply: reco_messages::RecommendReply =
            reco_messages::decode(&reply.await.unwrap(), 1 << 20).unwrap();
        match reply {
            reco_messages::RecommendReply::Ok(r) => {
                assert_eq!(r.reason, Some(Reason::ColdStart));
                assert!(r.degraded);
            }
            other => panic!("{other:?}"),
        }
    }

    /// A pool serving a 4-dimensional model of 40 items, version `version`.
    fn model_deps(version: &str) -> (SessionDeps, Vec<crate::model::WorkerChild>) {
        let factors = (0..40u64)
            .flat_map(|i| {
                let mut row = [0.05f32 * (i % 7) as f32; 4];
                row[(i % 4) as usize] = 1.0;
                row
            })
            .collect();
        let model = reco_models::ItemFactors::new(
            version.into(),
            4,
            (0..40).map(ItemId).collect(),
            factors,
            0.1,
            1.0,
        )
        .unwrap();
        let pool = ModelPool::new(
            "online",
            1,
            8,
            ModelHandle::new(Some(model)),
            InjectedFaults::default(),
        );
        let workers = pool.start_all();
        (
            SessionDeps {
                model: pool,
                ..deps(16)
            },
            workers,
        )
    }

    async fn ask(session: &Addr<Session>, k: usize) -> Recommendations {
        let in_flight = crate::reply::InFlight::new();
        let (responder, reply) = Responder::channel(Instant::now(), &in_flight);
        session.do_send(Recommend {
            member: MemberId(1),
            request_id: 1,
            k,
            exclude_seen: true,
            row: Row::Top,
            device: None,
            deadline: Instant::now() + Duration::from_secs(5),
            responder,
            span: tracing::Span::none(),
        });
        match reco_messages::decode(&reply.await.unwrap(), 1 << 20).unwrap() {
            reco_messages::RecommendReply::Ok(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[actix_rt::test]
    async fn an_unchanged_member_gets_its_model_answer_again_until_an_event_or_a_swap() {
        let (deps, _workers) = model_deps("v1");
        let handle = deps.model.model().clone();
        let session = Session::new(MemberId(1), Arc::new(deps)).start();
        session.do_send(ApplyEvent(event(1)));
        let first = ask(&session, 5).await;
        assert_eq!(first.source, Source::Model);
        assert!(!first.reused);
        // Nothing changed: the same answer, without a scan.
        let again = ask(&session, 5).await;
        assert!(again.reused, "{again:?}");
        assert_eq!(again.source, Source::Model);
        assert_eq!(again.items, first.items);
        assert_eq!(again.model_version.as_deref(), Some("v1"));
        assert_eq!(again.signals, Some(1));
        // Another shape is scored, and then kept in its place.
        let other = ask(&session, 3).await;
        assert!(!other.reused);
        assert!(ask(&session, 3).await.reused);
        // An event of the member: scored again.
        session.do_send(ApplyEvent(event(2)));
        let after_event = ask(&session, 3).await;
        assert!(!after_event.reused);
        assert!(!after_event.items.iter().any(|s| s.item == ItemId(2)));
        assert!(ask(&session, 3).await.reused);
        // A model swap: scored again, by the new version.
        let v2 = model_deps("v2").0.model.model().load().unwrap();
        handle.swap(v2);
        let after_swap = ask(&session, 3).await;
        assert!(!after_swap.reused);
        assert_eq!(after_swap.model_version.as_deref(), Some("v2"));
    }
}
