//! The sparse member x item interaction matrix that training, popularity and
//! batch lists read.
//!
//! Ids are mapped to dense indices in ascending id order (so the mapping, and
//! everything trained from it, is deterministic), and the matrix is stored
//! twice in compressed sparse rows: by member (for the user solves and for
//! excluding seen items) and by item (for the item solves and popularity).

use reco_messages::{ItemId, MemberId};
use std::collections::HashMap;

/// Sparse implicit-feedback matrix in CSR by member and by item, with dense
/// internal indices.
///
/// Duplicate (member, item) pairs are summed, in input order. Only positive,
/// finite weights are kept: a zero or negative weight carries no implicit
/// preference, and a non-finite one would poison every solve it touches.
#[derive(Clone, Debug, Default)]
pub struct Interactions {
    members: Vec<MemberId>,
    items: Vec<ItemId>,
    member_index: HashMap<MemberId, u32>,
    item_index: HashMap<ItemId, u32>,
    by_member: Csr,
    by_item: Csr,
}

/// Compressed sparse rows: row `r` is `indices[indptr[r]..indptr[r + 1]]`
/// with the matching `weights`, column indices ascending.
#[derive(Clone, Debug, Default)]
pub(crate) struct Csr {
    indptr: Vec<usize>,
    indices: Vec<u32>,
    weights: Vec<f32>,
}

impl Csr {
    /// Number of rows.
    pub(crate) fn rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    /// Column indices and weights of one row.
    pub(crate) fn row(&self, row: usize) -> (&[u32], &[f32]) {
        let range = self.indptr[row]..self.indptr[row + 1];
        (&self.indices[range.clone()], &self.weights[range])
    }

    /// Builds from (row, column, weight) sorted by row then column, no duplicates.
    fn from_sorted(rows: usize, entries: &[(u32, u32, f32)]) -> Self {
        let mut indptr = vec![0usize; rows + 1];
        for &(r, _, _) in entries {
            indptr[r as usize + 1] += 1;
        }
        for r in 0..rows {
            indptr[r + 1] += indptr[r];
        }
        Self {
            indptr,
            indices: entries.iter().map(|e| e.1).collect(),
            weights: entries.iter().map(|e| e.2).collect(),
        }
    }

    /// The transpose, with `columns` rows; stays sorted because rows are
    /// visited in order.
    fn transpose(&self, columns: usize) -> Self {
        let mut indptr = vec![0usize; columns + 1];
        for &c in &self.indices {
            indptr[c as usize + 1] += 1;
        }
        for c in 0..columns {
            indptr[c + 1] += indptr[c];
        }
        let mut next = indptr.clone();
        let mut indices = vec![0u32; self.indices.len()];
        let mut weights = vec![0f32; self.weights.len()];
        for r in 0..self.rows() {
            let (cols, ws) = self.row(r);
            for (&c, &w) in cols.iter().zip(ws) {
                let slot = &mut next[c as usize];
                indices[*slot] = r as u32;
                weights[*slot] = w;
                *slot += 1;
            }
        }
        Self {
            indptr,
            indices,
            weights,
        }
    }
}

impl Interactions {
    /// Builds the matrix from any iterator of (member, item, weight).
    ///
    /// Weights that are not positive and finite are dropped; duplicates are
    /// summed.
    ///
    /// # Panics
    /// With more than `u32::MAX` distinct members or items (indices are
    /// stored as u32 to halve the index memory).
    pub fn from_triples(triples: impl IntoIterator<Item = (MemberId, ItemId, f32)>) -> Self {
        let triples: Vec<(MemberId, ItemId, f32)> = triples
            .into_iter()
            .filter(|t| t.2.is_finite() && t.2 > 0.0)
            .collect();
        let mut members: Vec<MemberId> = triples.iter().map(|t| t.0).collect();
        members.sort_unstable();
        members.dedup();
        let mut items: Vec<ItemId> = triples.iter().map(|t| t.1).collect();
        items.sort_unstable();
        items.dedup();
        let to_u32 = |i: usize| u32::try_from(i).expect("more than u32::MAX members or items");
        let member_index: HashMap<MemberId, u32> = members
            .iter()
            .enumerate()
            .map(|(i, &m)| (m, to_u32(i)))
            .collect();
        let item_index: HashMap<ItemId, u32> = items
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, to_u32(i)))
            .collect();

        let mut entries: Vec<(u32, u32, f32)> = triples
            .iter()
            .map(|&(m, i, w)| (member_index[&m], item_index[&i], w))
            .collect();
        // Stable, so duplicates are summed in input order (deterministic).
        entries.sort_by_key(|e| (e.0, e.1));
        let mut merged: Vec<(u32, u32, f32)> = Vec::with_capacity(entries.len());
        for e in entries {
            match merged.last_mut() {
                Some(last) if last.0 == e.0 && last.1 == e.1 => last.2 += e.2,
                _ => merged.push(e),
            }
        }
        let by_member = Csr::from_sorted(members.len(), &merged);
        let by_item = by_member.transpose(items.len());
        Self {
            members,
            items,
            member_index,
            item_index,
            by_member,
            by_item,
        }
    }

    /// Number of distinct members.
    pub fn num_members(&self) -> usize {
        self.members.len()
    }

    /// Number of distinct items.
    pub fn num_items(&self) -> usize {
        self.items.len()
    }

    /// Number of distinct (member, item) pairs.
    pub fn nnz(&self) -> usize {
        self.by_member.indices.len()
    }

    /// Member ids by dense index (ascending ids); row `i` of user factors
    /// trained on this matrix belongs to `members()[i]`.
    pub fn members(&self) -> &[MemberId] {
        &self.members
    }

    /// Item ids by dense index (ascending ids); row `i` of item factors
    /// trained on this matrix belongs to `items()[i]`.
    pub fn items(&self) -> &[ItemId] {
        &self.items
    }

    /// Dense index of a member, if it has interactions.
    pub fn member_index(&self, member: MemberId) -> Option<usize> {
        self.member_index.get(&member).map(|&i| i as usize)
    }

    /// Dense index of an item, if it has interactions.
    pub fn item_index(&self, item: ItemId) -> Option<usize> {
        self.item_index.get(&item).map(|&i| i as usize)
    }

    /// The items of one member with their (summed) weights, ascending item
    /// id; empty if the member is unknown. This is what fold-in takes and
    /// what batch lists exclude.
    pub fn member_items(&self, member: MemberId) -> Vec<(ItemId, f32)> {
        let Some(row) = self.member_index(member) else {
            return Vec::new();
        };
        let (cols, ws) = self.by_member.row(row);
        cols.iter()
            .zip(ws)
            .map(|(&c, &w)| (self.items[c as usize], w))
            .collect()
    }

    /// Rows are members, columns are item indices.
    pub(crate) fn by_member(&self) -> &Csr {
        &self.by_member
    }

    /// Rows are items, columns are member indices.
    pub(crate) fn by_item(&self) -> &Csr {
        &self.by_item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_summed_and_bad_weights_dropped() {
        let data = Interactions::from_triples([
            (MemberId(7), ItemId(30), 1.0),
            (MemberId(3), ItemId(10), 2.0),
            (MemberId(7), ItemId(10), 0.5),
            (MemberId(7), ItemId(30), 2.0),
            (MemberId(9), ItemId(40), 0.0),
            (MemberId(9), ItemId(40), f32::NAN),
            (MemberId(9), ItemId(40), -1.0),
        ]);
        assert_eq!(data.members(), &[MemberId(3), MemberId(7)]);
        assert_eq!(data.items(), &[ItemId(10), ItemId(30)]);
        assert_eq!(data.nnz(), 3);
        assert_eq!(
            data.member_items(MemberId(7)),
            vec![(ItemId(10), 0.5), (ItemId(30), 3.0)]
        );
        assert!(data.member_items(MemberId(9)).is_empty());
        let (members, weights) = data.by_item().row(0);
        assert_eq!(members, &[0, 1]);
        assert_eq!(weights, &[2.0, 0.5]);
        assert_eq!(data.by_item().rows(), 2);
    }

    #[test]
    fn empty_input_is_an_empty_matrix() {
        let data = Interactions::from_triples(std::iter::empty());
        assert_eq!(
            (data.num_members(), data.num_items(), data.nnz()),
            (0, 0, 0)
        );
        assert_eq!(data.by_member().rows(), 0);
    }
}
