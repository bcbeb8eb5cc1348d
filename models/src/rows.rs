//! The pure logic of the rows of a page (see `reco_messages::Row`): the
//! member's ranking within a set of candidates (a genre, the newest
//! titles), the items nearest one item, and the titles a member started
//! and did not finish. The actors decide which row to compute and when;
//! this module only computes.

use crate::{ItemFactors, Scored};
use reco_messages::ItemId;
use std::cmp::Ordering;

/// The best `k` of `candidates` for the user vector `user` (the same dot
/// product [`ItemFactors::top_k`] ranks by), best first, leaving out
/// `exclude` (sorted) and candidates the model does not know. Ties go to
/// the lower item id. Cost `O(|candidates| dim)`.
pub fn top_k_within(
    model: &ItemFactors,
    user: &[f32],
    candidates: &[ItemId],
    k: usize,
    exclude: &[ItemId],
) -> Vec<Scored> {
    if user.len() != model.dim() {
        return Vec::new();
    }
    let scored = candidates.iter().filter_map(|&item| {
        if exclude.binary_search(&item).is_ok() {
            return None;
        }
        let row = model.index_of(item)?;
        let score = dot(user, model.row(row));
        score.is_finite().then_some(Scored { item, score })
    });
    best(scored, k)
}

/// A dot product in 8 independent lanes (vectorised by the compiler on any
/// processor). Not the scan kernel's fused multiply-add: scores may differ
/// from [`ItemFactors::top_k`]'s in the last bits, the ranking does not.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (a_blocks, b_blocks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_blocks
        .remainder()
        .iter()
        .zip(b_blocks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_blocks.zip(b_blocks) {
        for lane in 0..8 {
            acc[lane] += x[lane] * y[lane];
        }
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

/// The `k` items nearest `item` by the cosine of their factor vectors, best
/// first, without `item` itself and without `exclude` (sorted). Empty when
/// the model does not know `item` (or its vector is zero). Cost
/// `O(len dim)`: one scan of the factor matrix.
pub fn similar(model: &ItemFactors, item: ItemId, k: usize, exclude: &[ItemId]) -> Vec<Scored> {
    let Some(anchor) = model.index_of(item) else {
        return Vec::new();
    };
    let query = model.row(anchor);
    let norms = model.norms();
    let query_norm = norms[anchor];
    if query_norm == 0.0 || !query_norm.is_finite() {
        return Vec::new();
    }
    let scored = model
        .items()
        .iter()
        .enumerate()
        .filter_map(|(row, &other)| {
            if row == anchor || exclude.binary_search(&other).is_ok() {
                return None;
            }
            let vector = model.row(row);
            let other_norm = norms[row];
            if other_norm == 0.0 {
                return None;
            }
            let dot: f32 = query.iter().zip(vector).map(|(a, b)| a * b).sum();
            let score = dot / (query_norm * other_norm);
            score.is_finite().then_some(Scored { item: other, score })
        });
    best(scored, k)
}

/// The best `k` of `scored`, descending, ties by ascending item id.
fn best(scored: impl Iterator<Item = Scored>, k: usize) -> Vec<Scored> {
    let order = |a: &Scored, b: &Scored| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(Ordering::Equal)
            .then(a.item.cmp(&b.item))
    };
    let mut all: Vec<Scored> = scored.collect();
    if k < all.len() {
        all.select_nth_unstable_by(k, order);
        all.truncate(k);
    }
    all.sort_unstable_by(order);
    all
}

/// What a member did with one title, as the `continue` row reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Watch {
    /// The title.
    pub item: ItemId,
    /// Seconds watched (the largest `play`/`stop` value seen).
    pub watched_secs: f32,
    /// When the member last played or stopped it (ms since the epoch).
    pub last_ms: u64,
    /// The member rated it: done with it, whatever the watch time.
    pub rated: bool,
}

/// The titles a member started and did not finish, most recent first: a
/// title counts when it was played for more than 0 seconds and less than
/// `finished_secs`, and not rated. The score is the share watched
/// (`watched_secs / finished_secs`, in 0..1); the order is recency, as a
/// "continue watching" row is read.
pub fn started_not_finished(watches: &[Watch], finished_secs: f32, k: usize) -> Vec<Scored> {
    let mut started: Vec<&Watch> = watches
        .iter()
        .filter(|w| !w.rated && w.watched_secs > 0.0 && w.watched_secs < finished_secs)
        .collect();
    started.sort_by(|a, b| b.last_ms.cmp(&a.last_ms).then(a.item.cmp(&b.item)));
    started
        .into_iter()
        .take(k)
        .map(|w| Scored {
            item: w.item,
            score: (w.watched_secs / finished_secs).clamp(0.0, 1.0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 6 items in 2 dimensions: 1-3 point along x, 4-6 along y, 3 and 6
    /// longer (popular) than the others.
    fn model() -> ItemFactors {
        let factors = vec![
            1.0, 0.1, //
            0.9, 0.0, //
            3.0, 0.2, //
            0.2, 1.0, //
            0.0, 0.8, //
            0.0, 3.0,
        ];
        ItemFactors::new(
            "t".into(),
            2,
            (1..=6).map(ItemId).collect(),
            factors,
            0.1,
            1.0,
        )
        .unwrap()
    }

    fn ids(list: &[Scored]) -> Vec<u64> {
        list.iter().map(|s| s.item.0).collect()
    }

    #[test]
    fn ranking_within_candidates_uses_the_dot_product_and_skips_excluded() {
        let m = model();
        let within = top_k_within(
            &m,
            &[1.0, 0.0],
            &[ItemId(1), ItemId(3), ItemId(5), ItemId(99)],
            5,
            &[],
        );
        assert_eq!(ids(&within), vec![3, 1, 5]);
        assert_eq!(within[0].score, 3.0);
        let without = top_k_within(&m, &[1.0, 0.0], &[ItemId(1), ItemId(3)], 5, &[ItemId(3)]);
        assert_eq!(ids(&without), vec![1]);
        assert_eq!(
            ids(&top_k_within(
                &m,
                &[1.0, 0.0],
                &[ItemId(1), ItemId(3)],
                1,
                &[]
            )),
            vec![3]
        );
    }

    #[test]
    fn neighbours_are_by_cosine_not_by_length() {
        let m = model();
        let near = similar(&m, ItemId(1), 3, &[]);
        // 3 and 2 point (almost) along 1's direction: both come before
        // any y item, and 4 (leaning towards x) before 6, the longest
        // vector of all.
        assert_eq!(ids(&near), vec![3, 2, 4]);
        assert!(near[0].score <= 1.0 + 1e-6 && near[0].score > 0.99);
        assert_eq!(ids(&similar(&m, ItemId(1), 2, &[ItemId(2)])), vec![3, 4]);
        assert!(similar(&m, ItemId(99), 3, &[]).is_empty());
    }

    #[test]
    fn continue_keeps_started_unfinished_unrated_titles_most_recent_first() {
        let watch = |item, watched_secs, last_ms, rated| Watch {
            item: ItemId(item),
            watched_secs,
            last_ms,
            rated,
        };
        let watches = [
            watch(1, 600.0, 10, false),  // started, older
            watch(2, 6000.0, 20, false), // finished
            watch(3, 1200.0, 30, false), // started, newest
            watch(4, 300.0, 40, true),   // rated: done
            watch(5, 0.0, 50, false),    // never played
        ];
        let row = started_not_finished(&watches, 4800.0, 10);
        assert_eq!(ids(&row), vec![3, 1]);
        assert_eq!(row[0].score, 0.25);
        assert_eq!(ids(&started_not_finished(&watches, 4800.0, 1)), vec![3]);
    }
}
