//! The node as a NATS micro-service: `$SRV.PING/INFO/STATS` answer for
//! every node, so the nodes of a deployment can be seen with NATS's own
//! tools (`nats micro ls reco`) and with `reco cluster`.
//!
//! ```text
//!  service "reco", metadata {node, prefix, mode, partitions (at registration)}
//!    endpoint "status" on <prefix>.node.<node>.status ─► NodeStatus (JSON)
//!    $SRV.STATS.reco ─► the same NodeStatus as the endpoint's `data`
//! ```
//!
//! The service's metadata is fixed when it registers (the NATS micro
//! protocol has no update): the live partitions, lease ages, lag and
//! traffic are in [`NodeStatus`], read on every request.

use reco_actors::ingress::IngressCounters;
use reco_cluster::{Fence, HostStatus};
use reco_messages::admin::{
    NodeStatus, SERVICE_META_MODE, SERVICE_META_NODE, SERVICE_META_PARTITIONS, SERVICE_META_PREFIX,
    SERVICE_NAME,
};
use reco_messages::partition::Partition;
use reco_messages::Subjects;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Where a node's status is read from.
pub struct StatusSource {
    pub(super) node: String,
    pub(super) mode: &'static str,
    pub(super) prefix: String,
    pub(super) partitions: u32,
    pub(super) lease: Duration,
    pub(super) started: Instant,
    /// In a cluster: which partitions replay/serve, the leases, the lag.
    pub(super) owned: Option<(watch::Receiver<HostStatus>, Fence, Arc<[AtomicU64]>)>,
    pub(super) counters: Arc<IngressCounters>,
}

impl StatusSource {
    /// The node's status now.
    pub fn read(&self) -> NodeStatus {
        let now = Instant::now();
        let mut status = NodeStatus {
            node: self.node.clone(),
            mode: self.mode.into(),
            prefix: self.prefix.clone(),
            partitions: self.partitions,
            lease_ms: self.lease.as_millis() as u64,
            events: self.counters.events.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
            fallback_requests: self.counters.fallback_requests.load(Ordering::Relaxed),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            ..NodeStatus::default()
        };
        if let Some((host, fence, lag)) = &self.owned {
            let host = host.borrow().clone();
            status.serving = host.serving.iter().map(|k| k.0).collect();
            status.replaying = host.replaying.iter().map(|k| k.0).collect();
            status.lease_ages_ms = (0..self.partitions)
                .filter_map(|k| {
                    let remaining = fence.remaining_at(Partition(k), now)?;
                    Some((k, self.lease.saturating_sub(remaining).as_millis() as u64))
                })
                .collect();
            status.lag_events = lag.iter().map(|l| l.load(Ordering::Relaxed)).sum();
        }
        status
    }
}

/// Registers the node's micro-service and answers its status endpoint
/// until `stop` becomes true; then the service is stopped (it leaves
/// `$SRV` at once).
///
/// # Errors
/// When the service or its endpoint cannot subscribe.
pub async fn register(
    client: &async_nats::Client,
    subjects: &Subjects,
    source: StatusSource,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use async_nats::service::ServiceExt;
    use futures::StreamExt;
    let source = Arc::new(source);
    let first = source.read();
    let metadata = HashMap::from([
        (SERVICE_META_NODE.to_owned(), first.node.clone()),
        (SERVICE_META_PREFIX.to_owned(), first.prefix.clone()),
        (SERVICE_META_MODE.to_owned(), first.mode.clone()),
        (
            SERVICE_META_PARTITIONS.to_owned(),
            first
                .serving
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]);
    let stats = source.clone();
    let service = client
        .service_builder()
        .description(format!(
            "reco node {} on prefix {}",
            first.node, first.prefix
        ))
        .metadata(metadata)
        .stats_handler(move |_endpoint, _stats| {
            serde_json::to_value(stats.read()).unwrap_or_default()
        })
        .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("cannot register the node's NATS micro-service: {e}"))?;
    let mut endpoint = service
        .endpoint_builder()
        .name("status")
        .add(subjects.node_status(&first.node))
        .await
        .map_err(|e| anyhow::anyhow!("cannot add the node's status endpoint: {e}"))?;
    tracing::info!(
        node = %first.node,
        service = SERVICE_NAME,
        "Registered as a NATS micro-service ($SRV.PING/INFO/STATS)."
    );
    Ok(tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let mut stopped = std::pin::pin!(stopped);
        loop {
            tokio::select! {
                () = &mut stopped => break,
                request = endpoint.next() => match request {
                    Some(request) => {
                        let body = serde_json::to_vec(&source.read()).unwrap_or_default();
                        if let Err(error) = request.respond(Ok(body.into())).await {
                            tracing::debug!(%error, "Status reply not sent.");
                        }
                    }
                    None => break,
                },
            }
        }
        let _ = endpoint.stop().await;
        if let Err(error) = service.stop().await {
            tracing::debug!(%error, "Micro-service not stopped cleanly.");
        }
    }))
}
