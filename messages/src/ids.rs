//! Identifiers of members and items.
//!
//! Both are opaque unsigned 64-bit integers on the wire (producers in other
//! languages send plain integers); the newtypes keep a member id from being
//! passed where an item id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A member (a user of the streaming service) as producers and callers name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberId(pub u64);

/// An item of the catalogue (a title) as producers and callers name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ItemId(pub u64);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
