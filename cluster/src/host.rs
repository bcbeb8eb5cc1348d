//! `PartitionHost`: turns ownership changes into the traffic of the owned
//! partitions, as the node's ingress already knows it.
//!
//! ```text
//!  Rebalancer ──Ownership──▶ PartitionHost
//!                              ├── partition k: intake (replay from now − window)
//!                              │     └─ after CaughtUp: subscribe <prefix>.p.recommend.<k>.*
//!                              └── partition j: …
//!        events   (subject rewritten to <prefix>.events.<m>)     ──▶ ingress
//!        requests (subject rewritten to <prefix>.recommend.<m>)  ──▶ ingress
//! ```
//!
//! Each owned partition gets one task: it first puts a mark in the events
//! channel (`Subjects::p_acquired`: the ingress has the shards forget the
//! sessions they still hold of the partition's members, stale since another
//! node applied their events), then replays the partition's recent
//! events into the events channel (in order, with back-pressure: nothing is
//! skipped), and only once the replay has caught up subscribes the
//! partition's request subject — a plain subscription, never a queue group,
//! so a hung former owner cannot keep half the requests. Requests are
//! passed on only while the [`Fence`] says the lease is valid. On
//! [`Ownership::Revoke`] the task unsubscribes, waits for the server to
//! have processed it, then acknowledges; on [`Ownership::Lost`] it
//! unsubscribes at once.
//!
//! Subjects are rewritten to the public form so the ingress parses one
//! shape; a subject whose member token is not canonical (or that names
//! another partition than the one it came in on, which means the server
//! and the node disagree on the number of partitions) is passed on
//! unchanged, and the ingress rejects and dead-letters it.
//!
//! Emits `reco_partition_serving`, `reco_partition_requests_fenced_total`,
//! `reco_partition_requests_without_reply_total`,
//! `reco_partition_requests_shed_total`, `reco_partition_mismatch_total`,
//! `reco_partition_lag_events`.

use crate::fence::Fence;
use crate::intake::{Intake, PartitionIntake, Start};
use crate::metrics as m;
use crate::rebalancer::Ownership;
use async_nats::{Client, Message, Subscriber};
use futures::StreamExt;
use reco_messages::partition::{partition_of, Partition};
use reco_messages::Subjects;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// What a host needs besides its NATS client.
#[derive(Clone, Debug)]
pub struct HostSettings {
    /// The event stream (capturing `<prefix>.p.events.*.*`).
    pub stream: String,
    /// How far back a new owner replays a partition's events.
    pub replay_window: Duration,
    /// Number of partitions (to check what the server delivers).
    pub partitions: u32,
    /// Capacity of the events channel (back-pressure on the intakes).
    pub events_capacity: usize,
    /// Capacity of the requests channel (a full channel sheds: the caller
    /// times out and asks the fallback subject).
    pub requests_capacity: usize,
}

/// The traffic of the owned partitions.
#[derive(Debug)]
pub struct HostTraffic {
    /// Events, in per-partition order, subjects in the public form.
    pub events: mpsc::Receiver<Message>,
    /// Requests of served partitions, subjects in the public form.
    pub requests: mpsc::Receiver<Message>,
    /// Which partitions are replaying and which are served.
    pub status: watch::Receiver<HostStatus>,
    /// Per partition: events stored and not yet delivered (the lag).
    pub lag: Arc<[AtomicU64]>,
}

/// Which partitions a host replays and serves now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostStatus {
    /// Owned, replay not done: requests are not subscribed yet.
    pub replaying: BTreeSet<Partition>,
    /// Owned and answering requests.
    pub serving: BTreeSet<Partition>,
}

/// Runs the owned partitions of one node.
#[derive(Clone, Debug)]
pub struct PartitionHost {
    client: Client,
    subjects: Subjects,
    settings: HostSettings,
    fence: Fence,
    lag: Arc<[AtomicU64]>,
}

struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl PartitionHost {
    /// A host publishing through `client`, answering only what `fence`
    /// allows.
    pub fn new(client: Client, subjects: Subjects, settings: HostSettings, fence: Fence) -> Self {
        let lag = (0..settings.partitions.max(1))
            .map(|_| AtomicU64::new(0))
            .collect();
        PartitionHost {
            client,
            subjects,
            settings,
            fence,
            lag,
        }
    }

    /// Starts following `ownership`; returns the traffic and the task,
    /// which ends (every partition stopped) when `ownership` closes.
    pub fn start(
        self,
        mut ownership: mpsc::Receiver<Ownership>,
    ) -> (HostTraffic, tokio::task::JoinHandle<()>) {
        let (events_tx, events) = mpsc::channel(self.settings.events_capacity.max(1));
        let (requests_tx, requests) = mpsc::channel(self.settings.requests_capacity.max(1));
        let (status_tx, status) = watch::channel(HostStatus::default());
        let status_tx = Arc::new(status_tx);
        let lag = self.lag.clone();
        let host = Arc::new(self);
        let task = tokio::spawn(async move {
            let mut running: BTreeMap<Partition, Running> = BTreeMap::new();
            while let Some(change) = ownership.recv().await {
                match change {
                    Ownership::Acquired(k) => {
                        if let Some(old) = running.remove(&k) {
                            stop(old).await;
                        }
                        let (stop_tx, stop_rx) = oneshot::channel();
                        let task = tokio::spawn(host.clone().serve(
                            k,
                            events_tx.clone(),
                            requests_tx.clone(),
                            status_tx.clone(),
                            stop_rx,
                        ));
                        running.insert(
                            k,
                            Running {
                                stop: stop_tx,
                                task,
                            },
                        );
                    }
                    Ownership::Revoke { partition, done } => {
                        if let Some(old) = running.remove(&partition) {
                            stop(old).await;
                        }
                        let _ = done.send(());
                    }
                    Ownership::Lost(k) => {
                        if let Some(old) = running.remove(&k) {
                            stop(old).await;
                        }
                    }
                }
            }
            for (_, old) in std::mem::take(&mut running) {
                stop(old).await;
            }
        });
        (
            HostTraffic {
                events,
                requests,
                status,
                lag,
            },
            task,
        )
    }

    /// Serves partition `k` until `stop`.
    async fn serve(
        self: Arc<Self>,
        k: Partition,
        events: mpsc::Sender<Message>,
        requests: mpsc::Sender<Message>,
        status: Arc<watch::Sender<HostStatus>>,
        mut stop: oneshot::Receiver<()>,
    ) {
        status.send_modify(|s| {
            s.replaying.insert(k);
        });
        // What the node still holds of this partition's members is stale:
        // the ingress forgets it before the replay (in order with it).
        let mut mark = Some(Message {
            subject: self.subjects.p_acquired(k, self.settings.partitions).into(),
            reply: None,
            length: 0,
            payload: bytes::Bytes::new(),
            headers: None,
            status: None,
            description: None,
        });
        let filter = self.subjects.p_events_partition(k);
        let mut start = Start::Since(self.settings.replay_window);
        let mut subscription: Option<Subscriber> = None;
        let js = async_nats::jetstream::new(self.client.clone());
        let warned = Mutex::new(false);
        'reopen: loop {
            if let Some(mark) = mark.take() {
                tokio::select! {
                    _ = &mut stop => break 'reopen,
                    sent = events.send(mark) => if sent.is_err() { break 'reopen },
                }
            }
            let mut intake = tokio::select! {
                _ = &mut stop => break 'reopen,
                opened = PartitionIntake::open(&js, &self.settings.stream, filter.clone(), start) => match opened {
                    Ok(intake) => intake,
                    Err(error) => {
                        tracing::warn!(partition = %k, %error, "Partition intake not opened; retrying.");
                        tokio::select! {
                            _ = &mut stop => break 'reopen,
                            () = tokio::time::sleep(Duration::from_millis(500)) => continue 'reopen,
                        }
                    }
                },
            };
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stop => break 'reopen,
                    item = intake.next() => match item {
                        Some(Ok(Intake::Event(event))) => {
                            metrics::gauge!(m::PARTITION_LAG_EVENTS, "partition" => k.to_string()).set(event.pending as f64);
                            self.set_lag(k, event.pending);
                            let subject = self.public_event_subject(k, &event.subject, &warned);
                            let message = Message {
                                subject: subject.into(),
                                reply: None,
                                length: event.payload.len(),
                                payload: event.payload,
                                headers: None,
                                status: None,
                                description: None,
                            };
                            // Back-pressure, never a skip: a stopped partition
                            // still leaves at once.
                            tokio::select! {
                                _ = &mut stop => break 'reopen,
                                sent = events.send(message) => if sent.is_err() { break 'reopen },
                            }
                        }
                        Some(Ok(Intake::CaughtUp { replayed, took })) => {
                            match self.subscribe(k).await {
                                Ok(sub) => subscription = Some(sub),
                                Err(error) => {
                                    tracing::warn!(partition = %k, %error, "Partition requests not subscribed; retrying.");
                                    start = resume(&intake, start);
                                    continue 'reopen;
                                }
                            }
                            status.send_modify(|s| {
                                s.replaying.remove(&k);
                                s.serving.insert(k);
                            });
                            metrics::gauge!(m::PARTITION_SERVING).increment(1.0);
                            tracing::info!(partition = %k, replayed, took_ms = took.as_millis() as u64, "Partition replayed; serving it.");
                        }
                        Some(Err(error)) => {
                            tracing::warn!(partition = %k, %error, "Partition intake failed; reopening it.");
                            start = resume(&intake, start);
                            continue 'reopen;
                        }
                        None => {
                            start = resume(&intake, start);
                            continue 'reopen;
                        }
                    },
                    request = next_request(&mut subscription) => match request {
                        Some(request) => self.forward_request(k, request, &requests),
                        None => {
                            tracing::warn!(partition = %k, "Partition request subscription closed; resubscribing.");
                            subscription = None;
                            match self.subscribe(k).await {
                                Ok(sub) => subscription = Some(sub),
                                Err(error) => tracing::warn!(partition = %k, %error, "Partition requests not subscribed."),
                            }
                        }
                    },
                }
            }
        }
        if let Some(mut sub) = subscription.take() {
            // Unsubscribe, and make sure the server has processed it before
            // the lease is handed over.
            let _ = sub.unsubscribe().await;
            let _ = tokio::time::timeout(Duration::from_secs(2), round_trip(&self.client)).await;
            metrics::gauge!(m::PARTITION_SERVING).decrement(1.0);
        }
        metrics::gauge!(m::PARTITION_LAG_EVENTS, "partition" => k.to_string()).set(0.0);
        self.set_lag(k, 0);
        status.send_modify(|s| {
            s.replaying.remove(&k);
            s.serving.remove(&k);
        });
        tracing::info!(partition = %k, "Partition no longer served.");
    }

    fn set_lag(&self, k: Partition, pending: u64) {
        if let Some(slot) = self.lag.get(k.0 as usize) {
            slot.store(pending, Ordering::Relaxed);
        }
    }

    async fn subscribe(&self, k: Partition) -> Result<Subscriber, async_nats::Error> {
        let sub = self
            .client
            .subscribe(self.subjects.p_recommend_partition(k))
            .await?;
        round_trip(&self.client).await?;
        Ok(sub)
    }

    fn forward_request(&self, k: Partition, request: Message, requests: &mpsc::Sender<Message>) {
        if request.reply.is_none() {
            // Nobody waits for an answer (another node's mapping probe, or
            // a publish where a request was meant): nothing to do.
            metrics::counter!(m::PARTITION_REQUESTS_WITHOUT_REPLY_TOTAL).increment(1);
            return;
        }
        if !self.fence.holds(k) {
            // The lease ran out (a long pause?): the new owner answers.
            metrics::counter!(m::PARTITION_REQUESTS_FENCED_TOTAL).increment(1);
            return;
        }
        let subject = match self.subjects.member_of_p_recommend(&request.subject) {
            Ok((_, member)) => self.subjects.recommend(member),
            Err(_) => request.subject.to_string(),
        };
        let message = Message {
            subject: subject.into(),
            ..request
        };
        if requests.try_send(message).is_err() {
            metrics::counter!(m::PARTITION_REQUESTS_SHED_TOTAL).increment(1);
        }
    }

    /// `<prefix>.events.<m>` for a partitioned subject that names a
    /// canonical member of partition `k`; otherwise the subject unchanged.
    fn public_event_subject(&self, k: Partition, subject: &str, warned: &Mutex<bool>) -> String {
        match self.subjects.member_of_p_event(subject) {
            Ok((pk, member)) if pk == k => {
                if partition_of(member, self.settings.partitions) != k {
                    metrics::counter!(m::PARTITION_MISMATCH_TOTAL).increment(1);
                    let mut warned = warned.lock().unwrap_or_else(|e| e.into_inner());
                    if !*warned {
                        *warned = true;
                        tracing::error!(
                            partition = %k,
                            %member,
                            partitions = self.settings.partitions,
                            "The server maps members with another number of partitions than this node: fix cluster.partitions or the server's mappings (reco nats-config)."
                        );
                    }
                    return subject.to_owned();
                }
                self.subjects.events(member)
            }
            _ => subject.to_owned(),
        }
    }
}

/// Where a reopened intake starts: right after the last event delivered,
/// or where the first one started if none was.
fn resume(intake: &PartitionIntake, first: Start) -> Start {
    match intake.last_sequence() {
        0 => first,
        last => Start::Sequence(last + 1),
    }
}

async fn stop(running: Running) {
    let _ = running.stop.send(());
    let _ = running.task.await;
}

async fn next_request(subscription: &mut Option<Subscriber>) -> Option<Message> {
    match subscription {
        Some(sub) => sub.next().await,
        None => std::future::pending().await,
    }
}

/// Waits until the server has processed everything this client sent so far.
pub async fn round_trip(client: &Client) -> Result<(), async_nats::Error> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await?;
    client.publish(inbox, bytes::Bytes::new()).await?;
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .map_err(|_| "NATS server did not answer a round trip within 10 s")?;
    Ok(())
}
