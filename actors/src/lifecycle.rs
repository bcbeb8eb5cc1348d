//! How actors live and die under supervision: exit reasons, the hook a
//! child calls when it exits, and panic isolation.
//!
//! actix does not catch panics: a panicking handler kills its actor for good
//! (and a panicking `SyncArbiter` worker its thread) without telling anyone.
//! Handlers that can fail run inside [`isolate`], which catches the panic,
//! counts it (`reco_actor_panics_total{actor}`) and returns it as an error;
//! the actor then stops and reports [`ExitReason::Panicked`] through its
//! [`ExitHook`], and its supervisor decides whether and when to restart it.
//! The process-wide panic hook ([`install_panic_hook`]) logs each panic once,
//! with the actor and message type that were running.

use crate::metrics as m;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Why a child stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// It was asked to stop, or finished its work.
    Normal,
    /// A handler panicked; the message says what.
    Panicked(String),
    /// It failed without a panic (a broken subscription, a subtree that gave
    /// up); the message says what.
    Failed(String),
}

impl ExitReason {
    /// Whether a `transient` child is restarted after this exit.
    pub fn is_abnormal(&self) -> bool {
        !matches!(self, ExitReason::Normal)
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("normal"),
            ExitReason::Panicked(why) => write!(f, "panicked: {why}"),
            ExitReason::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// Called exactly once by a supervised child when it exits. Sending it is a
/// control message: it never waits for and is never refused by a full
/// mailbox.
pub type ExitHook = Arc<dyn Fn(ExitReason) + Send + Sync>;

/// An exit hook that tells nobody (for actors run without a supervisor).
pub fn unsupervised() -> ExitHook {
    Arc::new(|_| {})
}

/// Stop the actor (control: sent with `do_send`, never shed by a full data
/// mailbox).
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct Stop;

thread_local! {
    static RUNNING: Cell<Option<(&'static str, &'static str)>> = const { Cell::new(None) };
}

/// Runs `f` as the handler of `message` in `actor`, catching a panic. On a
/// panic, counts it and returns its message; the caller stops the actor.
pub fn isolate<R>(
    actor: &'static str,
    message: &'static str,
    f: impl FnOnce() -> R,
) -> Result<R, String> {
    let previous = RUNNING.with(|r| r.replace(Some((actor, message))));
    let result = catch_unwind(AssertUnwindSafe(f));
    RUNNING.with(|r| r.set(previous));
    result.map_err(|payload| {
        metrics::counter!(m::ACTOR_PANICS_TOTAL, "actor" => actor).increment(1);
        panic_message(payload.as_ref())
    })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// Replaces the default panic hook (which prints to stderr without context)
/// with one that logs the panic once, as an ERROR with the actor and
/// message type that were running and where it panicked.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let why = panic_message(info.payload());
        match RUNNING.with(|r| r.get()) {
            Some((actor, message)) => tracing::error!(
                actor,
                message,
                %location,
                panic = %why,
                "Actor panicked while handling a message; its supervisor restarts it."
            ),
            None => tracing::error!(%location, panic = %why, "Thread panicked."),
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolate_turns_a_panic_into_an_error_with_its_message() {
        assert_eq!(isolate("test", "Ok", || 5), Ok(5));
        let err = isolate("test", "Boom", || -> u8 { panic!("boom {}", 7) }).unwrap_err();
        assert_eq!(err, "boom 7");
        assert_eq!(RUNNING.with(|r| r.get()), None);
    }
}
