//! `SessionShard`: owns the member sessions of one arbiter, and supervises
//! them.
//!
//! Purpose: route each member's traffic to its [`Session`], starting one on
//! first contact and passivating idle ones, so that the number of resident
//! members stays bounded.
//!
//! Mailbox: [`RouteEvents`] → `()` (the events of this shard's members that
//! the ingress took off NATS in one go, in order), [`RouteRecommend`] → `()`
//! (data, bounded: the ingress uses `try_send`); [`Stop`], [`ResidentCount`] (control,
//! `do_send`/`send`, never shed).
//!
//! State: a moka cache `MemberId → Addr<Session>` with `max_capacity`
//! (LRU) and `time_to_idle`; evicting an entry sends the session
//! [`Passivate`]. moka expires entries lazily, so the shard runs the cache's
//! pending tasks on a timer. (Sessions restart themselves in place when a
//! handler panics, keeping their mailbox: see `session.rs`.)
//!
//! Emits: `reco_session_passivations_total{cause}`,
//! `reco_events_dropped_total{stage="session"}`; a request refused by a
//! full session mailbox is answered with the fallback (`reason:
//! overloaded`, see [`crate::reply`]), without what the member has seen
//! ([`crate::seen`]). Logs: ERROR "Session shard failed…"
//! with the typed [`crate::lifecycle::Panic`].
//!
//! Fails: a panic in the shard itself is isolated, reported through its exit
//! hook, and the shard stops; its supervisor starts a new one on the same
//! arbiter, with no sessions (members start cold).

use crate::lifecycle::{isolate, ExitHook, ExitReason, Panic, Stop};
use crate::metrics as m;
use crate::reply::Recommend;
use crate::session::{ApplyEvent, Passivate, Session, SessionDeps};
use actix::prelude::*;
use arc_swap::ArcSwapOption;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use reco_messages::{Event, MemberId};
use std::sync::Arc;
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

/// The shards of a node, as the ingress and admin see them: one slot per
/// arbiter, empty while that shard restarts.
#[derive(Clone, Debug)]
pub struct ShardTable {
    slots: Arc<[ArcSwapOption<Addr<SessionShard>>]>,
}

impl ShardTable {
    /// A table of `shards` empty slots.
    pub fn new(shards: usize) -> Self {
        ShardTable {
            slots: (0..shards.max(1)).map(|_| ArcSwapOption::empty()).collect(),
        }
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false: a table has at least one slot.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The shard owning `member`, if it is up.
    pub fn for_member(&self, member: MemberId) -> Option<Arc<Addr<SessionShard>>> {
        self.get(self.index_of(member))
    }

    /// Which shard owns `member` (whether or not it is up).
    pub fn index_of(&self, member: MemberId) -> usize {
        // Fibonacci hashing spreads sequential member ids over shards.
        let h = member.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((h >> 32) as usize) % self.slots.len()
    }

    /// Shard `index`, if it is up.
    pub fn get(&self, index: usize) -> Option<Arc<Addr<SessionShard>>> {
        self.slots[index].load_full()
    }

    /// Every shard that is up.
    pub fn all(&self) -> Vec<Arc<Addr<SessionShard>>> {
        self.slots.iter().filter_map(|s| s.load_full()).collect()
    }

    /// Puts shard `index` in service.
    pub fn set(&self, index: usize, shard: Addr<SessionShard>) {
        self.slots[index].store(Some(Arc::new(shard)));
    }

    /// Takes shard `index` out of service.
    pub fn clear(&self, index: usize) {
        self.slots[index].store(None);
    }
}

/// The session registry of one arbiter.
pub struct SessionShard {
    index: usize,
    settings: ShardSettings,
    deps: Arc<SessionDeps>,
    sessions: Cache<MemberId, Addr<Session>>,
    exit: ExitHook,
}

impl std::fmt::Debug for SessionShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionShard")
            .field("index", &self.index)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SessionShard {
    /// Shard number `index` with its limits; `exit` is told if the shard
    /// fails.
    pub fn new(index: usize, settings: ShardSettings, deps: SessionDeps, exit: ExitHook) -> Self {
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
            deps: Arc::new(deps),
            sessions,
            exit,
        }
    }

    fn session(&self, member: MemberId) -> Addr<Session> {
        let start = || Session::new(member, self.deps.clone()).start();
        let session = self.sessions.get_with(member, start);
        if session.connected() {
            return session;
        }
        // The session stopped on its own (sessions restart in place, so this
        // should not happen): never let a stopped actor swallow traffic.
        self.sessions.invalidate(&member);
        self.sessions.get_with(member, start)
    }

    fn route_event(&mut self, event: Event) {
        let session = self.session(event.member);
        if session.try_send(ApplyEvent(event)).is_err() {
            metrics::counter!(m::EVENTS_DROPPED_TOTAL, "stage" => "session").increment(1);
        }
    }

    fn fail(&mut self, message: &'static str, why: Panic, ctx: &mut Context<Self>) {
        tracing::error!(
            shard = self.index,
            message,
            %why,
            "Session shard failed; its supervisor restarts it."
        );
        (self.exit)(ExitReason::Panicked(why));
        ctx.stop();
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

/// Events for members of this shard, in arrival order: one hand-off
/// between threads carries a batch (a hand-off costs tens of microseconds,
/// an event's routing well under one).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RouteEvents(pub Vec<Event>);

impl Handler<RouteEvents> for SessionShard {
    type Result = ();

    fn handle(&mut self, msg: RouteEvents, ctx: &mut Self::Context) {
        let routed = isolate("session_shard", "RouteEvents", || {
            for event in msg.0 {
                self.route_event(event);
            }
        });
        if let Err(why) = routed {
            // The rest of the batch goes with the failed shard, as its
            // sessions do.
            self.fail("RouteEvents", why, ctx);
        }
    }
}

/// A recommend request for a member of this shard.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RouteRecommend(pub Recommend);

impl Handler<RouteRecommend> for SessionShard {
    type Result = ();

    fn handle(&mut self, msg: RouteRecommend, ctx: &mut Self::Context) {
        let routed = isolate("session_shard", "RouteRecommend", || {
            let session = self.session(msg.0.member);
            if let Err(refused) = session.try_send(msg.0) {
                let (SendError::Full(request) | SendError::Closed(request)) = refused;
                request.refused(&self.deps.lists, &self.deps.seen);
            }
        });
        if let Err(why) = routed {
            self.fail("RouteRecommend", why, ctx);
        }
    }
}

impl Handler<Stop> for SessionShard {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Self::Context) {
        ctx.stop();
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
