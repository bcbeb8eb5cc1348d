//! The serving node: wires the actors of the online path together.
//!
//! ```text
//!  node
//!  ├── NATS client (one connection; slow consumers counted)
//!  ├── Ingress            events + requests subscriptions → shards
//!  ├── SessionShard × S   one per arbiter thread, each owning its sessions
//!  │   └── Session × members (bounded, passivated when idle)
//!  ├── ModelPool          ModelWorker × W on a SyncArbiter, bounded admission
//!  └── Precomputed        batch lists, read without a queue
//! ```
//!
//! [`run`] must be called inside an actix `System`. It returns once the
//! shutdown future has resolved and the node has drained: subscriptions
//! unsubscribed, messages already received handled, every in-flight request
//! answered (or the drain timeout passed).

use crate::config::Config;
use crate::metrics as nm;
use actix::prelude::*;
use anyhow::Context as _;
use futures::StreamExt;
use reco_actors::admin::Admin;
use reco_actors::ingress::{Ingress, IngressSettings};
use reco_actors::metrics as m;
use reco_actors::model::{InjectedFaults, ModelHandle, ModelPool};
use reco_actors::precomputed::{ListsReader, Precomputed};
use reco_actors::responder::InFlight;
use reco_actors::session::{SessionDeps, SessionSettings};
use reco_actors::shard::{SessionShard, ShardSettings};
use reco_messages::Subjects;
use reco_models::{ItemFactors, PrecomputedLists};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Connects to NATS with the node's options: counted slow consumers and
/// connection events, bounded subscription buffers.
pub async fn connect(config: &Config) -> anyhow::Result<async_nats::Client> {
    let options = async_nats::ConnectOptions::new()
        .name("reco-serve")
        .subscription_capacity(config.nats.subscription_capacity)
        .connection_timeout(Duration::from_millis(config.nats.connect_timeout_ms))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::SlowConsumer(sid) => {
                    metrics::counter!(m::NATS_SLOW_CONSUMER_TOTAL).increment(1);
                    tracing::warn!(
                        sid,
                        "NATS subscription is a slow consumer: messages were dropped."
                    );
                }
                other => {
                    let name = match other {
                        async_nats::Event::Connected => "connected",
                        async_nats::Event::Disconnected => "disconnected",
                        async_nats::Event::LameDuckMode => "lame_duck",
                        async_nats::Event::Draining => "draining",
                        async_nats::Event::Closed => "closed",
                        _ => "other",
                    };
                    metrics::counter!(m::NATS_EVENTS_TOTAL, "event" => name).increment(1);
                    tracing::info!(event = %other, "NATS connection event.");
                }
            }
        });
    options
        .connect(config.nats.url.as_str())
        .await
        .with_context(|| {
            format!(
                "cannot connect to NATS at {}: is nats-server running? (set --nats or {})",
                config.nats.url,
                crate::config::ENV_NATS_URL
            )
        })
}

/// Waits until the server has processed everything this client sent so far
/// (`Client::flush` only writes to the socket): a message to our own inbox
/// comes back only after earlier subscriptions are registered.
pub async fn round_trip(client: &async_nats::Client) -> anyhow::Result<()> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await?;
    client.publish(inbox, bytes::Bytes::new()).await?;
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .context("NATS server did not answer a round trip within 10 s")?;
    Ok(())
}

/// Runs a node until `shutdown` resolves, then drains it.
pub async fn run(
    config: Config,
    model: Option<ItemFactors>,
    lists: PrecomputedLists,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate()?;
    let subjects = Subjects::new(&config.nats.prefix)?;
    let client = connect(&config).await?;
    crate::event_log::start_recording(&client, &config, &subjects).await;

    let model_version = model.as_ref().map(|m| m.version().to_owned());
    let lists_version = lists.version.clone();
    let handle = ModelHandle::new(model);
    let faults = InjectedFaults::new(config.model.test_delay_ms);
    let pool = ModelPool::start(
        config.model.workers,
        config.model.max_in_flight,
        handle.clone(),
        faults.clone(),
    );
    if config.model.test_delay_ms > 0 {
        tracing::warn!(
            delay_ms = config.model.test_delay_ms,
            "model.test_delay_ms is set: every scoring request is slowed on purpose (test only)."
        );
    }
    let reader = ListsReader::new(lists);
    let _precomputed = Precomputed::new(reader.clone()).start();

    let deps = SessionDeps {
        model: pool,
        lists: reader.clone(),
        settings: SessionSettings {
            recent_events: config.sessions.recent_events,
            mailbox: config.sessions.mailbox,
            reply_margin: Duration::from_micros(config.recommend.reply_margin_us),
        },
    };
    let shard_count = config.shard_count();
    let shard_settings = ShardSettings {
        max_resident: config.sessions.max_resident.div_ceil(shard_count as u64),
        idle_timeout: Duration::from_millis(config.sessions.idle_timeout_ms),
        mailbox: config.sessions.shard_mailbox,
    };
    let mut arbiters = Vec::with_capacity(shard_count);
    let mut shards = Vec::with_capacity(shard_count);
    for index in 0..shard_count {
        let arbiter = Arbiter::new();
        let (settings, deps) = (shard_settings.clone(), deps.clone());
        shards.push(SessionShard::start_in_arbiter(
            &arbiter.handle(),
            move |_| SessionShard::new(index, settings, deps),
        ));
        arbiters.push(arbiter);
    }

    let in_flight = InFlight::new();
    let draining = Arc::new(AtomicBool::new(false));
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = Admin {
        client: client.clone(),
        subjects: subjects.clone(),
        model: handle,
        lists: reader.clone(),
        in_flight: in_flight.clone(),
        shards: shards.clone(),
        faults: config.node.fault_injection.then_some(faults),
        draining: draining.clone(),
        rss_bytes: Arc::new(rss_bytes),
    };
    let admin = actix::spawn(async move {
        let stopped = async {
            let _ = admin_stopped.await;
        };
        if let Err(error) = admin.run(stopped).await {
            tracing::error!(%error, "Admin surface could not subscribe; the node serves without it.");
        }
    });

    let rss_gauge = actix::spawn(async {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            metrics::gauge!(nm::PROCESS_RSS_BYTES).set(rss_bytes() as f64);
        }
    });

    let events = client.subscribe(subjects.events_wildcard()).await?;
    let requests = client.subscribe(subjects.recommend_wildcard()).await?;
    round_trip(&client).await?;

    let ingress = Ingress::new(
        client.clone(),
        subjects.clone(),
        IngressSettings {
            max_payload: config.limits.max_payload_bytes,
            default_deadline: Duration::from_millis(config.recommend.default_deadline_ms),
        },
        shards,
        reader,
        in_flight.clone(),
    );
    metrics::gauge!(nm::NODE_UP).set(1.0);
    tracing::info!(
        nats = %config.nats.url,
        prefix = subjects.prefix(),
        shards = shard_count,
        workers = config.model.workers,
        model = model_version.as_deref().unwrap_or("none"),
        lists = %lists_version,
        "Node ready."
    );
    let shutdown = async {
        shutdown.await;
        draining.store(true, Ordering::Release);
        metrics::gauge!(nm::NODE_UP).set(0.0);
    };
    ingress.run(events, requests, shutdown).await;

    let left = in_flight
        .wait_idle(Duration::from_millis(config.node.drain_timeout_ms))
        .await;
    if left > 0 {
        metrics::counter!(nm::DRAIN_ABANDONED_TOTAL).increment(left as u64);
        tracing::error!(left, "Drain timed out with requests still in flight.");
    }
    if let Err(error) = client.flush().await {
        tracing::warn!(%error, "Final NATS flush failed.");
    }
    round_trip(&client).await.ok();
    let _ = stop_admin.send(());
    let _ = admin.await;
    rss_gauge.abort();
    for arbiter in arbiters {
        arbiter.stop();
    }
    tracing::info!(abandoned = left, "Node drained.");
    Ok(())
}

/// The resident set size of this process, from `/proc/self/statm` (0 where
/// that cannot be read).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "Cannot listen for SIGTERM; only Ctrl-C stops the node.");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "Shutdown requested."),
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "Shutdown requested."),
    }
}
