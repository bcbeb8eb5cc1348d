//! Item data: what a title is called, its genres and year, and the lists
//! the rows of a page fall back to (per-genre popular, newest titles, the
//! nearest neighbours of the most popular titles).
//!
//! `reco train --items movies.csv` parses the MovieLens `movies.csv`
//! ([`parse_movies`]) into a [`Catalogue`], and [`RowLists::build`]
//! computes the row fallbacks from the training interactions and the item
//! factors. Both travel inside the precomputed-lists artifact
//! ([`crate::PrecomputedLists`]), so a node loads them with the model's lists
//! and swaps them with the same version. The parser takes any [`BufRead`]:
//! the caller opens the file.

use crate::interactions::Interactions;
use crate::{ItemFactors, Scored};
use reco_messages::ItemId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::BufRead;
use std::sync::Arc;

/// The header MovieLens writes on the first line of `movies.csv`.
const HEADER: &str = "movieId,title,genres";

/// MovieLens' marker of a title without genres.
const NO_GENRES: &str = "(no genres listed)";

/// Longest title accepted, in bytes (the longest in MovieLens is ~160).
pub const MAX_TITLE_LEN: usize = 512;

/// Most genres one item may list.
pub const MAX_GENRES: usize = 32;

/// What is known about one item.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemInfo {
    /// The title as the data set spells it, e.g. `Star Wars: Episode IV - A
    /// New Hope (1977)`.
    pub title: String,
    /// Genres, as spelled in the data (`Comedy`, `Sci-Fi`); may be empty.
    pub genres: Vec<String>,
    /// Release year, from the `(1977)` at the end of the title, if any.
    pub year: Option<u16>,
}

/// Every item's [`ItemInfo`], by id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalogue {
    /// The items.
    pub items: HashMap<ItemId, ItemInfo>,
}

impl Catalogue {
    /// What is known about `item`.
    pub fn get(&self, item: ItemId) -> Option<&ItemInfo> {
        self.items.get(&item)
    }

    /// Number of items described.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when no item is described (trained without `--items`).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every genre with the items that list it (ids ascending), keyed by
    /// the genre's name in lower case.
    pub fn genres(&self) -> BTreeMap<String, (String, Vec<ItemId>)> {
        let mut genres: BTreeMap<String, (String, Vec<ItemId>)> = BTreeMap::new();
        for (&item, info) in &self.items {
            for genre in &info.genres {
                genres
                    .entry(genre.to_lowercase())
                    .or_insert_with(|| (genre.clone(), Vec::new()))
                    .1
                    .push(item);
            }
        }
        for (_, items) in genres.values_mut() {
            items.sort_unstable();
        }
        genres
    }
}

/// Why `movies.csv` was refused: the 1-based line and what was wrong.
#[derive(Debug)]
pub struct ItemsError {
    /// The line (1-based).
    pub line: usize,
    /// What was wrong with it.
    pub message: String,
}

impl fmt::Display for ItemsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ItemsError {}

/// Parses MovieLens `movies.csv` (`movieId,title,genres`; titles with a
/// comma are quoted, with `""` for a quote; genres are separated by `|`,
/// `(no genres listed)` means none). The header is optional, blank lines
/// are skipped, a repeated id keeps its last line.
///
/// # Errors
/// The first malformed line stops parsing with an [`ItemsError`] naming
/// its line and what was wrong.
pub fn parse_movies<R: BufRead>(reader: R) -> Result<Catalogue, ItemsError> {
    let mut catalogue = Catalogue::default();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let fail = |message: String| ItemsError {
            line: number,
            message,
        };
        let line = line.map_err(|e| fail(format!("cannot be read: {e}")))?;
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() || (number == 1 && line.trim().eq_ignore_ascii_case(HEADER)) {
            continue;
        }
        let fields = split_csv(line).map_err(fail)?;
        let [id, title, genres] = &fields[..] else {
            return Err(fail(format!(
                "expected 3 fields (movieId,title,genres), found {}",
                fields.len()
            )));
        };
        let item = id
            .trim()
            .parse::<u64>()
            .map_err(|_| fail(format!("movieId {:?} is not a whole number", id.trim())))?;
        let title = title.trim();
        if title.is_empty() {
            return Err(fail(format!("item {item} has an empty title")));
        }
        if title.len() > MAX_TITLE_LEN {
            return Err(fail(format!(
                "the title of item {item} is longer than {MAX_TITLE_LEN} bytes"
            )));
        }
        let genres: Vec<String> = genres
            .split('|')
            .map(str::trim)
            .filter(|g| !g.is_empty() && *g != NO_GENRES)
            .map(str::to_owned)
            .collect();
        if genres.len() > MAX_GENRES {
            return Err(fail(format!(
                "item {item} lists {} genres, more than {MAX_GENRES}",
                genres.len()
            )));
        }
        catalogue.items.insert(
            ItemId(item),
            ItemInfo {
                year: year_of(title),
                title: title.to_owned(),
                genres,
            },
        );
    }
    Ok(catalogue)
}

/// Splits one CSV line (RFC 4180 quoting, no embedded line breaks).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            }
            '"' if at_start => quoted = true,
            ',' if !quoted => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
                continue;
            }
            c => field.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    fields.push(field);
    Ok(fields)
}

/// The year in a MovieLens title's trailing `(1995)`, if plausible.
pub fn year_of(title: &str) -> Option<u16> {
    let open = title.trim_end().strip_suffix(')')?;
    let start = open.rfind('(')?;
    let inner = open[start + 1..].trim();
    // "(2007-2013)" (series) counts from its first year.
    let first = inner.split(['-', '–']).next()?.trim();
    let year: u16 = first.parse().ok()?;
    (1870..=2100).contains(&year).then_some(year)
}

/// One genre's row data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenreRow {
    /// The genre as the data spells it.
    pub name: String,
    /// Every item of the genre (ids ascending): the candidates the model
    /// ranks for the member.
    pub items: Arc<[ItemId]>,
    /// The genre's most popular items (the row's fallback), best first,
    /// scored like [`crate::popular`].
    pub popular: Vec<Scored>,
}

/// The lists the rows fall back to, computed offline with the model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RowLists {
    /// By genre name in lower case.
    pub genres: BTreeMap<String, GenreRow>,
    /// The newest titles (by year in the title, then by first rating), the
    /// candidates of the `new` row, newest first.
    pub newest: Arc<[ItemId]>,
    /// The same titles by popularity: the `new` row's fallback.
    pub new_popular: Vec<Scored>,
    /// The nearest items (cosine of item factors) of the most popular
    /// items: the `because:` row's fallback, best first.
    pub similar: HashMap<ItemId, Vec<Scored>>,
}

/// How long the offline row lists are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowListSizes {
    /// Items in each genre's popular list.
    pub genre_popular: usize,
    /// Candidates of the `new` row.
    pub newest: usize,
    /// Items whose neighbours are precomputed (the most popular ones).
    pub similar_items: usize,
    /// Neighbours kept per item.
    pub similar_n: usize,
}

impl Default for RowListSizes {
    fn default() -> Self {
        RowListSizes {
            genre_popular: 200,
            newest: 200,
            similar_items: 1_000,
            similar_n: 50,
        }
    }
}

impl RowLists {
    /// Computes the row lists from the catalogue, the training interactions
    /// (popularity and first-rating times come from `data` and `first_ms`)
    /// and the trained item factors.
    pub fn build(
        catalogue: &Catalogue,
        data: &Interactions,
        first_ms: &HashMap<ItemId, u64>,
        model: &ItemFactors,
        sizes: RowListSizes,
    ) -> RowLists {
        let popularity = crate::lists::popular(data, data.num_items());
        let rank: HashMap<ItemId, usize> = popularity
            .iter()
            .enumerate()
            .map(|(at, s)| (s.item, at))
            .collect();
        let by_popularity = |items: &[ItemId], n: usize| -> Vec<Scored> {
            let mut ranked: Vec<(usize, ItemId)> = items
                .iter()
                .filter_map(|item| rank.get(item).map(|&at| (at, *item)))
                .collect();
            ranked.sort_unstable();
            ranked
                .into_iter()
                .take(n)
                .map(|(at, _)| popularity[at])
                .collect()
        };
        let genres = catalogue
            .genres()
            .into_iter()
            .map(|(key, (name, items))| {
                let popular = by_popularity(&items, sizes.genre_popular);
                let row = GenreRow {
                    name,
                    items: items.into(),
                    popular,
                };
                (key, row)
            })
            .collect();
        // Newest first: the year in the title, else the year of the first
        // rating; ties by first rating, latest first.
        let mut dated: Vec<(u64, u64, ItemId)> = catalogue
            .items
            .iter()
            .filter_map(|(&item, info)| {
                let first = first_ms.get(&item).copied();
                let year = info.year.map(u64::from).or_else(|| first.map(year_of_ms))?;
                Some((year, first.unwrap_or(0), item))
            })
            .collect();
        dated.sort_unstable_by(|a, b| b.cmp(a));
        let newest: Vec<ItemId> = dated
            .into_iter()
            .take(sizes.newest)
            .map(|(_, _, item)| item)
            .collect();
        let new_popular = by_popularity(&newest, sizes.newest);
        let similar = popularity
            .iter()
            .take(sizes.similar_items)
            .map(|s| {
                let near = crate::rows::similar(model, s.item, sizes.similar_n, &[]);
                (s.item, near)
            })
            .filter(|(_, near)| !near.is_empty())
            .collect();
        RowLists {
            genres,
            newest: newest.into(),
            new_popular,
            similar,
        }
    }

    /// The row of `genre`, matched without regard to case.
    pub fn genre(&self, genre: &str) -> Option<&GenreRow> {
        self.genres.get(&genre.trim().to_lowercase())
    }

    /// The genre names, as the data spells them, for error messages.
    pub fn genre_names(&self) -> Vec<&str> {
        self.genres.values().map(|g| g.name.as_str()).collect()
    }
}

/// The calendar year of a time in ms since the epoch (UTC; leap years
/// counted, accurate to the day).
fn year_of_ms(ms: u64) -> u64 {
    let days = ms / 86_400_000;
    // 400 years have 146 097 days.
    let mut year = 1970 + days * 400 / 146_097;
    let start = |y: u64| {
        let y1 = y - 1;
        (y - 1970) * 365 + (y1 / 4 - 1969 / 4) - (y1 / 100 - 1969 / 100) + (y1 / 400 - 1969 / 400)
    };
    while start(year) > days {
        year -= 1;
    }
    while start(year + 1) <= days {
        year += 1;
    }
    year
}

/// The time of each item's first interaction, from the ratings' times.
pub fn first_times(ratings: impl IntoIterator<Item = (ItemId, u64)>) -> HashMap<ItemId, u64> {
    let mut first: HashMap<ItemId, u64> = HashMap::new();
    for (item, at_ms) in ratings {
        first
            .entry(item)
            .and_modify(|t| *t = (*t).min(at_ms))
            .or_insert(at_ms);
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_messages::MemberId;

    const MOVIES: &str = "movieId,title,genres\n\
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n\
260,Star Wars: Episode IV - A New Hope (1977),Action|Adventure|Sci-Fi\n\
7789,\"11'09\"\"01 - September 11 (2002)\",Drama\n\
8,\"Tom and Huck, The Adventures of (1995)\",Adventure|Children\r\n\
\n\
9,Untitled,(no genres listed)\n";

    #[test]
    fn movielens_lines_parse_with_quotes_years_and_genres() {
        let c = parse_movies(MOVIES.as_bytes()).unwrap();
        assert_eq!(c.len(), 5);
        let star_wars = c.get(ItemId(260)).unwrap();
        assert_eq!(star_wars.title, "Star Wars: Episode IV - A New Hope (1977)");
        assert_eq!(star_wars.genres, vec!["Action", "Adventure", "Sci-Fi"]);
        assert_eq!(star_wars.year, Some(1977));
        assert_eq!(
            c.get(ItemId(7789)).unwrap().title,
            "11'09\"01 - September 11 (2002)"
        );
        let huck = c.get(ItemId(8)).unwrap();
        assert_eq!(huck.title, "Tom and Huck, The Adventures of (1995)");
        assert_eq!(huck.genres, vec!["Adventure", "Children"]);
        let untitled = c.get(ItemId(9)).unwrap();
        assert!(untitled.genres.is_empty());
        assert_eq!(untitled.year, None);
        let genres = c.genres();
        assert_eq!(
            genres["adventure"].1,
            vec![ItemId(1), ItemId(8), ItemId(260)]
        );
        assert_eq!(genres["sci-fi"].0, "Sci-Fi");
    }

    #[test]
    fn malformed_lines_are_refused_with_their_line() {
        for (text, expected) in [
            ("1,Only two\n", "line 1: expected 3 fields"),
            ("x,Title (1990),Drama\n", "line 1: movieId \"x\""),
            (
                "movieId,title,genres\n2,\"open,Drama\n",
                "line 2: a quoted field",
            ),
            ("3,,Drama\n", "empty title"),
        ] {
            let error = parse_movies(text.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        let long = format!("4,{},Drama\n", "a".repeat(MAX_TITLE_LEN + 1));
        assert!(parse_movies(long.as_bytes()).is_err());
    }

    #[test]
    fn years_come_from_the_trailing_parentheses() {
        assert_eq!(year_of("Heat (1995)"), Some(1995));
        assert_eq!(year_of("Cosmos (1980) "), Some(1980));
        assert_eq!(year_of("Fawlty Towers (1975-1979)"), Some(1975));
        assert_eq!(year_of("Babylon 5"), None);
        assert_eq!(year_of("1984 (in colour)"), None);
        assert_eq!(year_of("(500) Days of Summer (2009)"), Some(2009));
        assert_eq!(year_of_ms(0), 1970);
        assert_eq!(year_of_ms(1_537_799_250_000), 2018);
        assert_eq!(year_of_ms(946_684_800_000), 2000); // 2000-01-01
        assert_eq!(year_of_ms(946_684_799_999), 1999);
    }

    #[test]
    fn row_lists_rank_genres_by_popularity_and_new_titles_by_date() {
        let catalogue = parse_movies(MOVIES.as_bytes()).unwrap();
        let triples = [
            (1, 1),
            (2, 1),
            (3, 1),
            (1, 260),
            (2, 260),
            (1, 8),
            (3, 7789),
            (1, 9),
        ]
        .map(|(m, i)| (MemberId(m), ItemId(i), 1.0));
        let data = Interactions::from_triples(triples);
        let params = crate::AlsParams {
            factors: 2,
            iterations: 2,
            ..crate::AlsParams::default()
        };
        let model = crate::train_als(&data, &params, "v".into(), |_| {}).unwrap();
        // Item 9 has no year: its first rating (2018) dates it.
        let first = first_times([(ItemId(9), 1_537_799_250_000), (ItemId(1), 0)]);
        let rows = RowLists::build(
            &catalogue,
            &data,
            &first,
            &model.item_factors,
            RowListSizes::default(),
        );
        let adventure = rows.genre("ADVENTURE ").unwrap();
        assert_eq!(adventure.name, "Adventure");
        let order: Vec<u64> = adventure.popular.iter().map(|s| s.item.0).collect();
        assert_eq!(order, vec![1, 260, 8]);
        assert!(rows.genre("western").is_none());
        let newest: Vec<u64> = rows.newest.iter().map(|i| i.0).collect();
        assert_eq!(newest, vec![9, 7789, 8, 1, 260]);
        assert_eq!(rows.new_popular[0].item, ItemId(1));
        assert!(rows.similar.contains_key(&ItemId(1)));
        assert!(rows.similar[&ItemId(1)].iter().all(|s| s.item != ItemId(1)));
    }
}
