//! `Admin`: the operator surface of a node over NATS request/reply.
//!
//! Subjects: `<prefix>.admin.health` → [`Health`]; `<prefix>.admin.faults`
//! ([`SetFaults`] → [`Faults`]) only when fault injection is enabled for the
//! node (tests and the simulator), otherwise answered with an error.
//!
//! Like the ingress it is a task, because it owns its subscriptions.

use crate::breaker::ModelBreaker;
use crate::faults::InjectedFaults;
use crate::lists::ListsReader;
use crate::model::ModelHandle;
use crate::reply::InFlight;
use crate::shard::{ResidentCount, ShardTable};
use async_nats::{Client, Message};
use futures::StreamExt;
use reco_messages::admin::{ClusterHealth, Faults, Health, SetFaults};
use reco_messages::{decode, encode, ErrorCode, ErrorReply, ItemId, Subjects};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Largest admin payload accepted.
const MAX_ADMIN_PAYLOAD: usize = 4096;

/// Subscribes admin subject `subject` as every node answers it and, when
/// `subjects` name this node, as addressed to it alone
/// (`<prefix>.node.<node>.admin.<verb>`), as one stream.
///
/// # Errors
/// When a subscription fails.
pub async fn subscribe_admin(
    client: &Client,
    subjects: &Subjects,
    subject: String,
) -> Result<futures::stream::SelectAll<async_nats::Subscriber>, async_nats::SubscribeError> {
    let mut all = futures::stream::SelectAll::new();
    for subject in subjects.admin_listen(subject) {
        all.push(client.subscribe(subject).await?);
    }
    Ok(all)
}

/// What the admin surface reads and controls.
#[derive(Clone)]
pub struct Admin {
    /// NATS connection.
    pub client: Client,
    /// Subjects of the deployment.
    pub subjects: Subjects,
    /// The model in service.
    pub model: ModelHandle,
    /// The lists in service.
    pub lists: ListsReader,
    /// Requests in flight.
    pub in_flight: InFlight,
    /// The session shards (for resident counts).
    pub shards: ShardTable,
    /// The injectable faults, when the node allows fault injection.
    pub faults: Option<InjectedFaults>,
    /// Set once the node drains.
    pub draining: Arc<AtomicBool>,
    /// The operator token check on state-changing requests.
    pub guard: crate::guard::OperatorGuard,
    /// The breaker in front of the model pool.
    pub breaker: ModelBreaker,
    /// Reads the process's resident set size (the caller knows how).
    pub rss_bytes: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Reads the node's place among the nodes of the prefix.
    pub cluster: Option<Arc<dyn Fn() -> ClusterHealth + Send + Sync>>,
    /// The aggregate snapshot in service.
    pub aggregates: Option<crate::aggregates::AggregatesReader>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("subjects", &self.subjects)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Answers admin requests until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), async_nats::SubscribeError> {
        let mut health =
            subscribe_admin(&self.client, &self.subjects, self.subjects.admin_health()).await?;
        let mut faults =
            subscribe_admin(&self.client, &self.subjects, self.subjects.admin_faults()).await?;
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                Some(message) = health.next() => self.on_health(message).await,
                Some(message) = faults.next() => self.on_faults(message).await,
                else => return Ok(()),
            }
        }
    }

    async fn on_health(&self, message: Message) {
        let mut resident = 0;
        for shard in self.shards.all() {
            resident += shard.send(ResidentCount).await.unwrap_or(0);
        }
        let health = Health {
            status: if self.draining.load(Ordering::Acquire) {
                "draining".into()
            } else {
                "serving".into()
            },
            model_version: self.model.load().map(|m| m.version().to_owned()),
            lists_version: self.lists.load().version.clone(),
            in_flight: self.in_flight.count() as u64,
            resident_members: resident,
            rss_bytes: (self.rss_bytes)(),
            cluster: self.cluster.as_ref().map(|read| read()),
            model_breaker: Some(self.breaker.state().as_str().to_owned()),
            aggregates_version: None,
            aggregates_age_ms: None,
        };
        let mut health = health;
        if let Some((version, age_ms)) = self
            .aggregates
            .as_ref()
            .and_then(|a| a.current(crate::signals::now_ms()))
        {
            health.aggregates_version = Some(version);
            health.aggregates_age_ms = Some(age_ms);
        }
        self.reply(&message, encode(&health)).await;
    }

    async fn on_faults(&self, message: Message) {
        if !self.guard.allows(&message, "faults") {
            let error = ErrorReply::new(ErrorCode::BadRequest, crate::guard::REFUSED);
            return self.reply(&message, encode(&error)).await;
        }
        let Some(faults) = &self.faults else {
            let error = ErrorReply::new(
                ErrorCode::BadRequest,
                "fault injection is disabled on this node; start it with node.fault_injection = true (tests and simulations only)",
            );
            return self.reply(&message, encode(&error)).await;
        };
        let request: SetFaults = if message.payload.is_empty() {
            SetFaults::default()
        } else {
            match decode(&message.payload, MAX_ADMIN_PAYLOAD) {
                Ok(request) => request,
                Err(error) => {
                    let error = ErrorReply::new(ErrorCode::BadRequest, error.to_string());
                    return self.reply(&message, encode(&error)).await;
                }
            }
        };
        if let Some(ms) = request.model_delay_ms {
            let ms = ms.min(60_000);
            tracing::warn!(
                model_delay_ms = ms,
                "Fault injected: scoring requests delayed."
            );
            faults.set_model_delay_ms(ms);
        }
        if let Some(cohort) = request.model_cohort {
            tracing::warn!(
                ?cohort,
                "Fault injection: model faults limited to a cohort (none: every member)."
            );
            faults.set_model_cohort(cohort);
        }
        if let Some(every) = request.model_panic_every {
            tracing::warn!(
                every,
                "Fault injected: model workers panic on every nth request."
            );
            faults.set_model_panic_every(every);
        }
        if let Some(item) = request.poison_item {
            tracing::warn!(
                ?item,
                "Fault injected: events for this item crash their session."
            );
            faults.set_poison_item(item.map(ItemId));
        }
        let state = Faults {
            model_delay_ms: faults.model_delay().as_millis() as u64,
            model_panic_every: faults.model_panic_every(),
            poison_item: faults.poison_item().map(|i| i.0),
            model_cohort: faults.model_cohort(),
        };
        self.reply(&message, encode(&state)).await;
    }

    async fn reply(&self, message: &Message, bytes: Vec<u8>) {
        if let Some(reply) = &message.reply {
            if let Err(error) = self.client.publish(reply.clone(), bytes.into()).await {
                tracing::warn!(%error, "Admin reply could not be published.");
            }
        }
    }
}
