//! How to talk to reco over NATS, for the command line, the simulator, the
//! tests and any Rust program: one way to connect ([`ConnectOptions`]), the
//! typed admin client ([`Admin`]), a caller ([`caller::recommend`]) and a
//! producer ([`producer::publish_event`]). It speaks only the public wire
//! contract ([`reco_messages`]) and has no actors.
//!
//! # Layout
//! - [`connect`]: the connect function and its options builder.
//! - [`admin`]: health, tree, faults, model pin/unpin/status, reload.
//! - [`caller`]: asks for recommendations (`reco recommend`).
//! - [`producer`]: publishes an event (`reco event`).
//! - [`cluster`]: `reco cluster`, the nodes of a deployment seen through
//!   their NATS micro-service.
//! - [`command`]: the `reco recommend | event | tree | model` subcommands.

pub mod admin;
pub mod caller;
pub mod cluster;
pub mod command;
pub mod connect;
pub mod producer;

pub use admin::{Admin, AdminError};
pub use connect::{
    redact_url, round_trip, round_trip_within, ConnectError, ConnectOptions, NatsSecurity,
    RoundTripError, Secret, SecurityArgs, DEFAULT_NATS_URL, ENV_NATS_URL, REDACTED,
};
