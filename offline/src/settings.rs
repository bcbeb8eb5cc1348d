//! Range checks shared by the offline job's configuration sections
//! (`[events_log]`, `[publish]`): the node's config file validates them with
//! these same functions, so a value means the same to `reco serve` and
//! `reco train`.

use thiserror::Error;

/// A configuration value out of its range.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("config value {key} = {value} is out of range: {expected}")]
pub struct OutOfRange {
    /// The key, dotted.
    pub key: &'static str,
    /// The value given.
    pub value: String,
    /// What is accepted.
    pub expected: &'static str,
}

/// `Ok` when `lo <= value <= hi`.
///
/// # Errors
/// [`OutOfRange`] naming `key`.
pub fn range<T: PartialOrd + ToString>(
    key: &'static str,
    value: T,
    lo: T,
    hi: T,
    expected: &'static str,
) -> Result<(), OutOfRange> {
    if value < lo || value > hi {
        return Err(OutOfRange {
            key,
            value: value.to_string(),
            expected,
        });
    }
    Ok(())
}

/// Whether `name` is a valid JetStream stream or bucket name as reco uses
/// them: 1 to 64 letters, digits, '-' or '_'.
pub fn is_valid_jetstream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `Ok` when `name` is a valid JetStream name.
///
/// # Errors
/// [`OutOfRange`] naming `key`.
pub fn check_name(key: &'static str, name: &str) -> Result<(), OutOfRange> {
    if is_valid_jetstream_name(name) {
        return Ok(());
    }
    Err(OutOfRange {
        key,
        value: format!("{name:?}"),
        expected: "1 to 64 letters, digits, '-' or '_'",
    })
}
