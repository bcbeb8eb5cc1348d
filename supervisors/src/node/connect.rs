//! The node's NATS connection: one client, named `reco-serve`, bounded
//! subscription buffers, slow consumers and connection events counted (the
//! options are [`crate::config::NatsConfig::connect_options`], the connect
//! function is [`reco_client::ConnectOptions`]'s, shared with every other
//! NATS user of reco).

use crate::config::Config;

/// Connects to NATS with the node's options: counted slow consumers and
/// connection events, bounded subscription buffers.
///
/// # Errors
/// When the server cannot be reached in time (the message says how to fix it).
pub async fn connect(config: &Config) -> Result<async_nats::Client, reco_client::ConnectError> {
    config.nats.connect_options().connect().await
}

pub use reco_client::round_trip;
