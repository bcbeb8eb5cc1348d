//! One linear scan of the factor matrix keeping the best k in a bounded heap.
//!
//! Once the heap is full, a row only costs its dot product and one compare
//! with the current threshold (the k-th best score); exclusions are checked
//! (by binary search) only for the rare rows that beat it.
//!
//! The scan reads the matrix in a layout of its own ([`blocked`]): blocks
//! of `BLOCK` items stored dimension-major, so the scores of a block are
//! plain vertical multiply-adds into `BLOCK` lanes, with `SPLIT`
//! independent partial sums to hide the add latency and no horizontal
//! reduction per item (measured in `benches/score.rs` against scoring one
//! row at a time). On processors with AVX2 and FMA (detected at run time)
//! a block's 8 scores are one register and each dimension one fused
//! multiply-add (module `fused`, the workspace's one `unsafe`). [`score_dot`]
//! does the same arithmetic for one row-major item, so a score never
//! depends on which path computed it.

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

/// Items per block of the scoring layout (two SSE registers, one AVX one,
/// of scores).
pub(crate) const BLOCK: usize = 8;
/// Independent partial sums per score: dimension `d` is added to partial
/// `d % SPLIT`, so consecutive multiply-adds do not wait on each other.
const SPLIT: usize = 4;
/// The same for the AVX2 + FMA kernel, whose partials are whole registers:
/// eight chains keep both FMA units busy (four leave it waiting on the
/// 4-cycle latency).
const FUSED_SPLIT: usize = 8;

/// The factor matrix re-laid for scoring: blocks of [`BLOCK`] items, each
/// stored dimension-major (`dim x BLOCK`: the values of dimension 0 for the
/// block's items, then dimension 1, …); the last block is padded with
/// zeros. A block's scores are then `BLOCK` lanes that accumulate
/// `user[d] * column[d]` with no horizontal reduction.
pub(crate) fn blocked(factors: &[f32], dim: usize) -> Vec<f32> {
    let rows = factors.len() / dim;
    let blocks = rows.div_ceil(BLOCK);
    let mut out = vec![0.0f32; blocks * BLOCK * dim];
    for (i, row) in factors.chunks_exact(dim).enumerate() {
        let (b, r) = (i / BLOCK, i % BLOCK);
        let base = b * BLOCK * dim;
        for (d, &v) in row.iter().enumerate() {
            out[base + d * BLOCK + r] = v;
        }
    }
    out
}

/// `dot(user, item)` for the [`BLOCK`] items of one block of the
/// [`blocked`] layout. Per item: `SPLIT` partial sums over the dimensions
/// `d ≡ j (mod SPLIT)` in increasing `d`, then `(p0 + p1) + (p2 + p3)` —
/// the same arithmetic as [`score_dot`].
#[inline(always)]
fn block_scores(user: &[f32], block: &[f32]) -> [f32; BLOCK] {
    let mut acc = [[0.0f32; BLOCK]; SPLIT];
    let columns = block.chunks_exact(BLOCK * SPLIT);
    let users = user.chunks_exact(SPLIT);
    let (tail_columns, tail_users) = (columns.remainder(), users.remainder());
    for (columns, users) in columns.zip(users) {
        for (j, acc) in acc.iter_mut().enumerate() {
            let u = users[j];
            let column: &[f32; BLOCK] = columns[j * BLOCK..(j + 1) * BLOCK]
                .try_into()
                .expect("a column is BLOCK wide");
            for r in 0..BLOCK {
                acc[r] += u * column[r];
            }
        }
    }
    for (j, (&u, column)) in tail_users
        .iter()
        .zip(tail_columns.chunks_exact(BLOCK))
        .enumerate()
    {
        for r in 0..BLOCK {
            acc[j][r] += u * column[r];
        }
    }
    let mut out = [0.0f32; BLOCK];
    for (r, score) in out.iter_mut().enumerate() {
        *score = (acc[0][r] + acc[1][r]) + (acc[2][r] + acc[3][r]);
    }
    out
}

/// The scoring dot product of one row-major item: exactly the score
/// [`scan`] gives it on this processor (with fused multiply-adds where the
/// scan uses them: `mul_add` rounds once, as the hardware instruction does).
pub(crate) fn score_dot(user: &[f32], row: &[f32]) -> f32 {
    debug_assert_eq!(user.len(), row.len());
    if fused_available() {
        let mut acc = [0.0f32; FUSED_SPLIT];
        for (d, (&u, &v)) in user.iter().zip(row).enumerate() {
            let a = &mut acc[d % FUSED_SPLIT];
            *a = u.mul_add(v, *a);
        }
        return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
    let mut acc = [0.0f32; SPLIT];
    for (d, (&u, &v)) in user.iter().zip(row).enumerate() {
        acc[d % SPLIT] += u * v;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// True when the scan runs its AVX2 + FMA kernel on this processor
/// (detected at run time, so one binary runs on any x86-64; the answer is
/// cached by the standard library).
pub(crate) fn fused_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One query of a scan: the user vector, how many items, and the rows to
/// skip (sorted ascending).
pub(crate) type ScanQuery<'a> = (&'a [f32], usize, &'a [usize]);

/// A slot of the [`blocked`] layout that holds no item (a cluster's
/// padding).
pub(crate) const EMPTY_SLOT: u32 = u32::MAX;

/// What a scan reads: a matrix in the [`blocked`] layout and which row each
/// of its slots holds. Unclustered models store rows in order (slot `s` is
/// row `s`, the slots past `rows` are the last block's padding); clustered
/// ones store each cluster's rows together, padded to whole blocks, and
/// `slots` names the row of every slot ([`EMPTY_SLOT`] for padding).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout<'a> {
    pub(crate) blocked: &'a [f32],
    pub(crate) dim: usize,
    pub(crate) rows: usize,
    pub(crate) slots: Option<&'a [u32]>,
}

impl Layout<'_> {
    /// Number of blocks.
    pub(crate) fn blocks(&self) -> usize {
        self.blocked.len() / (self.dim * BLOCK)
    }

    /// The row held by `slot`, `None` for padding.
    #[inline(always)]
    fn row(&self, slot: usize) -> Option<usize> {
        match self.slots {
            Some(slots) => match slots.get(slot) {
                Some(&row) if row != EMPTY_SLOT => Some(row as usize),
                _ => None,
            },
            None => (slot < self.rows).then_some(slot),
        }
    }
}

/// A run of blocks and the queries (indices into the scan's queries) that
/// read it. A query must not visit a block twice.
pub(crate) type Visit = (std::ops::Range<usize>, Vec<usize>);

/// The best `k >= 1` items of `layout` by `dot(user, item)`, best first, as (row index,
/// score); NaN scores and the rows in `excluded` (sorted ascending) are
/// skipped. A batch of one.
pub(crate) fn scan(
    layout: Layout<'_>,
    user: &[f32],
    k: usize,
    excluded: &[usize],
) -> Vec<(usize, f32)> {
    let mut found = scan_batch(layout, &[(user, k, excluded)]);
    found.pop().unwrap_or_default()
}

/// [`scan`] with the portable kernel whatever the processor has (the
/// benchmark's baseline).
pub(crate) fn scan_portable(layout: Layout<'_>, user: &[f32], k: usize) -> Vec<(usize, f32)> {
    let visits = [(0..layout.blocks(), vec![0])];
    let mut found = scan_visits_with(layout, &[(user, k, &[])], &visits, block_scores);
    found.pop().unwrap_or_default()
}

/// [`scan`] for several queries in one pass over the whole `layout`: each
/// block is scored for every query while it is in cache. Answers are the
/// same as one `scan` per query (the same per-item arithmetic, and the
/// kept set does not depend on the order rows are read in).
pub(crate) fn scan_batch(layout: Layout<'_>, queries: &[ScanQuery<'_>]) -> Vec<Vec<(usize, f32)>> {
    let visits = [(0..layout.blocks(), (0..queries.len()).collect())];
    scan_visits(layout, queries, &visits)
}

/// The scan of only some blocks per query: each [`Visit`] is a run of
/// blocks scored for the queries that name it (the clusters a pruned scan
/// probes), block by block so a run shared by several queries is read
/// once.
pub(crate) fn scan_visits(
    layout: Layout<'_>,
    queries: &[ScanQuery<'_>],
    visits: &[Visit],
) -> Vec<Vec<(usize, f32)>> {
    #[cfg(target_arch = "x86_64")]
    if fused_available() {
        // SAFETY: the processor has AVX2 and FMA (checked just above).
        #[allow(unsafe_code)]
        return unsafe { fused::scan_visits(layout, queries, visits) };
    }
    scan_visits_with(layout, queries, visits, block_scores)
}

/// The scan loop around a block kernel `score(user, block)`.
#[inline(always)]
fn scan_visits_with(
    layout: Layout<'_>,
    queries: &[ScanQuery<'_>],
    visits: &[Visit],
    mut score: impl FnMut(&[f32], &[f32]) -> [f32; BLOCK],
) -> Vec<Vec<(usize, f32)>> {
    let mut tops: Vec<Top<'_>> = queries
        .iter()
        .map(|(_, k, excluded)| Top::new(*k, layout.rows, excluded))
        .collect();
    let width = layout.dim * BLOCK;
    for (blocks, readers) in visits {
        for b in blocks.clone() {
            let Some(block) = layout.blocked.get(b * width..(b + 1) * width) else {
                break;
            };
            let first = b * BLOCK;
            for &q in readers {
                let (Some((user, _, _)), Some(top)) = (queries.get(q), tops.get_mut(q)) else {
                    continue;
                };
                let scores = score(user, block);
                if top.might_take(&scores) {
                    for (r, &score) in scores.iter().enumerate() {
                        if let Some(row) = layout.row(first + r) {
                            top.offer(row, score);
                        }
                    }
                }
            }
        }
    }
    tops.into_iter().map(Top::into_sorted).collect()
}

/// The AVX2 + FMA kernel: one block's 8 scores are one register, each
/// dimension one fused multiply-add into one of `FUSED_SPLIT` partial sums
/// (a single rounding per step), which [`score_dot`] reproduces with
/// `mul_add`.
///
/// The one place of the workspace with `unsafe` (`STYLE.md`: a measured
/// kernel may, with a comment): calling `target_feature` functions and the
/// unaligned loads. Measured in `benches/score.rs` against the portable
/// kernel of the same run.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod fused {
    use super::{scan_visits_with, Layout, ScanQuery, Visit, BLOCK, FUSED_SPLIT};
    use std::arch::x86_64::{
        _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };

    /// # Safety
    /// The processor must have AVX2 and FMA; `block` must hold at least
    /// `user.len() * BLOCK` values (a block of the blocked layout does).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn block_scores(user: &[f32], block: &[f32]) -> [f32; BLOCK] {
        assert!(block.len() >= user.len() * BLOCK);
        let mut column = block.as_ptr();
        let mut acc = [_mm256_setzero_ps(); FUSED_SPLIT];
        let chunks = user.chunks_exact(FUSED_SPLIT);
        let tail = chunks.remainder();
        for u in chunks {
            let u: &[f32; FUSED_SPLIT] = u.try_into().expect("an exact chunk");
            for j in 0..FUSED_SPLIT {
                // SAFETY: the column of dimension d = (chunk * FUSED_SPLIT
                // + j) < user.len() starts at d * BLOCK inside `block`.
                acc[j] = _mm256_fmadd_ps(
                    _mm256_set1_ps(u[j]),
                    unsafe { _mm256_loadu_ps(column.add(j * BLOCK)) },
                    acc[j],
                );
            }
            // SAFETY: still within (or one past) `block`.
            column = unsafe { column.add(FUSED_SPLIT * BLOCK) };
        }
        for (j, &u) in tail.iter().enumerate() {
            // SAFETY: as above, for the last dimensions.
            acc[j] = _mm256_fmadd_ps(
                _mm256_set1_ps(u),
                unsafe { _mm256_loadu_ps(column.add(j * BLOCK)) },
                acc[j],
            );
        }
        let sum = _mm256_add_ps(
            _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])),
            _mm256_add_ps(_mm256_add_ps(acc[4], acc[5]), _mm256_add_ps(acc[6], acc[7])),
        );
        let mut out = [0.0f32; BLOCK];
        // SAFETY: `out` holds BLOCK = 8 floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
        out
    }

    /// # Safety
    /// The processor must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn scan_visits(
        layout: Layout<'_>,
        queries: &[ScanQuery<'_>],
        visits: &[Visit],
    ) -> Vec<Vec<(usize, f32)>> {
        // SAFETY: this function's own precondition; blocks are dim * BLOCK.
        scan_visits_with(layout, queries, visits, |user, block| unsafe {
            block_scores(user, block)
        })
    }
}

/// The bounded heap of the best `k` rows seen so far.
struct Top<'a> {
    heap: BinaryHeap<Entry>,
    k: usize,
    excluded: &'a [usize],
    /// Score of the worst kept entry once the heap is full; a row must
    /// reach it (on a tie the lower row index wins, whichever came first).
    threshold: f32,
}

impl<'a> Top<'a> {
    fn new(k: usize, rows: usize, excluded: &'a [usize]) -> Self {
        Top {
            heap: BinaryHeap::with_capacity(k.min(rows) + 1),
            k,
            excluded,
            threshold: f32::NEG_INFINITY,
        }
    }

    /// False when the heap is full and no score of the block reaches the
    /// worst kept one (NaN reaches nothing): the block can be skipped
    /// whole, which is what most blocks are once the heap has filled.
    #[inline(always)]
    fn might_take(&self, scores: &[f32; BLOCK]) -> bool {
        if self.heap.len() < self.k {
            return true;
        }
        let threshold = self.threshold;
        scores.iter().fold(false, |any, &s| any | (s >= threshold))
    }

    /// Keeps row `index` if it is among the best `k` so far: by score, and
    /// on equal scores by lower index, so the kept set is the same in
    /// whatever order rows are offered (a clustered layout reads them out
    /// of order).
    #[inline(always)]
    fn offer(&mut self, index: usize, score: f32) {
        if score.is_nan() || self.k == 0 {
            return;
        }
        let entry = Entry { score, index };
        let full = self.heap.len() == self.k;
        if full && (score < self.threshold || self.heap.peek().is_some_and(|worst| entry >= *worst))
        {
            return;
        }
        if self.excluded.binary_search(&index).is_ok() {
            return;
        }
        if full {
            self.heap.pop();
        }
        self.heap.push(entry);
        if self.heap.len() == self.k {
            self.threshold = self.heap.peek().map_or(f32::NEG_INFINITY, |e| e.score);
        }
    }

    fn into_sorted(self) -> Vec<(usize, f32)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|e| (e.index, e.score))
            .collect()
    }
}
