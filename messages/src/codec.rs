//! MessagePack encoding and validated decoding of wire payloads.
//!
//! Encoding always writes maps with field names (`rmp_serde::to_vec_named`);
//! decoding accepts that form, the compact array form, and unknown extra
//! fields. Decoding never panics, whatever the bytes (a property test pins
//! this), and every failure says what was wrong.

use crate::ids::MemberId;
use crate::row::Row;
use crate::wire::{Event, EventKind, RecommendRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// Largest `k` a caller may ask for.
pub const MAX_K: u32 = 500;
/// `k` when the caller gives none.
pub const DEFAULT_K: u32 = 10;
/// Longest deadline a caller may ask for, in milliseconds.
pub const MAX_DEADLINE_MS: u64 = 60_000;
/// Longest free-text context field (`row`, `device`), in bytes.
pub const MAX_TEXT_LEN: usize = 256;
/// Largest value accepted for a play or stop (seconds watched): a week.
pub const MAX_WATCH_SECONDS: f32 = 7.0 * 24.0 * 3600.0;
/// Largest rating in stars.
pub const MAX_STARS: f32 = 5.0;

/// Why a payload was rejected.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The payload is larger than the limit.
    #[error("payload of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The bytes are not a MessagePack value of the expected shape.
    #[error("payload is not a valid MessagePack {what}: {source}")]
    Malformed {
        /// The type that was expected.
        what: &'static str,
        /// The decoder's complaint.
        #[source]
        source: rmp_serde::decode::Error,
    },
    /// The payload decoded but a value is out of range.
    #[error("{0}")]
    Invalid(String),
}

impl DecodeError {
    /// The bounded label under which this rejection is counted.
    pub fn label(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Malformed { .. } => "malformed",
            DecodeError::Invalid(_) => "invalid",
        }
    }
}

/// Encodes a wire value as a MessagePack map with field names.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own wire types into a Vec cannot fail: they have no
    // maps with non-string keys and no custom serialisers that error.
    rmp_serde::to_vec_named(value).unwrap_or_default()
}

fn decode_raw<T: DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
    what: &'static str,
) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    rmp_serde::from_slice(bytes).map_err(|source| DecodeError::Malformed { what, source })
}

/// Decodes and validates an event that arrived on the subject of `member`.
pub fn decode_event(bytes: &[u8], member: MemberId, limit: usize) -> Result<Event, DecodeError> {
    let event: Event = decode_raw(bytes, limit, "event")?;
    validate_event(&event, member)?;
    Ok(event)
}

/// Checks the values of an event against the contract.
pub fn validate_event(event: &Event, member: MemberId) -> Result<(), DecodeError> {
    if event.member != member {
        return Err(DecodeError::Invalid(format!(
            "event names member {} but was published on the subject of member {member}",
            event.member
        )));
    }
    if !event.value.is_finite() || event.value < 0.0 {
        return Err(DecodeError::Invalid(format!(
            "event value {} must be a finite number >= 0",
            event.value
        )));
    }
    match event.kind {
        EventKind::Rate if event.value > MAX_STARS => {
            return Err(DecodeError::Invalid(format!(
                "rating of {} stars is above the maximum of {MAX_STARS}",
                event.value
            )))
        }
        EventKind::Play | EventKind::Stop if event.value > MAX_WATCH_SECONDS => {
            return Err(DecodeError::Invalid(format!(
                "{} of {} seconds is longer than a week",
                event.kind, event.value
            )))
        }
        _ => {}
    }
    if event
        .device
        .as_ref()
        .is_some_and(|d| d.len() > MAX_TEXT_LEN)
    {
        return Err(DecodeError::Invalid(format!(
            "device is longer than {MAX_TEXT_LEN} bytes"
        )));
    }
    Ok(())
}

/// A recommendation request with every default applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidRequest {
    /// How many items to return, 1..=500.
    pub k: u32,
    /// How long the caller waits, if it said.
    pub deadline_ms: Option<u64>,
    /// Leave out seen items.
    pub exclude_seen: bool,
    /// The row (gallery) being composed; `Row::Top` when absent.
    pub row: Row,
    /// Context: the device asking.
    pub device: Option<String>,
    /// Send each item's title and genres.
    pub details: bool,
}

/// Decodes and validates a recommendation request. An empty payload is the
/// request with every default.
pub fn decode_request(bytes: &[u8], limit: usize) -> Result<ValidRequest, DecodeError> {
    let request: RecommendRequest = if bytes.is_empty() {
        RecommendRequest::default()
    } else {
        decode_raw(bytes, limit, "recommend request")?
    };
    validate_request(request)
}

/// Checks a request's values and applies the defaults.
pub fn validate_request(request: RecommendRequest) -> Result<ValidRequest, DecodeError> {
    let k = request.k.unwrap_or(DEFAULT_K);
    if k == 0 || k > MAX_K {
        return Err(DecodeError::Invalid(format!(
            "k = {k} is out of range: ask for 1 to {MAX_K} items"
        )));
    }
    if let Some(ms) = request.deadline_ms {
        if ms == 0 || ms > MAX_DEADLINE_MS {
            return Err(DecodeError::Invalid(format!(
                "deadline_ms = {ms} is out of range: use 1 to {MAX_DEADLINE_MS}"
            )));
        }
    }
    for (name, text) in [("row", &request.row), ("device", &request.device)] {
        if text.as_ref().is_some_and(|t| t.len() > MAX_TEXT_LEN) {
            return Err(DecodeError::Invalid(format!(
                "{name} is longer than {MAX_TEXT_LEN} bytes"
            )));
        }
    }
    let row = Row::parse(request.row.as_deref()).map_err(DecodeError::Invalid)?;
    Ok(ValidRequest {
        k,
        deadline_ms: request.deadline_ms,
        exclude_seen: request.exclude_seen.unwrap_or(true),
        row,
        device: request.device,
        details: request.details.unwrap_or(false),
    })
}

/// Decodes any wire value with only the size limit applied (for clients).
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, DecodeError> {
    decode_raw(bytes, limit, std::any::type_name::<T>())
}
