//! What the online path knows about each trained member: its training
//! interactions, as (item row, weight) lists, carried inside the model
//! artifact.
//!
//! Without them a node folds a member in from the few events it has seen
//! since it started: a member who rated 500 films and then plays one is
//! ranked from that one play, and may be shown films it watched long ago.
//! With them the online vector is the fold-in over history ∪ recent events
//! ([`crate::ItemFactors::fold_in_member`]) — with no recent event exactly
//! the vector training gave the member, with one new play the vector batch
//! ALS would give with that play added (up to the item factors, which stay
//! frozen) — and the history's items are left out like seen ones.
//!
//! Interactions rather than trained user vectors: a vector cannot be
//! updated exactly (the update needs the member's `k x k` system, 16 KiB at
//! 64 factors), while the interactions are smaller than that for all but
//! the heaviest members, reproduce the trained vector exactly, and say which
//! items to exclude.
//!
//! Layout (inside the item-factors body, after `reg_exponent`; see
//! [`crate::ItemFactors::to_bytes`]), little-endian:
//!
//! ```text
//! b"HIST" | members u64 | weights_kind u8 (0: every weight 1.0, omitted; 1: f32 each)
//! | members x member id u64 (ascending) | members x count u32
//! | nnz x item row u32 | [nnz x weight f32]
//! ```
//!
//! On ml-latest-small (671 members, 100,004 ratings) the section adds
//! 8 B per member and 4 B per rating when every weight is 1.0 (about
//! 0.4 MB next to 2.4 MB of item factors; measured in the tests).

use crate::artifact::{ArtifactError, Cursor};
use crate::interactions::Interactions;
use reco_messages::MemberId;

/// Tag that opens the history section of a model body.
pub(crate) const TAG: &[u8; 4] = b"HIST";

/// Every trained member's training interactions, by item row of the model
/// they were trained with. Immutable once built.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberHistory {
    /// Ascending, distinct.
    members: Vec<MemberId>,
    /// `offsets[i]..offsets[i + 1]` are member `i`'s entries.
    offsets: Vec<usize>,
    rows: Vec<u32>,
    weights: Vec<f32>,
}

impl MemberHistory {
    /// The history of every member of `data`, by the item rows of `data`
    /// (which are the rows of a model trained on it, see
    /// [`crate::train_als`]).
    pub fn from_interactions(data: &Interactions) -> Self {
        let csr = data.by_member();
        let mut offsets = Vec::with_capacity(data.num_members() + 1);
        offsets.push(0);
        let mut rows = Vec::with_capacity(data.nnz());
        let mut weights = Vec::with_capacity(data.nnz());
        for row in 0..csr.rows() {
            let (cols, ws) = csr.row(row);
            rows.extend_from_slice(cols);
            weights.extend_from_slice(ws);
            offsets.push(rows.len());
        }
        Self {
            members: data.members().to_vec(),
            offsets,
            rows,
            weights,
        }
    }

    /// Number of members with a history.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when no member has a history.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Interactions over all members.
    pub fn nnz(&self) -> usize {
        self.rows.len()
    }

    /// The largest item row any member's history names.
    pub(crate) fn max_row(&self) -> Option<usize> {
        self.rows.iter().max().map(|&r| r as usize)
    }

    /// Whether `member` was trained on.
    pub fn contains(&self, member: MemberId) -> bool {
        self.members.binary_search(&member).is_ok()
    }

    /// The item rows (ascending) and weights of `member`'s training
    /// interactions; empty for a member the model was not trained on.
    pub fn get(&self, member: MemberId) -> (&[u32], &[f32]) {
        match self.members.binary_search(&member) {
            Ok(i) => {
                let range = self.offsets[i]..self.offsets[i + 1];
                (&self.rows[range.clone()], &self.weights[range])
            }
            Err(_) => (&[], &[]),
        }
    }

    /// Appends the section (tag included) to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let uniform = self.weights.iter().all(|&w| w == 1.0);
        out.extend_from_slice(TAG);
        out.extend_from_slice(&(self.members.len() as u64).to_le_bytes());
        out.push(u8::from(!uniform));
        for m in &self.members {
            out.extend_from_slice(&m.0.to_le_bytes());
        }
        for w in self.offsets.windows(2) {
            out.extend_from_slice(&((w[1] - w[0]) as u32).to_le_bytes());
        }
        for r in &self.rows {
            out.extend_from_slice(&r.to_le_bytes());
        }
        if !uniform {
            for w in &self.weights {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
    }

    /// Size of [`encode`](Self::encode)'s output in bytes.
    pub fn encoded_len(&self) -> usize {
        let uniform = self.weights.iter().all(|&w| w == 1.0);
        4 + 8 + 1 + self.members.len() * 12 + self.rows.len() * if uniform { 4 } else { 8 }
    }

    /// Reads a section written by [`encode`](Self::encode) from `cur` (a
    /// later section may follow it), for a model of `items` rows. Validates
    /// everything serving relies on (ascending members, rows in range,
    /// positive finite weights), allocating nothing beyond the input's size.
    pub(crate) fn decode(cur: &mut Cursor<'_>, items: usize) -> Result<Self, ArtifactError> {
        if cur.take(4, "history tag")? != TAG {
            return Err(ArtifactError::Malformed(
                "unknown section after the factors",
            ));
        }
        let n = usize::try_from(cur.u64("history members")?)
            .map_err(|_| ArtifactError::Malformed("history members"))?;
        let weighted = match cur.take(1, "history weights kind")?[0] {
            0 => false,
            1 => true,
            _ => return Err(ArtifactError::Malformed("history weights kind")),
        };
        let head = n
            .checked_mul(12)
            .filter(|&b| b <= cur.remaining())
            .ok_or(ArtifactError::Malformed("history members"))?;
        let ids = cur.take(n * 8, "history member ids")?;
        let members: Vec<MemberId> = ids
            .chunks_exact(8)
            .map(|c| MemberId(u64::from_le_bytes(c.try_into().unwrap_or_default())))
            .collect();
        if members.windows(2).any(|w| w[0] >= w[1]) {
            return Err(ArtifactError::Malformed("history members not ascending"));
        }
        let counts = cur.take(head - n * 8, "history counts")?;
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0usize);
        for c in counts.chunks_exact(4) {
            let count = u32::from_le_bytes(c.try_into().unwrap_or_default()) as usize;
            let last = *offsets.last().unwrap_or(&0);
            offsets.push(last.saturating_add(count));
        }
        let nnz = *offsets.last().unwrap_or(&0);
        let per = if weighted { 8 } else { 4 };
        if nnz.checked_mul(per).is_none_or(|b| b > cur.remaining()) {
            return Err(ArtifactError::Malformed(
                "history entries do not match their counts",
            ));
        }
        let rows: Vec<u32> = cur
            .take(nnz * 4, "history rows")?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        if rows.iter().any(|&r| r as usize >= items) {
            return Err(ArtifactError::Malformed("history row out of range"));
        }
        let weights: Vec<f32> = if weighted {
            cur.take(nnz * 4, "history weights")?
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect()
        } else {
            vec![1.0; nnz]
        };
        if weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
            return Err(ArtifactError::Malformed("history weight not positive"));
        }
        Ok(Self {
            members,
            offsets,
            rows,
            weights,
        })
    }
}

/// How a member's online vector weighs its history against its recent
/// events: the history's weights are scaled by `history_weight`, a recent
/// event's weight by `1 + (recent_boost - 1) · 2^(-age / half_life)`: a
/// fresh event counts `recent_boost` times what it would in training, and
/// its boost halves every half-life, never below what training gives it.
///
/// The defaults are what the replay evaluation ([`crate::replay`]) measured
/// best on ml-latest-small; see the README's replay figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FoldInPolicy {
    /// Scale of the training interactions' weights (0 ignores the history).
    pub history_weight: f32,
    /// Scale of a recent event's weight at age 0 (at least 1).
    pub recent_boost: f32,
    /// Age at which a recent event's boost has halved; `None`: no decay.
    pub half_life_ms: Option<u64>,
    /// How many times a recent event seen on the device a request names
    /// weighs the member's other recent events (1: the device is ignored);
    /// see [`FoldInPolicy::weigh_devices`].
    pub same_device_weight: f32,
}

impl Default for FoldInPolicy {
    /// Measured best of the replay grid on ml-latest-small (boost 1, 2, 4,
    /// 8, 16, 32, 64; half-life none, 1 h, 6 h, 1 day, 1 week; history
    /// weight 0.5, 1): next-item HR@10 1.62x the static top-10 (boost 16:
    /// 1.55x; 64: 1.56x without decay; no boost: 1.19x).
    fn default() -> Self {
        Self {
            history_weight: 1.0,
            recent_boost: 32.0,
            half_life_ms: Some(3_600_000),
            same_device_weight: SAME_DEVICE_WEIGHT,
        }
    }
}

impl FoldInPolicy {
    /// Every event counts as in training: fold-in over history ∪ recent is
    /// then what batch ALS computes with the recent events added.
    pub const NEUTRAL: FoldInPolicy = FoldInPolicy {
        history_weight: 1.0,
        recent_boost: 1.0,
        half_life_ms: None,
        same_device_weight: 1.0,
    };

    /// The fold-in weight of a recent event of `weight` (from
    /// [`crate::confidence::event_weight`]) that happened `age_ms` ago.
    pub fn recent_weight(&self, weight: f32, age_ms: u64) -> f32 {
        let decay = match self.half_life_ms {
            Some(half) if half > 0 => 0.5f64.powf(age_ms as f64 / half as f64) as f32,
            _ => 1.0,
        };
        let boost = self.recent_boost.max(1.0);
        weight * (1.0 + (boost - 1.0) * decay)
    }

    /// Reweighs the recent events of a request from a device: `events`
    /// holds each recent event's fold-in weight (after
    /// [`FoldInPolicy::recent_weight`]) and whether it was seen on the
    /// device the request names. Those seen on it end up weighing
    /// `same_device_weight` times the others, and the recent events
    /// together weigh what they did: only the balance between devices
    /// moves, not the balance between recent events and the history. With
    /// no event on the device (or all of them on it) nothing changes.
    pub fn weigh_devices(&self, events: &mut [(f32, bool)]) {
        let w = self.same_device_weight.max(1.0);
        let (mut total, mut same) = (0.0f64, 0.0f64);
        for &(weight, on_device) in events.iter() {
            total += f64::from(weight);
            if on_device {
                same += f64::from(weight);
            }
        }
        let other = total - same;
        if w == 1.0 || same <= 0.0 || other <= 0.0 {
            return;
        }
        // Same-device events scaled by w·s, the others by s, with
        // w·s·same + s·other = total.
        let scale = total / (f64::from(w) * same + other);
        for (weight, on_device) in events.iter_mut() {
            let factor = if *on_device {
                f64::from(w) * scale
            } else {
                scale
            };
            *weight = (f64::from(*weight) * factor) as f32;
        }
    }
}

/// Default [`FoldInPolicy::same_device_weight`]: measured by `reco-sim
/// device` (README, "Device context"), where a member's taste depends
/// partly on the device.
pub const SAME_DEVICE_WEIGHT: f32 = 10.0;

/// A device name as the fold-in compares it: a stable 64-bit digest
/// (FNV-1a) of its bytes, so that a session keeps 8 bytes per signal
/// rather than the producer's string.
pub fn device_key(device: &str) -> u64 {
    device.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::Cursor;
    use reco_messages::ItemId;

    fn data() -> Interactions {
        Interactions::from_triples([
            (MemberId(3), ItemId(10), 1.0),
            (MemberId(3), ItemId(30), 1.0),
            (MemberId(9), ItemId(20), 0.5),
        ])
    }

    #[test]
    fn history_round_trips_and_answers_by_member() {
        let h = MemberHistory::from_interactions(&data());
        assert_eq!(h.get(MemberId(3)), (&[0u32, 2][..], &[1.0f32, 1.0][..]));
        assert_eq!(h.get(MemberId(9)), (&[1u32][..], &[0.5f32][..]));
        assert_eq!(h.get(MemberId(4)).0.len(), 0);
        let mut bytes = Vec::new();
        h.encode(&mut bytes);
        assert_eq!(bytes.len(), h.encoded_len());
        let back = MemberHistory::decode(&mut Cursor::new(&bytes), 3).unwrap();
        assert_eq!(back, h);
        // A row beyond the model's items is refused.
        assert!(MemberHistory::decode(&mut Cursor::new(&bytes), 2).is_err());
        // Cut off: refused. A following section is left to the caller.
        assert!(MemberHistory::decode(&mut Cursor::new(&bytes[..bytes.len() - 1]), 3).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        let mut cur = Cursor::new(&longer);
        assert_eq!(MemberHistory::decode(&mut cur, 3).unwrap(), h);
        assert_eq!(cur.remaining(), 1);
    }

    #[test]
    fn uniform_weights_are_not_stored() {
        let h = MemberHistory::from_interactions(&Interactions::from_triples([
            (MemberId(1), ItemId(1), 1.0),
            (MemberId(2), ItemId(1), 1.0),
        ]));
        assert_eq!(h.encoded_len(), 4 + 8 + 1 + 2 * 12 + 2 * 4);
    }

    #[test]
    fn recent_weights_halve_every_half_life() {
        let p = FoldInPolicy {
            history_weight: 1.0,
            recent_boost: 9.0,
            half_life_ms: Some(1000),
            same_device_weight: 1.0,
        };
        assert_eq!(p.recent_weight(0.5, 0), 4.5);
        assert!((p.recent_weight(0.5, 1000) - 2.5).abs() < 1e-6);
        assert!((p.recent_weight(0.5, 2000) - 1.5).abs() < 1e-6);
        assert!((p.recent_weight(0.5, u64::MAX) - 0.5).abs() < 1e-6);
        assert_eq!(FoldInPolicy::default().recent_weight(0.5, u64::MAX), 0.5);
    }

    #[test]
    fn same_device_signals_weigh_more_and_no_device_changes_nothing() {
        let p = FoldInPolicy {
            same_device_weight: 3.0,
            ..FoldInPolicy::NEUTRAL
        };
        assert_ne!(device_key("tv"), device_key("mobile"));
        // Two events on the request's device, one elsewhere.
        let mut events = [(1.0, true), (1.0, false), (2.0, true)];
        p.weigh_devices(&mut events);
        let total: f32 = events.iter().map(|e| e.0).sum();
        assert!((total - 4.0).abs() < 1e-5, "the total is kept: {total}");
        assert!((events[0].0 / events[1].0 - 3.0).abs() < 1e-5);
        assert!((events[2].0 / events[0].0 - 2.0).abs() < 1e-5);
        // No event on the device, all on it, or the weighting off: unchanged.
        for (policy, before) in [
            (p, [(1.0, false), (2.0, false)]),
            (p, [(1.0, true), (2.0, true)]),
            (FoldInPolicy::NEUTRAL, [(1.0, true), (2.0, false)]),
        ] {
            let mut after = before;
            policy.weigh_devices(&mut after);
            assert_eq!(after, before);
        }
    }
}
