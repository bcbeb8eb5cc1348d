//! `OperatorGuard`: the check in front of every state-changing admin request
//! (`<prefix>.admin.faults`, `admin.model` pin/unpin, `admin.reload`). On a
//! shared NATS anyone who may publish on the admin subjects could otherwise
//! pin a model or reload the node; with `admin.operator_token` configured,
//! such a request must carry the token in the
//! [`HEADER_OPERATOR_TOKEN`](reco_messages::admin::HEADER_OPERATOR_TOKEN)
//! header. NATS permissions remain the first line; this is the second.
//!
//! Emits `reco_admin_refused_total{subject}` and a warning per refusal (the
//! token itself is never logged).

use reco_messages::admin::HEADER_OPERATOR_TOKEN;
use reco_messages::metrics as m;
use std::sync::Arc;

/// Whether a request may change state. Without a token every request may
/// (the node's admin subjects are then guarded by NATS permissions only).
#[derive(Clone, Default)]
pub struct OperatorGuard {
    token: Option<Arc<str>>,
}

impl std::fmt::Debug for OperatorGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorGuard")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl OperatorGuard {
    /// Requires `token` (none: no requirement).
    pub fn new(token: Option<&str>) -> Self {
        OperatorGuard {
            token: token.map(Arc::from),
        }
    }

    /// True when `message` may change state on `subject`; otherwise counts
    /// and logs the refusal.
    pub fn allows(&self, message: &async_nats::Message, subject: &'static str) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let given = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(HEADER_OPERATOR_TOKEN))
            .map(|value| value.as_str().as_bytes());
        if given.is_some_and(|given| same(given, expected.as_bytes())) {
            return true;
        }
        metrics::counter!(m::ADMIN_REFUSED_TOTAL, "subject" => subject).increment(1);
        tracing::warn!(
            subject,
            token_given = given.is_some(),
            "Admin request refused: missing or wrong operator token."
        );
        false
    }
}

/// Compares in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a refused requester is told.
pub const REFUSED: &str =
    "this admin request changes the node's state and needs the operator token (header Reco-Operator-Token; reco --operator-token or RECO_OPERATOR_TOKEN)";
