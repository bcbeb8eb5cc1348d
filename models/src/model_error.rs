//! Why a set of factors cannot be a model, and the bound on their size.
//!
//! A file of its own so that the artifact envelope (which reports a decoded
//! body that is not a valid model) and the factor matrices (which build and
//! check models) both use it without importing each other.

/// Largest supported factor count: bounds the k x k solve (and the memory a
/// hostile artifact header could ask for per row).
pub const MAX_DIM: usize = 1024;

/// Why a set of factors cannot be a model. Raised when building one from
/// parts or from a decoded artifact; a served model is always valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The factor count is 0 or above [`MAX_DIM`].
    #[error("dimension {dim} is outside 1..={MAX_DIM}")]
    Dim {
        /// The rejected dimension.
        dim: usize,
    },
    /// `factors.len()` is not `ids.len() * dim`.
    #[error("expected {expected} factor values ({len} ids x dim {dim}), found {found}")]
    Length {
        /// Number of ids.
        len: usize,
        /// Factor count per id.
        dim: usize,
        /// `len * dim`.
        expected: usize,
        /// Values actually given.
        found: usize,
    },
    /// A factor is NaN or infinite (training diverged or the data is bad).
    #[error("factor value at position {index} is not finite")]
    NonFinite {
        /// Position in the row-major factor array.
        index: usize,
    },
    /// The same id appears twice, so lookups would be ambiguous.
    #[error("id {id} appears more than once")]
    DuplicateId {
        /// The repeated raw id.
        id: u64,
    },
    /// The item clusters do not fit the model (see
    /// `ItemFactors::with_clusters`).
    #[error("item clusters are invalid: {0}")]
    Clusters(&'static str),
    /// `reg` must be positive and finite (it keeps fold-in solvable) and
    /// `alpha` finite and non-negative.
    #[error("reg {reg} must be finite and > 0 and alpha {alpha} finite and >= 0")]
    Params {
        /// Regularisation found.
        reg: f32,
        /// Confidence scale found.
        alpha: f32,
    },
}
