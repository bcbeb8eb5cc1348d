//! reco's serving node: generic OTP supervision, the node's supervision
//! tree and its wiring, configuration and telemetry — what operators tune.
//!
//! This is the only crate that reads configuration files or the environment
//! and the only one that wires actors together; the actors get typed
//! settings. The `reco` binary (crate `cli/`) calls [`node::command::serve`].
//!
//! # Layout
//! - [`config`]: every operator knob with its default and range.
//! - [`supervision`]: supervision trees (strategies, intensity, backoff),
//!   and the drawing of a node's tree.
//! - [`nearline`]: `reco nearline` and `reco insights` (the aggregation job's
//!   composition root).
//! - [`node`]: starts the actors of a serving node and drains them.
//! - [`telemetry`]: logging and the Prometheus exporter.
//! - [`operator`]: the HTTP surface: `/metrics` and the operator page.

pub mod config;
pub mod nearline;
pub mod node;
pub mod operator;
pub mod supervision;
pub mod telemetry;
