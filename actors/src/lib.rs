//! reco's actors: the online path of a serving node.
//!
//! # Layout
//! - [`admin`]: `<prefix>.admin.…`: health and (for tests) fault injection.
//! - [`ingress`]: NATS subscriptions → decode, validate, route; DLQ for bad events.
//! - [`shard`]: `SessionShard`, one per arbiter: the bounded, idle-passivating
//!   registry of member sessions.
//! - [`session`]: `Session`, one per member: recent signals, the request path
//!   with its deadline and fallback.
//! - [`model`]: `ModelWorker` on a `SyncArbiter` and the bounded `ModelPool`
//!   in front of it.
//! - [`nearline`]: the member's list refreshed between requests after an
//!   important event, the first fallback tier.
//! - [`precomputed`]: `Precomputed`, the batch lists answered from memory.
//! - [`responder`]: the reply handle that answers every request exactly once,
//!   and the in-flight count a drain waits on.
//! - [`signals`]: a member's bounded ring of recent events.
//! - [`lifecycle`]: exit reasons, exit hooks and panic isolation for supervision.
//! - [`metrics`]: the names of every metric the actors emit.
//!
//! Actors get typed settings from `reco-supervisors`; none reads the
//! environment or a file.
//!
//! ```text
//!  NATS ──► Ingress ──try_send──► SessionShard (per arbiter) ──► Session (per member)
//!                                                                  │   ▲
//!                                      ListsReader (no queue) ◄────┤   │ ScoreOutcome
//!                                                                  ▼   │
//!                                                   ModelPool ──► ModelWorker × N (SyncArbiter)
//! ```

pub mod admin;
pub mod breaker;
pub mod ingress;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod nearline;
pub mod precomputed;
pub mod responder;
pub mod session;
pub mod shard;
pub mod signals;
