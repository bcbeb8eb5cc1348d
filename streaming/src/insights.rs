//! `reco insights --item ID`: an early read on a title from the newest
//! published snapshot (the "Video Insights" use case: how is this morning's
//! launch doing?).

use crate::error::StreamingError;
use crate::snapshot;
use async_nats::jetstream;
use reco_messages::ItemId;
use reco_models::aggregates::Insight;
use std::fmt::Write as _;

/// What an early read found.
#[derive(Clone, Debug, PartialEq)]
pub enum Read {
    /// The title's read, from snapshot `version`.
    Found {
        /// The snapshot version read.
        version: String,
        /// The read.
        insight: Insight,
    },
    /// No snapshot is published yet.
    NoSnapshot,
    /// The newest snapshot has no event of the title.
    Unseen {
        /// The snapshot version read.
        version: String,
    },
}

/// Reads `item` from the newest snapshot in `bucket`.
///
/// # Errors
/// [`StreamingError`] when the bucket cannot be read.
pub async fn read(
    js: &jetstream::Context,
    bucket: &str,
    item: ItemId,
) -> Result<Read, StreamingError> {
    let Some((version, snapshot)) = snapshot::latest(js, bucket).await? else {
        return Ok(Read::NoSnapshot);
    };
    Ok(match snapshot.insight(item) {
        Some(insight) => Read::Found { version, insight },
        None => Read::Unseen { version },
    })
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_owned(), |r| format!("{:.1} %", r * 100.0))
}

/// The read as a small text table.
pub fn render(version: &str, insight: &Insight) -> String {
    let mut out = String::new();
    let hours = insight.age_ms as f64 / 3_600_000.0;
    let _ = writeln!(
        out,
        "title {}: first seen {hours:.1} h ago (snapshot {version})",
        insight.item
    );
    let _ = writeln!(
        out,
        "{:<6} {:>11} {:>8} {:>10} {:>11} {:>9} {:>10}  {:>17}",
        "window",
        "impressions",
        "plays",
        "completed",
        "play hours",
        "list adds",
        "take rate",
        "95 % interval"
    );
    for w in &insight.windows {
        let c = &w.counts;
        let interval = w.interval.map_or_else(
            || "–".to_owned(),
            |(lo, hi)| format!("{:.1} – {:.1} %", lo * 100.0, hi * 100.0),
        );
        let _ = writeln!(
            out,
            "{:<6} {:>11} {:>8} {:>10} {:>11.1} {:>9} {:>10}  {:>17}",
            w.window.as_str(),
            c.impressions,
            c.plays,
            c.completed,
            c.play_seconds() / 3600.0,
            c.list_adds,
            rate(w.take_rate),
            interval
        );
    }
    let _ = match (
        insight.peer_median_take_rate,
        insight.percentile_among_peers,
    ) {
        (Some(median), Some(pct)) => writeln!(
            out,
            "titles of the same age ({}): median take rate {}; this title is above {:.0} % of them",
            insight.peers,
            rate(Some(median)),
            pct * 100.0
        ),
        (Some(median), None) => writeln!(
            out,
            "titles of the same age ({}): median take rate {}; this title has no impressions yet",
            insight.peers,
            rate(Some(median))
        ),
        _ => writeln!(out, "no other title of the same age has impressions yet"),
    };
    out
}
