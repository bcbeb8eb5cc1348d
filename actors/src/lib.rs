//! reco's actors: the online path of a serving node.
//!
//! # Layout
//! - [`admin`]: `<prefix>.admin.…`: health and (for tests) fault injection.
//! - [`ingress`]: NATS subscriptions → decode, validate, route; DLQ for bad events.
//! - [`shard`]: `SessionShard`, one per arbiter: the bounded, idle-passivating
//!   registry of member sessions.
//! - [`session`]: `Session`, one per member: recent signals, the request path
//!   with its deadline and fallback.
//! - [`reply`]: the request-reply room: [`reply::Recommend`], the
//!   [`reply::Responder`] that answers every request exactly once, the one
//!   fallback → reply step, and the in-flight count a drain waits on.
//! - [`counterfactual`]: the sampled log of late model answers beside what
//!   was served, published off the request path.
//! - [`rows`]: the row dispatch: what each row (genre, because, continue,
//!   popular, new) asks of the model and what answers when it cannot.
//! - [`model`]: `ModelWorker` on a `SyncArbiter` and the bounded `ModelPool`
//!   in front of it.
//! - [`nearline`]: the member's list refreshed between requests after an
//!   important event, the first fallback tier (types and behaviour).
//! - [`lists`]: [`lists::ListsReader`], the precomputed lists in service, read
//!   without a queue and written only by the node's loader.
//! - [`aggregates`]: [`aggregates::AggregatesReader`], the near-real-time
//!   aggregate snapshot in service (hot-swapped by the node's aggregates
//!   loader) and the rows built from it, `trending` and `billboard`.
//! - [`faults`]: [`faults::InjectedFaults`], the faults tests and the
//!   simulator inject, and the thread that holds back a cohort's answers.
//! - [`seen`]: what resident members have seen, for the fallbacks answered
//!   without their session (overload).
//! - [`signals`]: a member's bounded ring of recent events.
//! - [`loader`]: hot swap of published model versions, pin and rollback.
//! - [`lifecycle`]: exit reasons, exit hooks and panic isolation for supervision.
//! - [`metrics`]: the metric names (defined in [`reco_messages::metrics`]).
//!
//! Actors get typed settings from `reco-supervisors`; none reads the
//! environment or a file. How they are supervised is drawn once, in
//! `reco_supervisors::supervision`'s docs (`supervisors/src/supervision.rs`).
//!
//! How these actors are supervised is drawn once, in the docs of
//! `reco_supervisors::supervision` (the node's supervision tree); this crate
//! does not keep a copy.

pub mod admin;
pub mod aggregates;
pub mod breaker;
pub mod counterfactual;
pub mod faults;
pub mod guard;
pub mod ingress;
pub mod lifecycle;
pub mod lists;
pub mod loader;
pub mod metrics;
pub mod model;
pub mod nearline;
pub mod reply;
pub mod rows;
pub mod seen;
pub mod session;
pub mod shard;
pub mod signals;
