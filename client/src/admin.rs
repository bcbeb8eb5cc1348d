//! The typed admin client: every request of a node's operator surface
//! (`<prefix>.admin.…`) as a method, decoding the reply into its
//! [`reco_messages::admin`] type, and a node's refusal into
//! [`AdminError::Refused`]. Used by `reco tree`/`reco model`, the simulator
//! and the end-to-end tests, so the admin contract is written once.

use reco_messages::admin::{
    Faults, Health, ModelCommand, ModelStatus, Reloaded, SetFaults, TreeNode,
};
use reco_messages::{decode, encode, DecodeError, ErrorBody, ErrorReply, Subjects};
use std::time::Duration;
use thiserror::Error;

/// Largest admin reply accepted.
const REPLY_LIMIT: usize = 16 << 20;

/// An admin request that did not produce the expected reply.
#[derive(Debug, Error)]
pub enum AdminError {
    /// No reply within the timeout.
    #[error("{subject} did not answer within {timeout:?}")]
    Timeout {
        /// The admin subject.
        subject: String,
        /// How long the client waited.
        timeout: Duration,
    },
    /// The request failed (no node serves this prefix, or the connection).
    #[error("request on {subject} failed: is a reco node serving this prefix?")]
    Request {
        /// The admin subject.
        subject: String,
        /// What the client said.
        #[source]
        source: async_nats::RequestError,
    },
    /// The node answered with an error (e.g. fault injection disabled).
    #[error("the node refused the request on {subject}: {}", .body.message)]
    Refused {
        /// The admin subject.
        subject: String,
        /// The node's error.
        body: ErrorBody,
    },
    /// The reply is not what this subject answers.
    #[error("the reply on {subject} is not a valid {what}")]
    Decode {
        /// The admin subject.
        subject: String,
        /// The expected reply.
        what: &'static str,
        /// The decoder's complaint.
        #[source]
        source: DecodeError,
    },
}

impl AdminError {
    /// Whether no node answers on this prefix at all (no responders).
    pub fn is_no_responders(&self) -> bool {
        matches!(self, AdminError::Request { source, .. }
            if source.kind() == async_nats::RequestErrorKind::NoResponders)
    }
}

/// A client of one deployment's admin surface.
#[derive(Clone, Debug)]
pub struct Admin {
    client: async_nats::Client,
    subjects: Subjects,
    timeout: Duration,
    operator_token: Option<crate::Secret>,
    /// Address every request to this node alone.
    node: Option<String>,
}

impl Admin {
    /// The admin surface under `subjects`, reached through `client`; each
    /// request waits at most 10 s (see [`with_timeout`](Self::with_timeout)).
    pub fn new(client: async_nats::Client, subjects: Subjects) -> Self {
        Admin {
            client,
            subjects,
            timeout: Duration::from_secs(10),
            operator_token: None,
            node: None,
        }
    }

    /// Addresses every request to node `node` alone
    /// (`<prefix>.node.<node>.admin.<verb>`, see `reco cluster` for the
    /// nodes); `None`: whichever node answers first.
    pub fn with_node(mut self, node: Option<String>) -> Self {
        self.node = node;
        self
    }

    /// Sends `token` in the `Reco-Operator-Token` header of every request
    /// (what a node with `admin.operator_token` requires to change state).
    pub fn with_operator_token(mut self, token: Option<crate::Secret>) -> Self {
        self.operator_token = token;
        self
    }

    /// The same client with another per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `<prefix>.admin.health`: status, versions, in-flight requests, memory.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn health(&self) -> Result<Health, AdminError> {
        self.request(self.subjects.admin_health(), Vec::new(), "health")
            .await
    }

    /// `<prefix>.admin.tree`: the live supervision tree.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn tree(&self) -> Result<TreeNode, AdminError> {
        self.request(self.subjects.admin_tree(), Vec::new(), "supervision tree")
            .await
    }

    /// `<prefix>.admin.faults`: sets test faults (a node refuses unless
    /// `node.fault_injection` is on) and returns those in force.
    ///
    /// # Errors
    /// [`AdminError`]; [`AdminError::Refused`] on a production node.
    pub async fn faults(&self, set: &SetFaults) -> Result<Faults, AdminError> {
        self.request(self.subjects.admin_faults(), encode(set), "faults")
            .await
    }

    /// `<prefix>.admin.model`: shows, pins or unpins the model version.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn model(&self, command: &ModelCommand) -> Result<ModelStatus, AdminError> {
        self.request(self.subjects.admin_model(), encode(command), "model status")
            .await
    }

    /// `<prefix>.admin.reload`: re-reads the node's config file and applies
    /// its supervision settings.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn reload(&self) -> Result<Reloaded, AdminError> {
        self.request(self.subjects.admin_reload(), Vec::new(), "reload outcome")
            .await
    }

    fn headers(&self) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(token) = &self.operator_token {
            headers.insert(reco_messages::admin::HEADER_OPERATOR_TOKEN, token.expose());
        }
        headers
    }

    async fn request<T: serde::de::DeserializeOwned>(
        &self,
        subject: String,
        payload: Vec<u8>,
        what: &'static str,
    ) -> Result<T, AdminError> {
        let subject = match &self.node {
            Some(node) => self.subjects.addressed(&subject, node),
            None => subject,
        };
        let reply = tokio::time::timeout(
            self.timeout,
            self.client.send_request(
                subject.clone(),
                async_nats::Request::new()
                    .payload(payload.into())
                    .headers(self.headers()),
            ),
        )
        .await
        .map_err(|_| AdminError::Timeout {
            subject: subject.clone(),
            timeout: self.timeout,
        })?
        .map_err(|source| AdminError::Request {
            subject: subject.clone(),
            source,
        })?;
        if let Ok(refused) = decode::<ErrorReply>(&reply.payload, REPLY_LIMIT) {
            return Err(AdminError::Refused {
                subject,
                body: refused.error,
            });
        }
        decode(&reply.payload, REPLY_LIMIT).map_err(|source| AdminError::Decode {
            subject,
            what,
            source,
        })
    }
}
