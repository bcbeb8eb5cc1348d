//! Signed model versions (issue 11): a trainer signs each version's
//! manifest with its ed25519 key, nodes configured with the trainers'
//! public keys put in service only versions signed by one of them.
//!
//! ```text
//!  <version>/manifest.json   the manifest (sizes and SHA-256 digests of
//!                            model.bin and lists.bin, the version name)
//!  <version>/manifest.sig    {"key": <public key, hex>, "signature": <ed25519
//!                            over the exact bytes of manifest.json, hex>}
//! ```
//!
//! The signature object is written before the manifest, so a complete
//! version is signed from the moment it exists. Since the manifest pins the
//! digests of both artifacts, which the loader checks on download, the
//! signature covers the whole version.
//!
//! Keys are 32 bytes written in hex: the trainer's private key file
//! (`publish.signing_key_file`, made by `reco signing-key --out FILE`) holds
//! the seed, the nodes list public keys (`publish.trusted_keys`).

use ed25519_dalek::{Signature, Signer as _, Verifier as _};
use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;

/// Object name (after `<version>/`) of the manifest's signature.
pub const SIGNATURE_OBJECT: &str = "manifest.sig";

/// A key that cannot be used.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The key file cannot be read or written.
    #[error("cannot {action} the signing key file {path}: {source}")]
    File {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not 64 hex digits (32 bytes), or not a valid public key.
    #[error("{what} is not a valid ed25519 key: {why} (expected 64 hex digits, as `reco signing-key` writes)")]
    Invalid {
        /// What was parsed (a file name, or `publish.trusted_keys[i]`).
        what: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// Why a version's signature was not accepted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The version has no `manifest.sig`.
    #[error("the version is not signed (no {SIGNATURE_OBJECT}) and publish.trusted_keys is set")]
    Unsigned,
    /// `manifest.sig` does not decode.
    #[error("the signature object is malformed: {0}")]
    Malformed(String),
    /// Signed by a key that is not in `publish.trusted_keys`.
    #[error("signed by key {0}, which is not in publish.trusted_keys")]
    UntrustedKey(String),
    /// The signature does not match the manifest.
    #[error("the signature does not match the manifest")]
    Invalid,
}

impl SignatureError {
    /// The `reason` label of `reco_model_versions_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::Unsigned => "unsigned",
            SignatureError::Malformed(_) | SignatureError::Invalid => "bad_signature",
            SignatureError::UntrustedKey(_) => "untrusted_key",
        }
    }
}

/// What `manifest.sig` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSignature {
    /// The signer's public key, hex.
    pub key: String,
    /// The ed25519 signature of the manifest's bytes, hex.
    pub signature: String,
}

/// A trainer's private key.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(public {})", self.public_hex())
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Self {
        let seed: [u8; 32] = rand::random();
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// Reads the key from `path` (64 hex digits, white space ignored).
    ///
    /// # Errors
    /// [`KeyError`] when the file cannot be read or holds no key.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::File {
            action: "read",
            path: path.display().to_string(),
            source,
        })?;
        let seed = from_hex(text.trim()).map_err(|why| KeyError::Invalid {
            what: format!("the signing key file {}", path.display()),
            why,
        })?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// Writes the key to `path` (readable by its owner only).
    ///
    /// # Errors
    /// [`KeyError::File`].
    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let failed = |source| KeyError::File {
            action: "write",
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(failed)?;
        writeln!(file, "{}", to_hex(&self.0.to_bytes())).map_err(failed)
    }

    /// The public key, hex (what nodes list in `publish.trusted_keys`).
    pub fn public_hex(&self) -> String {
        to_hex(self.0.verifying_key().as_bytes())
    }

    /// Signs `manifest` (the exact bytes stored).
    pub fn sign(&self, manifest: &[u8]) -> ManifestSignature {
        ManifestSignature {
            key: self.public_hex(),
            signature: to_hex(&self.0.sign(manifest).to_bytes()),
        }
    }
}

/// The public keys a node accepts versions from; empty: versions need no
/// signature.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys(Vec<ed25519_dalek::VerifyingKey>);

impl TrustedKeys {
    /// Parses `publish.trusted_keys`.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] naming the first key that is not one.
    pub fn parse(keys: &[String]) -> Result<Self, KeyError> {
        keys.iter()
            .enumerate()
            .map(|(i, key)| {
                let invalid = |why| KeyError::Invalid {
                    what: format!("publish.trusted_keys[{i}]"),
                    why,
                };
                let bytes = from_hex(key.trim()).map_err(invalid)?;
                ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| invalid("not a point of the curve"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedKeys)
    }

    /// Whether signatures are required.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks `signature` (the bytes of `manifest.sig`, `None` when it is
    /// missing) against `manifest`.
    ///
    /// # Errors
    /// [`SignatureError`]; never when no keys are trusted.
    pub fn verify(&self, manifest: &[u8], signature: Option<&[u8]>) -> Result<(), SignatureError> {
        if self.is_empty() {
            return Ok(());
        }
        let bytes = signature.ok_or(SignatureError::Unsigned)?;
        let signed: ManifestSignature =
            serde_json::from_slice(bytes).map_err(|e| SignatureError::Malformed(e.to_string()))?;
        let key = from_hex(&signed.key)
            .map_err(|why| SignatureError::Malformed(format!("key: {why}")))?;
        let Some(trusted) = self.0.iter().find(|k| k.as_bytes() == &key) else {
            return Err(SignatureError::UntrustedKey(
                signed.key.chars().take(64).collect(),
            ));
        };
        let raw: [u8; 64] = hex_bytes(&signed.signature)
            .and_then(|v| v.try_into().map_err(|_| "not 64 bytes"))
            .map_err(|why| SignatureError::Malformed(format!("signature: {why}")))?;
        trusted
            .verify(manifest, &Signature::from_bytes(&raw))
            .map_err(|_| SignatureError::Invalid)
    }
}

/// Arguments of `reco signing-key`.
#[derive(Debug, clap::Args)]
pub struct SigningKeyArgs {
    /// Where to write the new private key (never overwritten; mode 0600).
    #[arg(long)]
    pub out: std::path::PathBuf,
}

/// `reco signing-key`: makes a trainer's key, writes the private half to
/// `--out` and prints the public half (for the nodes' publish.trusted_keys).
///
/// # Errors
/// When the file exists or cannot be written.
pub fn signing_key(args: &SigningKeyArgs) -> anyhow::Result<()> {
    let key = SigningKey::generate();
    key.write(&args.out)?;
    eprintln!(
        "wrote the private key to {} (trainer: publish.signing_key_file); public key for the nodes' publish.trusted_keys:",
        args.out.display()
    );
    println!("{}", key.public_hex());
    Ok(())
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_bytes(text: &str) -> Result<Vec<u8>, &'static str> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return Err("not hex digits");
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| "not hex digits"))
        .collect()
}

fn from_hex(text: &str) -> Result<[u8; 32], &'static str> {
    hex_bytes(text)?.try_into().map_err(|_| "not 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_a_trusted_key_over_the_same_bytes() {
        let key = SigningKey::generate();
        let other = SigningKey::generate();
        let trusted = TrustedKeys::parse(&[key.public_hex()]).unwrap();
        let manifest = br#"{"version":"v1"}"#;
        let signed = serde_json::to_vec(&key.sign(manifest)).unwrap();
        assert_eq!(trusted.verify(manifest, Some(&signed)), Ok(()));
        assert_eq!(
            trusted.verify(br#"{"version":"v2"}"#, Some(&signed)),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            trusted.verify(manifest, None),
            Err(SignatureError::Unsigned)
        );
        let foreign = serde_json::to_vec(&other.sign(manifest)).unwrap();
        assert!(matches!(
            trusted.verify(manifest, Some(&foreign)),
            Err(SignatureError::UntrustedKey(_))
        ));
        // A trusted key with another key's signature is invalid.
        let mut forged = other.sign(manifest);
        forged.key = key.public_hex();
        let forged = serde_json::to_vec(&forged).unwrap();
        assert_eq!(
            trusted.verify(manifest, Some(&forged)),
            Err(SignatureError::Invalid)
        );
        assert!(matches!(
            trusted.verify(manifest, Some(b"junk")),
            Err(SignatureError::Malformed(_))
        ));
        // No keys: nothing is checked.
        assert_eq!(TrustedKeys::default().verify(manifest, None), Ok(()));
    }

    #[test]
    fn keys_round_trip_through_files_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trainer.key");
        let key = SigningKey::generate();
        key.write(&path).unwrap();
        assert_eq!(
            SigningKey::from_file(&path).unwrap().public_hex(),
            key.public_hex()
        );
        assert!(
            key.write(&path).is_err(),
            "an existing key is never overwritten"
        );
        let error = TrustedKeys::parse(&[key.public_hex(), "abc".into()]).unwrap_err();
        assert!(error.to_string().contains("trusted_keys[1]"), "{error}");
        assert!(!format!("{key:?}").contains(&to_hex(&key.0.to_bytes())));
    }
}
