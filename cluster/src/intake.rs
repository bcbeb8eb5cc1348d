//! `PartitionIntake`: one partition's events, in order, from the event
//! stream — first the recent past (the replay), then as they arrive.
//!
//! ```text
//!  stream RECO_EVENTS  (captures <prefix>.p.events.*.*)
//!     └── ordered consumer, filter <prefix>.p.events.<k>.*, from now − window
//!           replay …………………… CaughtUp ── live events ──▶
//! ```
//!
//! An ordered consumer belongs to one client and is recreated by the client
//! from the last sequence it delivered when it misses a beat, so a
//! partition's events come once each and in stream order (hence in
//! per-member order). A durable consumer shared by several nodes would act
//! like a queue and reorder on failover, so each owner opens its own.
//!
//! The intake tells when the replay is done ([`Intake::CaughtUp`]): when the
//! consumer had nothing pending at creation, or on the first event with
//! nothing pending after it, or whose stream sequence reaches the stream's
//! last sequence at opening. The owner answers requests for the partition
//! only after that, so a member's recent signals are rebuilt first.
//!
//! Emits `reco_replay_seconds` (time from opening to caught up) and
//! `reco_replay_events_total`.

use crate::metrics as m;
use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures::StreamExt;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Where an intake starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Events stored in the last `window` (a new owner's replay).
    Since(Duration),
    /// From this stream sequence on (resuming where a previous intake
    /// stopped).
    Sequence(u64),
    /// Only events stored from now on.
    New,
}

/// The intake could not be opened or read.
#[derive(Debug, Error)]
pub enum IntakeError {
    /// The stream or its consumer could not be set up.
    #[error("cannot open an ordered consumer on {filter} of stream {stream}: {source}")]
    Open {
        /// The stream.
        stream: String,
        /// The filter subject.
        filter: String,
        /// What the server said.
        #[source]
        source: async_nats::Error,
    },
    /// Reading failed (the client recreates the consumer on gaps; this is
    /// what it could not recover from).
    #[error("cannot read {filter}: {source}")]
    Read {
        /// The filter subject.
        filter: String,
        /// Why.
        #[source]
        source: async_nats::Error,
    },
}

/// One stored event of the partition.
#[derive(Clone, Debug)]
pub struct IntakeEvent {
    /// Its stream sequence.
    pub sequence: u64,
    /// The subject it was stored under (`<prefix>.p.events.<k>.<member>`).
    pub subject: String,
    /// The payload as published.
    pub payload: Bytes,
    /// When the server stored it.
    pub published: time::OffsetDateTime,
    /// Events of the partition stored after this one and not yet delivered
    /// (the consumer's lag).
    pub pending: u64,
}

/// What the intake yields.
#[derive(Clone, Debug)]
pub enum Intake {
    /// The next event of the partition.
    Event(IntakeEvent),
    /// Every event stored when the intake opened has been delivered; yielded
    /// once.
    CaughtUp {
        /// Events delivered before this.
        replayed: u64,
        /// Time from opening to now.
        took: Duration,
    },
}

/// One partition's events, in order.
pub struct PartitionIntake {
    filter: String,
    messages: consumer::pull::Ordered,
    /// The stream's last sequence when the intake opened.
    target: u64,
    opened: Instant,
    replayed: u64,
    state: CatchUp,
    last_sequence: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CatchUp {
    Replaying,
    /// Caught up; `CaughtUp` not yet yielded.
    Due,
    Done,
}

impl std::fmt::Debug for PartitionIntake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionIntake")
            .field("filter", &self.filter)
            .field("target", &self.target)
            .field("replayed", &self.replayed)
            .finish_non_exhaustive()
    }
}

impl PartitionIntake {
    /// Opens an ordered consumer on `filter` of `stream`, starting at
    /// `start`.
    ///
    /// # Errors
    /// [`IntakeError::Open`] when the stream is missing or the server
    /// refuses the consumer.
    pub async fn open(
        js: &jetstream::Context,
        stream: &str,
        filter: String,
        start: Start,
    ) -> Result<Self, IntakeError> {
        let opened = Instant::now();
        let open_error = |source: async_nats::Error| IntakeError::Open {
            stream: stream.to_owned(),
            filter: filter.clone(),
            source,
        };
        let mut handle = js
            .get_stream(stream)
            .await
            .map_err(|e| open_error(e.into()))?;
        let state = handle
            .info()
            .await
            .map_err(|e| open_error(e.into()))?
            .state
            .clone();
        let deliver_policy = match start {
            Start::Since(window) => consumer::DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::now_utc() - window,
            },
            Start::Sequence(sequence) => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: sequence.max(1),
            },
            Start::New => consumer::DeliverPolicy::New,
        };
        let consumer = handle
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter.clone(),
                deliver_policy,
                description: Some("reco partition intake".into()),
                ..Default::default()
            })
            .await
            .map_err(|e| open_error(e.into()))?;
        let nothing_pending = consumer.cached_info().num_pending == 0;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| open_error(e.into()))?;
        Ok(PartitionIntake {
            filter,
            messages,
            target: state.last_sequence,
            opened,
            replayed: 0,
            state: if nothing_pending || state.messages == 0 {
                CatchUp::Due
            } else {
                CatchUp::Replaying
            },
            last_sequence: 0,
        })
    }

    /// The filter subject.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Whether the replay is done.
    pub fn is_caught_up(&self) -> bool {
        self.state != CatchUp::Replaying
    }

    /// The stream sequence of the last event delivered (0 before the
    /// first): a later intake resumes after it.
    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    /// The replay alone: the events stored when the intake opened, in
    /// order, ending once caught up (or at the first read error, yielded
    /// last). A node alone replays its recent events so at start-up.
    pub fn replay(self) -> impl futures::Stream<Item = Result<IntakeEvent, IntakeError>> {
        futures::stream::unfold(Some(self), |intake| async move {
            let mut intake = intake?;
            match intake.next().await? {
                Ok(Intake::Event(event)) => Some((Ok(event), Some(intake))),
                Ok(Intake::CaughtUp { replayed, took }) => {
                    tracing::debug!(filter = %intake.filter, replayed, took_ms = took.as_millis() as u64, "Replay caught up.");
                    None
                }
                Err(error) => Some((Err(error), None)),
            }
        })
    }

    /// The next event, or the catch-up mark; `None` when the consumer ended.
    pub async fn next(&mut self) -> Option<Result<Intake, IntakeError>> {
        if self.state == CatchUp::Due {
            self.state = CatchUp::Done;
            let took = self.opened.elapsed();
            metrics::histogram!(m::REPLAY_SECONDS).record(took.as_secs_f64());
            return Some(Ok(Intake::CaughtUp {
                replayed: self.replayed,
                took,
            }));
        }
        let message = match self.messages.next().await? {
            Ok(message) => message,
            Err(error) => {
                return Some(Err(IntakeError::Read {
                    filter: self.filter.clone(),
                    source: error.into(),
                }))
            }
        };
        let (sequence, pending, published) = match message.info() {
            Ok(info) => (info.stream_sequence, info.pending, info.published),
            Err(error) => {
                return Some(Err(IntakeError::Read {
                    filter: self.filter.clone(),
                    source: error,
                }))
            }
        };
        self.last_sequence = sequence;
        if self.state == CatchUp::Replaying {
            self.replayed += 1;
            metrics::counter!(m::REPLAY_EVENTS_TOTAL).increment(1);
            if pending == 0 || sequence >= self.target {
                self.state = CatchUp::Due;
            }
        }
        let message = message.message;
        Some(Ok(Intake::Event(IntakeEvent {
            sequence,
            subject: message.subject.to_string(),
            payload: message.payload,
            published,
            pending,
        })))
    }
}
