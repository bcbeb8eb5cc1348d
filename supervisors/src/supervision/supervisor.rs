//! The `Supervisor` actor: owns an ordered set of children and restarts them
//! by its strategy, within its restart intensity, after a backoff.

use super::policy::{
    Backoff, BackoffState, Exhausted, Intensity, Jitter, Restart, RestartWindow, Strategy, Verdict,
};
use actix::prelude::*;
use futures::future::join_all;
use reco_actors::lifecycle::{ExitHook, ExitReason};
use reco_messages::admin::TreeNode;
use reco_messages::metrics as nm;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A running child, as its supervisor holds it.
pub trait RunningChild: Send {
    /// Asks the child to stop (control: never shed). The child then calls
    /// its exit hook with [`ExitReason::Normal`].
    fn stop(&mut self);

    /// The child's own supervisor, when the child is a subtree.
    fn subtree(&self) -> Option<Addr<Supervisor>> {
        None
    }

    /// Free-form detail for the tree view.
    fn detail(&self) -> Option<String> {
        None
    }
}

/// Starts a child; given the hook it must call when it exits.
pub type StartFn = Box<dyn FnMut(ExitHook) -> Box<dyn RunningChild> + Send>;

/// How to start and restart one child.
pub struct ChildSpec {
    /// Unique among its siblings.
    pub name: String,
    /// When it is restarted.
    pub restart: Restart,
    /// Starts it.
    pub start: StartFn,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("restart", &self.restart)
            .finish_non_exhaustive()
    }
}

/// Settings of one supervisor, changeable at run time ([`Reconfigure`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SupervisorSettings {
    /// Which siblings restart together.
    pub strategy: Strategy,
    /// How many restarts before giving up.
    pub intensity: Intensity,
    /// Delay between restarts.
    pub backoff: Backoff,
    /// What happens when the intensity is exceeded.
    pub on_exhausted: Exhausted,
    /// With [`Exhausted::StayDown`], how long the children stay down before
    /// they are all started again.
    pub retry_after: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Restarting,
    Stopped,
    /// Stopped because the subtree exhausted its restarts and stays down
    /// until its retry.
    Down,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Restarting => "restarting",
            State::Stopped => "stopped",
            State::Down => "down",
        }
    }
}

struct Slot {
    spec: ChildSpec,
    running: Option<Box<dyn RunningChild>>,
    generation: u64,
    state: State,
    restarts: u64,
    last_failure: Option<(String, u64)>,
    backoff: BackoffState,
}

/// A supervisor of an ordered set of children.
pub struct Supervisor {
    name: String,
    settings: SupervisorSettings,
    slots: Vec<Slot>,
    window: RestartWindow,
    jitter: Jitter,
    /// Told when this supervisor gives up (its parent, or the root's
    /// shutdown handler).
    escalate: ExitHook,
    stopping: bool,
    escalated: bool,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor named `name` over `children` (started in order when the
    /// actor starts). `escalate` is called once if it gives up.
    pub fn new(
        name: impl Into<String>,
        settings: SupervisorSettings,
        children: Vec<ChildSpec>,
        escalate: ExitHook,
    ) -> Self {
        let name = name.into();
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }) ^ SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Supervisor {
            name,
            settings,
            slots: children
                .into_iter()
                .map(|spec| Slot {
                    spec,
                    running: None,
                    generation: 0,
                    state: State::Stopped,
                    restarts: 0,
                    last_failure: None,
                    backoff: BackoffState::default(),
                })
                .collect(),
            window: RestartWindow::default(),
            jitter: Jitter::new(seed),
            escalate,
            stopping: false,
            escalated: false,
        }
    }

    /// Starts every child that never ran, in order. Called from `started`,
    /// or earlier by [`Supervisor::start_now`] so that a subtree's children
    /// are up before its parent starts the next sibling (as in OTP).
    fn start_children(&mut self, ctx: &mut Context<Self>) {
        for index in 0..self.slots.len() {
            if self.slots[index].generation == 0 {
                self.start_child(index, ctx);
            }
        }
    }

    /// Starts the supervisor and its children before returning.
    pub fn start_now(self) -> Addr<Self> {
        Supervisor::create(move |ctx| {
            let mut supervisor = self;
            supervisor.start_children(ctx);
            supervisor
        })
    }

    fn start_child(&mut self, index: usize, ctx: &mut Context<Self>) {
        let me = ctx.address();
        let slot = &mut self.slots[index];
        slot.generation += 1;
        let generation = slot.generation;
        let hook: ExitHook = Arc::new(move |reason| {
            me.do_send(ChildExited {
                index,
                generation,
                reason,
            })
        });
        slot.running = Some((slot.spec.start)(hook));
        slot.state = State::Running;
        tracing::debug!(supervisor = %self.name, child = %slot.spec.name, generation, "Child started.");
    }

    /// Starts child `index` again, counting the restart.
    fn restart_child(&mut self, index: usize, ctx: &mut Context<Self>) {
        self.slots[index].restarts += 1;
        metrics::counter!(
            nm::SUPERVISOR_RESTARTS_TOTAL,
            "supervisor" => self.name.clone(),
            "child" => self.slots[index].spec.name.clone()
        )
        .increment(1);
        self.start_child(index, ctx);
    }

    /// Stops child `index` on purpose: its exit will be ignored.
    fn stop_child(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        slot.generation += 1;
        if let Some(mut running) = slot.running.take() {
            running.stop();
        }
    }

    fn stop_all(&mut self) {
        for index in (0..self.slots.len()).rev() {
            self.stop_child(index);
            self.slots[index].state = State::Stopped;
        }
    }

    fn give_up(&mut self, child: &str, ctx: &mut Context<Self>) {
        if self.settings.on_exhausted == Exhausted::StayDown {
            return self.stay_down(child, ctx);
        }
        let intensity = &self.settings.intensity;
        let why = IntensityExceeded {
            supervisor: self.name.clone(),
            child: child.to_owned(),
            max_restarts: intensity.max_restarts,
            period: intensity.period,
        };
        tracing::error!(supervisor = %self.name, child, "Restart intensity exceeded; escalating.");
        metrics::counter!(nm::SUPERVISOR_ESCALATIONS_TOTAL, "supervisor" => self.name.clone())
            .increment(1);
        self.escalated = true;
        self.stop_all();
        (self.escalate)(ExitReason::Failed(why.to_string()));
        ctx.stop();
    }

    /// [`Exhausted::StayDown`]: stop every child, stay up, and start them
    /// all again after `retry_after` with a fresh intensity window.
    fn stay_down(&mut self, child: &str, ctx: &mut Context<Self>) {
        let retry_after = self.settings.retry_after;
        tracing::error!(
            supervisor = %self.name,
            child,
            max_restarts = self.settings.intensity.max_restarts,
            period = ?self.settings.intensity.period,
            ?retry_after,
            "Restart intensity exceeded; the subtree stays down (its work is answered by fallbacks) and retries."
        );
        metrics::counter!(nm::SUPERVISOR_EXHAUSTED_TOTAL, "supervisor" => self.name.clone())
            .increment(1);
        metrics::gauge!(nm::SUPERVISOR_DOWN, "supervisor" => self.name.clone()).set(1.0);
        for index in (0..self.slots.len()).rev() {
            self.stop_child(index);
            self.slots[index].state = State::Down;
        }
        ctx.run_later(retry_after, |supervisor, ctx| {
            if supervisor.stopping {
                return;
            }
            tracing::info!(supervisor = %supervisor.name, "Retrying a subtree that was down.");
            metrics::gauge!(nm::SUPERVISOR_DOWN, "supervisor" => supervisor.name.clone()).set(0.0);
            supervisor.window = RestartWindow::default();
            for index in 0..supervisor.slots.len() {
                if supervisor.slots[index].state != State::Down {
                    continue;
                }
                supervisor.slots[index].backoff = BackoffState::default();
                supervisor.restart_child(index, ctx);
            }
        });
    }
}

/// Why a supervisor gave up: kept typed until it is reported.
#[derive(Debug, thiserror::Error)]
#[error("supervisor {supervisor} exceeded its restart intensity ({max_restarts} restarts within {period:?}) after child {child} failed")]
pub struct IntensityExceeded {
    /// The supervisor that gave up.
    pub supervisor: String,
    /// The child whose failure was one too many.
    pub child: String,
    /// The intensity's limit.
    pub max_restarts: u32,
    /// The intensity's window.
    pub period: Duration,
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.start_children(ctx);
        tracing::debug!(supervisor = %self.name, children = self.slots.len(), "Supervisor started.");
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if !self.escalated {
            self.stop_all();
        }
    }
}

/// A child reports its exit (control message).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ChildExited {
    index: usize,
    generation: u64,
    reason: ExitReason,
}

impl Handler<ChildExited> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: ChildExited, ctx: &mut Self::Context) {
        let Some(slot) = self.slots.get_mut(msg.index) else {
            return;
        };
        if msg.generation != slot.generation || slot.running.is_none() || self.stopping {
            return; // stopped on purpose, already exited, or a stale report
        }
        slot.running = None;
        let abnormal = msg.reason.is_abnormal();
        if abnormal {
            let at = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            slot.last_failure = Some((msg.reason.to_string(), at));
            tracing::warn!(supervisor = %self.name, child = %slot.spec.name, reason = %msg.reason, "Child failed.");
        }
        if !slot.spec.restart.restarts_after(abnormal) {
            slot.state = State::Stopped;
            return;
        }
        let child = slot.spec.name.clone();
        let now = Instant::now();
        if self.window.record(&self.settings.intensity, now) == Verdict::Escalate {
            return self.give_up(&child, ctx);
        }
        let group: Vec<usize> = match self.settings.strategy {
            Strategy::OneForOne => vec![msg.index],
            Strategy::OneForAll => (0..self.slots.len()).collect(),
            Strategy::RestForOne => (msg.index..self.slots.len()).collect(),
        };
        // Siblings stop in reverse start order, then all restart in order.
        for &index in group.iter().rev() {
            if index != msg.index {
                self.stop_child(index);
            }
            self.slots[index].state = State::Restarting;
        }
        let attempt = self.slots[msg.index]
            .backoff
            .fail(&self.settings.backoff, now);
        let delay = self
            .settings
            .backoff
            .delay(attempt, self.jitter.next_unit());
        tracing::info!(supervisor = %self.name, child, restarting = group.len(), ?delay, "Restarting after backoff.");
        ctx.run_later(delay, move |supervisor, ctx| {
            if supervisor.stopping {
                return;
            }
            for index in group {
                if supervisor.slots[index].state != State::Restarting {
                    continue;
                }
                supervisor.restart_child(index, ctx);
            }
        });
    }
}

/// Stop every child (in reverse order), then the supervisor (control).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Supervisor {
    type Result = ();

    fn handle(&mut self, _msg: Shutdown, ctx: &mut Self::Context) {
        self.stopping = true;
        self.stop_all();
        ctx.stop();
    }
}

/// Replace the settings of the supervisor named `name` in this subtree
/// (control). Logged with the old and new values.
#[derive(Clone, Debug, Message)]
#[rtype(result = "bool")]
pub struct Reconfigure {
    /// Which supervisor.
    pub name: String,
    /// Its new settings.
    pub settings: SupervisorSettings,
}

impl Handler<Reconfigure> for Supervisor {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: Reconfigure, _ctx: &mut Self::Context) -> Self::Result {
        if msg.name == self.name {
            if msg.settings != self.settings {
                tracing::info!(supervisor = %self.name, old = ?self.settings, new = ?msg.settings, "Supervisor reconfigured.");
                self.settings = msg.settings;
            }
            return Box::pin(async { true });
        }
        let subtrees: Vec<_> = self
            .slots
            .iter()
            .filter_map(|s| s.running.as_ref()?.subtree())
            .collect();
        Box::pin(async move {
            for subtree in subtrees {
                if subtree.send(msg.clone()).await.unwrap_or(false) {
                    return true;
                }
            }
            false
        })
    }
}

/// Ask for the live tree below (and including) this supervisor.
#[derive(Debug, Message)]
#[rtype(result = "TreeNode")]
pub struct GetTree {
    /// The restart type this supervisor has under its parent.
    pub restart: Restart,
}

fn restart_name(restart: Restart) -> &'static str {
    match restart {
        Restart::Permanent => "permanent",
        Restart::Transient => "transient",
        Restart::Temporary => "temporary",
    }
}

impl Handler<GetTree> for Supervisor {
    type Result = ResponseFuture<TreeNode>;

    fn handle(&mut self, msg: GetTree, _ctx: &mut Self::Context) -> Self::Result {
        let strategy = match self.settings.strategy {
            Strategy::OneForOne => "one_for_one",
            Strategy::OneForAll => "one_for_all",
            Strategy::RestForOne => "rest_for_one",
        };
        let node = TreeNode {
            name: self.name.clone(),
            kind: "supervisor".into(),
            strategy: Some(strategy.into()),
            restart: restart_name(msg.restart).into(),
            state: "running".into(),
            ..Default::default()
        };
        let children: Vec<_> = self
            .slots
            .iter()
            .map(|slot| {
                let running = slot.running.as_ref();
                let leaf = TreeNode {
                    name: slot.spec.name.clone(),
                    kind: "worker".into(),
                    strategy: None,
                    restart: restart_name(slot.spec.restart).into(),
                    state: slot.state.as_str().into(),
                    restarts: slot.restarts,
                    last_failure: slot.last_failure.as_ref().map(|(why, _)| why.clone()),
                    last_failure_at_ms: slot.last_failure.as_ref().map(|(_, at)| *at),
                    detail: running.and_then(|r| r.detail()),
                    children: Vec::new(),
                };
                (leaf, running.and_then(|r| r.subtree()), slot.spec.restart)
            })
            .collect();
        Box::pin(async move {
            let mut node = node;
            node.children = join_all(children.into_iter().map(
                |(leaf, subtree, restart)| async move {
                    match subtree {
                        Some(addr) => match addr.send(GetTree { restart }).await {
                            Ok(mut sub) => {
                                sub.name = leaf.name;
                                sub.restarts = leaf.restarts;
                                sub.last_failure = leaf.last_failure;
                                sub.last_failure_at_ms = leaf.last_failure_at_ms;
                                sub.state = leaf.state;
                                sub
                            }
                            Err(_) => leaf,
                        },
                        None => leaf,
                    }
                },
            ))
            .await;
            node
        })
    }
}

/// A nested supervisor as a child of another.
#[derive(Debug)]
pub struct SubtreeChild(pub Addr<Supervisor>);

impl RunningChild for SubtreeChild {
    fn stop(&mut self) {
        self.0.do_send(Shutdown);
    }

    fn subtree(&self) -> Option<Addr<Supervisor>> {
        Some(self.0.clone())
    }
}

/// A child spec for a nested supervisor built by `make` on every (re)start.
pub fn subtree(
    name: impl Into<String>,
    restart: Restart,
    mut make: impl FnMut(ExitHook) -> Supervisor + Send + 'static,
) -> ChildSpec {
    ChildSpec {
        name: name.into(),
        restart,
        start: Box::new(move |hook| Box::new(SubtreeChild(make(hook).start_now()))),
    }
}
