//! reco's simulator: synthetic members driving a real node over NATS, with
//! faults, measured honestly.
//!
//! It is how a team rehearses load, deadlines and failures before
//! production, and how reco proves its own speed and quality. It speaks only
//! the public wire contract ([`reco_messages`]), exactly as a producer or
//! caller in another language would.
//!
//! # Layout
//! - [`world`]: the seeded synthetic world (catalogue, members with true
//!   tastes, choice model) and its deterministic event stream; MovieLens
//!   replay.
//! - [`setup`]: model directories for a world (ALS on a simulated past, or
//!   the latent vectors as they are).
//! - [`process`]: the private `nats-server` and `reco serve` processes a run
//!   may own.
//! - [`driver`]: publishing events and sending requests (open or closed
//!   loop), measuring every reply, polling the node, injecting faults.
//! - [`faults`]: the fault kinds, their seeded schedule, and how each is
//!   performed.
//! - [`counterfactual`](mod@counterfactual): what degradation cost, from
//!   the node's counterfactual log read during a run.
//! - [`report`]: the run's report as JSON and as a table.
//! - [`plot`]: the SVG timeline.
//! - [`bench`](mod@bench): `reco-sim bench`, reco beside its NATS ceilings.
//! - [`demo`]: the one-command demo and the self-contained `run`.

pub mod bench;
pub mod cluster;
pub mod counterfactual;
pub mod demo;
pub mod device;
pub mod driver;
pub mod faults;
pub mod launch;
pub mod plot;
pub mod process;
pub mod replay;
pub mod report;
pub mod setup;
pub mod world;
