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

/// Why a child stopped. An error itself, so a supervisor that gives up can
/// pass on the whole chain ([`std::error::Error::source`] reaches the
/// [`Panic`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExitReason {
    /// It was asked to stop, or finished its work.
    #[error("normal")]
    Normal,
    /// A handler panicked: which actor, which message, and what it said.
    #[error("panicked: {0}")]
    Panicked(#[source] Panic),
    /// It failed without a panic (a broken subscription, a subtree that gave
    /// up); the message says what.
    #[error("failed: {0}")]
    Failed(String),
}

impl ExitReason {
    /// Whether a `transient` child is restarted after this exit.
    pub fn is_abnormal(&self) -> bool {
        !matches!(self, ExitReason::Normal)
    }
}

/// A panic caught by [`isolate`]: typed, so that the actor and the message
/// it was handling travel with the panic's own message to the supervisor
/// and its tree view instead of being flattened into a string.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Panic {
    /// The actor whose handler panicked (`"unknown"` when not caught by
    /// [`isolate`]).
    pub actor: &'static str,
    /// The message type it was handling.
    pub handler: &'static str,
    /// What the panic said.
    pub message: String,
}

impl From<String> for Panic {
    /// A panic known only by its message (tests, or a child that reports one
    /// it did not catch itself).
    fn from(message: String) -> Self {
        Panic {
            actor: "unknown",
            handler: "unknown",
            message,
        }
    }
}

impl From<&str> for Panic {
    fn from(message: &str) -> Self {
        Panic::from(message.to_owned())
    }
}

impl PartialEq<&str> for Panic {
    /// Compares the panic's message.
    fn eq(&self, other: &&str) -> bool {
        self.message == *other
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
/// panic, counts it and returns it as a [`Panic`]; the caller stops (or
/// restarts) the actor.
pub fn isolate<R>(
    actor: &'static str,
    message: &'static str,
    f: impl FnOnce() -> R,
) -> Result<R, Panic> {
    let previous = RUNNING.with(|r| r.replace(Some((actor, message))));
    let result = catch_unwind(AssertUnwindSafe(f));
    RUNNING.with(|r| r.set(previous));
    result.map_err(|payload| {
        metrics::counter!(m::ACTOR_PANICS_TOTAL, "actor" => actor).increment(1);
        Panic {
            actor,
            handler: message,
            message: panic_message(payload.as_ref()),
        }
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
