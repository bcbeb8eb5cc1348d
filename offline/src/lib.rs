//! reco's offline side: everything that happens away from the request path
//! and needs no actors. Training a model, the model directory a node loads,
//! publishing versions to JetStream for running nodes to hot-swap, and the
//! event log that records what members did for the next training run.
//!
//! The simulator depends on this crate (to train and read models) without
//! pulling in the serving node; the node depends on it to record events and
//! its loader to fetch published versions.
//!
//! # Layout
//! - [`train`]: the training run (ALS, lists, evaluation, CSV ratings).
//! - [`artifacts`]: the model directory (`model.bin`, `lists.bin`).
//! - [`publish`]: model versions in a JetStream object store, retention and
//!   the `<prefix>.published.model` notification; `[publish]` settings.
//! - [`event_log`]: the JetStream stream recording events, and reading it
//!   back for training; `[events_log]` settings.
//! - [`settings`]: range checks of those settings.
//! - [`command`]: the `reco train` subcommand.

pub mod artifacts;
pub mod command;
pub mod event_log;
pub mod publish;
pub mod settings;
pub mod signing;
pub mod train;
