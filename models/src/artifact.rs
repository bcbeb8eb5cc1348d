//! The binary envelope every published artifact shares, so a serving node can
//! reject a wrong, newer, cut-off or corrupted file before trusting a byte of
//! it (a failed load keeps the old version serving).
//!
//! ```text
//! offset  size  field
//! 0       8     magic: what kind of artifact (e.g. b"RECOITF\0")
//! 8       4     format version, u32 LE (FORMAT_VERSION)
//! 12      8     total length of the artifact in bytes, u64 LE
//! 20      n     body (kind-specific)
//! 20+n    8     FNV-1a 64 of bytes [0, 20+n), u64 LE
//! ```
//!
//! Item factors write a little-endian binary body (see
//! [`crate::ItemFactors::to_bytes`]); precomputed lists a MessagePack map.

use crate::model_error::ModelError;

/// The envelope and body layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const HEADER_LEN: usize = 8 + 4 + 8;
const CHECKSUM_LEN: usize = 8;

/// Why an artifact was refused. Every variant means "keep serving the old
/// version"; none of them is reachable by a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// Not this kind of artifact (or not an artifact at all).
    #[error("not a {expected} artifact (bad magic bytes)")]
    BadMagic {
        /// The kind that was expected, for the message.
        expected: &'static str,
    },
    /// Written by a newer (or older) reco; upgrade the reader or republish.
    #[error("artifact format {found} is not supported (this build reads format {supported})")]
    UnsupportedFormat {
        /// Version found in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// Shorter than its header says: the download or upload was cut off.
    #[error("artifact is truncated: {found} bytes, expected {expected}")]
    Truncated {
        /// Bytes the artifact should have (0 when even the header is missing).
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// Longer than its header says.
    #[error("artifact has {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// Bytes beyond the declared length.
        extra: u64,
    },
    /// The bytes were altered after writing.
    #[error("artifact checksum mismatch: stored {stored:#018x}, computed {computed:#018x}")]
    ChecksumMismatch {
        /// Checksum stored in the artifact.
        stored: u64,
        /// Checksum of the bytes received.
        computed: u64,
    },
    /// The checksum matched but the body does not follow the layout (a
    /// writer bug, not transport damage).
    #[error("artifact body is malformed: {0}")]
    Malformed(&'static str),
    /// The MessagePack body did not decode.
    #[error("artifact body does not decode")]
    Decode(#[source] rmp_serde::decode::Error),
    /// The body decoded but describes an invalid model.
    #[error("artifact describes an invalid model")]
    Invalid(#[from] ModelError),
}

/// FNV-1a, 64-bit: simple, dependency-free, and plenty to detect accidental
/// damage (this is not a defence against tampering).
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Wraps `body` in the envelope.
pub(crate) fn seal(magic: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let total = HEADER_LEN + body.len() + CHECKSUM_LEN;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(magic);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(total as u64).to_le_bytes());
    out.extend_from_slice(body);
    let checksum = fnv1a64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

/// Checks the envelope and returns the body.
pub(crate) fn open<'a>(
    magic: &[u8; 8],
    kind: &'static str,
    bytes: &'a [u8],
) -> Result<&'a [u8], ArtifactError> {
    let prefix = bytes.len().min(magic.len());
    if bytes[..prefix] != magic[..prefix] {
        return Err(ArtifactError::BadMagic { expected: kind });
    }
    let found = bytes.len() as u64;
    if bytes.len() < 12 {
        return Err(ArtifactError::Truncated { expected: 0, found });
    }
    let version = u32::from_le_bytes(take_array(&bytes[8..12]));
    if version != FORMAT_VERSION {
        return Err(ArtifactError::UnsupportedFormat {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(ArtifactError::Truncated { expected: 0, found });
    }
    let expected = u64::from_le_bytes(take_array(&bytes[12..20]));
    if found < expected {
        return Err(ArtifactError::Truncated { expected, found });
    }
    if found > expected {
        return Err(ArtifactError::TrailingBytes {
            extra: found - expected,
        });
    }
    let (covered, stored) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let stored = u64::from_le_bytes(take_array(stored));
    let computed = fnv1a64(covered);
    if stored != computed {
        return Err(ArtifactError::ChecksumMismatch { stored, computed });
    }
    Ok(&covered[HEADER_LEN..])
}

fn take_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// A bounds-checked little-endian reader over a body.
pub(crate) struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ArtifactError> {
        if self.rest.len() < n {
            return Err(ArtifactError::Malformed(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, ArtifactError> {
        Ok(u32::from_le_bytes(take_array(self.take(4, what)?)))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, ArtifactError> {
        Ok(u64::from_le_bytes(take_array(self.take(8, what)?)))
    }

    pub(crate) fn f32(&mut self, what: &'static str) -> Result<f32, ArtifactError> {
        Ok(f32::from_le_bytes(take_array(self.take(4, what)?)))
    }

    /// The next `n` bytes without consuming them, `None` if fewer are left.
    pub(crate) fn peek(&self, n: usize) -> Option<&'a [u8]> {
        self.rest.get(..n)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"RECOTST\0";

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn envelope_round_trips_and_names_each_failure() {
        let sealed = seal(MAGIC, b"body");
        assert_eq!(open(MAGIC, "test", &sealed).unwrap(), b"body");
        assert!(matches!(
            open(b"RECOXXX\0", "x", &sealed),
            Err(ArtifactError::BadMagic { .. })
        ));
        assert!(matches!(
            open(MAGIC, "t", &sealed[..5]),
            Err(ArtifactError::Truncated { .. })
        ));
        assert!(matches!(
            open(MAGIC, "t", &sealed[..sealed.len() - 1]),
            Err(ArtifactError::Truncated { .. })
        ));
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(matches!(
            open(MAGIC, "t", &longer),
            Err(ArtifactError::TrailingBytes { extra: 1 })
        ));
        let mut newer = sealed.clone();
        newer[8] = 2;
        assert!(matches!(
            open(MAGIC, "t", &newer),
            Err(ArtifactError::UnsupportedFormat {
                found: 2,
                supported: 1
            })
        ));
        let mut flipped = sealed;
        flipped[21] ^= 0x10;
        assert!(matches!(
            open(MAGIC, "t", &flipped),
            Err(ArtifactError::ChecksumMismatch { .. })
        ));
    }
}
