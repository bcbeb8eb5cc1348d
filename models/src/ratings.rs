//! Observed interactions as they come from data sets, and the MovieLens
//! `ratings.csv` parser that feeds training and evaluation.
//!
//! The parser takes any [`BufRead`] so the crate stays free of file I/O: the
//! caller opens the file (or passes bytes in tests).

use reco_messages::{ItemId, MemberId};
use std::fmt;
use std::io::BufRead;

/// One observed (member, item, weight) interaction, e.g. a rating or a play.
///
/// It keeps the time so evaluation can split by time as well as at random,
/// and the raw value so callers choose how it becomes a weight (binary, the
/// stars, seconds watched).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rating {
    /// Who interacted.
    pub member: MemberId,
    /// With what.
    pub item: ItemId,
    /// How strongly (stars for MovieLens); finite and non-negative.
    pub value: f32,
    /// When, in milliseconds since the Unix epoch (the wire's `at_ms` unit).
    pub at_ms: u64,
}

/// The header MovieLens writes on the first line; skipped when present.
const HEADER: &str = "userId,movieId,rating,timestamp";

/// Parses MovieLens `ratings.csv` (`userId,movieId,rating,timestamp`).
///
/// The header line is optional (skipped when the first line is exactly the
/// MovieLens header, case-insensitively); blank lines are skipped; `\r\n` line
/// ends are accepted. The timestamp is in seconds and becomes
/// `at_ms = secs * 1000`. Ratings must be finite and non-negative.
///
/// # Errors
/// The first malformed line stops parsing with a [`ParseError`] naming its
/// 1-based line number and what was wrong, e.g.
/// `line 17: rating 'abc' is not a number`.
pub fn parse_ratings<R: BufRead>(reader: R) -> Result<Vec<Rating>, ParseError> {
    let mut out = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| ParseError::new(number, ParseErrorKind::Io(e)))?;
        let line = line.trim();
        if line.is_empty() || (number == 1 && line.eq_ignore_ascii_case(HEADER)) {
            continue;
        }
        out.push(parse_line(line).map_err(|kind| ParseError::new(number, kind))?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<Rating, ParseErrorKind> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [user, movie, rating, timestamp] = fields[..] else {
        return Err(ParseErrorKind::FieldCount {
            found: fields.len(),
        });
    };
    let member = user
        .parse::<u64>()
        .map_err(|_| ParseErrorKind::Member(user.to_owned()))?;
    let item = movie
        .parse::<u64>()
        .map_err(|_| ParseErrorKind::Item(movie.to_owned()))?;
    let value = rating
        .parse::<f32>()
        .map_err(|_| ParseErrorKind::NotANumber(rating.to_owned()))?;
    if !value.is_finite() || value < 0.0 {
        return Err(ParseErrorKind::OutOfRange(rating.to_owned()));
    }
    let at_ms = timestamp
        .parse::<u64>()
        .ok()
        .and_then(|secs| secs.checked_mul(1000))
        .ok_or_else(|| ParseErrorKind::Timestamp(timestamp.to_owned()))?;
    Ok(Rating {
        member: MemberId(member),
        item: ItemId(item),
        value,
        at_ms,
    })
}

/// A line of `ratings.csv` that could not be used: which line, and why.
///
/// Displays as `line N: <what was wrong>` so an operator can open the file at
/// the right place.
#[derive(Debug)]
pub struct ParseError {
    /// 1-based line number in the input.
    pub line: usize,
    /// What was wrong with it.
    pub kind: ParseErrorKind,
}

impl ParseError {
    fn new(line: usize, kind: ParseErrorKind) -> Self {
        Self { line, kind }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The kind is already part of our message; only pass on its cause.
        std::error::Error::source(&self.kind)
    }
}

/// What was wrong with one line of `ratings.csv`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The reader failed; the data after this point is unknown.
    #[error("could not read the line")]
    Io(#[source] std::io::Error),
    /// Not the four MovieLens columns.
    #[error("expected 4 fields (userId,movieId,rating,timestamp), found {found}")]
    FieldCount {
        /// How many comma-separated fields the line had.
        found: usize,
    },
    /// The user id is not an unsigned 64-bit integer.
    #[error("user id '{0}' is not an unsigned integer")]
    Member(String),
    /// The movie id is not an unsigned 64-bit integer.
    #[error("movie id '{0}' is not an unsigned integer")]
    Item(String),
    /// The rating does not parse as a number.
    #[error("rating '{0}' is not a number")]
    NotANumber(String),
    /// The rating is negative, infinite or NaN.
    #[error("rating '{0}' must be a finite number >= 0")]
    OutOfRange(String),
    /// The timestamp is not whole seconds that fit in milliseconds as u64.
    #[error("timestamp '{0}' is not whole seconds since the epoch")]
    Timestamp(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Rating>, ParseError> {
        parse_ratings(text.as_bytes())
    }

    #[test]
    fn parses_rows_with_header_blank_lines_and_crlf() {
        let got = parse("userId,movieId,rating,timestamp\r\n1,31,2.5,1260759144\r\n\n2,10,4,5\n")
            .unwrap();
        assert_eq!(
            got,
            vec![
                Rating {
                    member: MemberId(1),
                    item: ItemId(31),
                    value: 2.5,
                    at_ms: 1_260_759_144_000
                },
                Rating {
                    member: MemberId(2),
                    item: ItemId(10),
                    value: 4.0,
                    at_ms: 5000
                },
            ]
        );
    }

    #[test]
    fn header_is_optional() {
        assert_eq!(parse("1,2,3,4").unwrap().len(), 1);
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let cases = [
            (
                "userId,movieId,rating,timestamp\n1,2,3,4\n1,2,abc,4",
                "line 3: rating 'abc' is not a number",
            ),
            (
                "1,2,3",
                "line 1: expected 4 fields (userId,movieId,rating,timestamp), found 3",
            ),
            (
                "1,2,3,4\n\nx,2,3,4",
                "line 3: user id 'x' is not an unsigned integer",
            ),
            (
                "1,-2,3,4",
                "line 1: movie id '-2' is not an unsigned integer",
            ),
            (
                "1,2,-1,4",
                "line 1: rating '-1' must be a finite number >= 0",
            ),
            (
                "1,2,NaN,4",
                "line 1: rating 'NaN' must be a finite number >= 0",
            ),
            (
                "1,2,inf,4",
                "line 1: rating 'inf' must be a finite number >= 0",
            ),
            (
                "1,2,3,4.5",
                "line 1: timestamp '4.5' is not whole seconds since the epoch",
            ),
            (
                "1,2,3,18446744073709551615",
                "line 1: timestamp '18446744073709551615' is not whole seconds since the epoch",
            ),
            (
                "userId,movieId,rating,timestamp\nuserId,movieId,rating,timestamp",
                "line 2: user id 'userId' is not an unsigned integer",
            ),
        ];
        for (input, message) in cases {
            let err = parse(input).unwrap_err();
            assert_eq!(err.to_string(), message, "input {input:?}");
        }
        assert_eq!(parse("1,2,x,4\n").unwrap_err().line, 1);
    }
}
