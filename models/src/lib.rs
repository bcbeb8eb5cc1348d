//! reco's recommender math: the offline half of the hybrid offline/online
//! matrix factorisation, and the kernels the online half runs.
//!
//! `reco train` learns item factors with implicit-feedback ALS
//! ([`train_als`]), batch-computes fallback lists ([`popular`],
//! [`batch_top_n`]) and publishes them as checksummed artifacts
//! ([`ItemFactors::to_bytes`], [`PrecomputedLists::to_bytes`]). Serving nodes
//! load the artifacts, fold a member's recent events into a user vector against
//! the frozen item factors ([`ItemFactors::fold_in`]) and rank the catalogue
//! with one scan ([`ItemFactors::top_k`]).
//!
//! The crate does no I/O (callers pass readers and bytes), spawns no actors and
//! has no async: it is plain, deterministic, CPU-bound code that the actors
//! call from dedicated threads.
//!
//! # Layout
//! - [`ratings`]: [`Rating`] and the MovieLens `ratings.csv` parser.
//! - [`interactions`]: [`Interactions`], the sparse member x item matrix (CSR
//!   both ways) that training and the lists read.
//! - [`factors`]: [`ItemFactors`] (frozen, served: fold-in, scoring, top-k,
//!   binary artifact) and [`UserFactors`].
//! - [`kmeans`]: the item clusters of the pruned scan ([`Scan`]), computed
//!   offline and stored in the model artifact.
//! - [`als`]: [`train_als`], implicit ALS with exact Cholesky solves, parallel
//!   over `std::thread::scope`.
//! - [`lists`]: [`PrecomputedLists`], [`popular`], [`batch_top_n`]: the
//!   offline lists that answer when the online path cannot.
//! - [`items`]: [`Catalogue`] (titles, genres, years; the `movies.csv`
//!   parser) and [`RowLists`], the offline fallbacks of the rows (per-genre
//!   popular, newest titles, nearest neighbours), published with the lists.
//! - [`rows`]: the pure logic of the rows: ranking within candidates,
//!   nearest items by cosine, started-and-not-finished titles.
//! - [`artifact`]: the versioned, checksummed envelope shared by every
//!   artifact, and [`ArtifactError`].
//! - [`eval`]: per-member train/test split and ranking metrics
//!   (precision, recall, NDCG, hit rate at k).
//! - [`confidence`]: the one weighting of events, shared by training and
//!   serving.
//! - [`history`]: [`MemberHistory`], the trained members' interactions the
//!   model artifact carries for history-aware fold-in.
//! - [`replay`]: the replay evaluation (temporal split, ask then rate) of
//!   the online fold-in against a static top-k and popularity.
//! - [`tiers`]: [`TierMetrics`], the quality of every serving tier (model,
//!   nearline fold-in, precomputed, popular) on the same held-out ratings.
//! - [`aggregates`]: per-title windowed counts, take rates and trending over
//!   the event stream; one function for the streaming job and batch.
//! - [`bandit`]: Thompson sampling and UCB over take rates, seeded by model
//!   scores (the billboard).
//! - `cg` (private): conjugate-gradient row solves, the fast default of
//!   training.
//! - `linalg` (private): dot products, Gram matrices and the shared
//!   regularised least-squares solve used by both training and fold-in, so
//!   that a folded-in vector equals the trained one.

pub mod aggregates;
pub mod als;
pub mod artifact;
pub mod bandit;
mod cg;
pub mod confidence;
pub mod eval;
pub mod factors;
pub mod history;
pub mod interactions;
pub mod items;
pub mod kmeans;
mod linalg;
pub mod lists;
mod model_error;
pub mod ratings;
pub mod replay;
pub mod rows;
pub mod tiers;

pub use als::{train_als, AlsParams, Progress, TrainError, TrainedModel};
pub use artifact::ArtifactError;
pub use factors::{ItemFactors, ModelError, Query, Scan, UserFactors};
pub use history::{device_key, FoldInPolicy, MemberHistory, SAME_DEVICE_WEIGHT};
pub use interactions::Interactions;
pub use items::{parse_movies, Catalogue, ItemInfo, RowLists};
pub use kmeans::{kmeans, KMeansParams};
pub use lists::{batch_top_n, popular, PrecomputedLists};
pub use ratings::{parse_ratings, ParseError, ParseErrorKind, Rating};
pub use tiers::{evaluate_tiers, TierMetrics};

/// One ranked item with its score: the unit of every list this crate returns
/// (top-k, popular, precomputed). It is the wire's
/// [`ScoredItem`](reco_messages::ScoredItem) itself, so a list goes from the
/// math to a reply without a conversion. Higher is better; scores are
/// comparable only within one list (a dot product for model lists, a member
/// count for popularity).
pub use reco_messages::ScoredItem as Scored;
