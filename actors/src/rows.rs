//! The row dispatch: which gallery a request's `row` asks for, what the
//! model must rank for it, and what answers when the model cannot.
//!
//! Purpose: one place that turns a [`Row`] into a [`Plan`] for the
//! session. Every row that needs the model follows the top picks' rules —
//! its fallback is computed before the model is asked, the model is asked
//! with the request's deadline through the breaker, and the fallback
//! answers (degraded, with the reason) when the model is late, down or
//! refuses — so a row is never slower or less available than top picks.
//!
//! | row | model ranks | fallback (offline, published with the lists) |
//! |---|---|---|
//! | `top` | the whole catalogue | nearline list → precomputed list → popular |
//! | `genre:<name>` | the genre's items, for the member | the genre's popular list |
//! | `because:<item>` | the item's nearest items (cosine of item factors) | its precomputed neighbours, else its first genre's popular list, else popular |
//! | `new` | the newest titles, for the member | the newest titles by popularity |
//! | `popular` | — (answered at once from the popular list) | — |
//! | `continue` | — (answered at once from the member's recent plays) | — |
//! | `trending`, `billboard` | not served by this node yet: an error says so | — |
//!
//! Seen items are left out of every row but `continue` (which lists them
//! by definition) when the request asks so, as for top picks.
//!
//! No actor lives here: these are functions the session (and the ingress,
//! for refused and failover requests) call. Emits nothing itself; replies
//! are counted by row in [`crate::reply::Responder`]
//! (`reco_row_replies_total{row,source,reason}`). Fails: an unknown genre
//! or item, or a row this node cannot serve, is a [`Plan::Refuse`] with a
//! message that says what to send instead; nothing here panics.

use crate::lists::{Fallback, ListsReader};
use crate::model::RowQuery;
use crate::signals::RecentSignals;
use reco_messages::{ItemId, MemberId, Reason, Recommendations, Row, ScoredItem, Source};
use reco_models::{ItemFactors, PrecomputedLists};

/// Watch time after which a started title counts as finished (the
/// `continue` row): 80 minutes, most of a feature film. Item data carries
/// no running times, so one threshold serves every title.
pub const CONTINUE_FINISHED_SECS: f32 = 4_800.0;

/// How a request for a row is answered.
#[derive(Debug)]
pub enum Plan {
    /// Top picks: the session's own path (nearline, precomputed, popular).
    Top,
    /// Ask the model with `query`; `fallback` answers when it cannot.
    Model {
        /// What the model ranks.
        query: RowQuery,
        /// The row's fallback, ready before the model is asked.
        fallback: Fallback,
    },
    /// Answered at once without the model (popular, continue): the row
    /// itself, not degraded.
    Direct(Fallback),
    /// Refused with this message (bad request).
    Refuse(String),
    /// `trending` and `billboard`: answered from the near-real-time
    /// aggregate snapshot by the session (`crate::aggregates`).
    Aggregates,
}

/// The plan for `row` of `member`: `k` items without `exclude` (sorted),
/// from the lists in service, the model in service and the member's recent
/// signals.
pub fn plan(
    row: &Row,
    k: usize,
    exclude: &[ItemId],
    lists: &ListsReader,
    model: Option<&ItemFactors>,
    signals: &RecentSignals,
) -> Plan {
    let in_service = lists.load();
    match row {
        Row::Top => Plan::Top,
        Row::Continue => {
            let items = reco_models::rows::started_not_finished(
                &signals.watches(),
                CONTINUE_FINISHED_SECS,
                k,
            );
            Plan::Direct(fallback(&in_service, Source::Recent, items, None))
        }
        Row::Trending | Row::Billboard => Plan::Aggregates,
        _ => match offline(row, k, exclude, &in_service, model) {
            Ok((Some(query), fallback)) => Plan::Model { query, fallback },
            Ok((None, direct)) => Plan::Direct(direct),
            Err(message) => Plan::Refuse(message),
        },
    }
}

/// The answer of `row` without the model and without the member's
/// signals: what a refused (mailbox full) or failover request gets,
/// without `exclude` (sorted). `Err` says why the row cannot be answered
/// at all.
pub fn offline_fallback(
    row: &Row,
    member: MemberId,
    k: usize,
    exclude: &[ItemId],
    lists: &ListsReader,
    model: Option<&ItemFactors>,
) -> Result<Fallback, String> {
    match row {
        Row::Top => Ok(lists.fallback(member, k, exclude)),
        // The member's plays are in its session, which is not reachable
        // here: an empty row, honestly degraded by the caller's reason.
        Row::Continue => Ok(fallback(&lists.load(), Source::Recent, Vec::new(), None)),
        // The aggregate snapshot is read by sessions: a request that cannot
        // reach one gets the popular list, degraded by the caller's reason
        // (as the rows themselves do without a snapshot).
        Row::Trending | Row::Billboard => {
            offline(&Row::Popular, k, exclude, &lists.load(), model).map(|(_, fallback)| fallback)
        }
        _ => offline(row, k, exclude, &lists.load(), model).map(|(_, fallback)| fallback),
    }
}

/// The model query and the fallback of the rows answered from the lists.
fn offline(
    row: &Row,
    k: usize,
    exclude: &[ItemId],
    lists: &PrecomputedLists,
    model: Option<&ItemFactors>,
) -> Result<(Option<RowQuery>, Fallback), String> {
    let take = |list: &[ScoredItem]| -> Vec<ScoredItem> {
        list.iter()
            .filter(|s| exclude.binary_search(&s.item).is_err())
            .take(k)
            .copied()
            .collect()
    };
    match row {
        Row::Popular => Ok((
            None,
            fallback(lists, Source::Popular, take(&lists.popular), None),
        )),
        Row::Genre(name) => {
            let genre = lists
                .rows
                .genre(name)
                .ok_or_else(|| unknown_genre(lists, name))?;
            Ok((
                Some(RowQuery::Within(genre.items.clone())),
                fallback(lists, Source::Popular, take(&genre.popular), None),
            ))
        }
        Row::New => {
            if lists.rows.newest.is_empty() {
                return Err(no_item_data("new"));
            }
            Ok((
                Some(RowQuery::Within(lists.rows.newest.clone())),
                fallback(lists, Source::Popular, take(&lists.rows.new_popular), None),
            ))
        }
        Row::Because(item) => {
            let in_model = model.is_some_and(|m| m.index_of(*item).is_some());
            let info = lists.catalogue.get(*item);
            // Without a model and item data (a refused request on a node
            // still loading) nothing can tell: the fallback answers.
            let can_tell = model.is_some() || !lists.catalogue.is_empty();
            if can_tell && !in_model && info.is_none() {
                return Err(format!(
                    "row because:{}: item {} is unknown to this node (not in the model nor \
in the item data); use an item id from the catalogue, e.g. because:260",
                    item.0, item.0
                ));
            }
            let mut without_anchor: Vec<ItemId> = exclude.to_vec();
            if let Err(at) = without_anchor.binary_search(item) {
                without_anchor.insert(at, *item);
            }
            let take = |list: &[ScoredItem]| -> Vec<ScoredItem> {
                list.iter()
                    .filter(|s| without_anchor.binary_search(&s.item).is_err())
                    .take(k)
                    .copied()
                    .collect()
            };
            let near = match lists.rows.similar.get(item) {
                Some(near) => fallback(lists, Source::Precomputed, take(near), None),
                None => {
                    let genre = info
                        .and_then(|i| i.genres.first())
                        .and_then(|g| lists.rows.genre(g));
                    let list = genre.map_or(lists.popular.as_slice(), |g| g.popular.as_slice());
                    fallback(lists, Source::Popular, take(list), None)
                }
            };
            Ok((Some(RowQuery::Near(*item)), near))
        }
        Row::Top | Row::Continue | Row::Trending | Row::Billboard => {
            Err(format!("row {row} has no offline answer"))
        }
    }
}

fn fallback(
    lists: &PrecomputedLists,
    source: Source,
    items: Vec<ScoredItem>,
    age_ms: Option<u64>,
) -> Fallback {
    let version = (!lists.version.is_empty()).then(|| lists.version.clone());
    Fallback {
        source,
        items,
        version: version.clone(),
        lists_version: version,
        age_ms,
    }
}

/// A row answered at once, as it was asked (not degraded).
pub fn direct_reply(member: MemberId, answer: Fallback) -> Recommendations {
    let mut reply = crate::reply::fallback_reply(member, answer, Reason::Deadline);
    reply.degraded = false;
    reply.reason = None;
    if reply.source == Source::Recent {
        reply.model_version = None;
    }
    reply
}

fn unknown_genre(lists: &PrecomputedLists, name: &str) -> String {
    if lists.rows.genres.is_empty() {
        return no_item_data("genre:");
    }
    format!(
        "row genre:{name}: unknown genre {name:?}; this node knows {}",
        lists.rows.genre_names().join(", ")
    )
}

fn no_item_data(row: &str) -> String {
    format!(
        "row {row} needs item data, and the model in service was trained without it: \
train with `reco train --items movies.csv` and publish"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::SignalPolicy;
    use reco_messages::{Event, EventKind};
    use reco_models::items::{parse_movies, RowListSizes};
    use reco_models::{Interactions, RowLists};
    use std::sync::Arc;

    const MOVIES: &str = "1,Toy Story (1995),Animation|Comedy\n\
2,Heat (1995),Action|Crime\n\
3,Clueless (1995),Comedy|Romance\n\
260,Star Wars (1977),Action|Sci-Fi\n\
5,Alien (1979),Horror|Sci-Fi\n";

    fn setup() -> (ListsReader, ItemFactors) {
        let catalogue = parse_movies(MOVIES.as_bytes()).unwrap();
        let triples = [
            (1, 1),
            (2, 1),
            (3, 1),
            (1, 3),
            (2, 3),
            (1, 260),
            (2, 2),
            (3, 5),
        ]
        .map(|(m, i)| (MemberId(m), ItemId(i), 1.0));
        let data = Interactions::from_triples(triples);
        let params = reco_models::AlsParams {
            factors: 2,
            iterations: 3,
            ..reco_models::AlsParams::default()
        };
        let model = reco_models::train_als(&data, &params, "v".into(), |_| {}).unwrap();
        let rows = RowLists::build(
            &catalogue,
            &data,
            &Default::default(),
            &model.item_factors,
            RowListSizes::default(),
        );
        let lists = PrecomputedLists {
            version: "v".into(),
            popular: reco_models::popular(&data, 10),
            catalogue,
            rows,
            ..PrecomputedLists::default()
        };
        (ListsReader::new(lists), model.item_factors)
    }

    fn signals() -> RecentSignals {
        RecentSignals::new(16, Arc::new(SignalPolicy::default()))
    }

    fn ids(f: &Fallback) -> Vec<u64> {
        f.items.iter().map(|s| s.item.0).collect()
    }

    #[test]
    fn a_genre_row_asks_the_model_within_the_genre_and_falls_back_to_its_popular_list() {
        let (lists, model) = setup();
        let Plan::Model { query, fallback } = plan(
            &Row::Genre("comedy".into()),
            10,
            &[ItemId(3)],
            &lists,
            Some(&model),
            &signals(),
        ) else {
            panic!("a model row");
        };
        assert_eq!(query, RowQuery::Within(vec![ItemId(1), ItemId(3)].into()));
        assert_eq!(
            (fallback.source, ids(&fallback)),
            (Source::Popular, vec![1])
        );
        let Plan::Refuse(message) = plan(
            &Row::Genre("Comdy".into()),
            10,
            &[],
            &lists,
            Some(&model),
            &signals(),
        ) else {
            panic!("refused");
        };
        assert!(
            message.contains("unknown genre \"Comdy\"") && message.contains("Comedy"),
            "{message}"
        );
    }

    #[test]
    fn because_asks_for_neighbours_and_refuses_unknown_items() {
        let (lists, model) = setup();
        let Plan::Model { query, fallback } = plan(
            &Row::Because(ItemId(260)),
            3,
            &[],
            &lists,
            Some(&model),
            &signals(),
        ) else {
            panic!("a model row");
        };
        assert_eq!(query, RowQuery::Near(ItemId(260)));
        assert_eq!(fallback.source, Source::Precomputed);
        assert!(!ids(&fallback).contains(&260));
        assert!(matches!(
            plan(&Row::Because(ItemId(999)), 3, &[], &lists, Some(&model), &signals()),
            Plan::Refuse(m) if m.contains("item 999 is unknown")
        ));
    }

    #[test]
    fn continue_lists_started_titles_and_popular_leaves_out_seen_ones() {
        let (lists, model) = setup();
        let mut recent = signals();
        for (item, kind, value) in [(2, EventKind::Play, 600.0), (3, EventKind::Play, 6_000.0)] {
            recent.push(&Event {
                member: MemberId(9),
                item: ItemId(item),
                kind,
                value,
                at_ms: None,
                device: None,
            });
        }
        let Plan::Direct(row) = plan(
            &Row::Continue,
            10,
            &recent.seen(),
            &lists,
            Some(&model),
            &recent,
        ) else {
            panic!("direct");
        };
        assert_eq!((row.source, ids(&row)), (Source::Recent, vec![2]));
        let Plan::Direct(popular) = plan(
            &Row::Popular,
            10,
            &recent.seen(),
            &lists,
            Some(&model),
            &recent,
        ) else {
            panic!("direct");
        };
        assert!(!ids(&popular).contains(&2) && !ids(&popular).is_empty());
        let reply = direct_reply(MemberId(9), popular);
        assert!(!reply.degraded && reply.reason.is_none());
    }

    #[test]
    fn rows_without_item_data_are_refused_with_what_to_do() {
        let lists = ListsReader::new(PrecomputedLists::default());
        for row in [Row::Genre("Comedy".into()), Row::New] {
            let Plan::Refuse(message) = plan(&row, 5, &[], &lists, None, &signals()) else {
                panic!("{row} refused");
            };
            assert!(message.contains("reco train --items"), "{message}");
        }
        for row in [Row::Trending, Row::Billboard] {
            assert!(matches!(
                plan(&row, 5, &[], &lists, None, &signals()),
                Plan::Aggregates
            ));
            assert_eq!(
                offline_fallback(&row, MemberId(1), 5, &[], &lists, None)
                    .unwrap()
                    .source,
                Source::Popular
            );
        }
        assert_eq!(
            offline_fallback(&Row::Top, MemberId(1), 5, &[], &lists, None)
                .unwrap()
                .source,
            Source::Popular
        );
    }
}
