//! The aggregation loop: read the event stream in order from the
//! checkpoint's sequence + 1, fold each event into the state with
//! [`AggregateState::apply`], checkpoint every `checkpoint_interval`,
//! publish a snapshot every `snapshot_interval`.
//!
//! ```text
//!  stream RECO_EVENTS ──ordered consumer (from checkpoint seq + 1)──▶ apply ──▶ state
//!                                                                      │
//!            every checkpoint_interval: state (+ its last sequence) ──▶ KV reco_aggregates_state
//!            every snapshot_interval:   snapshot ──▶ object store reco_aggregates
//!                                                   └─▶ <prefix>.published.aggregates
//! ```
//!
//! Every message of the stream is decoded as an [`Event`] from its payload,
//! whatever its subject (`<prefix>.events.<member>` or a partitioned
//! subject): the job does not depend on the subject layout. The event's
//! time for the windows is the server's receipt time of the message (see
//! [`reco_models::aggregates`]).
//!
//! **Crash behaviour.** State is only ever persisted together with the last
//! sequence it reflects, and the fold ignores sequences at or below it, so a
//! job killed at any point and restarted reads again what followed its last
//! checkpoint and ends with exactly the counts of an uninterrupted run. On a
//! clean shutdown it checkpoints and publishes once more before it returns.

use crate::checkpoint::Checkpoints;
use crate::error::StreamingError;
use crate::metrics as m;
use crate::settings::StreamingSettings;
use crate::snapshot;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use reco_messages::{Event, Subjects};
use reco_models::aggregates::{AggregateState, Observed};
use std::future::Future;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

/// What a run did, for the caller's log and for tests.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The state at the end (checkpointed).
    pub state: AggregateState,
    /// The sequence the run resumed after (0: from the start).
    pub resumed_after: u64,
    /// Events applied by this run.
    pub applied: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Decodes one stream message's payload as an event; `None` for bytes that
/// are not a valid event (counted as `bad` by the caller).
pub fn decode(payload: &[u8], max_payload: usize) -> Option<Event> {
    let event: Event = reco_messages::decode(payload, max_payload).ok()?;
    reco_messages::codec::validate_event(&event, event.member).ok()?;
    Some(event)
}

/// Runs the aggregation job until `shutdown` resolves (then checkpoints and
/// publishes a last time) or an error stops it.
///
/// # Errors
/// [`StreamingError`] when the stream, the checkpoint or the buckets are
/// unavailable at start-up, or the stream cannot be read. A failed periodic
/// checkpoint or snapshot is logged, counted and retried at the next tick.
pub async fn run(
    client: async_nats::Client,
    subjects: Subjects,
    settings: StreamingSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<Report, StreamingError> {
    let span = tracing::info_span!("aggregation_job", stream = %settings.stream);
    run_inner(client, subjects, settings, shutdown)
        .instrument(span)
        .await
}

async fn run_inner(
    client: async_nats::Client,
    subjects: Subjects,
    settings: StreamingSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<Report, StreamingError> {
    let js = jetstream::new(client.clone());
    let checkpoints = Checkpoints::open(&js, &settings.checkpoint_bucket).await?;
    let snapshots = snapshot::open_bucket(&js, &settings.snapshot_bucket).await?;
    let mut state = match checkpoints.load().await? {
        Some(state) => state,
        None => AggregateState::new(settings.params.clone()),
    };
    let resumed_after = state.last_sequence();
    let stream_failed = |source: async_nats::Error| StreamingError::Stream {
        stream: settings.stream.clone(),
        source,
    };
    let mut stream = js
        .get_stream(&settings.stream)
        .await
        .map_err(|e| stream_failed(e.into()))?;
    let stream_last = stream
        .info()
        .await
        .map_err(|e| stream_failed(e.into()))?
        .state
        .last_sequence;
    let deliver_policy = if resumed_after == 0 {
        consumer::DeliverPolicy::All
    } else {
        consumer::DeliverPolicy::ByStartSequence {
            start_sequence: resumed_after + 1,
        }
    };
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy,
            description: Some("reco nearline aggregation job".into()),
            ..Default::default()
        })
        .await
        .map_err(|e| stream_failed(e.into()))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| stream_failed(e.into()))?;
    tracing::info!(
        resumed_after,
        stream_last,
        titles = state.titles(),
        checkpoint_bucket = %settings.checkpoint_bucket,
        snapshot_bucket = %settings.snapshot_bucket,
        "Aggregation job ready."
    );

    let mut checkpoint_tick = tokio::time::interval(settings.checkpoint_interval);
    let mut snapshot_tick = tokio::time::interval(settings.snapshot_interval);
    checkpoint_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    snapshot_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checkpointed = resumed_after;
    let mut last_checkpoint = Instant::now();
    let mut published: Option<(u64, Instant)> = None;
    let mut applied = 0u64;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            _ = checkpoint_tick.tick() => {
                if state.last_sequence() != checkpointed {
                    match checkpoints.save(&state).await {
                        Ok(stored) => {
                            checkpointed = state.last_sequence();
                            last_checkpoint = Instant::now();
                            tracing::debug!(sequence = checkpointed, store = stored.as_str(), "Checkpoint written.");
                        }
                        Err(error) => tracing::warn!(%error, "Checkpoint failed; retrying at the next tick."),
                    }
                } else {
                    // Nothing new: the checkpoint is as fresh as the state.
                    last_checkpoint = Instant::now();
                }
                metrics::gauge!(m::CHECKPOINT_AGE_SECONDS).set(last_checkpoint.elapsed().as_secs_f64());
            }
            _ = snapshot_tick.tick() => {
                let due = match published {
                    None => true,
                    Some((sequence, at)) => sequence != state.last_sequence() || at.elapsed() >= snapshot::REFRESH_EVERY,
                };
                if due {
                    if let Some(sequence) = publish(&client, &subjects, &snapshots, &settings, &state).await {
                        published = Some((sequence, Instant::now()));
                    }
                }
            }
            next = messages.next() => {
                let Some(message) = next else {
                    return Err(stream_failed("the event stream's consumer ended".into()));
                };
                let message = message.map_err(|e| stream_failed(e.into()))?;
                let info = message.info().map_err(stream_failed)?;
                let (sequence, pending) = (info.stream_sequence, info.pending);
                let time_ms = u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
                metrics::gauge!(m::LAG_EVENTS).set(pending as f64);
                if sequence <= stream_last && sequence > resumed_after {
                    metrics::counter!(m::REPROCESSED_EVENTS_TOTAL).increment(1);
                }
                let Some(event) = decode(&message.payload, settings.max_payload) else {
                    metrics::counter!(m::EVENTS_TOTAL, "outcome" => "bad").increment(1);
                    tracing::debug!(sequence, subject = %message.subject, "Stream message is not an event; skipped.");
                    continue;
                };
                let outcome = state.apply(&[Observed { sequence, event, time_ms }]);
                applied += outcome.applied;
                count(&outcome);
                metrics::gauge!(m::LAST_SEQUENCE).set(state.last_sequence() as f64);
                metrics::gauge!(m::TITLES).set(state.titles() as f64);
            }
        }
    }
    tracing::info!(
        sequence = state.last_sequence(),
        applied,
        "Aggregation job stopping: last checkpoint and snapshot."
    );
    if state.last_sequence() != checkpointed {
        checkpoints.save(&state).await?;
    }
    publish(&client, &subjects, &snapshots, &settings, &state).await;
    Ok(Report {
        state,
        resumed_after,
        applied,
    })
}

fn count(outcome: &reco_models::aggregates::Applied) {
    let counter = |label: &'static str, n: u64| {
        if n > 0 {
            metrics::counter!(m::EVENTS_TOTAL, "outcome" => label).increment(n);
        }
    };
    counter("applied", outcome.applied);
    counter("duplicate", outcome.duplicates);
    counter("late", outcome.late);
    counter("overflow", outcome.overflow);
}

/// Publishes a snapshot of `state`; returns the sequence it reflects, or
/// `None` when it failed (logged and counted; retried at the next tick).
async fn publish(
    client: &async_nats::Client,
    subjects: &Subjects,
    store: &async_nats::jetstream::object_store::ObjectStore,
    settings: &StreamingSettings,
    state: &AggregateState,
) -> Option<u64> {
    let started = Instant::now();
    let now = now_ms().max(state.watermark_ms());
    let snapshot = state.snapshot(now, settings.trending_n);
    let result = snapshot::publish(
        client,
        subjects,
        store,
        &settings.snapshot_bucket,
        &snapshot,
        settings.keep_snapshots,
    )
    .await;
    metrics::histogram!(m::SNAPSHOT_SECONDS).record(started.elapsed().as_secs_f64());
    match result {
        Ok(notice) => {
            metrics::counter!(m::SNAPSHOTS_TOTAL, "outcome" => "ok").increment(1);
            tracing::debug!(version = %notice.version, titles = snapshot.titles.len(), trending = snapshot.trending.len(), "Snapshot published.");
            Some(notice.last_sequence)
        }
        Err(error) => {
            metrics::counter!(m::SNAPSHOTS_TOTAL, "outcome" => "failed").increment(1);
            tracing::warn!(%error, "Snapshot could not be published; retrying at the next tick.");
            None
        }
    }
}
