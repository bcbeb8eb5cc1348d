//! Near-real-time aggregates over the event stream: per-title windowed
//! counts, take rates and a trending list — one pure function for the
//! streaming job and for batch.
//!
//! The Netflix pattern (Spark Streaming's `mapWithState`): keyed counts kept
//! as state over the stream, the same function reusable in batch mode, and
//! checkpoints so a failure reprocesses little. Here that function is
//! [`AggregateState::apply`]: it folds a batch of [`Observed`] events
//! (stream sequence, event, time) into a state. The streaming job
//! (`reco-streaming`) applies each batch it reads; a batch computation is the
//! same function applied to [`AggregateState::new`] with every event at once
//! ([`AggregateState::batch`]). Nothing here does I/O.
//!
//! # Exactly-once by sequence
//! The state remembers the last stream sequence applied and ignores anything
//! at or below it. A job that restarts from a checkpoint (state + its last
//! sequence) and re-reads the stream from there therefore double-counts
//! nothing and loses nothing, however far past the checkpoint it had got
//! before it died.
//!
//! # What is counted (per title)
//! | counter | rule |
//! |---|---|
//! | `impressions` | `impression` events |
//! | `plays` | `play` events: a viewing starts with one (a "take") |
//! | `completed` | `stop` events whose `value` (seconds watched in total) is ≥ [`AggregateParams::completed_seconds`] (default 20 min: past any trailer or sampling, most of an episode) |
//! | `play_ms` | sum of `stop` values, in ms: the stop carries the viewing's total, so a viewing is summed once however many `play` events it had |
//! | `list_adds` | `list_add` events |
//! | `clicks` | `click` events |
//!
//! `rate` events advance the sequence but count nothing. **Take rate** =
//! plays / impressions ([`Counts::take_rate`]; `None` without impressions).
//!
//! # Windows: rings of tumbling buckets
//! - **hour**: 60 one-minute buckets; **day**: 24 one-hour buckets;
//!   **total**: since the title was first seen.
//! - Why tumbling rings rather than exact sliding windows: a bucket is one
//!   counter set, so memory per title is bounded (≤ 84 bucket sets) and an
//!   event costs two map updates; a true sliding window would keep every
//!   event. The price is granularity: "last hour" covers the current minute
//!   and the 59 before it, i.e. between 59 and 60 minutes.
//! - Time is what the caller gives with each event. The streaming job uses
//!   the server's receipt time of the stream message (producers' `at_ms`
//!   may be anything), and a batch over the stream reads the same times, so
//!   both agree.
//! - The state's clock is its **watermark**: the latest event time applied.
//!   Buckets that fall out of the day ring behind the watermark are dropped;
//!   an event older than the day ring counts in `total` only (and in
//!   [`AggregateState::late_events`]). Every decision depends only on the
//!   events applied and their order, never on the wall clock, so any split
//!   of the same events into batches gives the same state (a property test
//!   pins it). Views ([`AggregateState::window`], [`AggregateState::trending`])
//!   take the `now` to read at.
//!
//! # Segments
//! Day-window counts are also kept per device (the event's `device`), for the
//! first [`AggregateParams::max_segments`] distinct devices; later ones are
//! pooled under [`OTHER_SEGMENT`], so a producer sending random device
//! strings costs bounded memory.
//!
//! # Trending
//! Titles rising fastest: score = (plays in the last hour + α) / (mean
//! plays per hour over the day + α), α = [`TRENDING_PSEUDOCOUNT`]. A title
//! playing at its daily pace scores ≈ 1; one that took off this hour scores
//! far above. The pseudocount keeps a title going from 0 to 1 play from
//! outranking a real surge, and titles with fewer than
//! [`AggregateParams::trending_min_plays`] plays in the hour are left out.

use crate::artifact::{self, ArtifactError};
use reco_messages::{Event, EventKind, ItemId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Width of a bucket of the hour window, in ms.
pub const MINUTE_MS: u64 = 60_000;
/// Width of a bucket of the day window, in ms.
pub const HOUR_MS: u64 = 3_600_000;
/// Buckets in the hour window (one-minute buckets).
pub const HOUR_BUCKETS: u64 = 60;
/// Buckets in the day window (one-hour buckets).
pub const DAY_BUCKETS: u64 = 24;
/// Smoothing of the trending score, in plays per hour (see the module docs).
pub const TRENDING_PSEUDOCOUNT: f64 = 5.0;
/// The segment that pools devices beyond [`AggregateParams::max_segments`].
pub const OTHER_SEGMENT: &str = "other";

const STATE_MAGIC: &[u8; 8] = b"RECOAGS\0";
const SNAPSHOT_MAGIC: &[u8; 8] = b"RECOAGN\0";

/// Counters of one title over one window (or one bucket).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Times the title was shown.
    pub impressions: u64,
    /// Viewings started.
    pub plays: u64,
    /// Viewings that lasted at least the completion threshold.
    pub completed: u64,
    /// Milliseconds watched (from `stop` events). Integer, so sums are exact
    /// in any order.
    pub play_ms: u64,
    /// Additions to members' lists.
    pub list_adds: u64,
    /// Title pages opened.
    pub clicks: u64,
}

impl Counts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counts) {
        self.impressions += other.impressions;
        self.plays += other.plays;
        self.completed += other.completed;
        self.play_ms += other.play_ms;
        self.list_adds += other.list_adds;
        self.clicks += other.clicks;
    }

    /// Plays per impression; `None` before the first impression. Plays
    /// without an impression (search, a link) can push it above 1.
    pub fn take_rate(&self) -> Option<f64> {
        (self.impressions > 0).then(|| self.plays as f64 / self.impressions as f64)
    }

    /// Seconds watched.
    pub fn play_seconds(&self) -> f64 {
        self.play_ms as f64 / 1000.0
    }

    /// Whether every counter is zero.
    pub fn is_empty(&self) -> bool {
        *self == Counts::default()
    }

    /// What one event adds, or `None` for a kind that counts nothing.
    fn of(event: &Event, params: &AggregateParams) -> Option<Counts> {
        let mut c = Counts::default();
        match event.kind {
            EventKind::Impression => c.impressions = 1,
            EventKind::Play => c.plays = 1,
            EventKind::Stop => {
                let seconds = if event.value.is_finite() {
                    event.value.max(0.0)
                } else {
                    0.0
                };
                c.play_ms = (f64::from(seconds) * 1000.0).round() as u64;
                c.completed = u64::from(seconds >= params.completed_seconds);
            }
            EventKind::ListAdd => c.list_adds = 1,
            EventKind::Click => c.clicks = 1,
            EventKind::Rate => return None,
        }
        Some(c)
    }
}

/// The window a view reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// The current minute and the 59 before it.
    Hour,
    /// The current hour and the 23 before it.
    Day,
    /// Everything since the title was first seen.
    Total,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 3] = [Window::Hour, Window::Day, Window::Total];

    /// The name (also a bounded metric label value).
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Total => "total",
        }
    }
}

/// The rules of the aggregation. Stored inside the state, so a checkpoint
/// is resumed with the rules it was computed under.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregateParams {
    /// A `stop` with at least this many seconds watched is a completed play.
    pub completed_seconds: f32,
    /// Titles tracked at most; events of further titles are counted in
    /// [`AggregateState::overflow_events`] and otherwise ignored (bounded
    /// memory whatever item ids producers send).
    pub max_titles: usize,
    /// Distinct devices tracked as segments; later ones pool under
    /// [`OTHER_SEGMENT`].
    pub max_segments: usize,
    /// Plays in the last hour a title needs to be trending.
    pub trending_min_plays: u64,
}

impl Default for AggregateParams {
    fn default() -> Self {
        AggregateParams {
            completed_seconds: 1200.0,
            max_titles: 1_000_000,
            max_segments: 32,
            trending_min_plays: 3,
        }
    }
}

/// One event as the aggregation sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The stream sequence of the event (strictly increasing in a batch).
    pub sequence: u64,
    /// The event.
    pub event: Event,
    /// When it happened for the windows, ms since the Unix epoch.
    pub time_ms: u64,
}

/// What one [`AggregateState::apply`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Events folded in.
    pub applied: u64,
    /// Events at or below the state's last sequence: already counted,
    /// ignored.
    pub duplicates: u64,
    /// Events older than the day ring (counted in `total` only).
    pub late: u64,
    /// Events of titles beyond `max_titles` (ignored).
    pub overflow: u64,
}

/// The state of one title.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct TitleState {
    first_seen_ms: u64,
    total: Counts,
    /// Minute index → counts, for the hour window.
    minutes: BTreeMap<u64, Counts>,
    /// Hour index → counts, for the day window.
    hours: BTreeMap<u64, Counts>,
    /// Segment index → hour index → counts, for the day window.
    segments: BTreeMap<u16, BTreeMap<u64, Counts>>,
}

impl TitleState {
    /// Drops the buckets that fell out of the rings behind `watermark_ms`.
    fn prune(&mut self, watermark_ms: u64) {
        let (min_minute, min_hour) = horizons(watermark_ms);
        self.minutes = self.minutes.split_off(&min_minute);
        self.hours = self.hours.split_off(&min_hour);
        for hours in self.segments.values_mut() {
            *hours = hours.split_off(&min_hour);
        }
        self.segments.retain(|_, hours| !hours.is_empty());
    }
}

/// The oldest minute and hour indices still inside the rings at `time_ms`.
fn horizons(time_ms: u64) -> (u64, u64) {
    (
        (time_ms / MINUTE_MS).saturating_sub(HOUR_BUCKETS - 1),
        (time_ms / HOUR_MS).saturating_sub(DAY_BUCKETS - 1),
    )
}

fn sum_from(buckets: &BTreeMap<u64, Counts>, from: u64, to: u64) -> Counts {
    let mut out = Counts::default();
    for counts in buckets.range(from..=to).map(|(_, c)| c) {
        out.add(counts);
    }
    out
}

/// Per-title windowed counts over the event stream, with the last stream
/// sequence applied (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregateState {
    params: AggregateParams,
    last_sequence: u64,
    watermark_ms: u64,
    events_applied: u64,
    late_events: u64,
    overflow_events: u64,
    segments: Vec<String>,
    titles: BTreeMap<ItemId, TitleState>,
}

impl AggregateState {
    /// An empty state: no title seen, sequence 0.
    pub fn new(params: AggregateParams) -> Self {
        AggregateState {
            params,
            last_sequence: 0,
            watermark_ms: 0,
            events_applied: 0,
            late_events: 0,
            overflow_events: 0,
            segments: Vec::new(),
            titles: BTreeMap::new(),
        }
    }

    /// The batch computation: [`apply`](Self::apply) on an empty state.
    pub fn batch(params: AggregateParams, events: &[Observed]) -> Self {
        let mut state = AggregateState::new(params);
        state.apply(events);
        state
    }

    /// Folds `batch` into the state, in order. Events at or below the last
    /// sequence applied are ignored (exactly-once by sequence). The one
    /// function of both the streaming job and batch.
    pub fn apply(&mut self, batch: &[Observed]) -> Applied {
        let mut out = Applied::default();
        for observed in batch {
            if observed.sequence <= self.last_sequence {
                out.duplicates += 1;
                continue;
            }
            self.last_sequence = observed.sequence;
            out.applied += 1;
            self.events_applied += 1;
            self.advance_watermark(observed.time_ms);
            let Some(delta) = Counts::of(&observed.event, &self.params) else {
                continue;
            };
            let item = observed.event.item;
            if !self.titles.contains_key(&item) && self.titles.len() >= self.params.max_titles {
                self.overflow_events += 1;
                out.overflow += 1;
                continue;
            }
            let segment = observed
                .event
                .device
                .as_deref()
                .map(|device| self.segment_of(device));
            let time = observed.time_ms;
            let (min_minute, min_hour) = horizons(self.watermark_ms);
            let title = self.titles.entry(item).or_insert_with(|| TitleState {
                first_seen_ms: time,
                ..TitleState::default()
            });
            title.first_seen_ms = title.first_seen_ms.min(time);
            title.total.add(&delta);
            let (minute, hour) = (time / MINUTE_MS, time / HOUR_MS);
            if minute >= min_minute {
                title.minutes.entry(minute).or_default().add(&delta);
            }
            if hour >= min_hour {
                title.hours.entry(hour).or_default().add(&delta);
                if let Some(segment) = segment {
                    title
                        .segments
                        .entry(segment)
                        .or_default()
                        .entry(hour)
                        .or_default()
                        .add(&delta);
                }
            } else {
                self.late_events += 1;
                out.late += 1;
            }
            title.prune(self.watermark_ms);
        }
        out
    }

    /// Moves the watermark to `time_ms` if later; when it enters a new hour,
    /// every title's expired buckets are dropped (a title that gets no
    /// events would otherwise keep them forever).
    fn advance_watermark(&mut self, time_ms: u64) {
        if time_ms <= self.watermark_ms {
            return;
        }
        let new_hour = time_ms / HOUR_MS != self.watermark_ms / HOUR_MS;
        self.watermark_ms = time_ms;
        if new_hour {
            for title in self.titles.values_mut() {
                title.prune(time_ms);
            }
        }
    }

    fn segment_of(&mut self, device: &str) -> u16 {
        if let Some(i) = self.segments.iter().position(|s| s == device) {
            return i as u16;
        }
        let cap = self.params.max_segments.min(u16::MAX as usize - 1);
        if self.segments.len() < cap {
            self.segments.push(device.to_owned());
            return (self.segments.len() - 1) as u16;
        }
        match self.segments.iter().position(|s| s == OTHER_SEGMENT) {
            Some(i) => i as u16,
            None => {
                // The pool takes the place of the last tracked device slot
                // only if there is none left: keep it beyond the cap.
                self.segments.push(OTHER_SEGMENT.to_owned());
                (self.segments.len() - 1) as u16
            }
        }
    }

    /// The last stream sequence applied (0: none).
    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    /// The latest event time applied, ms since the Unix epoch.
    pub fn watermark_ms(&self) -> u64 {
        self.watermark_ms
    }

    /// Events applied since the state was created (duplicates excluded).
    pub fn events_applied(&self) -> u64 {
        self.events_applied
    }

    /// Events that arrived older than the day ring (counted in total only).
    pub fn late_events(&self) -> u64 {
        self.late_events
    }

    /// Events ignored because `max_titles` titles were already tracked.
    pub fn overflow_events(&self) -> u64 {
        self.overflow_events
    }

    /// The rules the state was computed under.
    pub fn params(&self) -> &AggregateParams {
        &self.params
    }

    /// Titles tracked.
    pub fn titles(&self) -> usize {
        self.titles.len()
    }

    /// When `item` was first seen, if it was.
    pub fn first_seen_ms(&self, item: ItemId) -> Option<u64> {
        self.titles.get(&item).map(|t| t.first_seen_ms)
    }

    /// `item`'s counts over `window` as seen at `now_ms` (zero when unseen).
    pub fn window(&self, item: ItemId, window: Window, now_ms: u64) -> Counts {
        self.titles
            .get(&item)
            .map_or_else(Counts::default, |t| window_of(t, window, now_ms))
    }

    /// `item`'s day-window counts per device segment at `now_ms`.
    pub fn segments(&self, item: ItemId, now_ms: u64) -> Vec<(String, Counts)> {
        let Some(title) = self.titles.get(&item) else {
            return Vec::new();
        };
        let (_, from) = horizons(now_ms);
        let mut out: Vec<(String, Counts)> = title
            .segments
            .iter()
            .map(|(&i, hours)| {
                let name = self.segments.get(usize::from(i)).cloned();
                (
                    name.unwrap_or_else(|| OTHER_SEGMENT.to_owned()),
                    sum_from(hours, from, now_ms / HOUR_MS),
                )
            })
            .filter(|(_, c)| !c.is_empty())
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The `n` titles rising fastest at `now_ms`, best first (see the module
    /// docs for the score).
    pub fn trending(&self, now_ms: u64, n: usize) -> Vec<TrendingTitle> {
        let mut out: Vec<TrendingTitle> = self
            .titles
            .iter()
            .filter_map(|(&item, title)| {
                let hour = window_of(title, Window::Hour, now_ms).plays;
                if hour < self.params.trending_min_plays.max(1) {
                    return None;
                }
                let day = window_of(title, Window::Day, now_ms).plays;
                Some(TrendingTitle {
                    item,
                    score: trending_score(hour, day),
                    plays_hour: hour,
                    plays_day: day,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(b.plays_hour.cmp(&a.plays_hour))
                .then(a.item.cmp(&b.item))
        });
        out.truncate(n);
        out
    }

    /// What nodes and operators read: every title's counts per window, the
    /// trending list (`trending_n` titles) and per-device day counts, as
    /// seen at `now_ms`.
    pub fn snapshot(&self, now_ms: u64, trending_n: usize) -> AggregateSnapshot {
        let titles = self
            .titles
            .iter()
            .map(|(&item, title)| TitleSummary {
                item,
                first_seen_ms: title.first_seen_ms,
                hour: window_of(title, Window::Hour, now_ms),
                day: window_of(title, Window::Day, now_ms),
                total: title.total,
                by_device: self.segments(item, now_ms),
            })
            .collect();
        AggregateSnapshot {
            last_sequence: self.last_sequence,
            watermark_ms: self.watermark_ms,
            now_ms,
            titles,
            trending: self.trending(now_ms, trending_n),
        }
    }

    /// Encodes the state for a checkpoint, in the shared checksummed
    /// artifact envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain structs, numbers, strings and integer-keyed maps: cannot fail.
        artifact::seal(
            STATE_MAGIC,
            &rmp_serde::to_vec_named(self).unwrap_or_default(),
        )
    }

    /// Decodes a checkpoint written by [`to_bytes`](Self::to_bytes).
    ///
    /// # Errors
    /// [`ArtifactError`] for anything but an intact state; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let body = artifact::open(STATE_MAGIC, "aggregate state", bytes)?;
        rmp_serde::from_slice(body).map_err(ArtifactError::Decode)
    }
}

fn window_of(title: &TitleState, window: Window, now_ms: u64) -> Counts {
    let (min_minute, min_hour) = horizons(now_ms);
    match window {
        Window::Hour => sum_from(&title.minutes, min_minute, now_ms / MINUTE_MS),
        Window::Day => sum_from(&title.hours, min_hour, now_ms / HOUR_MS),
        Window::Total => title.total,
    }
}

/// The trending score of a title with `hour` plays in the last hour and
/// `day` in the last day (see the module docs).
pub fn trending_score(hour: u64, day: u64) -> f64 {
    let mean = day as f64 / DAY_BUCKETS as f64;
    (hour as f64 + TRENDING_PSEUDOCOUNT) / (mean + TRENDING_PSEUDOCOUNT)
}

/// One title of the trending list.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendingTitle {
    /// The title.
    pub item: ItemId,
    /// How fast it rises (≈ 1: at its daily pace).
    pub score: f64,
    /// Plays in the last hour.
    pub plays_hour: u64,
    /// Plays in the last day.
    pub plays_day: u64,
}

/// One title's counts in a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TitleSummary {
    /// The title.
    pub item: ItemId,
    /// When it was first seen (its age is `now_ms - first_seen_ms`).
    pub first_seen_ms: u64,
    /// Last hour.
    pub hour: Counts,
    /// Last day.
    pub day: Counts,
    /// Since first seen.
    pub total: Counts,
    /// Last day, per device segment.
    pub by_device: Vec<(String, Counts)>,
}

/// What the aggregation job publishes every snapshot interval: the take-rate
/// table and the trending list, read at `now_ms`. Nodes hot-swap it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AggregateSnapshot {
    /// The last stream sequence the snapshot reflects.
    pub last_sequence: u64,
    /// The latest event time it reflects.
    pub watermark_ms: u64,
    /// When the windows were read.
    pub now_ms: u64,
    /// Every title tracked, by ascending id.
    pub titles: Vec<TitleSummary>,
    /// Titles rising fastest, best first.
    pub trending: Vec<TrendingTitle>,
}

impl AggregateSnapshot {
    /// The summary of `item`, if it was seen.
    pub fn title(&self, item: ItemId) -> Option<&TitleSummary> {
        self.titles
            .binary_search_by_key(&item, |t| t.item)
            .ok()
            .map(|i| &self.titles[i])
    }

    /// Encodes the snapshot in the shared checksummed artifact envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        artifact::seal(
            SNAPSHOT_MAGIC,
            &rmp_serde::to_vec_named(self).unwrap_or_default(),
        )
    }

    /// Decodes a snapshot written by [`to_bytes`](Self::to_bytes).
    ///
    /// # Errors
    /// [`ArtifactError`] for anything but an intact snapshot; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let body = artifact::open(SNAPSHOT_MAGIC, "aggregate snapshot", bytes)?;
        rmp_serde::from_slice(body).map_err(ArtifactError::Decode)
    }
}

/// A ratings file (MovieLens CSV) as the aggregation's input, for `reco
/// train --aggregates`: each row is a `play` of the item by the member at
/// the row's time (a rating says the member watched it; a CSV has no
/// impressions, so take rates stay unknown and trending reads plays only).
/// Rows are ordered by time (stable, so equal times keep file order) and
/// numbered 1, 2, … as their sequence.
pub fn observed_from_ratings(ratings: &[crate::Rating]) -> Vec<Observed> {
    let mut order: Vec<&crate::Rating> = ratings.iter().collect();
    order.sort_by_key(|r| r.at_ms);
    order
        .into_iter()
        .enumerate()
        .map(|(i, r)| Observed {
            sequence: i as u64 + 1,
            event: Event {
                member: r.member,
                item: r.item,
                kind: EventKind::Play,
                value: 0.0,
                at_ms: Some(r.at_ms),
                device: None,
            },
            time_ms: r.at_ms,
        })
        .collect()
}

/// A 95 % Wilson score interval on a take rate of `takes` out of
/// `impressions` (takes beyond impressions count as one per impression);
/// `None` without impressions. Wilson rather than the normal approximation
/// because early reads are exactly the small counts where the latter
/// fails (it gives negative bounds at 0 takes).
pub fn wilson_interval(takes: u64, impressions: u64) -> Option<(f64, f64)> {
    if impressions == 0 {
        return None;
    }
    let n = impressions as f64;
    let p = takes.min(impressions) as f64 / n;
    let z = 1.959_964f64;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// One window of an early read.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowRead {
    /// The window.
    pub window: Window,
    /// The counts.
    pub counts: Counts,
    /// Plays per impression.
    pub take_rate: Option<f64>,
    /// Its 95 % interval ([`wilson_interval`]).
    pub interval: Option<(f64, f64)>,
}

/// An early read on a title (`reco insights`): counts and take rate with a
/// confidence interval per window, and how it compares with titles of the
/// same age.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Insight {
    /// The title.
    pub item: ItemId,
    /// Time since it was first seen, in ms.
    pub age_ms: u64,
    /// Hour, day, total.
    pub windows: Vec<WindowRead>,
    /// Titles of a similar age (first seen between half and twice this
    /// title's age ago) with impressions in total.
    pub peers: usize,
    /// Their median total take rate.
    pub peer_median_take_rate: Option<f64>,
    /// Share of those peers whose total take rate is below this title's.
    pub percentile_among_peers: Option<f64>,
}

impl AggregateSnapshot {
    /// The early read on `item` at the snapshot's time; `None` if unseen.
    pub fn insight(&self, item: ItemId) -> Option<Insight> {
        let title = self.title(item)?;
        let age = self.now_ms.saturating_sub(title.first_seen_ms);
        let windows = [
            (Window::Hour, title.hour),
            (Window::Day, title.day),
            (Window::Total, title.total),
        ]
        .into_iter()
        .map(|(window, counts)| WindowRead {
            window,
            counts,
            take_rate: counts.take_rate(),
            interval: wilson_interval(counts.plays, counts.impressions),
        })
        .collect();
        let mut peer_rates: Vec<f64> = self
            .titles
            .iter()
            .filter(|t| t.item != item)
            .filter(|t| {
                let peer_age = self.now_ms.saturating_sub(t.first_seen_ms);
                peer_age >= age / 2 && peer_age <= age.saturating_mul(2)
            })
            .filter_map(|t| t.total.take_rate())
            .collect();
        peer_rates.sort_by(f64::total_cmp);
        let median = (!peer_rates.is_empty()).then(|| peer_rates[peer_rates.len() / 2]);
        let percentile = title.total.take_rate().and_then(|own| {
            (!peer_rates.is_empty()).then(|| {
                peer_rates.iter().filter(|&&r| r < own).count() as f64 / peer_rates.len() as f64
            })
        });
        Some(Insight {
            item,
            age_ms: age,
            windows,
            peers: peer_rates.len(),
            peer_median_take_rate: median,
            percentile_among_peers: percentile,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use reco_messages::MemberId;

    const T0: u64 = 1_700_000_000_000;

    fn ev(seq: u64, item: u64, kind: EventKind, value: f32, time_ms: u64) -> Observed {
        Observed {
            sequence: seq,
            event: Event {
                member: MemberId(seq % 7),
                item: ItemId(item),
                kind,
                value,
                at_ms: None,
                device: None,
            },
            time_ms,
        }
    }

    #[test]
    fn counts_follow_the_documented_rules() {
        let events = vec![
            ev(1, 1, EventKind::Impression, 0.0, T0),
            ev(2, 1, EventKind::Impression, 0.0, T0),
            ev(3, 1, EventKind::Play, 30.0, T0),
            ev(4, 1, EventKind::Stop, 1500.0, T0 + 1),
            ev(5, 1, EventKind::Stop, 60.5, T0 + 2),
            ev(6, 1, EventKind::ListAdd, 0.0, T0 + 3),
            ev(7, 1, EventKind::Rate, 4.0, T0 + 4),
            ev(8, 1, EventKind::Click, 0.0, T0 + 5),
        ];
        let state = AggregateState::batch(AggregateParams::default(), &events);
        let c = state.window(ItemId(1), Window::Hour, T0 + 10);
        assert_eq!(
            c,
            Counts {
                impressions: 2,
                plays: 1,
                completed: 1,
                play_ms: 1_560_500,
                list_adds: 1,
                clicks: 1,
            }
        );
        assert_eq!(c.take_rate(), Some(0.5));
        assert_eq!(state.last_sequence(), 8);
        assert_eq!(state.events_applied(), 8);
        assert_eq!(Counts::default().take_rate(), None);
    }

    #[test]
    fn windows_forget_old_buckets_and_total_keeps_them() {
        let events = vec![
            ev(1, 1, EventKind::Play, 0.0, T0),
            ev(2, 1, EventKind::Play, 0.0, T0 + 4 * HOUR_MS),
            ev(3, 1, EventKind::Play, 0.0, T0 + 26 * HOUR_MS),
        ];
        let state = AggregateState::batch(AggregateParams::default(), &events);
        let now = T0 + 26 * HOUR_MS;
        assert_eq!(state.window(ItemId(1), Window::Hour, now).plays, 1);
        assert_eq!(state.window(ItemId(1), Window::Day, now).plays, 2);
        assert_eq!(state.window(ItemId(1), Window::Total, now).plays, 3);
        // Read an hour later, the last hour is empty.
        assert_eq!(
            state.window(ItemId(1), Window::Hour, now + HOUR_MS).plays,
            0
        );
    }

    #[test]
    fn an_event_older_than_the_day_counts_in_total_only() {
        let events = vec![
            ev(1, 1, EventKind::Play, 0.0, T0 + 48 * HOUR_MS),
            ev(2, 1, EventKind::Play, 0.0, T0),
        ];
        let state = AggregateState::batch(AggregateParams::default(), &events);
        let now = T0 + 48 * HOUR_MS;
        assert_eq!(state.window(ItemId(1), Window::Day, now).plays, 1);
        assert_eq!(state.window(ItemId(1), Window::Total, now).plays, 2);
        assert_eq!(state.late_events(), 1);
        assert_eq!(state.first_seen_ms(ItemId(1)), Some(T0));
    }

    #[test]
    fn a_surge_this_hour_trends_above_a_steady_title() {
        let mut events = Vec::new();
        let mut seq = 0;
        let mut push = |item, time| {
            seq += 1;
            events.push(ev(seq, item, EventKind::Play, 0.0, time));
        };
        // Title 1: 10 plays every hour of the day. Title 2: 30 plays this
        // hour only. Title 3: 2 plays this hour (below the minimum).
        for h in 0..24 {
            for _ in 0..10 {
                push(1, T0 + h * HOUR_MS);
            }
        }
        let now = T0 + 23 * HOUR_MS + 1000;
        for _ in 0..30 {
            push(2, now);
        }
        push(3, now);
        push(3, now);
        let state = AggregateState::batch(AggregateParams::default(), &events);
        let trending = state.trending(now, 10);
        let items: Vec<u64> = trending.iter().map(|t| t.item.0).collect();
        assert_eq!(items, vec![2, 1]);
        assert!(trending[0].score > 5.0, "{trending:?}");
        assert!((trending[1].score - 1.0).abs() < 0.2, "{trending:?}");
    }

    #[test]
    fn titles_beyond_the_cap_are_counted_and_ignored() {
        let params = AggregateParams {
            max_titles: 2,
            ..AggregateParams::default()
        };
        let events: Vec<_> = (1..=5)
            .map(|i| ev(i, i, EventKind::Play, 0.0, T0))
            .collect();
        let state = AggregateState::batch(params, &events);
        assert_eq!(state.titles(), 2);
        assert_eq!(state.overflow_events(), 3);
    }

    #[test]
    fn devices_beyond_the_cap_pool_under_other() {
        let params = AggregateParams {
            max_segments: 2,
            ..AggregateParams::default()
        };
        let events: Vec<_> = ["tv", "phone", "web", "console"]
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let mut o = ev(i as u64 + 1, 1, EventKind::Impression, 0.0, T0);
                o.event.device = Some((*d).to_owned());
                o
            })
            .collect();
        let state = AggregateState::batch(params, &events);
        let segments = state.segments(ItemId(1), T0);
        let names: Vec<&str> = segments.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(names, vec!["other", "phone", "tv"]);
        assert_eq!(segments[0].1.impressions, 2);
    }

    #[test]
    fn state_and_snapshot_round_trip_and_damage_is_refused() {
        let events = vec![
            ev(1, 1, EventKind::Impression, 0.0, T0),
            ev(2, 1, EventKind::Play, 0.0, T0),
        ];
        let state = AggregateState::batch(AggregateParams::default(), &events);
        let bytes = state.to_bytes();
        assert_eq!(AggregateState::from_bytes(&bytes).unwrap(), state);
        let mut bad = bytes.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 1;
        assert!(AggregateState::from_bytes(&bad).is_err());
        let snapshot = state.snapshot(T0, 10);
        assert_eq!(
            AggregateSnapshot::from_bytes(&snapshot.to_bytes()).unwrap(),
            snapshot
        );
        assert_eq!(
            snapshot.title(ItemId(1)).unwrap().hour.take_rate(),
            Some(1.0)
        );
        assert!(AggregateSnapshot::from_bytes(&bytes).is_err());
    }

    #[test]
    fn an_early_read_gives_intervals_and_compares_with_titles_of_the_same_age() {
        assert_eq!(wilson_interval(0, 0), None);
        let (lo, hi) = wilson_interval(0, 10).unwrap();
        assert!(lo == 0.0 && hi > 0.2 && hi < 0.35, "{lo} {hi}");
        let (lo, hi) = wilson_interval(50, 100).unwrap();
        assert!(
            (lo - 0.404).abs() < 0.01 && (hi - 0.596).abs() < 0.01,
            "{lo} {hi}"
        );
        let mut events = Vec::new();
        let mut seq = 0;
        // Titles 1..=4 launched at T0 with take rates 0.1..0.4; title 9 a day
        // earlier (not a peer).
        for item in 1..=4u64 {
            for i in 0..10 {
                seq += 1;
                events.push(ev(seq, item, EventKind::Impression, 0.0, T0 + i));
                if i < item {
                    seq += 1;
                    events.push(ev(seq, item, EventKind::Play, 0.0, T0 + i));
                }
            }
        }
        let state = AggregateState::batch(AggregateParams::default(), &events);
        let snapshot = state.snapshot(T0 + HOUR_MS / 2, 10);
        let read = snapshot.insight(ItemId(3)).unwrap();
        assert_eq!(read.windows[0].take_rate, Some(0.3));
        assert!(read.windows[0].interval.unwrap().0 < 0.3);
        assert_eq!(read.peers, 3);
        assert_eq!(read.peer_median_take_rate, Some(0.2));
        assert_eq!(read.percentile_among_peers, Some(2.0 / 3.0));
        assert!(snapshot.insight(ItemId(77)).is_none());
    }

    fn any_events() -> impl Strategy<Value = Vec<Observed>> {
        let kind = proptest::sample::select(EventKind::ALL.to_vec());
        let device = proptest::option::of(proptest::sample::select(vec!["tv", "web", "phone"]));
        proptest::collection::vec(
            (0u64..6, kind, 0.0f32..3000.0, 0u64..(30 * HOUR_MS), device),
            0..120,
        )
        .prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (item, kind, value, dt, device))| {
                    let mut o = ev(i as u64 + 1, item, kind, value, T0 + dt);
                    o.event.device = device.map(str::to_owned);
                    o
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn batch_equals_streaming_over_any_split_with_checkpoints(
            events in any_events(),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
        ) {
            let params = AggregateParams { max_segments: 2, max_titles: 4, ..AggregateParams::default() };
            let batch = AggregateState::batch(params.clone(), &events);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(events.len() + 1)).collect();
            points.sort_unstable();
            let mut streaming = AggregateState::new(params);
            let mut from = 0;
            for to in points.into_iter().chain([events.len()]) {
                streaming.apply(&events[from..to]);
                // Every batch boundary is a checkpoint: encode and resume.
                streaming = AggregateState::from_bytes(&streaming.to_bytes()).unwrap();
                from = to;
            }
            prop_assert_eq!(&streaming, &batch);
            let now = batch.watermark_ms();
            prop_assert_eq!(streaming.snapshot(now, 10), batch.snapshot(now, 10));
        }

        #[test]
        fn replaying_from_any_earlier_sequence_changes_nothing(
            events in any_events(),
            crash in any::<proptest::sample::Index>(),
            resume in any::<proptest::sample::Index>(),
        ) {
            // The job checkpointed after `resume` events, got to `crash`,
            // died, and re-reads everything after the checkpoint.
            let crash = crash.index(events.len() + 1);
            let resume = resume.index(crash + 1);
            let whole = AggregateState::batch(AggregateParams::default(), &events);
            let mut state = AggregateState::batch(AggregateParams::default(), &events[..crash]);
            let replay = state.apply(&events[resume..]);
            prop_assert_eq!(replay.duplicates, (crash - resume) as u64);
            prop_assert_eq!(&state, &whole);
            // And a second replay of everything is a no-op.
            let again = state.apply(&events);
            prop_assert_eq!(again.applied, 0);
            prop_assert_eq!(&state, &whole);
        }
    }
}
