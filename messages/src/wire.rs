//! The payloads of the public wire contract.
//!
//! Every type here is what producers and callers in any language put on NATS
//! as a MessagePack map with field names. Optional fields may be left out;
//! unknown extra fields are ignored so that producers can add fields before
//! reco reads them. See `DESIGN.md` § Wire contract.

use crate::ids::{ItemId, MemberId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a member did. The kind decides how much the event says about taste.
///
/// On the wire it is the kind's name as a string; the variant's position
/// (an integer) is refused (see [`crate::strict`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The member started or kept watching; `value` is seconds watched.
    Play,
    /// The member stopped watching; `value` is seconds watched in total.
    Stop,
    /// The member opened the item's page.
    Click,
    /// The item was shown to the member (a weak, often negative, signal).
    Impression,
    /// The member rated the item; `value` is stars (0.5 to 5).
    Rate,
    /// The member added the item to their list.
    ListAdd,
}

impl EventKind {
    /// Every kind, in wire order: handy for tests and metric label sets.
    pub const ALL: [EventKind; 6] = [
        EventKind::Play,
        EventKind::Stop,
        EventKind::Click,
        EventKind::Impression,
        EventKind::Rate,
        EventKind::ListAdd,
    ];

    /// The wire name of the kind (also a bounded metric label value).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Play => "play",
            EventKind::Stop => "stop",
            EventKind::Click => "click",
            EventKind::Impression => "impression",
            EventKind::Rate => "rate",
            EventKind::ListAdd => "list_add",
        }
    }

    /// Whether the member consumed the item: such items are "seen" and left
    /// out of recommendations unless the caller asks otherwise.
    pub fn marks_seen(self) -> bool {
        matches!(self, EventKind::Play | EventKind::Stop | EventKind::Rate)
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;

    /// Parses a wire name (`play`, `list_add`, …).
    fn from_str(name: &str) -> Result<Self, String> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown event kind {name:?}: use one of {}",
                    names.join(", ")
                )
            })
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = crate::strict::string(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member event, published on `<prefix>.events.<member>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The member; must match the member named by the subject.
    pub member: MemberId,
    /// The item the event is about.
    pub item: ItemId,
    /// What happened.
    pub kind: EventKind,
    /// Seconds watched for `play`/`stop`, stars for `rate`; 0 otherwise.
    #[serde(default)]
    pub value: f32,
    /// Producer time in milliseconds since the Unix epoch, when known.
    #[serde(default)]
    pub at_ms: Option<u64>,
    /// The device the event came from, when known.
    #[serde(default, deserialize_with = "crate::strict::option_string")]
    pub device: Option<String>,
}

/// A request for recommendations, sent as a NATS request on
/// `<prefix>.recommend.<member>`. Every field is optional; an empty payload
/// asks for the defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecommendRequest {
    /// How many items to return (default 10, at most 500).
    #[serde(default)]
    pub k: Option<u32>,
    /// The row of the page being composed (context, free text).
    #[serde(default, deserialize_with = "crate::strict::option_string")]
    pub row: Option<String>,
    /// The device asking (context, free text).
    #[serde(default, deserialize_with = "crate::strict::option_string")]
    pub device: Option<String>,
    /// How long the caller will wait, in milliseconds (default from config).
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// Leave out items the member has already watched (default true).
    #[serde(default)]
    pub exclude_seen: Option<bool>,
    /// Also send each item's title and genres (`details` of the reply;
    /// default false).
    #[serde(default)]
    pub details: Option<bool>,
}

/// One recommended item with its score (higher is better; scores of
/// different sources are not comparable).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoredItem {
    /// The item.
    pub item: ItemId,
    /// Its score under the source that produced the list.
    pub score: f32,
}

/// Where the items of a reply came from: callers use it to judge freshness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Scored online by the model from the member's recent events.
    Model,
    /// The member's list refreshed nearline after an important event.
    Nearline,
    /// The member's list computed offline by the last batch job.
    Precomputed,
    /// The most popular items (the fallback of last resort).
    Popular,
    /// The near-real-time trending list (`row: trending`).
    Trending,
    /// Chosen by the billboard's bandit over near-real-time take rates
    /// (`row: billboard`).
    Billboard,
    /// The member's own recent events, read as they are (the `continue`
    /// row: what it started and did not finish).
    Recent,
}

impl Source {
    /// The wire name (also a bounded metric label value).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Model => "model",
            Source::Nearline => "nearline",
            Source::Precomputed => "precomputed",
            Source::Popular => "popular",
            Source::Trending => "trending",
            Source::Billboard => "billboard",
            Source::Recent => "recent",
        }
    }
}

/// Why a fallback answered instead of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The model did not answer before the reply deadline.
    Deadline,
    /// The model pool (or the member's shard) had no room for the request.
    Overloaded,
    /// No model is loaded or its workers are down.
    ModelUnavailable,
    /// The member has no events the model knows about yet.
    ColdStart,
    /// Asked on the fallback subject: the member's partition had no owner
    /// ready to answer (a node failed or the partition is moving).
    Failover,
    /// The breaker in front of the model is open (the model kept missing
    /// its deadline): the fallback answered at once.
    ModelSkipped,
    /// A `trending` or `billboard` row had no usable aggregate snapshot
    /// (none loaded yet, or older than the node's `aggregates.max_age_ms`).
    AggregatesUnavailable,
}

impl Reason {
    /// The wire name (also a bounded metric label value).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Deadline => "deadline",
            Reason::Overloaded => "overloaded",
            Reason::ModelUnavailable => "model_unavailable",
            Reason::ColdStart => "cold_start",
            Reason::Failover => "failover",
            Reason::ModelSkipped => "model_skipped",
            Reason::AggregatesUnavailable => "aggregates_unavailable",
        }
    }
}

/// The reply to a [`RecommendRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendations {
    /// The member the list is for.
    pub member: MemberId,
    /// The ranked items, best first.
    pub items: Vec<ScoredItem>,
    /// Where the items came from.
    pub source: Source,
    /// The version of the model that scored the items, or that computed
    /// the nearline list; for precomputed and popular answers, the version
    /// of the batch run that produced the lists.
    #[serde(default)]
    pub model_version: Option<String>,
    /// True when a fallback answered instead of the model.
    #[serde(default)]
    pub degraded: bool,
    /// Why a fallback answered; `None` when the model did.
    #[serde(default)]
    pub reason: Option<Reason>,
    /// Time from receipt of the request to the reply, in microseconds.
    #[serde(default)]
    pub served_us: u64,
    /// The version of the precomputed lists in service when the reply was
    /// made (nil when none are loaded). Provenance fields, this and the
    /// ones below, are always written (nil when unknown) and optional when
    /// read: replies of older nodes decode without them.
    #[serde(default)]
    pub lists_version: Option<String>,
    /// How old the list was, in ms: for a nearline answer since it was
    /// computed, for a precomputed or popular answer since the batch run
    /// computed the lists in service (nil when unknown: lists written
    /// before they carried their time); nil for model answers.
    #[serde(default)]
    pub list_age_ms: Option<u64>,
    /// How many of the member's recent events (within the node's horizon)
    /// the answer used: the model's and nearline's fold-in; nil for
    /// answers that use none (precomputed, popular).
    #[serde(default)]
    pub signals: Option<u32>,
    /// Age of the newest of those events, in ms; nil when there is none.
    #[serde(default)]
    pub newest_signal_age_ms: Option<u64>,
    /// For `trending` and `billboard` answers, the version of the
    /// near-real-time aggregate snapshot they were read from; nil for
    /// other sources.
    #[serde(default)]
    pub aggregates_version: Option<String>,
    /// The row this reply answers, in its wire form (`top`,
    /// `genre:Comedy`, `because:260`, …); nil from older nodes.
    #[serde(default)]
    pub row: Option<String>,
    /// Title and genres of the items, when the request asked for
    /// `details` and the node has item data (items without data are left
    /// out); nil otherwise.
    #[serde(default)]
    pub details: Option<Vec<ItemDetails>>,
    /// True when this is the member's previous model answer served again
    /// without a scan: no event of the member, no model swap and the same
    /// request shape (`k`, `row`, `exclude_seen`) since it was computed, at
    /// most `sessions.reuse_max_age_ms` ago. `source` stays `model`.
    #[serde(default)]
    pub reused: bool,
}

/// What a reply says about one of its items when asked for `details`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemDetails {
    /// The item.
    pub item: ItemId,
    /// Its title, e.g. `Star Wars: Episode IV - A New Hope (1977)`.
    pub title: String,
    /// Its genres (may be empty).
    #[serde(default)]
    pub genres: Vec<String>,
}

/// Machine-readable class of an [`ErrorReply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request could not be decoded or has invalid values.
    BadRequest,
    /// The payload is larger than the configured limit.
    TooLarge,
    /// The node is shutting down and takes no new work.
    Unavailable,
    /// Something failed inside reco; the message says what.
    Internal,
}

impl ErrorCode {
    /// The wire name (also a bounded metric label value).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The body of an [`ErrorReply`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The class of error.
    pub code: ErrorCode,
    /// What was wrong and what to do, for a person.
    pub message: String,
}

/// The reply to a request that could not be served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong.
    pub error: ErrorBody,
}

impl ErrorReply {
    /// Builds an error reply.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply {
            error: ErrorBody {
                code,
                message: message.into(),
            },
        }
    }
}

/// A record of the counterfactual log, published on
/// `<prefix>.counterfactual`: the model answered a request after the
/// fallback had already replied, and this is what it would have said beside
/// what was served. Only a sampled share of late answers is published
/// (`counterfactual.sample_rate`); the node records them in a JetStream
/// stream. New fields are optional when read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Counterfactual {
    /// The member the request was for.
    pub member: MemberId,
    /// The request's id within the node that served it (the `request_id`
    /// of its trace span).
    pub request_id: u64,
    /// The node that served it.
    #[serde(default)]
    pub node: String,
    /// When the late answer arrived, ms since the Unix epoch.
    pub at_ms: u64,
    /// Items asked for.
    pub k: u32,
    /// The late list, best first (what the caller would have got had it
    /// waited).
    pub late_items: Vec<ScoredItem>,
    /// Where the late list came from (`model`).
    pub late_source: Source,
    /// The version of the model that scored the late list.
    #[serde(default)]
    pub late_model_version: Option<String>,
    /// What was served instead, best first.
    pub served_items: Vec<ScoredItem>,
    /// Where the served list came from (`nearline`, `precomputed`, `popular`).
    pub served_source: Source,
    /// Why the fallback answered (`deadline`).
    pub reason: Reason,
    /// The version of the model or batch run behind the served list.
    #[serde(default)]
    pub served_version: Option<String>,
    /// How long after the served reply the model answered, in ms.
    pub late_ms: u64,
}

/// A reply on a recommend subject: callers decode into this to tell a list
/// from an error without looking at the bytes first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecommendReply {
    /// The request failed.
    Error(ErrorReply),
    /// The list.
    Ok(Recommendations),
}
