//! The names of the metrics the actors emit, defined once in
//! [`reco_messages::metrics`] (with every other crate's) and re-exported here
//! so the actor files keep reading `m::NAME`.

pub use reco_messages::metrics::*;
