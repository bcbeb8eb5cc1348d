//! `NodeId`: the name of one `reco serve` process in a cluster.
//!
//! It is written into lease values and heartbeat keys and shown to
//! operators, so it must be a valid key-value key and a single NATS subject
//! token: letters, digits, `-` and `_`. The default is the host name and the
//! process id, which tells an operator where to look.

use std::fmt;
use thiserror::Error;

/// Longest node id accepted, in bytes.
pub const MAX_NODE_ID_LEN: usize = 64;

/// A node id that cannot name a node.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("node id {0:?} is invalid: use 1 to 64 letters, digits, '-' or '_' (e.g. \"web-1\")")]
pub struct InvalidNodeId(pub String);

/// The name of a node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    /// Checks `id`.
    ///
    /// # Errors
    /// [`InvalidNodeId`] for an empty, too long or oddly spelled id.
    pub fn new(id: &str) -> Result<Self, InvalidNodeId> {
        let valid = !id.is_empty()
            && id.len() <= MAX_NODE_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(NodeId(id.to_owned()))
        } else {
            Err(InvalidNodeId(id.chars().take(128).collect()))
        }
    }

    /// `<host>-<pid>`, with every character a node id cannot hold replaced
    /// by `-` (host names may have dots).
    pub fn from_host_and_pid(host: &str, pid: u32) -> Self {
        let host: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(MAX_NODE_ID_LEN - 11)
            .collect();
        let host = if host.is_empty() { "node".into() } else { host };
        NodeId(format!("{host}-{pid}"))
    }

    /// This process's default id: the host name (from `/proc`, else
    /// `$HOSTNAME`, else `node`) and the process id.
    pub fn default_for_process() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        NodeId::from_host_and_pid(host.trim(), std::process::id())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_single_subject_tokens() {
        assert!(NodeId::new("web-1_a").is_ok());
        for bad in ["", "a.b", "a b", "a*", &"x".repeat(65)] {
            assert!(NodeId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_id_is_host_and_pid_made_valid() {
        let id = NodeId::from_host_and_pid("box.example.org", 42);
        assert_eq!(id.as_str(), "box-example-org-42");
        assert!(NodeId::new(id.as_str()).is_ok());
        assert_eq!(NodeId::from_host_and_pid("", 7).as_str(), "node-7");
        let long = NodeId::from_host_and_pid(&"h".repeat(200), u32::MAX);
        assert!(NodeId::new(long.as_str()).is_ok());
        assert!(NodeId::new(NodeId::default_for_process().as_str()).is_ok());
    }
}
