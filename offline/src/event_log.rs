//! The event log: a JetStream stream over `<prefix>.events.*` (and, in a
//! cluster, the partitioned `<prefix>.p.events.*.*`) that the NATS
//! server fills by itself with every event producers publish, and that
//! `reco train --from-stream` reads back as training interactions.
//!
//! ```text
//!  producers ──publish──▶ <prefix>.events.<member> ──▶ node ingress (online)
//!                                    │
//!                                    └──▶ stream RECO_EVENTS (server-side, retention by age/bytes)
//!                                                │
//!                         reco train --from-stream (ordered pull consumer)
//! ```
//!
//! Recording costs the ingress path nothing: the node only makes sure the
//! stream exists at start-up ([`ensure_stream`]). Events outlive node
//! restarts because they live in the server's store.

use crate::settings::{check_name, range, OutOfRange};
use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use reco_messages::metrics as nm;
use reco_messages::{Event, ItemId, MemberId, Subjects};
use reco_models::Rating;
use serde::{Deserialize, Serialize};
use std::collections::hash_map::{Entry, HashMap};
use std::time::Duration;
use thiserror::Error;

/// How long the reader waits for the next stored event before it gives up:
/// every event it waits for is already in the stream, so only a stuck server
/// makes it wait this long.
const READ_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The event log could not be set up or read.
#[derive(Debug, Error)]
pub enum EventLogError {
    /// JetStream refused to create or update the stream (is the server
    /// started with `-js`?).
    #[error("cannot create or update JetStream stream {stream}: {source}; is nats-server running with JetStream (-js)?")]
    Create {
        /// The stream.
        stream: String,
        /// What the server said.
        #[source]
        source: async_nats::Error,
    },
    /// A stream of that name exists but records other subjects; reco will
    /// not take it over.
    #[error("JetStream stream {stream} exists but records {found:?}, not {wanted:?}; set {key} to another name or delete the stream")]
    Incompatible {
        /// The config key of the stream's name.
        key: &'static str,
        /// The stream.
        stream: String,
        /// Its subjects.
        found: Vec<String>,
        /// The subject reco records.
        wanted: String,
    },
    /// The stream could not be read.
    #[error("cannot read JetStream stream {stream}: {source}")]
    Read {
        /// The stream.
        stream: String,
        /// Why.
        #[source]
        source: async_nats::Error,
    },
}

/// The stream configuration reco wants for `config` under `subjects`.
pub fn stream_config(config: &EventsLogConfig, subjects: &Subjects) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        description: Some("reco member events, recorded for training".into()),
        // The public subject (a node alone) and the partitioned one (a
        // cluster: the server maps publishes before the stream sees them).
        subjects: vec![subjects.events_wildcard(), subjects.p_events_wildcard()],
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(config.max_age_secs),
        max_bytes: i64::try_from(config.max_bytes).unwrap_or(i64::MAX),
        max_message_size: i32::try_from(config.max_msg_bytes).unwrap_or(i32::MAX),
        ..Default::default()
    }
}

/// Creates the event stream, or reuses an existing one that records the same
/// subject (updating its retention limits to the configured ones).
///
/// # Errors
/// [`EventLogError`] when JetStream is unavailable or the name is taken by a
/// stream over other subjects.
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: &EventsLogConfig,
    subjects: &Subjects,
) -> Result<stream::Info, EventLogError> {
    ensure_recording_stream(js, stream_config(config, subjects), "events_log.stream").await
}

/// Creates the recording stream `wanted`, or reuses an existing one of its
/// name whose subjects are among the wanted ones (a stream of an earlier
/// version gains the new subjects), updating its subjects and limits (age,
/// bytes, message size) to the wanted ones. `key` names the config key of
/// the stream's name, for the error. The event log and the counterfactual
/// log are recorded so.
///
/// # Errors
/// [`EventLogError`] when JetStream is unavailable or the name is taken by a
/// stream over other subjects.
pub async fn ensure_recording_stream(
    js: &jetstream::Context,
    wanted: stream::Config,
    key: &'static str,
) -> Result<stream::Info, EventLogError> {
    let name = wanted.name.clone();
    let create = |source: async_nats::Error| EventLogError::Create {
        stream: name.clone(),
        source,
    };
    let mut stream = js
        .get_or_create_stream(wanted.clone())
        .await
        .map_err(|e| create(e.into()))?;
    let info = stream.info().await.map_err(|e| create(e.into()))?.clone();
    let existing = &info.config;
    let older = existing
        .subjects
        .iter()
        .all(|s| wanted.subjects.contains(s));
    if !older {
        return Err(EventLogError::Incompatible {
            stream: name.clone(),
            found: existing.subjects.clone(),
            wanted: wanted.subjects.join(", "),
            key,
        });
    }
    if existing.subjects != wanted.subjects
        || existing.max_age != wanted.max_age
        || existing.max_bytes != wanted.max_bytes
        || existing.max_message_size != wanted.max_message_size
    {
        let updated = stream::Config {
            subjects: wanted.subjects.clone(),
            max_age: wanted.max_age,
            max_bytes: wanted.max_bytes,
            max_message_size: wanted.max_message_size,
            ..existing.clone()
        };
        return js
            .update_stream(updated)
            .await
            .map_err(|e| create(e.into()));
    }
    Ok(info)
}

/// At node start-up: makes sure events are recorded when
/// `events_log.enabled`. A failure is logged (ERROR: events are not being
/// kept) and counted, and the node serves anyway: answering requests matters
/// more than recording them.
pub async fn start_recording(
    client: &async_nats::Client,
    config: &EventsLogConfig,
    subjects: &Subjects,
) {
    if !config.enabled {
        tracing::info!("Event log disabled (events_log.enabled = false): events are not recorded.");
        return;
    }
    let js = jetstream::new(client.clone());
    match ensure_stream(&js, config, subjects).await {
        Ok(info) => tracing::info!(
            stream = %config.stream,
            stored = info.state.messages,
            "Recording events in JetStream."
        ),
        Err(error) => {
            metrics::counter!(nm::EVENTS_LOG_SETUP_FAILED_TOTAL).increment(1);
            tracing::error!(%error, "Events are not recorded for training.");
        }
    }
}

/// Recording of ingested events: at start-up a node creates (or reuses) a
/// JetStream stream over `<prefix>.events.*`, so the server itself keeps every
/// event producers publish, with no extra work on the ingress path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsLogConfig {
    /// Record events. Off, the node serves as before but `reco train
    /// --from-stream` has nothing new to learn from.
    pub enabled: bool,
    /// Name of the JetStream stream (letters, digits, '-', '_').
    pub stream: String,
    /// Events older than this are dropped by the server, in seconds: the
    /// training window.
    pub max_age_secs: u64,
    /// The stream's size cap in bytes; beyond it the oldest events go.
    pub max_bytes: u64,
    /// Largest message the stream records, in bytes (the server refuses to
    /// store a larger one; subscribers still receive it). Junk of up to the
    /// server's own limit would otherwise push real history out of
    /// `max_bytes`: keep it at the node's `limits.max_payload_bytes`, above
    /// which reco rejects an event anyway.
    pub max_msg_bytes: u32,
}

impl Default for EventsLogConfig {
    fn default() -> Self {
        EventsLogConfig {
            enabled: true,
            stream: "RECO_EVENTS".into(),
            max_age_secs: 30 * 24 * 3600,
            max_bytes: 1 << 30,
            max_msg_bytes: 64 * 1024,
        }
    }
}

impl EventsLogConfig {
    /// Checks every value against its range.
    ///
    /// # Errors
    /// [`OutOfRange`] naming the first key out of range.
    pub fn validate(&self) -> Result<(), OutOfRange> {
        check_name("events_log.stream", &self.stream)?;
        range(
            "events_log.max_age_secs",
            self.max_age_secs,
            60,
            10 * 365 * 24 * 3600,
            "60 s to 10 years",
        )?;
        range(
            "events_log.max_bytes",
            self.max_bytes,
            1 << 20,
            1 << 50,
            "1 MiB to 1 PiB",
        )?;
        range(
            "events_log.max_msg_bytes",
            u64::from(self.max_msg_bytes),
            256,
            64 << 20,
            "256 B to 64 MiB",
        )
    }
}

/// What reading the event log produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoggedInteractions {
    /// One interaction per distinct (member, item) with an event of
    /// positive weight; `value` is its weight
    /// ([`reco_models::confidence::event_weight`], the strongest of its
    /// events: [`reco_models::confidence::combine`]), `at_ms` the time of
    /// its first event. Train with
    /// [`crate::train::RatingValues::Weights`].
    pub ratings: Vec<Rating>,
    /// Events read.
    pub events: u64,
    /// Records that did not decode (or named another member than their
    /// subject); skipped.
    pub bad: u64,
    /// Valid events of weight 0 (impressions): not interactions.
    pub ignored: u64,
}

/// The training weight of an event: the one weighting serving uses too
/// ([`reco_models::confidence::event_weight`]); 0 is not an interaction.
pub fn event_weight(event: &Event) -> f32 {
    reco_models::confidence::event_weight(event.kind, event.value)
}

/// Reads every event stored in `stream` when the call starts (events arriving
/// meanwhile are left for the next run) and turns every event of positive
/// weight into an interaction (weighted as serving weighs it, see
/// [`event_weight`]). Bad records are counted and skipped.
///
/// # Errors
/// [`EventLogError::Read`] when the stream is missing or the server stops
/// answering.
pub async fn read_interactions(
    js: &jetstream::Context,
    stream_name: &str,
    subjects: &Subjects,
    max_payload: usize,
) -> Result<LoggedInteractions, EventLogError> {
    let read = |source: async_nats::Error| EventLogError::Read {
        stream: stream_name.to_owned(),
        source,
    };
    let mut stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| read(e.into()))?;
    let state = stream
        .info()
        .await
        .map_err(|e| read(e.into()))?
        .state
        .clone();
    let last = state.last_sequence;
    let mut out = LoggedInteractions::default();
    // An empty stream (never written, or every event aged out or purged)
    // has nothing to deliver: do not wait for it.
    if state.messages == 0 {
        return Ok(out);
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            description: Some("reco train --from-stream".into()),
            ..Default::default()
        })
        .await
        .map_err(|e| read(e.into()))?;
    let mut messages = consumer.messages().await.map_err(|e| read(e.into()))?;
    let mut seen: HashMap<(MemberId, ItemId), usize> = HashMap::new();
    loop {
        let next = tokio::time::timeout(READ_STALL_TIMEOUT, messages.next())
            .await
            .map_err(|e| read(Box::new(e)))?;
        let Some(message) = next else { break };
        let message = message.map_err(|e| read(e.into()))?;
        let (sequence, pending) = match message.info() {
            Ok(info) => (info.stream_sequence, info.pending),
            Err(e) => return Err(read(e)),
        };
        out.events += 1;
        let event = subjects
            .member_of_event(&message.subject)
            .or_else(|_| {
                subjects
                    .member_of_p_event(&message.subject)
                    .map(|(_, member)| member)
            })
            .ok()
            .and_then(|member| {
                reco_messages::decode_event(&message.payload, member, max_payload).ok()
            });
        match event {
            None => out.bad += 1,
            Some(event) if event_weight(&event) <= 0.0 => out.ignored += 1,
            Some(event) => add_interaction(&mut out.ratings, &mut seen, &event),
        }
        if sequence >= last || pending == 0 {
            break;
        }
    }
    metrics::counter!(nm::TRAIN_STREAM_EVENTS_TOTAL, "outcome" => "bad").increment(out.bad);
    metrics::counter!(nm::TRAIN_STREAM_EVENTS_TOTAL, "outcome" => "ignored").increment(out.ignored);
    metrics::counter!(nm::TRAIN_STREAM_EVENTS_TOTAL, "outcome" => "used")
        .increment(out.events - out.bad - out.ignored);
    Ok(out)
}

/// Adds `event` to `ratings` (the training side of the one weighting): a
/// new (member, item) becomes an interaction of the event's weight; a known
/// one (its position in `ratings` is in `seen`) keeps the strongest weight.
/// Events of weight 0 are the caller's to skip.
pub fn add_interaction(
    ratings: &mut Vec<Rating>,
    seen: &mut HashMap<(MemberId, ItemId), usize>,
    event: &Event,
) {
    let weight = event_weight(event);
    match seen.entry((event.member, event.item)) {
        Entry::Occupied(at) => {
            let r = &mut ratings[*at.get()];
            r.value = reco_models::confidence::combine(r.value, weight);
        }
        Entry::Vacant(slot) => {
            slot.insert(ratings.len());
            ratings.push(Rating {
                member: event.member,
                item: event.item,
                value: weight,
                at_ms: event.at_ms.unwrap_or(0),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_messages::EventKind;

    fn event(item: u64, kind: EventKind, value: f32) -> Event {
        Event {
            member: MemberId(7),
            item: ItemId(item),
            kind,
            value,
            at_ms: Some(1),
            device: None,
        }
    }

    #[test]
    fn events_become_interactions_of_their_weight_the_strongest_per_item() {
        let mut ratings = Vec::new();
        let mut seen = HashMap::new();
        for e in [
            event(1, EventKind::Play, 0.0),
            event(1, EventKind::Stop, 1200.0),
            event(2, EventKind::Click, 0.0),
            event(1, EventKind::Click, 0.0),
        ] {
            add_interaction(&mut ratings, &mut seen, &e);
        }
        let weights: Vec<(u64, f32)> = ratings.iter().map(|r| (r.item.0, r.value)).collect();
        assert_eq!(weights, vec![(1, 1.0), (2, 0.25)]);
        assert_eq!(event_weight(&event(3, EventKind::Impression, 0.0)), 0.0);
    }

    #[test]
    fn the_stream_records_the_events_subject_with_the_configured_limits() {
        let config = EventsLogConfig {
            stream: "EV".into(),
            max_age_secs: 3600,
            max_bytes: 1 << 20,
            ..EventsLogConfig::default()
        };
        let c = stream_config(&config, &Subjects::new("prod.reco").unwrap());
        assert_eq!(c.name, "EV");
        assert_eq!(
            c.subjects,
            vec![
                "prod.reco.events.*".to_owned(),
                "prod.reco.p.events.*.*".to_owned()
            ]
        );
        assert_eq!(c.max_age, Duration::from_secs(3600));
        assert_eq!(c.max_bytes, 1 << 20);
    }
}
