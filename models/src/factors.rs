//! Factor matrices: the frozen item factors a serving node holds (fold-in,
//! scoring, top-k, binary artifact) and the user factors training produces.

pub(crate) mod top_k;

use crate::artifact::{self, ArtifactError, Cursor};
use crate::history::MemberHistory;
use crate::linalg::{self, Penalty, Solver};
pub use crate::model_error::{ModelError, MAX_DIM};
use crate::Scored;
use reco_messages::{ItemId, MemberId};
use std::collections::HashMap;
use std::sync::Arc;

/// Magic bytes of an item-factors artifact.
const MAGIC: &[u8; 8] = b"RECOITF\0";

/// Tag that opens the clusters section of a model body.
const CLUSTERS_TAG: &[u8; 4] = b"CLUS";

/// How the online scan reads the catalogue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scan {
    /// Every item is scored: the exact top k.
    #[default]
    Exact,
    /// The cluster centres are scored, then only the items of the best
    /// `probes` clusters: time falls with the share of the catalogue left
    /// unread, and so may recall (measured in `benches/pruned.rs`). A model
    /// without clusters, or `probes` at least its cluster count, scans
    /// exactly.
    Pruned {
        /// Clusters whose items are scored (>= 1).
        probes: usize,
    },
}

/// The item clusters of a model (see [`crate::kmeans`]) and the scan
/// layout they give: each cluster's rows stored together.
#[derive(Clone, Debug)]
struct Clusters {
    /// The cluster of each row: what the artifact stores.
    assignment: Vec<u32>,
    /// Number of clusters.
    count: usize,
    /// The centres (each the mean of its cluster's rows, recomputed on
    /// load) in the scan's blocked layout.
    centres: Vec<f32>,
    /// Clusters without a row (never probed), ascending.
    empty: Vec<usize>,
    /// The row each slot of the model's blocked matrix holds
    /// (`top_k::EMPTY_SLOT` for a cluster's padding).
    slots: Vec<u32>,
    /// Cluster `c`'s blocks are `blocks[c]..blocks[c + 1]`.
    blocks: Vec<usize>,
}

/// One member's part of [`ItemFactors::top_k_batch`].
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// The member's vector (as [`ItemFactors::fold_in`] returns it).
    pub user: &'a [f32],
    /// How many items to return.
    pub k: usize,
    /// Items to leave out (any order; unknown ids are ignored).
    pub exclude: &'a [ItemId],
}

/// Frozen item factors as served: the model a serving node scores with.
///
/// Dense row-major f32 `[len x dim]` (and a copy in the scoring kernel's
/// blocked layout, so scoring is one linear scan), the item ids of the rows, and the `dim x dim` Gram matrix `Y^T Y` that fold-in
/// needs (recomputed on load, never stored, so it cannot disagree with the
/// factors). Also keeps the `reg` and `alpha` of training, since fold-in must
/// use the same, and a version string to tag replies with.
#[derive(Clone, Debug)]
pub struct ItemFactors {
    version: String,
    dim: usize,
    items: Vec<ItemId>,
    index: HashMap<ItemId, u32>,
    factors: Vec<f32>,
    /// The same values in the scan's blocked layout (see `top_k.rs`).
    blocked: Vec<f32>,
    gram: Vec<f64>,
    reg: f32,
    alpha: f32,
    reg_exponent: f32,
    /// The trained members' interactions, when the artifact carries them.
    history: Option<Arc<MemberHistory>>,
    /// The item clusters of a pruned scan, when the artifact carries them
    /// (`blocked` is then in cluster order).
    clusters: Option<Arc<Clusters>>,
    /// Each row's Euclidean norm, computed on first use ([`Self::norms`]).
    norms: std::sync::OnceLock<Vec<f32>>,
}

impl PartialEq for ItemFactors {
    /// Equal when everything stored in an artifact is equal (bit-for-bit
    /// factors); the derived Gram matrix and index follow from those.
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version
            && self.dim == other.dim
            && self.items == other.items
            && self.reg.to_bits() == other.reg.to_bits()
            && self.alpha.to_bits() == other.alpha.to_bits()
            && self.reg_exponent.to_bits() == other.reg_exponent.to_bits()
            && self.history == other.history
            && self.clusters.as_ref().map(|c| &c.assignment)
                == other.clusters.as_ref().map(|c| &c.assignment)
            && self.factors.len() == other.factors.len()
            && self
                .factors
                .iter()
                .zip(&other.factors)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

impl ItemFactors {
    /// Builds a model from its parts, checking everything the kernels rely on.
    ///
    /// # Errors
    /// [`ModelError`] when `dim` is outside `1..=1024`, `factors.len() !=
    /// items.len() * dim`, a value is not finite, an id repeats, or
    /// `reg`/`alpha` are unusable.
    pub fn new(
        version: String,
        dim: usize,
        items: Vec<ItemId>,
        factors: Vec<f32>,
        reg: f32,
        alpha: f32,
    ) -> Result<Self, ModelError> {
        if dim == 0 || dim > MAX_DIM {
            return Err(ModelError::Dim { dim });
        }
        let expected = items.len().checked_mul(dim);
        if expected != Some(factors.len()) {
            return Err(ModelError::Length {
                len: items.len(),
                dim,
                expected: expected.unwrap_or(usize::MAX),
                found: factors.len(),
            });
        }
        if !(reg.is_finite() && reg > 0.0 && alpha.is_finite() && alpha >= 0.0) {
            return Err(ModelError::Params { reg, alpha });
        }
        if let Some(index) = factors.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::NonFinite { index });
        }
        let mut index = HashMap::with_capacity(items.len());
        for (i, &item) in items.iter().enumerate() {
            let i = u32::try_from(i).map_err(|_| ModelError::Length {
                len: items.len(),
                dim,
                expected: u32::MAX as usize,
                found: items.len(),
            })?;
            if index.insert(item, i).is_some() {
                return Err(ModelError::DuplicateId { id: item.0 });
            }
        }
        let gram = linalg::gram(&factors, dim);
        let blocked = top_k::blocked(&factors, dim);
        Ok(Self {
            version,
            dim,
            items,
            index,
            factors,
            blocked,
            gram,
            reg,
            alpha,
            reg_exponent: 0.0,
            history: None,
            clusters: None,
            norms: std::sync::OnceLock::new(),
        })
    }

    /// Each row's Euclidean norm, in row order (the cosine of the
    /// `because:` row): computed once per model, on first use, instead of
    /// once per item per request.
    pub fn norms(&self) -> &[f32] {
        self.norms.get_or_init(|| {
            self.factors
                .chunks_exact(self.dim)
                .map(|row| linalg::dot(row, row).sqrt())
                .collect()
        })
    }

    /// Attaches item clusters: `assignment[row]` is the cluster of each
    /// row (as [`crate::kmeans::kmeans`] returns it). The scan layout is
    /// rebuilt in cluster order and each centre is the mean of its rows, so
    /// a [`Scan::Pruned`] scan can rank clusters before reading items. The
    /// exact scan gives the same answers with or without clusters. An empty
    /// catalogue keeps no clusters.
    ///
    /// # Errors
    /// [`ModelError::Clusters`] when `assignment` does not have one entry
    /// per item or names more clusters than there are items.
    pub fn with_clusters(mut self, assignment: Vec<u32>) -> Result<Self, ModelError> {
        let len = self.items.len();
        if assignment.len() != len {
            return Err(ModelError::Clusters("not one cluster per item"));
        }
        if len == 0 {
            self.clusters = None;
            self.blocked = top_k::blocked(&self.factors, self.dim);
            return Ok(self);
        }
        let count = assignment.iter().max().map_or(0, |&c| c as usize + 1);
        if count > len {
            return Err(ModelError::Clusters("more clusters than items"));
        }
        let dim = self.dim;
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); count];
        for (row, &c) in assignment.iter().enumerate() {
            members[c as usize].push(row as u32);
        }
        let mut centres = vec![0.0f32; count * dim];
        let mut sum = vec![0.0f64; dim];
        let (mut slots, mut blocks, mut empty) = (Vec::new(), vec![0usize], Vec::new());
        for (c, rows) in members.iter().enumerate() {
            if rows.is_empty() {
                empty.push(c);
            }
            sum.fill(0.0);
            for &r in rows {
                for (s, &v) in sum.iter_mut().zip(self.row(r as usize)) {
                    *s += f64::from(v);
                }
                slots.push(r);
            }
            for (v, s) in centres[c * dim..(c + 1) * dim].iter_mut().zip(&sum) {
                *v = (s / rows.len().max(1) as f64) as f32;
            }
            while slots.len() % top_k::BLOCK != 0 {
                slots.push(top_k::EMPTY_SLOT);
            }
            blocks.push(slots.len() / top_k::BLOCK);
        }
        let mut ordered = vec![0.0f32; slots.len() * dim];
        for (slot, &row) in slots.iter().enumerate() {
            if row != top_k::EMPTY_SLOT {
                ordered[slot * dim..(slot + 1) * dim].copy_from_slice(self.row(row as usize));
            }
        }
        self.blocked = top_k::blocked(&ordered, dim);
        self.clusters = Some(Arc::new(Clusters {
            assignment,
            count,
            centres: top_k::blocked(&centres, dim),
            empty,
            slots,
            blocks,
        }));
        Ok(self)
    }

    /// Clusters the items with [`crate::kmeans::kmeans`] and attaches the
    /// result ([`with_clusters`](Self::with_clusters)).
    pub fn clustered(self, params: &crate::kmeans::KMeansParams) -> Self {
        let assignment = crate::kmeans::kmeans(&self.factors, self.dim, params);
        let unclustered = self.clone();
        // kmeans gives one cluster per row, fewer clusters than rows.
        self.with_clusters(assignment).unwrap_or(unclustered)
    }

    /// Number of item clusters (0: the model has none and always scans
    /// exactly).
    pub fn clusters(&self) -> usize {
        self.clusters.as_ref().map_or(0, |c| c.count)
    }

    /// The cluster of each row, when the model has clusters.
    pub fn cluster_assignment(&self) -> Option<&[u32]> {
        self.clusters.as_ref().map(|c| c.assignment.as_slice())
    }

    /// What the scan reads: the blocked matrix and, for a clustered model,
    /// the row of each slot.
    fn layout(&self) -> top_k::Layout<'_> {
        top_k::Layout {
            blocked: &self.blocked,
            dim: self.dim,
            rows: self.items.len(),
            slots: self.clusters.as_ref().map(|c| c.slots.as_slice()),
        }
    }

    /// Attaches the trained members' interactions (rows of this model), so
    /// that serving folds a member in over its history as well as its
    /// recent events ([`fold_in_member`](Self::fold_in_member)).
    ///
    /// # Errors
    /// [`ModelError::Length`] when a history row is not a row of this model.
    pub fn with_history(mut self, history: MemberHistory) -> Result<Self, ModelError> {
        if let Some(bad) = history.max_row().filter(|&r| r >= self.items.len()) {
            return Err(ModelError::Length {
                len: self.items.len(),
                dim: self.dim,
                expected: self.items.len(),
                found: bad + 1,
            });
        }
        self.history = Some(Arc::new(history));
        Ok(self)
    }

    /// The trained members' interactions, when the model carries them
    /// (artifacts written before they existed do not).
    pub fn history(&self) -> Option<&MemberHistory> {
        self.history.as_deref()
    }

    /// Whether the model knows `member`'s training history.
    pub fn knows_member(&self, member: MemberId) -> bool {
        self.history.as_ref().is_some_and(|h| h.contains(member))
    }

    /// The items of `member`'s training history (empty when unknown): left
    /// out of its recommendations like seen items.
    pub fn history_items(&self, member: MemberId) -> Vec<ItemId> {
        match &self.history {
            Some(h) => h
                .get(member)
                .0
                .iter()
                .map(|&r| self.items[r as usize])
                .collect(),
            None => Vec::new(),
        }
    }

    /// Fold-in over a member's history ∪ its recent events: the user vector
    /// of [`fold_in`](Self::fold_in) for the member's training interactions
    /// (each weight times `history_weight`) together with `recent` (item,
    /// weight) pairs. An item in both keeps the stronger weight
    /// ([`crate::confidence::combine`]). A member the model has no history
    /// for is folded in from `recent` alone; `None` when nothing usable is
    /// left.
    ///
    /// With no recent event and `history_weight` 1 this is the member's
    /// trained vector; with one new event, the vector batch ALS would give
    /// the member with that event added, the item factors held fixed.
    pub fn fold_in_member(
        &self,
        member: MemberId,
        recent: &[(ItemId, f32)],
        history_weight: f32,
    ) -> Option<Vec<f32>> {
        let (rows, weights) = match &self.history {
            Some(h) if history_weight.is_finite() && history_weight > 0.0 => h.get(member),
            _ => (&[][..], &[][..]),
        };
        let mut known: Vec<(usize, f32)> = Vec::with_capacity(rows.len() + recent.len());
        known.extend(
            rows.iter()
                .zip(weights)
                .map(|(&r, &w)| (r as usize, w * history_weight)),
        );
        known.extend(
            recent
                .iter()
                .filter(|(_, w)| w.is_finite() && *w > 0.0)
                .filter_map(|&(item, w)| self.index_of(item).map(|i| (i, w))),
        );
        if known.is_empty() {
            return None;
        }
        known.sort_by_key(|e| e.0);
        known.dedup_by(|later, first| {
            if later.0 == first.0 {
                first.1 = crate::confidence::combine(first.1, later.1);
                true
            } else {
                false
            }
        });
        self.solve_rows(known)
    }

    /// The regularised solve of fold-in over (row, weight) pairs, rows
    /// ascending and distinct.
    fn solve_rows(&self, known: Vec<(usize, f32)>) -> Option<Vec<f32>> {
        let mut out = vec![0.0f32; self.dim];
        let penalty = Penalty {
            reg: self.reg,
            exponent: self.reg_exponent,
        };
        let solved = Solver::new(self.dim).solve(
            &self.gram,
            penalty,
            self.alpha,
            &self.factors,
            known.into_iter(),
            &mut out,
        );
        solved.then_some(out)
    }

    /// Sets the frequency scaling of the regularisation training used (see
    /// [`crate::AlsParams::reg_exponent`]); fold-in applies the same.
    ///
    /// # Errors
    /// [`ModelError::Params`] unless `0 <= exponent <= 2`.
    pub fn with_reg_exponent(mut self, exponent: f32) -> Result<Self, ModelError> {
        if !(exponent.is_finite() && (0.0..=2.0).contains(&exponent)) {
            return Err(ModelError::Params {
                reg: self.reg,
                alpha: self.alpha,
            });
        }
        self.reg_exponent = exponent;
        Ok(self)
    }

    /// Frequency scaling of the regularisation (0: constant `reg`).
    pub fn reg_exponent(&self) -> f32 {
        self.reg_exponent
    }

    /// The version string given at training, to tag replies and artifacts.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Factors per item; a user vector must have this length.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of items in the catalogue of this model.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the model has no items (it then recommends nothing).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Regularisation used in training (and by fold-in).
    pub fn reg(&self) -> f32 {
        self.reg
    }

    /// Confidence scale used in training (and by fold-in): `c = 1 + alpha w`.
    pub fn alpha(&self) -> f32 {
        self.alpha
    }

    /// Row index of an item, `None` if the model does not know it (a new
    /// title: the caller falls back).
    pub fn index_of(&self, item: ItemId) -> Option<usize> {
        self.index.get(&item).map(|&i| i as usize)
    }

    /// Item id of a row.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn item_at(&self, index: usize) -> ItemId {
        self.items[index]
    }

    /// The item ids, by row.
    pub fn items(&self) -> &[ItemId] {
        &self.items
    }

    /// Factors of one row.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn row(&self, index: usize) -> &[f32] {
        &self.factors[index * self.dim..(index + 1) * self.dim]
    }

    /// The whole row-major factor matrix (`len() * dim()` values).
    pub fn factors(&self) -> &[f32] {
        &self.factors
    }

    /// Score of one item for a user vector (the same dot product `top_k`
    /// ranks by); `None` for an unknown item or a user vector of the wrong
    /// length. For re-ranking a few candidates without a full scan.
    pub fn score(&self, user: &[f32], item: ItemId) -> Option<f32> {
        if user.len() != self.dim {
            return None;
        }
        self.index_of(item)
            .map(|i| top_k::score_dot(user, self.row(i)))
    }

    /// Fold-in: the user vector ALS would compute for a member with these
    /// (item, weight) interactions against the frozen item factors,
    /// `x = (YtY + Yu^T (Cu - I) Yu + reg I)^-1 Yu^T Cu p` with
    /// `c = 1 + alpha w`, `p = 1`.
    ///
    /// This is how the online path personalises without retraining: a
    /// member's recent events become a vector in milliseconds. Repeated items
    /// have their weights summed (as [`crate::Interactions`] does); items
    /// unknown to the model and weights that are not positive and finite are
    /// ignored. `None` when no usable item is left.
    ///
    /// Cost `O(n_u dim^2 + dim^3)`; allocates only per interaction, never per
    /// catalogue item.
    pub fn fold_in(&self, interactions: &[(ItemId, f32)]) -> Option<Vec<f32>> {
        let mut known: Vec<(usize, f32)> = interactions
            .iter()
            .filter(|(_, w)| w.is_finite() && *w > 0.0)
            .filter_map(|&(item, w)| self.index_of(item).map(|i| (i, w)))
            .collect();
        if known.is_empty() {
            return None;
        }
        // Stable: duplicates are summed in input order, as in Interactions.
        known.sort_by_key(|e| e.0);
        known.dedup_by(|later, first| {
            if later.0 == first.0 {
                first.1 += later.1;
                true
            } else {
                false
            }
        });
        self.solve_rows(known)
    }

    /// Scoring kernel + top-k: `dot(user, row)` for every item, the best `k`
    /// in descending score (ties: lower row index first), skipping `exclude`
    /// (ids not in the model are ignored).
    ///
    /// `k` larger than the catalogue returns every non-excluded item. Items
    /// scoring NaN are skipped, and a user vector whose length is not
    /// [`dim`](Self::dim) scores nothing (empty list).
    ///
    /// This is the hot kernel of the request path: one linear scan of the
    /// factor matrix with an auto-vectorised dot product and a bounded heap,
    /// `O(n log k)` time and `O(k + |exclude|)` memory.
    pub fn top_k(&self, user: &[f32], k: usize, exclude: &[ItemId]) -> Vec<Scored> {
        self.top_k_excluding(user, k, &self.excluded_rows(exclude))
    }

    /// The rows of `exclude` (ids not in the model are ignored), sorted and
    /// deduplicated, as the scan takes them.
    fn excluded_rows(&self, exclude: &[ItemId]) -> Vec<usize> {
        let mut rows: Vec<usize> = exclude.iter().filter_map(|&i| self.index_of(i)).collect();
        rows.sort_unstable();
        rows.dedup();
        rows
    }

    /// A scan's (row, score) pairs as scored items.
    fn scored(&self, found: Vec<(usize, f32)>) -> Vec<Scored> {
        found
            .into_iter()
            .map(|(index, score)| Scored {
                item: self.items[index],
                score,
            })
            .collect()
    }

    /// [`top_k`](Self::top_k) for several members in one pass over the
    /// factor matrix: each block of rows is scored for every query while it
    /// is in the core's cache, so a batch of B members reads the matrix once
    /// instead of B times. Each answer is exactly what `top_k` gives for
    /// that query alone.
    ///
    /// This is how a model worker serves the requests that queued up while
    /// it was busy: throughput rises with load instead of latency.
    pub fn top_k_batch(&self, queries: &[Query<'_>]) -> Vec<Vec<Scored>> {
        self.top_k_batch_with(queries, Scan::Exact)
    }

    /// [`top_k_batch`](Self::top_k_batch) with the scan chosen: exact, or
    /// pruned to the items of each query's best `probes` clusters (the
    /// centres of every query are ranked in one pass, then each probed
    /// cluster is read once for all the queries that probe it). A query
    /// whose probed clusters hold fewer than `k` items it may take is
    /// scanned exactly, so a pruned answer is never shorter than the exact
    /// one.
    pub fn top_k_batch_with(&self, queries: &[Query<'_>], scan: Scan) -> Vec<Vec<Scored>> {
        let live: Vec<(usize, Vec<usize>)> = queries
            .iter()
            .enumerate()
            .filter(|(_, q)| q.user.len() == self.dim && q.k > 0)
            .map(|(at, q)| (at, self.excluded_rows(q.exclude)))
            .collect();
        let scan_queries: Vec<top_k::ScanQuery<'_>> = live
            .iter()
            .map(|(at, excluded)| (queries[*at].user, queries[*at].k, excluded.as_slice()))
            .collect();
        let found = match (scan, self.clusters.as_deref()) {
            (Scan::Pruned { probes }, Some(clusters))
                if probes < clusters.count - clusters.empty.len() =>
            {
                let visits = pruned_visits(clusters, self.dim, &scan_queries, probes.max(1));
                let mut found = top_k::scan_visits(self.layout(), &scan_queries, &visits);
                // Probed clusters short of k items once exclusions are left
                // out: that query is scanned exactly, never answered short.
                let short: Vec<usize> = (0..found.len())
                    .filter(|&q| found[q].len() < scan_queries[q].1)
                    .collect();
                if !short.is_empty() {
                    let again: Vec<top_k::ScanQuery<'_>> =
                        short.iter().map(|&q| scan_queries[q]).collect();
                    let exact = top_k::scan_batch(self.layout(), &again);
                    for (q, best) in short.into_iter().zip(exact) {
                        found[q] = best;
                    }
                }
                found
            }
            _ => top_k::scan_batch(self.layout(), &scan_queries),
        };
        let mut answers = vec![Vec::new(); queries.len()];
        for ((at, _), best) in live.iter().zip(found) {
            answers[*at] = self.scored(best);
        }
        answers
    }

    /// [`top_k`](Self::top_k) with the scan chosen (see
    /// [`top_k_batch_with`](Self::top_k_batch_with)).
    pub fn top_k_with(
        &self,
        user: &[f32],
        k: usize,
        exclude: &[ItemId],
        scan: Scan,
    ) -> Vec<Scored> {
        let query = Query { user, k, exclude };
        self.top_k_batch_with(&[query], scan)
            .pop()
            .unwrap_or_default()
    }

    /// [`top_k`](Self::top_k) on the portable kernel whatever the processor
    /// has: the same-run baseline of the AVX2 + FMA kernel in
    /// `benches/score.rs` (scores may differ from `top_k`'s in the last
    /// bits).
    #[doc(hidden)]
    pub fn top_k_portable(&self, user: &[f32], k: usize) -> Vec<Scored> {
        if user.len() != self.dim || k == 0 {
            return Vec::new();
        }
        self.scored(top_k::scan_portable(self.layout(), user, k))
    }

    /// [`top_k`](Self::top_k) with exclusions given as sorted, deduplicated
    /// row indices (batch paths already have indices).
    pub(crate) fn top_k_excluding(
        &self,
        user: &[f32],
        k: usize,
        excluded: &[usize],
    ) -> Vec<Scored> {
        if user.len() != self.dim || k == 0 {
            return Vec::new();
        }
        self.scored(top_k::scan(self.layout(), user, k, excluded))
    }

    /// Encodes the model as a versioned, checksummed artifact (see
    /// [`crate::artifact`]) with this body, little-endian:
    ///
    /// ```text
    /// dim u32 | len u64 | reg f32 | alpha f32 | version_len u32 | version utf-8
    /// | len x item id u64 | len*dim x f32 (row-major) [| reg_exponent f32]
    /// ```
    ///
    /// The trailing `reg_exponent` is written only when it is not 0 or a
    /// section follows, so a model without frequency-scaled regularisation,
    /// history or clusters is byte-identical to what earlier builds wrote,
    /// and their artifacts still load. Tagged sections follow, each at most
    /// once and in this order: the members' history (see
    /// [`crate::history`]), then the item clusters:
    ///
    /// ```text
    /// b"CLUS" | clusters u32 | len x cluster u32 (by row)
    /// ```
    ///
    /// Only the assignment is stored; the centres and the cluster-ordered
    /// layout are rebuilt on load, so they cannot disagree with the
    /// factors. A model without the section scans exactly whatever the
    /// configuration asks.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(
            24 + self.version.len() + self.items.len() * 8 + self.factors.len() * 4,
        );
        body.extend_from_slice(&(self.dim as u32).to_le_bytes());
        body.extend_from_slice(&(self.items.len() as u64).to_le_bytes());
        body.extend_from_slice(&self.reg.to_le_bytes());
        body.extend_from_slice(&self.alpha.to_le_bytes());
        body.extend_from_slice(&(self.version.len() as u32).to_le_bytes());
        body.extend_from_slice(self.version.as_bytes());
        for item in &self.items {
            body.extend_from_slice(&item.0.to_le_bytes());
        }
        for v in &self.factors {
            body.extend_from_slice(&v.to_le_bytes());
        }
        if self.reg_exponent != 0.0 || self.history.is_some() || self.clusters.is_some() {
            body.extend_from_slice(&self.reg_exponent.to_le_bytes());
        }
        if let Some(history) = &self.history {
            history.encode(&mut body);
        }
        if let Some(clusters) = &self.clusters {
            body.extend_from_slice(CLUSTERS_TAG);
            body.extend_from_slice(&(clusters.count as u32).to_le_bytes());
            for c in &clusters.assignment {
                body.extend_from_slice(&c.to_le_bytes());
            }
        }
        artifact::seal(MAGIC, &body)
    }

    /// Decodes and validates an artifact written by [`to_bytes`](Self::to_bytes).
    ///
    /// # Errors
    /// [`ArtifactError`] for anything but an intact artifact of this format
    /// describing a valid model. Never panics, and never allocates more than
    /// the input's size before validating it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let body = artifact::open(MAGIC, "item factors", bytes)?;
        let mut cur = Cursor::new(body);
        let dim = cur.u32("dim")? as usize;
        let len = cur.u64("len")?;
        let reg = cur.f32("reg")?;
        let alpha = cur.f32("alpha")?;
        let version_len = cur.u32("version length")? as usize;
        let version = std::str::from_utf8(cur.take(version_len, "version")?)
            .map_err(|_| ArtifactError::Malformed("version is not UTF-8"))?
            .to_owned();
        if dim == 0 || dim > MAX_DIM {
            return Err(ModelError::Dim { dim }.into());
        }
        let len = usize::try_from(len).map_err(|_| ArtifactError::Malformed("len"))?;
        let need = len
            .checked_mul(8 + 4 * dim)
            .ok_or(ArtifactError::Malformed("len"))?;
        let (has_exponent, has_sections) = match cur.remaining().checked_sub(need) {
            Some(0) => (false, false),
            Some(4) => (true, false),
            Some(n) if n > 4 => (true, true),
            _ => {
                return Err(ArtifactError::Malformed(
                    "ids and factors do not match len x dim",
                ))
            }
        };
        let ids = cur.take(len * 8, "ids")?;
        let items = ids
            .chunks_exact(8)
            .map(|c| ItemId(u64::from_le_bytes(c.try_into().unwrap_or_default())))
            .collect();
        let values = cur.take(len * dim * 4, "factors")?;
        let factors = values
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        let reg_exponent = if has_exponent {
            cur.f32("reg exponent")?
        } else {
            0.0
        };
        let (mut history, mut clusters) = (None, None);
        if has_sections && cur.peek(4) == Some(crate::history::TAG) {
            history = Some(MemberHistory::decode(&mut cur, len)?);
        }
        if cur.remaining() > 0 {
            if cur.take(4, "section tag")? != CLUSTERS_TAG {
                return Err(ArtifactError::Malformed(
                    "unknown section after the factors",
                ));
            }
            let count = cur.u32("clusters")? as usize;
            if cur.remaining() != len.saturating_mul(4) {
                return Err(ArtifactError::Malformed(
                    "cluster assignment does not match len",
                ));
            }
            let assignment: Vec<u32> = cur
                .take(len * 4, "cluster assignment")?
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect();
            if count > len || assignment.iter().any(|&c| c as usize >= count) {
                return Err(ArtifactError::Malformed("cluster out of range"));
            }
            clusters = Some(assignment);
        }
        let mut model =
            Self::new(version, dim, items, factors, reg, alpha)?.with_reg_exponent(reg_exponent)?;
        if let Some(history) = history {
            model = model.with_history(history)?;
        }
        if let Some(assignment) = clusters {
            model = model.with_clusters(assignment)?;
        }
        Ok(model)
    }
}

/// The blocks a pruned scan reads: each query's best `probes` clusters by
/// `dot(user, centre)` (empty clusters never), grouped by cluster so a
/// cluster probed by several queries of a batch is read once.
fn pruned_visits(
    clusters: &Clusters,
    dim: usize,
    queries: &[top_k::ScanQuery<'_>],
    probes: usize,
) -> Vec<top_k::Visit> {
    let centres = top_k::Layout {
        blocked: &clusters.centres,
        dim,
        rows: clusters.count,
        slots: None,
    };
    let ranked: Vec<top_k::ScanQuery<'_>> = queries
        .iter()
        .map(|(user, _, _)| (*user, probes, clusters.empty.as_slice()))
        .collect();
    let best = top_k::scan_batch(centres, &ranked);
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); clusters.count];
    for (q, found) in best.iter().enumerate() {
        for &(c, _) in found {
            readers[c].push(q);
        }
    }
    readers
        .into_iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
        .map(|(c, r)| (clusters.blocks[c]..clusters.blocks[c + 1], r))
        .collect()
}

/// User factors from training, one row per member of the training data.
///
/// Serving does not need them (members are folded in online); they exist for
/// batch lists and evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct UserFactors {
    dim: usize,
    members: Vec<MemberId>,
    index: HashMap<MemberId, u32>,
    factors: Vec<f32>,
}

impl UserFactors {
    /// Builds from rows that line up with `members` (`factors.len() ==
    /// members.len() * dim`; training guarantees it).
    pub(crate) fn new(dim: usize, members: Vec<MemberId>, factors: Vec<f32>) -> Self {
        debug_assert_eq!(members.len() * dim, factors.len());
        let index = members
            .iter()
            .enumerate()
            .map(|(i, &m)| (m, i as u32))
            .collect();
        Self {
            dim,
            members,
            index,
            factors,
        }
    }

    /// The trained vector of a member, `None` if training did not see it.
    pub fn get(&self, member: MemberId) -> Option<&[f32]> {
        self.index
            .get(&member)
            .map(|&i| &self.factors[i as usize * self.dim..(i as usize + 1) * self.dim])
    }

    /// Members with a vector, by row.
    pub fn members(&self) -> &[MemberId] {
        &self.members
    }

    /// Factors per member.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Vector of the member at `index` of [`members`](Self::members).
    ///
    /// # Panics
    /// If `index` is out of range.
    pub fn row(&self, index: usize) -> &[f32] {
        &self.factors[index * self.dim..(index + 1) * self.dim]
    }
}

#[cfg(test)]
mod tests;
