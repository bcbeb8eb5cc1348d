//! reco's composition root: configuration, the wiring of a serving node,
//! the offline training job and the `reco` command line.
//!
//! This is the only crate that reads configuration files or the environment
//! and the only one that wires actors together; the actors get typed
//! settings.
//!
//! # Layout
//! - [`config`]: every operator knob with its default and range.
//! - [`supervision`]: supervision trees (strategies, intensity, backoff).
//! - [`node`]: starts the actors of a serving node and drains them.
//! - [`train`]: `reco train`, the offline job.
//! - [`artifacts`]: the model directory (`model.bin`, `lists.bin`).
//! - [`event_log`]: the JetStream stream recording events, and reading it
//!   back for training.
//! - [`publish`]: model versions in a JetStream object store, retention and
//!   the `<prefix>.published.model` notification.
//! - [`telemetry`]: logging and the Prometheus exporter.
//! - [`operator`]: the HTTP surface: `/metrics` and the operator page.
//! - [`loader`]: hot swap of published model versions.
//! - [`metrics`]: names of this crate's metrics.
//! - [`cli`]: the `reco` binary's arguments.
//! - [`client`]: `reco recommend` and `reco event`, a caller and a producer.

pub mod artifacts;
pub mod cli;
pub mod client;
pub mod config;
pub mod event_log;
pub mod loader;
pub mod metrics;
pub mod node;
pub mod operator;
pub mod publish;
pub mod supervision;
pub mod telemetry;
pub mod train;
