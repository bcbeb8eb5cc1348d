//! `Session`: one actor per member, the member's place in a node.
//!
//! Purpose: apply the member's events in order, remember its recent signals,
//! and answer its recommend requests — from the model when the model is on
//! time, from the fallback otherwise, saying which.
//!
//! Mailbox: [`ApplyEvent`] → `()`, [`Recommend`] → `()` (the reply goes out
//! through the request's [`Responder`]), [`Passivate`] → `()`. Data mailbox
//! capacity comes from [`SessionSettings::mailbox`].
//!
//! State: the member's [`RecentSignals`] (bounded ring). The session lives
//! while its shard's registry keeps it (bounded number, time-to-idle); when
//! passivated its state is dropped, and the member starts cold on its next
//! contact — the precomputed list is there for exactly that.
//!
//! Emits: `reco_session_active`, `reco_events_ingested_total{kind}`, and the
//! reply metrics through the responder.
//!
//! Fails: a request is never left unanswered: the fallback is computed before
//! the model is asked, and a lost responder answers `internal` on drop.

use crate::lifecycle::isolate;
use crate::metrics as m;
use crate::model::{ModelPool, Refusal, Score, ScoreOutcome};
use crate::precomputed::{Fallback, ListsReader};
use crate::responder::Responder;
use crate::shard::SessionCrashed;
use crate::signals::RecentSignals;
use actix::prelude::*;
use reco_messages::{Event, ItemId, MemberId, Reason, Recommendations, ScoredItem, Source};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// What every session needs, shared by all sessions of a node.
#[derive(Clone, Debug)]
pub struct SessionDeps {
    /// The model worker pool.
    pub model: ModelPool,
    /// The precomputed lists in service.
    pub lists: ListsReader,
    /// Settings of every session.
    pub settings: SessionSettings,
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
}

/// The actor of one member.
#[derive(Debug)]
pub struct Session {
    member: MemberId,
    signals: RecentSignals,
    deps: SessionDeps,
    shard: Recipient<SessionCrashed>,
}

impl Session {
    /// A session for `member` with no history, supervised by `shard`.
    pub fn new(member: MemberId, deps: SessionDeps, shard: Recipient<SessionCrashed>) -> Self {
        Session {
            member,
            signals: RecentSignals::new(deps.settings.recent_events),
            deps,
            shard,
        }
    }

    fn apply(&mut self, event: &Event) {
        self.deps.model.faults().check_poison(event.item);
        self.signals.push(event);
    }

    fn crashed(&mut self, event: Option<Event>, why: String, ctx: &mut Context<Self>) {
        self.shard.do_send(SessionCrashed {
            member: self.member,
            event,
            why,
        });
        ctx.stop();
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
        match isolate("session", "ApplyEvent", || self.apply(&event)) {
            Ok(()) => {
                metrics::counter!(m::EVENTS_INGESTED_TOTAL, "kind" => event.kind.as_str())
                    .increment(1);
            }
            Err(why) => self.crashed(Some(event), why, ctx),
        }
    }
}

/// Answer a recommend request of the member.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Recommend {
    /// The member (the shard routes on it).
    pub member: MemberId,
    /// How many items.
    pub k: usize,
    /// Leave out seen items.
    pub exclude_seen: bool,
    /// When the caller stops waiting.
    pub deadline: Instant,
    /// Where the reply goes.
    pub responder: Responder,
    /// The request's span, so that the work inside the actors is traced
    /// under it.
    pub span: tracing::Span,
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

/// Builds the reply for a fallback answer.
pub fn fallback_reply(member: MemberId, fallback: Fallback, reason: Reason) -> Recommendations {
    Recommendations {
        member,
        items: fallback.items,
        source: fallback.source,
        model_version: fallback.version,
        degraded: true,
        reason: Some(reason),
        served_us: 0,
    }
}

impl Handler<Recommend> for Session {
    type Result = ();

    fn handle(&mut self, msg: Recommend, ctx: &mut Self::Context) {
        // A panic drops the responder, which answers `internal`.
        if let Err(why) = isolate("session", "Recommend", || self.recommend(msg)) {
            self.crashed(None, why, ctx);
        }
    }
}

impl Session {
    fn recommend(&mut self, msg: Recommend) {
        let Recommend {
            member,
            k,
            exclude_seen,
            deadline,
            responder,
            span,
        } = msg;
        let _entered = span.enter();
        let exclude: Vec<ItemId> = if exclude_seen {
            self.signals.seen()
        } else {
            Vec::new()
        };
        // The fallback is taken before the model is asked: whatever happens
        // next, an answer is ready.
        let fallback = self.deps.lists.fallback(member, k, &exclude);
        let interactions = self.signals.interactions();
        if interactions.is_empty() {
            responder.reply(fallback_reply(member, fallback, Reason::ColdStart));
            return;
        }
        let answer_by = deadline
            .checked_sub(self.deps.settings.reply_margin)
            .unwrap_or(deadline);
        let score = Score::new(interactions, k, exclude, answer_by);
        let pending = match self.deps.model.try_score(score) {
            Ok(pending) => pending,
            Err(refusal) => {
                let reason = match refusal {
                    Refusal::Overloaded => Reason::Overloaded,
                    Refusal::Unavailable => Reason::ModelUnavailable,
                };
                responder.reply(fallback_reply(member, fallback, reason));
                return;
            }
        };
        let wait = async move {
            let outcome =
                tokio::time::timeout_at(tokio::time::Instant::from_std(answer_by), pending).await;
            let reply = match outcome {
                Ok(Ok(ScoreOutcome::Scored { items, version })) => Recommendations {
                    member,
                    items: items
                        .into_iter()
                        .map(|s| ScoredItem {
                            item: s.item,
                            score: s.score,
                        })
                        .collect(),
                    source: Source::Model,
                    model_version: Some(version),
                    degraded: false,
                    reason: None,
                    served_us: 0,
                },
                Ok(Ok(ScoreOutcome::Cold)) => fallback_reply(member, fallback, Reason::ColdStart),
                Ok(Ok(ScoreOutcome::Expired)) | Err(_) => {
                    fallback_reply(member, fallback, Reason::Deadline)
                }
                Ok(Ok(ScoreOutcome::Unavailable)) | Ok(Err(_)) => {
                    fallback_reply(member, fallback, Reason::ModelUnavailable)
                }
            };
            responder.reply(reply);
        };
        drop(_entered);
        actix::spawn(wait.instrument(span));
    }
}
