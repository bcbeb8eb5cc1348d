//! Strict deserialisation of the contract's text fields.
//!
//! serde's stock visitors are lenient in ways the wire contract is not:
//! an enum accepts its variant's *position* as an integer (`kind: 0` would
//! be `play`), and a `String` accepts MessagePack binary that happens to be
//! UTF-8. A producer relying on either would break the day a variant is
//! added or a decoder in another language is stricter, so reco refuses both:
//! these visitors accept MessagePack strings and nothing else.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// A visitor that takes a string and only a string.
struct StrictString;

impl Visitor<'_> for StrictString {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
}

/// A visitor of an optional string: nil, or a string (never binary).
struct StrictOptionString;

impl<'de> Visitor<'de> for StrictOptionString {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nil or a string")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_string(StrictString).map(Some)
    }
}

/// Deserialises a string, refusing binary and every other type.
pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_string(StrictString)
}

/// Deserialises an optional string (`#[serde(default, deserialize_with = …)]`),
/// refusing binary and every other type.
pub(crate) fn option_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_option(StrictOptionString)
}
