//! The model directory that `reco train --out` writes and `reco serve
//! --model` reads: `model.bin` (item factors) and `lists.bin` (precomputed
//! lists), each a checksummed, versioned artifact of `reco-models`.
//!
//! Files are written to a temporary name and renamed, so a reader never sees
//! half an artifact.

use reco_models::{ArtifactError, ItemFactors, PrecomputedLists};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// File name of the item-factor model in a model directory.
pub const MODEL_FILE: &str = "model.bin";
/// File name of the precomputed lists in a model directory.
pub const LISTS_FILE: &str = "lists.bin";

/// A model directory that could not be read or written.
#[derive(Debug, Error)]
pub enum ArtifactsError {
    /// A file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not a valid artifact.
    #[error("{path} is not a valid reco artifact ({source}); retrain with `reco train`")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ArtifactError,
    },
}

/// Reads `model.bin` and `lists.bin` from `dir`.
pub fn load(dir: &Path) -> Result<(ItemFactors, PrecomputedLists), ArtifactsError> {
    let model_path = dir.join(MODEL_FILE);
    let model =
        ItemFactors::from_bytes(&read(&model_path)?).map_err(|source| ArtifactsError::Invalid {
            path: model_path,
            source,
        })?;
    let lists_path = dir.join(LISTS_FILE);
    let lists = PrecomputedLists::from_bytes(&read(&lists_path)?).map_err(|source| {
        ArtifactsError::Invalid {
            path: lists_path,
            source,
        }
    })?;
    Ok((model, lists))
}

/// Writes both artifacts into `dir` (created if missing).
pub fn save(
    dir: &Path,
    model: &ItemFactors,
    lists: &PrecomputedLists,
) -> Result<(), ArtifactsError> {
    std::fs::create_dir_all(dir).map_err(|source| ArtifactsError::Io {
        action: "create",
        path: dir.to_owned(),
        source,
    })?;
    write_atomic(&dir.join(MODEL_FILE), &model.to_bytes())?;
    write_atomic(&dir.join(LISTS_FILE), &lists.to_bytes())
}

fn read(path: &Path) -> Result<Vec<u8>, ArtifactsError> {
    std::fs::read(path).map_err(|source| ArtifactsError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArtifactsError> {
    let tmp = path.with_extension("tmp");
    let io = |source| ArtifactsError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
