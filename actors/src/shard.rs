//! `SessionShard`: owns the member sessions of one arbiter.
//!
//! Purpose: route each member's traffic to its [`Session`], starting one on
//! first contact and passivating idle ones, so that the number of resident
//! members stays bounded.
//!
//! Mailbox: [`RouteEvent`] → `()`, [`RouteRecommend`] → `()` (data, bounded
//! by the ingress with `try_send`), `Housekeep` (internal timer).
//!
//! State: a moka cache `MemberId → Addr<Session>` with `max_capacity`
//! (LRU) and `time_to_idle`; evicting an entry sends the session
//! [`Passivate`]. moka expires entries lazily, so the shard runs the cache's
//! pending tasks on a timer.
//!
//! Emits: `reco_session_passivations_total{cause}`,
//! `reco_events_dropped_total{stage="session"}`.
//!
//! Fails: a session mailbox that is full sheds the event (counted) or answers
//! the request from the fallback with `reason: overloaded`. A restart of the
//! shard forgets its sessions (they stop when their addresses drop).

use crate::metrics as m;
use crate::session::{fallback_reply, ApplyEvent, Passivate, Recommend, Session, SessionDeps};
use actix::prelude::*;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use reco_messages::{Event, MemberId, Reason};
use std::time::Duration;

/// Limits of one shard's registry.
#[derive(Clone, Debug)]
pub struct ShardSettings {
    /// Most sessions resident in this shard.
    pub max_resident: u64,
    /// A session not used for this long is passivated.
    pub idle_timeout: Duration,
    /// Capacity of the shard's data mailbox.
    pub mailbox: usize,
}

/// The session registry of one arbiter.
#[derive(Debug)]
pub struct SessionShard {
    index: usize,
    settings: ShardSettings,
    deps: SessionDeps,
    sessions: Cache<MemberId, Addr<Session>>,
}

impl SessionShard {
    /// Shard number `index` with its limits.
    pub fn new(index: usize, settings: ShardSettings, deps: SessionDeps) -> Self {
        let sessions = Cache::builder()
            .max_capacity(settings.max_resident.max(1))
            .time_to_idle(settings.idle_timeout)
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(|_member, session: Addr<Session>, cause| {
                let cause = match cause {
                    RemovalCause::Expired => "idle",
                    RemovalCause::Size => "capacity",
                    RemovalCause::Explicit | RemovalCause::Replaced => "explicit",
                };
                metrics::counter!(m::SESSION_PASSIVATIONS_TOTAL, "cause" => cause).increment(1);
                session.do_send(Passivate);
            })
            .build();
        SessionShard {
            index,
            settings,
            deps,
            sessions,
        }
    }

    fn session(&self, member: MemberId) -> Addr<Session> {
        let session = self
            .sessions
            .get_with(member, || Session::new(member, self.deps.clone()).start());
        if session.connected() {
            return session;
        }
        // The session stopped on its own (it cannot today, but a stopped
        // actor must never swallow traffic): start a fresh one.
        self.sessions.invalidate(&member);
        self.sessions
            .get_with(member, || Session::new(member, self.deps.clone()).start())
    }
}

impl Actor for SessionShard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.settings.mailbox);
        // moka notices idle entries lazily; look often enough that a session
        // outlives its idle timeout by at most about a quarter of it.
        let every = (self.settings.idle_timeout / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(5));
        ctx.run_interval(every, |shard, _ctx| shard.sessions.run_pending_tasks());
        tracing::debug!(shard = self.index, "Session shard started.");
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.sessions.invalidate_all();
        self.sessions.run_pending_tasks();
    }
}

/// An event for a member of this shard.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RouteEvent(pub Event);

impl Handler<RouteEvent> for SessionShard {
    type Result = ();

    fn handle(&mut self, msg: RouteEvent, _ctx: &mut Self::Context) {
        let session = self.session(msg.0.member);
        if session.try_send(ApplyEvent(msg.0)).is_err() {
            metrics::counter!(m::EVENTS_DROPPED_TOTAL, "stage" => "session").increment(1);
        }
    }
}

/// A recommend request for a member of this shard.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RouteRecommend(pub Recommend);

impl Handler<RouteRecommend> for SessionShard {
    type Result = ();

    fn handle(&mut self, msg: RouteRecommend, _ctx: &mut Self::Context) {
        let session = self.session(msg.0.member);
        if let Err(refused) = session.try_send(msg.0) {
            let request = match refused {
                SendError::Full(r) | SendError::Closed(r) => r,
            };
            let fallback = self.deps.lists.fallback(request.member, request.k, &[]);
            request
                .responder
                .reply(fallback_reply(request.member, fallback, Reason::Overloaded));
        }
    }
}

/// Ask how many sessions the shard holds (after running pending expiries).
#[derive(Debug, Message)]
#[rtype(result = "u64")]
pub struct ResidentCount;

impl Handler<ResidentCount> for SessionShard {
    type Result = u64;

    fn handle(&mut self, _msg: ResidentCount, _ctx: &mut Self::Context) -> u64 {
        self.sessions.run_pending_tasks();
        self.sessions.entry_count()
    }
}
