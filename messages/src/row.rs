//! The rows (galleries) a caller can ask for in a request's `row` field.
//!
//! A page is composed of rows; each row is a ranked list chosen a different
//! way. The wire form is a short string: `top` (the default, also when `row`
//! is absent or empty), `genre:<name>`, `because:<item id>`, `continue`,
//! `popular`, `new`, `trending` and `billboard`. Anything else is refused
//! with a clear error, so a typo never silently falls back to top picks.
//! Parsing does no I/O and knows nothing about the catalogue: whether a genre
//! or an item exists is the node's question.

use std::fmt;

use crate::ids::ItemId;

/// A gallery of the page, parsed from the request's `row` field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Row {
    /// The member's top picks over the whole catalogue (the default).
    #[default]
    Top,
    /// The member's ranking within one genre (matched without regard to case).
    Genre(String),
    /// Items close to one the member watched.
    Because(ItemId),
    /// Titles the member started and did not finish.
    Continue,
    /// The most popular titles.
    Popular,
    /// The newest titles.
    New,
    /// Titles rising fastest in the near-real-time window.
    Trending,
    /// One title (or k) to feature for this member, chosen by a bandit.
    Billboard,
}

impl Row {
    /// The bounded label of the row's kind (metric label value; the genre
    /// name and item id are left out so label cardinality stays bounded).
    pub fn kind(&self) -> &'static str {
        match self {
            Row::Top => "top",
            Row::Genre(_) => "genre",
            Row::Because(_) => "because",
            Row::Continue => "continue",
            Row::Popular => "popular",
            Row::New => "new",
            Row::Trending => "trending",
            Row::Billboard => "billboard",
        }
    }

    /// Every kind's wire form, for error messages and documentation.
    pub const KINDS: &'static str =
        "top, genre:<name>, because:<item id>, continue, popular, new, trending, billboard";

    /// Parses the wire form. `None` and the empty string are [`Row::Top`].
    pub fn parse(text: Option<&str>) -> Result<Row, String> {
        let Some(text) = text.map(str::trim) else {
            return Ok(Row::Top);
        };
        if let Some(name) = text.strip_prefix("genre:") {
            let name = name.trim();
            if name.is_empty() {
                return Err("row genre: needs a genre name, e.g. genre:Comedy".into());
            }
            return Ok(Row::Genre(name.to_string()));
        }
        if let Some(id) = text.strip_prefix("because:") {
            return id
                .trim()
                .parse::<u64>()
                .map(|id| Row::Because(ItemId(id)))
                .map_err(|_| {
                    format!("row because: needs a numeric item id, e.g. because:260 (got {id:?})")
                });
        }
        match text {
            "" | "top" => Ok(Row::Top),
            "continue" => Ok(Row::Continue),
            "popular" => Ok(Row::Popular),
            "new" => Ok(Row::New),
            "trending" => Ok(Row::Trending),
            "billboard" => Ok(Row::Billboard),
            other => Err(format!("unknown row {other:?}: use one of {}", Row::KINDS)),
        }
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Row::Genre(name) => write!(f, "genre:{name}"),
            Row::Because(item) => write!(f, "because:{}", item.0),
            other => f.write_str(other.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_round_trips_through_its_wire_form() {
        for row in [
            Row::Top,
            Row::Genre("Comedy".into()),
            Row::Because(ItemId(260)),
            Row::Continue,
            Row::Popular,
            Row::New,
            Row::Trending,
            Row::Billboard,
        ] {
            assert_eq!(Row::parse(Some(&row.to_string())), Ok(row));
        }
    }

    #[test]
    fn absent_and_empty_rows_are_top_picks() {
        assert_eq!(Row::parse(None), Ok(Row::Top));
        assert_eq!(Row::parse(Some("")), Ok(Row::Top));
        assert_eq!(Row::parse(Some("  ")), Ok(Row::Top));
    }

    #[test]
    fn malformed_rows_are_refused_with_what_to_send() {
        assert!(Row::parse(Some("genre:"))
            .unwrap_err()
            .contains("genre:Comedy"));
        assert!(Row::parse(Some("because:star-wars"))
            .unwrap_err()
            .contains("numeric item id"));
        assert!(Row::parse(Some("home")).unwrap_err().contains("trending"));
        assert!(Row::parse(Some("because:-1")).is_err());
    }
}
