//! One linear scan of the factor matrix keeping the best k in a bounded heap.
//!
//! Once the heap is full, a row only costs its dot product and one compare
//! with the current threshold (the k-th best score); exclusions are checked
//! (by binary search) only for the rare rows that beat it.

use crate::linalg::dot;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A kept candidate, ordered so that the heap's maximum is the *worst* kept
/// entry: lower score is greater, and on equal scores the higher index is.
#[derive(Clone, Copy, Debug)]
struct Entry {
    score: f32,
    index: usize,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.index.cmp(&other.index))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

/// The best `k >= 1` rows of `factors` (row-major, `dim` wide) by
/// `dot(user, row)`, best first, as (row index, score); NaN scores and the
/// rows in `excluded` (sorted ascending) are skipped.
pub(super) fn scan(
    factors: &[f32],
    dim: usize,
    user: &[f32],
    k: usize,
    excluded: &[usize],
) -> Vec<(usize, f32)> {
    let rows = factors.len() / dim;
    let mut heap: BinaryHeap<Entry> = BinaryHeap::with_capacity(k.min(rows) + 1);
    // Score of the worst kept entry once the heap is full; a row must beat
    // it strictly (a tie loses to the lower index already kept).
    let mut threshold = f32::NEG_INFINITY;
    for (index, row) in factors.chunks_exact(dim).enumerate() {
        let score = dot(user, row);
        let full = heap.len() == k;
        if full && (score <= threshold || score.is_nan()) {
            continue;
        }
        if score.is_nan() || excluded.binary_search(&index).is_ok() {
            continue;
        }
        if full {
            heap.pop();
        }
        heap.push(Entry { score, index });
        if heap.len() == k {
            threshold = heap.peek().map_or(f32::NEG_INFINITY, |e| e.score);
        }
    }
    heap.into_sorted_vec()
        .into_iter()
        .map(|e| (e.index, e.score))
        .collect()
}
