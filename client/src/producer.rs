//! A producer: publishes one member event on `<prefix>.events.<member>`,
//! validated first, and waits until the server has it.

use crate::connect::round_trip;
use reco_messages::{encode, Event, Subjects};

/// Validates `event`, publishes it and waits for a server round trip (so the
/// event is in the server, and in the event log if one records it, when
/// this returns).
///
/// # Errors
/// When the event is invalid or the server cannot be reached.
pub async fn publish_event(
    client: &async_nats::Client,
    subjects: &Subjects,
    event: &Event,
) -> anyhow::Result<()> {
    reco_messages::codec::validate_event(event, event.member)?;
    client
        .publish(subjects.events(event.member), encode(event).into())
        .await?;
    Ok(round_trip(client).await?)
}
