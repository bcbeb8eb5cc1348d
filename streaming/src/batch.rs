//! The batch side of "one function, batch and streaming": read every event
//! the stream holds and fold them with the same
//! [`AggregateState::apply`] into an empty state. Same decoding, same
//! times (the server's receipt time), same sequences as the streaming job,
//! so the results are equal (an end-to-end test compares them).

use crate::error::StreamingError;
use crate::job::decode;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use reco_models::aggregates::{AggregateParams, AggregateState, Observed};
use std::time::Duration;

/// How long the reader waits for the next stored message before it gives
/// up: every message it waits for is already stored.
const READ_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the stream held when the read started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamEvents {
    /// The events that decode, in stream order.
    pub events: Vec<Observed>,
    /// Messages that did not decode as events (skipped, as the job does).
    pub bad: u64,
    /// The last sequence of the stream when the read started.
    pub last_sequence: u64,
}

/// Reads every message stored in `stream` when the call starts.
///
/// # Errors
/// [`StreamingError::Stream`] when the stream is missing or stops answering.
pub async fn read_stream(
    js: &jetstream::Context,
    stream_name: &str,
    max_payload: usize,
) -> Result<StreamEvents, StreamingError> {
    let failed = |source: async_nats::Error| StreamingError::Stream {
        stream: stream_name.to_owned(),
        source,
    };
    let mut stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| failed(e.into()))?;
    let state = stream
        .info()
        .await
        .map_err(|e| failed(e.into()))?
        .state
        .clone();
    let mut out = StreamEvents {
        last_sequence: state.last_sequence,
        ..StreamEvents::default()
    };
    if state.messages == 0 {
        return Ok(out);
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            description: Some("reco aggregates batch read".into()),
            ..Default::default()
        })
        .await
        .map_err(|e| failed(e.into()))?;
    let mut messages = consumer.messages().await.map_err(|e| failed(e.into()))?;
    loop {
        let next = tokio::time::timeout(READ_STALL_TIMEOUT, messages.next())
            .await
            .map_err(|e| failed(Box::new(e)))?;
        let Some(message) = next else { break };
        let message = message.map_err(|e| failed(e.into()))?;
        let info = message.info().map_err(&failed)?;
        let sequence = info.stream_sequence;
        let time_ms = u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        match decode(&message.payload, max_payload) {
            Some(event) => out.events.push(Observed {
                sequence,
                event,
                time_ms,
            }),
            None => out.bad += 1,
        }
        if sequence >= out.last_sequence || info.pending == 0 {
            break;
        }
    }
    Ok(out)
}

/// The aggregates of everything `stream` holds, computed in batch.
///
/// # Errors
/// As [`read_stream`].
pub async fn aggregate_stream(
    js: &jetstream::Context,
    stream_name: &str,
    max_payload: usize,
    params: AggregateParams,
) -> Result<AggregateState, StreamingError> {
    let read = read_stream(js, stream_name, max_payload).await?;
    Ok(AggregateState::batch(params, &read.events))
}
