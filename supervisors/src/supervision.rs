//! Supervision trees: what restarts when something fails.
//!
//! actix restarts an actor only when its context stops; it does not catch
//! panics, has no restart limit, no backoff and no strategy over siblings.
//! This module adds Erlang/OTP's model on top:
//!
//! - a [`Supervisor`] owns an ordered list of children and, when one exits,
//!   applies its **strategy**: `one_for_one` restarts only that child,
//!   `one_for_all` stops and restarts every child, `rest_for_one` the failed
//!   child and every child started after it (siblings stop in reverse start
//!   order and restart in start order);
//! - each child has a **restart type**: `permanent` children always restart,
//!   `transient` ones only after an abnormal exit (a panic or a failure),
//!   `temporary` ones never;
//! - **restart intensity**: at most `max_restarts` within `period`. One more
//!   and the supervisor stops its children and itself and **escalates** to
//!   its parent, which treats it as a failed child. The root escalating means
//!   the node shuts down cleanly, logs why, and exits non-zero;
//! - what **exhaustion** means is set per subtree ([`Exhausted`]):
//!   `escalate` (above), or `stay_down`: the supervisor stops its children
//!   but stays up, shows them as `down`, and starts them again after
//!   `retry_after` with a fresh window. The model and nearline subtrees stay
//!   down by default — every request has a fallback that needs no model, so
//!   a model that keeps crashing never stops the node; sessions and the root
//!   escalate;
//! - restarts wait an exponential **backoff** with jitter
//!   (`min · factor^n`, capped at `max`, plus up to `jitter` of itself),
//!   which starts over after a child has run `reset_after` without failing.
//!
//! Panics are caught where they happen ([`reco_actors::lifecycle::isolate`]),
//! counted and logged once; the actor then stops and reports the panic
//! through its exit hook, and the supervisor takes it from there.
//!
//! # The tree of a serving node
//!
//! This is the one drawing of it; `node/tree.rs` builds it, `reco tree`
//! prints the live one, and every other document links here. Defaults shown;
//! each `[supervision.<name>]` section of the config file retunes a subtree.
//!
//! ```text
//! root (one_for_one, escalate)           escalating here stops the node (exit 1)
//! ├── model (one_for_one, stay_down)      permanent
//! │   ├── worker-0         permanent      scoring thread; a panic is answered
//! │   └── worker-<W-1>     permanent        with the fallback, a new thread after
//! │                                         backoff; past its intensity the subtree
//! │                                         stays down and retries later
//! ├── nearline (one_for_one, stay_down)   permanent; only with nearline.enabled
//! │   └── worker-<i>       permanent      refresh threads (own pool, own admission)
//! ├── sessions (one_for_one, escalate)    permanent
//! │   ├── shard-0          permanent      one per arbiter; a restarted shard starts
//! │   └── shard-<S-1>      permanent        with no sessions
//! │       └ member sessions (not tree children): restarted in place by their
//! │                        shard after a panic (mailbox kept); an event that
//! │                        crashes one `quarantine_after` times is dead-lettered
//! ├── ingress              transient      NATS subscriptions → shards: restarted
//! │                                         (resubscribed) if they break; drained,
//! │                                         it stays down
//! ├── telemetry            permanent      admin.health, admin.faults, RSS gauge
//! ├── loader               permanent      hot swap of published versions,
//! │                                         admin.model (pin, rollback, unpin)
//! └── aggregates           permanent      hot swap of aggregate snapshots (rows
//!                                           trending, billboard) and their gauges;
//!                                           only with aggregates.enabled
//! ```
//!
//! Outside the tree, the node itself answers `admin.tree` and
//! `admin.reload`/SIGHUP (`node/admin.rs`).
//!
//! Children start in this order, so on a node shutdown the ingress drains
//! first (every request in flight is answered) before anything else stops.
//!
//! Operators set strategy, intensity and backoff per subtree in the config
//! file (`[supervision.<name>]`), read the live tree with `reco tree`, and
//! apply new limits with SIGHUP without restarting the node.

pub mod policy;
pub mod supervisor;
#[cfg(test)]
mod tests;

pub use policy::{Backoff, Exhausted, Intensity, Restart, Strategy};
pub use supervisor::{
    subtree, ChildExited, ChildSpec, GetTree, Reconfigure, RunningChild, Shutdown, Supervisor,
    SupervisorSettings,
};
