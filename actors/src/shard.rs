//! `SessionShard`: owns the member sessions of one arbiter, and supervises
//! them.
//!
//! Purpose: route each member's traffic to its [`Session`], starting one on
//! first contact and passivating idle ones, so that the number of resident
//! members stays bounded; restart a session that crashed, and quarantine an
//! event that keeps crashing it.
//!
//! Mailbox: [`RouteEvent`] → `()`, [`RouteRecommend`] → `()` (data, bounded:
//! the ingress uses `try_send`); [`SessionCrashed`], [`Stop`],
//! [`ResidentCount`] (control, `do_send`/`send`, never shed).
//!
//! State: a moka cache `MemberId → Addr<Session>` with `max_capacity`
//! (LRU) and `time_to_idle`; evicting an entry sends the session
//! [`Passivate`]. moka expires entries lazily, so the shard runs the cache's
//! pending tasks on a timer. A second small cache counts recent crashes per
//! member.
//!
//! Sessions are `transient` children: one that panics is replaced by a fresh
//! session (its recent signals are lost) and the event that crashed it is
//! delivered again; after `quarantine_after` crashes on the same member
//! within `crash_window`, that event is dropped and dead-lettered with the
//! reason instead of crashing the session in a loop. A request that crashes
//! a session is answered by its responder (`internal`) and not retried.
//!
//! Emits: `reco_session_passivations_total{cause}`,
//! `reco_events_dropped_total{stage="session"}`,
//! `reco_events_quarantined_total`.
//!
//! Fails: a panic in the shard itself is isolated, reported through its exit
//! hook, and the shard stops; its supervisor starts a new one on the same
//! arbiter, with no sessions (members start cold).

use crate::lifecycle::{isolate, ExitHook, ExitReason, Stop};
use crate::metrics as m;
use crate::session::{fallback_reply, ApplyEvent, Passivate, Recommend, Session, SessionDeps};
use actix::prelude::*;
use arc_swap::ArcSwapOption;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use reco_messages::{Event, MemberId, Reason};
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
    /// Crashes of one member's session (within `crash_window`) after which
    /// the event that crashes it is quarantined.
    pub quarantine_after: u32,
    /// How long a crash counts towards quarantine.
    pub crash_window: Duration,
}

/// Where quarantined events go: the node publishes them to the dead-letter
/// subject with the reason.
pub type DeadLetter = Arc<dyn Fn(&Event, &str) + Send + Sync>;

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
        // Fibonacci hashing spreads sequential member ids over shards.
        let h = member.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.slots[((h >> 32) as usize) % self.slots.len()].load_full()
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
    deps: SessionDeps,
    sessions: Cache<MemberId, Addr<Session>>,
    crashes: Cache<MemberId, u32>,
    dead_letter: DeadLetter,
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
    /// Shard number `index` with its limits. `dead_letter` receives
    /// quarantined events; `exit` is told if the shard fails.
    pub fn new(
        index: usize,
        settings: ShardSettings,
        deps: SessionDeps,
        dead_letter: DeadLetter,
        exit: ExitHook,
    ) -> Self {
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
        let crashes = Cache::builder()
            .max_capacity(10_000)
            .time_to_live(settings.crash_window)
            .build();
        SessionShard {
            index,
            settings,
            deps,
            sessions,
            crashes,
            dead_letter,
            exit,
        }
    }

    fn session(&self, member: MemberId, ctx: &mut Context<Self>) -> Addr<Session> {
        let start = || {
            let shard = ctx.address().recipient();
            Session::new(member, self.deps.clone(), shard).start()
        };
        let session = self.sessions.get_with(member, start);
        if session.connected() {
            return session;
        }
        // The session stopped (it crashed): never let it swallow traffic.
        self.sessions.invalidate(&member);
        self.sessions.get_with(member, start)
    }

    fn route_event(&mut self, event: Event, ctx: &mut Context<Self>) {
        let session = self.session(event.member, ctx);
        if session.try_send(ApplyEvent(event)).is_err() {
            metrics::counter!(m::EVENTS_DROPPED_TOTAL, "stage" => "session").increment(1);
        }
    }

    fn fail(&mut self, message: &'static str, why: String, ctx: &mut Context<Self>) {
        tracing::error!(
            shard = self.index,
            message,
            why,
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

/// An event for a member of this shard.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RouteEvent(pub Event);

impl Handler<RouteEvent> for SessionShard {
    type Result = ();

    fn handle(&mut self, msg: RouteEvent, ctx: &mut Self::Context) {
        if let Err(why) = isolate("session_shard", "RouteEvent", || {
            self.route_event(msg.0, ctx)
        }) {
            self.fail("RouteEvent", why, ctx);
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
            let session = self.session(msg.0.member, ctx);
            if let Err(refused) = session.try_send(msg.0) {
                let request = match refused {
                    SendError::Full(r) | SendError::Closed(r) => r,
                };
                let fallback = self.deps.lists.fallback(request.member, request.k, &[]);
                request.responder.reply(fallback_reply(
                    request.member,
                    fallback,
                    Reason::Overloaded,
                ));
            }
        });
        if let Err(why) = routed {
            self.fail("RouteRecommend", why, ctx);
        }
    }
}

/// A session of this shard panicked (control, from the session).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SessionCrashed {
    /// Whose session.
    pub member: MemberId,
    /// The event it was applying, to deliver again or quarantine; `None`
    /// when it crashed on a request.
    pub event: Option<Event>,
    /// The panic.
    pub why: String,
}

impl Handler<SessionCrashed> for SessionShard {
    type Result = ();

    fn handle(&mut self, msg: SessionCrashed, ctx: &mut Self::Context) {
        self.sessions.invalidate(&msg.member);
        let crashes = self.crashes.get(&msg.member).unwrap_or(0) + 1;
        self.crashes.insert(msg.member, crashes);
        let Some(event) = msg.event else { return };
        if crashes >= self.settings.quarantine_after {
            self.crashes.invalidate(&msg.member);
            metrics::counter!(m::EVENTS_QUARANTINED_TOTAL).increment(1);
            let reason = format!(
                "quarantined: crashed the session of member {} {crashes} times: {}",
                msg.member, msg.why
            );
            tracing::error!(member = %msg.member, item = %event.item, crashes, "Poisoned event quarantined.");
            (self.dead_letter)(&event, &reason);
            return;
        }
        // Restart the member's session and deliver the event again.
        self.route_event(event, ctx);
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
