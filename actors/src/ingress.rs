//! `Ingress`: where NATS traffic enters a node.
//!
//! Purpose: take events and recommend requests off their subscriptions,
//! decode and validate them, and hand each to the shard that owns the member.
//! Bad input is answered (requests: `ErrorReply`) or dead-lettered (events:
//! copied to `<prefix>.dlq.events` with the reason in a header) and counted;
//! it never stops the loop, so valid traffic around it is served.
//!
//! It is a task rather than an actix actor because it owns the subscription
//! streams: draining them for shutdown (unsubscribe, then consume what the
//! client already buffered) is a loop over the stream.
//!
//! Ordering: both subscriptions are read by one loop that prefers events, so
//! an event published before a request by the same connection is routed
//! before that request (NATS keeps the order on one connection).
//!
//! Batching: when an event arrives, the loop also takes the events the
//! client already holds (up to [`MAX_EVENT_BATCH`]) and hands each shard its
//! members' events as one message, in arrival order: a hand-off between
//! threads costs far more than routing an event, so under load one hand-off
//! carries many events, and at low rates a batch is a single event with no
//! added wait.
//!
//! Hostile input costs little: a rejected event's dead-letter copy carries
//! at most [`DLQ_EXCERPT_BYTES`] of it (so the copy is never larger than the
//! server accepts), rejections are logged at most once a second with the
//! count of those not logged, and a request whose reply subject is one of
//! reco's own is dropped unanswered and counted
//! (`reco_request_errors_total{code="forbidden_reply_subject"}`).
//!
//! Emits: publishes rejected events on `<prefix>.dlq.events` (a 1 KiB excerpt; headers
//! `Reco-Dlq-Reason`, `Reco-Dlq-Subject`, `Reco-Dlq-Bytes`) and replies on each request's reply
//! subject; metrics `reco_events_rejected_total{why}`,
//! `reco_dlq_published_total`, `reco_events_dropped_total{stage="shard"}`,
//! `reco_request_errors_total{code}` (and the reply metrics of
//! [`crate::reply`]). Logs: WARN for rejected events and requests without a
//! usable reply subject, at most once a second; INFO "Draining subscriptions." / "Ingress stopped.".
//!
//! Fails: a request refused by a full or restarting shard is answered at
//! once with the fallback (`reason: overloaded`), without what the member
//! has seen ([`crate::seen`]), like every fallback; an event refused so is
//! counted as dropped. A drain that the server never completes gives up
//! after `drain_timeout`. The loop itself has no failure: when its
//! subscriptions end, it returns and its supervisor decides.

use crate::lists::ListsReader;
use crate::metrics as m;
use crate::reply::{InFlight, Recommend, Responder};
use crate::seen::SeenIndex;
use crate::shard::{ForgetPartition, RouteEvents, RouteRecommend, ShardTable};
use actix::prelude::*;
use async_nats::{Client, HeaderMap, Message, Subscriber};
use futures::{FutureExt, StreamExt};
use reco_messages::subjects::BadSubject;
use reco_messages::subjects::{
    DLQ_EXCERPT_BYTES, HEADER_DLQ_BYTES, HEADER_DLQ_REASON, HEADER_DLQ_SUBJECT,
};
use reco_messages::Event;
use reco_messages::{
    decode_event, decode_request, DecodeError, ErrorCode, MemberId, Subjects, ValidRequest,
};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most events taken off the subscription before they are handed to the
/// shards.
pub const MAX_EVENT_BATCH: usize = 512;

/// While draining, how often the connection task is woken so that drained
/// subscriptions end (see [`Ingress::run`]).
const DRAIN_NUDGE: Duration = Duration::from_millis(20);

/// Shortest time between two logged rejections.
const REJECTION_LOG_EVERY: Duration = Duration::from_secs(1);

/// Rate-limits a log line: at most one per period, with the count of those
/// it held back, so a flood of junk costs a counter increment per message
/// instead of a log line.
#[derive(Debug)]
struct Sampled {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Sampled {
    fn new(every: Duration) -> Self {
        Sampled {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last one)` when this occurrence may be
    /// logged, `None` when it is only counted.
    fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.0 {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                state.1 += 1;
                None
            }
            _ => {
                let held = state.1;
                *state = (Some(now), 0);
                Some(held)
            }
        }
    }
}

/// Settings of the ingress, from the node's configuration.
#[derive(Clone, Debug)]
pub struct IngressSettings {
    /// Largest payload accepted, in bytes.
    pub max_payload: usize,
    /// Deadline of a request that names none.
    pub default_deadline: Duration,
    /// How long a drain may wait for the server to end the subscriptions
    /// (it never does when the server is gone).
    pub drain_timeout: Duration,
    /// What it took in, shared with whoever reports on the node.
    pub counters: std::sync::Arc<IngressCounters>,
}

/// What the ingress took in, for the node's status (`reco cluster`); every
/// incarnation of the ingress adds to the same counters.
#[derive(Debug, Default)]
pub struct IngressCounters {
    /// Events received (live or replayed).
    pub events: AtomicU64,
    /// Recommend requests received on the member's subject.
    pub requests: AtomicU64,
    /// Requests received on the fallback subject.
    pub fallback_requests: AtomicU64,
}

/// Where the ingress reads one kind of traffic from.
pub enum Inbound {
    /// A NATS subscription (a node alone): drained on shutdown.
    Subscription(Subscriber),
    /// A node alone after its start-up replay: the live subscription (made
    /// before the replay began, so nothing falls between them), without
    /// the events the replay already applied.
    AfterReplay(Subscriber, ReplayOverlap),
    /// The traffic of the owned partitions, fed by the cluster's partition
    /// host: it ends once the host has handed every partition over.
    Channel(futures::stream::BoxStream<'static, Message>),
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inbound::Subscription(_) => f.write_str("Inbound::Subscription"),
            Inbound::AfterReplay(_, overlap) => write!(f, "Inbound::AfterReplay({overlap:?})"),
            Inbound::Channel(_) => f.write_str("Inbound::Channel"),
        }
    }
}

impl futures::Stream for Inbound {
    type Item = Message;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Message>> {
        match self.get_mut() {
            Inbound::Subscription(sub) => sub.poll_next_unpin(cx),
            Inbound::AfterReplay(sub, overlap) => loop {
                match sub.poll_next_unpin(cx) {
                    std::task::Poll::Ready(Some(message)) if overlap.applied(&message) => {
                        metrics::counter!(m::REPLAY_DUPLICATES_SKIPPED_TOTAL).increment(1);
                    }
                    other => break other,
                }
            },
            Inbound::Channel(stream) => stream.poll_next_unpin(cx),
        }
    }
}

impl Inbound {
    /// Stops taking new messages from the server (a subscription); a
    /// channel ends by itself when its feeder stops.
    async fn drain(&mut self) -> Result<(), async_nats::Error> {
        match self {
            Inbound::Subscription(sub) | Inbound::AfterReplay(sub, _) => Ok(sub.drain().await?),
            Inbound::Channel(_) => Ok(()),
        }
    }
}

/// The events a start-up replay applied that the live subscription may
/// deliver again: those the stream stored after the subscription was made.
/// Known by subject and payload (a duplicate carries the same bytes); each
/// is skipped once, and the whole set is forgotten after
/// [`ReplayOverlap::FORGET_AFTER`] of live traffic.
#[derive(Default)]
pub struct ReplayOverlap {
    applied: std::collections::HashMap<u64, u32>,
    since: Option<Instant>,
}

impl std::fmt::Debug for ReplayOverlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplayOverlap({} events)", self.applied.len())
    }
}

impl ReplayOverlap {
    /// How long after the first live event the overlap is checked: the
    /// subscription delivers what it buffered during the replay first.
    pub const FORGET_AFTER: Duration = Duration::from_secs(10);

    fn key(subject: &str, payload: &[u8]) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        subject.hash(&mut hasher);
        payload.hash(&mut hasher);
        hasher.finish()
    }

    /// Remembers an event the replay applied that the live subscription may
    /// also have received.
    pub fn insert(&mut self, subject: &str, payload: &[u8]) {
        *self.applied.entry(Self::key(subject, payload)).or_default() += 1;
    }

    /// Events remembered.
    pub fn len(&self) -> usize {
        self.applied.values().map(|&n| n as usize).sum()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty()
    }

    /// True (once) when `message` is one the replay already applied.
    fn applied(&mut self, message: &Message) -> bool {
        if self.applied.is_empty() {
            return false;
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() > Self::FORGET_AFTER {
            self.applied = Default::default();
            return false;
        }
        let key = Self::key(message.subject.as_str(), &message.payload);
        match self.applied.get_mut(&key) {
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    self.applied.remove(&key);
                }
                true
            }
            None => false,
        }
    }
}

/// The NATS front of a node.
#[derive(Debug)]
pub struct Ingress {
    client: Client,
    subjects: Subjects,
    settings: IngressSettings,
    shards: ShardTable,
    lists: ListsReader,
    seen: SeenIndex,
    in_flight: InFlight,
    next_request: AtomicU64,
    /// Rate limit of the rejection log lines.
    rejections_logged: Sampled,
}

impl Ingress {
    /// An ingress routing to the shards of `shards`.
    pub fn new(
        client: Client,
        subjects: Subjects,
        settings: IngressSettings,
        shards: ShardTable,
        lists: ListsReader,
        seen: SeenIndex,
        in_flight: InFlight,
    ) -> Self {
        Ingress {
            client,
            subjects,
            settings,
            shards,
            lists,
            seen,
            in_flight,
            next_request: AtomicU64::new(1),
            rejections_logged: Sampled::new(REJECTION_LOG_EVERY),
        }
    }

    /// Serves `events` and `requests` until `shutdown` resolves, then drains
    /// both subscriptions: no new message is taken from the server, and the
    /// ones the client already received are still handled. Returns when both
    /// streams have ended.
    ///
    /// `fallback` (every node, one queue group) is answered at once from the
    /// precomputed lists: callers ask there when a member's partition has
    /// no responders or timed out.
    pub async fn run(
        self,
        mut events: Inbound,
        mut requests: Inbound,
        fallback: Option<Subscriber>,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut fallback = fallback.map(Inbound::Subscription);
        let runtime = tokio::runtime::Handle::current();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut draining = false;
        // Armed when the drain starts: without a server the subscriptions
        // never end, and a node must still stop.
        let give_up = tokio::time::sleep(Duration::from_secs(365 * 24 * 3600));
        let mut give_up = std::pin::pin!(give_up);
        // async-nats ends a drained subscription's stream only the next time
        // its connection task runs, which on an idle connection is the next
        // ping (minutes away). While draining, a flush now and then wakes it.
        let mut nudge = tokio::time::interval(DRAIN_NUDGE);
        nudge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut events_open, mut requests_open) = (true, true);
        let mut fallback_open = fallback.is_some();
        while events_open || requests_open || fallback_open {
            tokio::select! {
                biased;
                () = &mut shutdown, if !draining => {
                    draining = true;
                    tracing::info!("Draining subscriptions.");
                    let limit = self.settings.drain_timeout;
                    give_up.as_mut().reset(tokio::time::Instant::now() + limit);
                    for sub in [Some(&mut events), Some(&mut requests), fallback.as_mut()].into_iter().flatten() {
                        match tokio::time::timeout(limit, sub.drain()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) => tracing::warn!(%error, "Subscription could not be drained."),
                            Err(_) => tracing::warn!("Subscription drain did not go through (is the NATS server gone?)."),
                        }
                    }
                }
                () = &mut give_up, if draining => {
                    tracing::warn!("The NATS server did not end the subscriptions in time; stopping without it.");
                    break;
                }
                _ = nudge.tick(), if draining => {
                    let _ = tokio::time::timeout(DRAIN_NUDGE, self.client.flush()).await;
                }
                message = events.next(), if events_open => match message {
                    Some(message) => {
                        let mut batch = vec![Vec::new(); self.shards.len()];
                        self.on_event(message, &mut batch).await;
                        // What the client already holds joins this batch.
                        for _ in 1..MAX_EVENT_BATCH {
                            match events.next().now_or_never() {
                                Some(Some(message)) => self.on_event(message, &mut batch).await,
                                Some(None) => {
                                    events_open = false;
                                    break;
                                }
                                None => break,
                            }
                        }
                        self.route_events(batch);
                    }
                    None => events_open = false,
                },
                message = requests.next(), if requests_open => match message {
                    Some(message) => self.on_request(message, &runtime),
                    None => requests_open = false,
                },
                message = next_of(&mut fallback), if fallback_open => match message {
                    Some(message) => self.on_fallback(message, &runtime),
                    None => fallback_open = false,
                },
            }
        }
        tracing::info!("Ingress stopped.");
    }

    /// Applies replayed events (a node's start-up replay of the event
    /// stream) before the node answers: decoded and checked like live ones,
    /// handed to the shards in batches, waiting for room instead of
    /// dropping (a replay must not lose what it rebuilds). Returns how many
    /// were handed on.
    pub async fn replay(&self, events: impl futures::Stream<Item = Message>) -> u64 {
        let mut events = std::pin::pin!(events.ready_chunks(MAX_EVENT_BATCH));
        let mut routed = 0;
        while let Some(chunk) = events.next().await {
            let mut batch = vec![Vec::new(); self.shards.len()];
            for message in chunk {
                self.on_event(message, &mut batch).await;
            }
            let sends = batch
                .into_iter()
                .enumerate()
                .filter(|(_, e)| !e.is_empty())
                .map(|(index, events)| {
                    let count = events.len() as u64;
                    let shard = self.shards.get(index);
                    async move {
                        let delivered = match shard {
                            Some(shard) => shard.send(RouteEvents(events)).await.is_ok(),
                            None => false,
                        };
                        if delivered {
                            count
                        } else {
                            metrics::counter!(m::EVENTS_DROPPED_TOTAL, "stage" => "shard")
                                .increment(count);
                            0
                        }
                    }
                });
            routed += futures::future::join_all(sends)
                .await
                .into_iter()
                .sum::<u64>();
        }
        routed
    }

    /// Decodes one event into the batch of its shard (or rejects it). The
    /// partition host's mark of a partition taken over (only ever in its
    /// channel) routes what came before it, then has every shard forget
    /// the partition's stale sessions, in order with the events.
    async fn on_event(&self, message: Message, batch: &mut [Vec<Event>]) {
        if let Some((partition, partitions)) =
            self.subjects.partition_of_p_acquired(&message.subject)
        {
            let before = batch.iter_mut().map(std::mem::take).collect();
            self.route_events(before);
            for shard in self.shards.all() {
                shard.do_send(ForgetPartition {
                    partition,
                    partitions,
                });
            }
            return;
        }
        self.settings
            .counters
            .events
            .fetch_add(1, Ordering::Relaxed);
        let member = match self.subjects.member_of_event(&message.subject) {
            Ok(member) => member,
            Err(error) => {
                return self
                    .reject_event(&message, "subject", &error.to_string())
                    .await;
            }
        };
        let event = match decode_event(&message.payload, member, self.settings.max_payload) {
            Ok(event) => event,
            Err(error) => {
                return self
                    .reject_event(&message, error.label(), &error.to_string())
                    .await
            }
        };
        batch[self.shards.index_of(member)].push(event);
    }

    /// Hands each shard its events; a shard restarting or with a full
    /// mailbox loses its part (counted).
    fn route_events(&self, batch: Vec<Vec<Event>>) {
        for (index, events) in batch.into_iter().enumerate() {
            if events.is_empty() {
                continue;
            }
            let count = events.len() as u64;
            let routed = match self.shards.get(index) {
                Some(shard) => shard.try_send(RouteEvents(events)).is_ok(),
                None => false, // the shard is restarting
            };
            if !routed {
                metrics::counter!(m::EVENTS_DROPPED_TOTAL, "stage" => "shard").increment(count);
            }
        }
    }

    async fn reject_event(&self, message: &Message, why: &'static str, reason: &str) {
        metrics::counter!(m::EVENTS_REJECTED_TOTAL, "why" => why).increment(1);
        if let Some(held_back) = self.rejections_logged.admit(Instant::now()) {
            let reason: String = reason.chars().take(256).collect();
            tracing::warn!(
                subject = %message.subject.as_str().chars().take(256).collect::<String>(),
                bytes = message.payload.len(),
                why,
                reason,
                not_logged_since_last = held_back,
                "Event rejected."
            );
        }
        let mut headers = dlq_headers(reason, &message.subject);
        headers.insert(HEADER_DLQ_BYTES, message.payload.len().to_string().as_str());
        let excerpt = message
            .payload
            .slice(..message.payload.len().min(DLQ_EXCERPT_BYTES));
        match self
            .client
            .publish_with_headers(self.subjects.dlq_events(), headers, excerpt)
            .await
        {
            Ok(()) => metrics::counter!(m::DLQ_PUBLISHED_TOTAL).increment(1),
            Err(error) => tracing::warn!(%error, "Rejected event could not be dead-lettered."),
        }
    }

    fn on_request(&self, message: Message, runtime: &tokio::runtime::Handle) {
        let received = Instant::now();
        self.settings
            .counters
            .requests
            .fetch_add(1, Ordering::Relaxed);
        let Some((responder, member, request)) =
            self.accept(&message, received, runtime, Subjects::member_of_recommend)
        else {
            return;
        };
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("recommend", request_id = id, %member, k = request.k);
        let deadline = received
            + request
                .deadline_ms
                .map_or(self.settings.default_deadline, Duration::from_millis);
        let recommend = Recommend {
            member,
            request_id: id,
            k: request.k as usize,
            exclude_seen: request.exclude_seen,
            row: request.row,
            device: request.device,
            deadline,
            responder,
            span,
        };
        let refused = match self.shards.for_member(member) {
            Some(shard) => match shard.try_send(RouteRecommend(recommend)) {
                Ok(()) => None,
                Err(SendError::Full(r) | SendError::Closed(r)) => Some(r.0),
            },
            None => Some(recommend), // the shard is restarting
        };
        if let Some(recommend) = refused {
            recommend.refused(&self.lists, &self.seen);
        }
    }
}

async fn next_of(inbound: &mut Option<Inbound>) -> Option<Message> {
    match inbound {
        Some(inbound) => inbound.next().await,
        None => None,
    }
}

impl Ingress {
    /// A request on the fallback subject: the precomputed list, at once.
    fn on_fallback(&self, message: Message, runtime: &tokio::runtime::Handle) {
        let received = Instant::now();
        self.settings
            .counters
            .fallback_requests
            .fetch_add(1, Ordering::Relaxed);
        let Some((responder, member, request)) =
            self.accept(&message, received, runtime, Subjects::member_of_fallback)
        else {
            return;
        };
        // This node may still hold what the member has seen (its partition
        // was here a moment ago); the row's own fallback answers (the
        // genre's popular list for a genre row, …).
        let seen = if request.exclude_seen {
            self.seen.get(member)
        } else {
            std::sync::Arc::from([])
        };
        match crate::rows::offline_fallback(
            &request.row,
            member,
            request.k as usize,
            &seen,
            &self.lists,
            None,
        ) {
            Ok(fallback) => responder.fall_back(member, fallback, reco_messages::Reason::Failover),
            Err(message) => responder.error(ErrorCode::BadRequest, message),
        }
    }

    /// What every request subject shares before the request is served: a
    /// usable reply subject (none, or one of reco's own, is counted and
    /// dropped), its responder, the member named by the subject and the
    /// decoded request. Anything wrong after the responder exists is
    /// answered with an error here; `None` means nothing is left to do.
    fn accept(
        &self,
        message: &Message,
        received: Instant,
        runtime: &tokio::runtime::Handle,
        member_of: fn(&Subjects, &str) -> Result<MemberId, BadSubject>,
    ) -> Option<(Responder, MemberId, ValidRequest)> {
        let Some(reply) = message.reply.clone() else {
            metrics::counter!(m::REQUEST_ERRORS_TOTAL, "code" => "no_reply_subject").increment(1);
            if let Some(held_back) = self.rejections_logged.admit(received) {
                tracing::warn!(subject = %message.subject, not_logged_since_last = held_back, "Recommend message without a reply subject ignored; send it as a request.");
            }
            return None;
        };
        if self.subjects.is_own(&reply) {
            metrics::counter!(m::REQUEST_ERRORS_TOTAL, "code" => "forbidden_reply_subject")
                .increment(1);
            if let Some(held_back) = self.rejections_logged.admit(received) {
                tracing::warn!(subject = %message.subject, not_logged_since_last = held_back, "Recommend request whose reply subject is one of reco's own dropped unanswered.");
            }
            return None;
        }
        let responder = Responder::nats(
            self.client.clone(),
            reply,
            runtime.clone(),
            received,
            &self.in_flight,
        );
        let member = match member_of(&self.subjects, &message.subject) {
            Ok(member) => member,
            Err(error) => {
                responder.error(ErrorCode::BadRequest, error.to_string());
                return None;
            }
        };
        match decode_request(&message.payload, self.settings.max_payload) {
            Ok(request) => {
                // The reply says which row it answers (and, when asked,
                // the items' titles from the lists in service).
                let details = request.details.then(|| self.lists.clone());
                let responder = responder.for_row(request.row.clone(), details);
                Some((responder, member, request))
            }
            Err(error @ DecodeError::TooLarge { .. }) => {
                responder.error(ErrorCode::TooLarge, error.to_string());
                None
            }
            Err(error) => {
                responder.error(ErrorCode::BadRequest, error.to_string());
                None
            }
        }
    }
}

/// Header values must be one line of visible ASCII; keep them short too.
/// The headers of a dead-lettered event: why it was refused and the subject
/// it came on (shared by rejections here and quarantines in sessions).
pub fn dlq_headers(reason: &str, subject: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_DLQ_REASON, sanitize_header(reason).as_str());
    headers.insert(HEADER_DLQ_SUBJECT, sanitize_header(subject).as_str());
    headers
}

fn sanitize_header(value: &str) -> String {
    value
        .chars()
        .take(512)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_message(subject: &str, payload: &'static [u8]) -> Message {
        Message {
            subject: subject.into(),
            reply: None,
            length: payload.len(),
            payload: bytes::Bytes::from_static(payload),
            headers: None,
            status: None,
            description: None,
        }
    }

    #[test]
    fn a_replay_overlap_skips_each_applied_event_once_and_nothing_else() {
        let mut overlap = ReplayOverlap::default();
        overlap.insert("reco.events.1", b"a");
        overlap.insert("reco.events.1", b"a");
        overlap.insert("reco.events.2", b"b");
        assert_eq!(overlap.len(), 3);
        assert!(!overlap.applied(&event_message("reco.events.2", b"a")));
        assert!(overlap.applied(&event_message("reco.events.1", b"a")));
        assert!(overlap.applied(&event_message("reco.events.1", b"a")));
        assert!(!overlap.applied(&event_message("reco.events.1", b"a")));
        assert!(overlap.applied(&event_message("reco.events.2", b"b")));
        assert!(overlap.is_empty());
    }

    #[test]
    fn sampled_logs_admit_one_per_period_and_count_the_rest() {
        let sampled = Sampled::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(sampled.admit(t0), Some(0));
        for ms in [1, 10, 999] {
            assert_eq!(sampled.admit(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(sampled.admit(t0 + Duration::from_millis(1000)), Some(3));
        assert_eq!(sampled.admit(t0 + Duration::from_millis(1001)), None);
    }
}
