//! Driving a node over real NATS with nothing but the public wire contract.
//!
//! One task publishes the world's events (as fast as allowed, or paced);
//! requests go out either open loop (a target rate, whatever the node does:
//! the load a real page tier puts on it) or closed loop (a fixed number in
//! flight: what the node can sustain). Every request is accounted for: a
//! list, an error reply, or no reply within the wait. A monitor closes one
//! timeline bucket per second, drives the progress line and polls the node's
//! health. Everything is bounded by the run's duration and event budget.

use crate::faults::{self, Fault, FaultKind};
use crate::process::{metric_sum, node_metrics, scrape, NatsServer};
use crate::report::{histogram, Bucket, Cohort, FaultRecord, Latency, Quality, Report};
use crate::world::{Action, World};
use hdrhistogram::Histogram;
use reco_messages::admin::Health;
use reco_messages::{
    decode, encode, Event, EventKind, ItemId, MemberId, RecommendReply, RecommendRequest, Subjects,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How requests are generated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// No requests (ingest only).
    None,
    /// Open loop: this many requests per second, whatever the replies do.
    Open {
        /// Requests per second.
        rps: f64,
    },
    /// Closed loop: this many requests in flight.
    Closed {
        /// Requests in flight.
        concurrency: usize,
    },
}

/// Settings of one run.
#[derive(Clone, Debug)]
pub struct DriveConfig {
    /// Subject prefix of the node.
    pub prefix: String,
    /// Longest the load lasts.
    pub duration: Duration,
    /// Stop after publishing this many events (then requests stop too).
    pub max_events: Option<u64>,
    /// Events per second; 0 = as fast as NATS takes them.
    pub events_per_sec: f64,
    /// Request generation.
    pub load: Load,
    /// Stop sending after this many requests (then the run ends). Without
    /// session openings to follow, a request's member is a function of its
    /// place in the run, so two such runs with the same budget ask the same
    /// members (nearly: closed-loop workers interleave by timing).
    pub max_requests: Option<u64>,
    /// `k` of each request.
    pub k: u32,
    /// `deadline_ms` of each request.
    pub deadline_ms: u64,
    /// A reply later than deadline + this margin is late.
    pub late_margin: Duration,
    /// How long past the deadline a request waits before it counts as unanswered.
    pub no_reply_after: Duration,
    /// Judge the quality of replies for members whose id is a multiple of this (0 = never).
    pub quality_every: u64,
    /// Items members consumed before this run (e.g. in an earlier
    /// ingest-only run against the same node): the node leaves them out of
    /// its lists, so the judge leaves them out of the relevant items too,
    /// like the plays this run publishes itself.
    pub seen: Arc<HashMap<MemberId, Vec<ItemId>>>,
    /// Probe freshness after every n-th model reply (0 = never).
    pub probe_every: u64,
    /// Open loop: most requests in flight before the simulator sheds (and counts) them.
    pub max_in_flight: usize,
    /// Faults to inject.
    pub faults: Vec<Fault>,
    /// The node's metrics endpoint, for ingest, rejection and slow-consumer counts.
    pub metrics_addr: Option<SocketAddr>,
    /// Show the live progress line.
    pub progress: bool,
    /// Split members into an experiment cohort (even ids) and a control
    /// cohort (odd ids): faults that can target members (malformed payloads,
    /// model slowdowns and crashes) hit the experiment only, and the report
    /// compares the two.
    pub cohorts: bool,
}

impl Default for DriveConfig {
    fn default() -> Self {
        DriveConfig {
            prefix: reco_messages::subjects::DEFAULT_PREFIX.to_owned(),
            duration: Duration::from_secs(10),
            max_events: None,
            events_per_sec: 0.0,
            load: Load::Closed { concurrency: 16 },
            max_requests: None,
            k: 10,
            deadline_ms: 50,
            late_margin: Duration::from_millis(1),
            no_reply_after: Duration::from_secs(1),
            quality_every: 10,
            seen: Arc::default(),
            probe_every: 50,
            max_in_flight: 4_096,
            faults: Vec::new(),
            metrics_addr: None,
            progress: false,
            cohorts: false,
        }
    }
}

/// Everything the request side records; behind one mutex with short
/// critical sections.
struct Stats {
    all: Histogram<u64>,
    bucket: Histogram<u64>,
    bucket_replies: u64,
    bucket_fallbacks: u64,
    /// Fallback replies of the current bucket by `reason`.
    bucket_reasons: BTreeMap<&'static str, u64>,
    replies: u64,
    by_source: BTreeMap<String, u64>,
    by_reason: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    late: u64,
    no_reply: u64,
    freshness: Histogram<u64>,
    quality: BTreeMap<String, (u64, f64, f64)>,
    timeline: Vec<Bucket>,
    rss_max: u64,
    resident: u64,
    /// Per cohort (experiment, control) when cohorts are on.
    cohorts: [CohortAcc; 2],
}

/// What one cohort saw.
struct CohortAcc {
    hist: Histogram<u64>,
    fallbacks: u64,
    late: u64,
    no_reply: u64,
}

impl CohortAcc {
    fn new() -> Self {
        CohortAcc {
            hist: histogram(),
            fallbacks: 0,
            late: 0,
            no_reply: 0,
        }
    }
}

/// Index of `member`'s cohort: 0 experiment (even ids), 1 control.
fn cohort(member: MemberId) -> usize {
    (member.0 % 2) as usize
}

/// A served list to judge: member, source, items.
type Served = (MemberId, String, Vec<ItemId>);

/// State shared by the run's tasks.
struct Shared {
    client: async_nats::Client,
    subjects: Subjects,
    config: DriveConfig,
    world: Arc<World>,
    stats: Mutex<Stats>,
    stop: AtomicBool,
    started: Instant,
    sent: AtomicU64,
    /// Requests taken from [`DriveConfig::max_requests`].
    issued: AtomicU64,
    published: AtomicU64,
    shed: AtomicU64,
    in_flight: AtomicUsize,
    probes: AtomicUsize,
    probe_events: AtomicU64,
    malformed_sent: AtomicU64,
    model_replies: AtomicU64,
    spike: AtomicU32,
    /// Members that just opened a session: who the next requests are for.
    sessions: Mutex<VecDeque<(MemberId, &'static str)>>,
    /// Items played by members whose quality is judged (to exclude as
    /// seen), starting from [`DriveConfig::seen`].
    played: Mutex<HashMap<MemberId, Vec<ItemId>>>,
    quality_tx: Mutex<Option<mpsc::SyncSender<Served>>>,
    slow_consumers: Arc<AtomicU64>,
}

/// Connects a client that counts slow-consumer events into `counter`.
pub async fn connect(url: &str, counter: Arc<AtomicU64>) -> anyhow::Result<async_nats::Client> {
    use anyhow::Context;
    async_nats::ConnectOptions::new()
        .event_callback(move |event| {
            let counter = counter.clone();
            async move {
                if let async_nats::Event::SlowConsumer(_) = event {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .request_timeout(None)
        .retry_on_initial_connect()
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to NATS at {url}"))
}

/// Runs the load against the node behind `client` and reports.
///
/// `actions` is the event stream (normally [`World::actions`]); `nats` is the
/// server the simulator owns, if any (for the NATS-restart fault). The
/// caller must keep its own handle on it: the run's handle is dropped when
/// the faults are done, and the last handle kills the server.
pub async fn drive(
    client: async_nats::Client,
    slow_consumers: Arc<AtomicU64>,
    world: Arc<World>,
    actions: Box<dyn Iterator<Item = Action> + Send>,
    config: DriveConfig,
    nats: Option<Arc<Mutex<NatsServer>>>,
) -> anyhow::Result<Report> {
    let subjects = Subjects::new(&config.prefix)?;
    let before = config.metrics_addr.and_then(|a| scrape(a).ok());
    let (quality_tx, quality_rx) = mpsc::sync_channel(1_024);
    let shared = Arc::new(Shared {
        client,
        subjects,
        world: world.clone(),
        stats: Mutex::new(Stats {
            all: histogram(),
            bucket: histogram(),
            bucket_replies: 0,
            bucket_fallbacks: 0,
            bucket_reasons: BTreeMap::new(),
            replies: 0,
            by_source: BTreeMap::new(),
            by_reason: BTreeMap::new(),
            errors: BTreeMap::new(),
            late: 0,
            no_reply: 0,
            freshness: histogram(),
            quality: BTreeMap::new(),
            timeline: Vec::new(),
            rss_max: 0,
            resident: 0,
            cohorts: [CohortAcc::new(), CohortAcc::new()],
        }),
        config: config.clone(),
        stop: AtomicBool::new(false),
        started: Instant::now(),
        sent: AtomicU64::new(0),
        issued: AtomicU64::new(0),
        published: AtomicU64::new(0),
        shed: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
        probes: AtomicUsize::new(0),
        probe_events: AtomicU64::new(0),
        malformed_sent: AtomicU64::new(0),
        model_replies: AtomicU64::new(0),
        spike: AtomicU32::new(1),
        sessions: Mutex::new(VecDeque::new()),
        played: Mutex::new((*config.seen).clone()),
        quality_tx: Mutex::new(Some(quality_tx)),
        slow_consumers,
    });
    let judge = spawn_judge(shared.clone(), quality_rx);
    let digest = Arc::new(Mutex::new(0xcbf2_9ce4_8422_2325_u64));

    let publisher = tokio::spawn(publish_events(shared.clone(), actions, digest.clone()));
    let requests = tokio::spawn(generate_requests(shared.clone()));
    let monitor = tokio::spawn(monitor(shared.clone()));
    let fault_task = tokio::spawn(run_faults(shared.clone(), nats));

    let _ = publisher.await;
    debug("publisher done");
    if config.max_events.is_some() {
        shared.stop.store(true, Ordering::SeqCst);
    }
    let _ = requests.await;
    debug("requests done");
    shared.stop.store(true, Ordering::SeqCst);
    let elapsed = shared.started.elapsed();
    // Wait for the stragglers: at most the longest a request may wait.
    let wait_until = Instant::now()
        + Duration::from_millis(config.deadline_ms)
        + config.no_reply_after
        + Duration::from_millis(200);
    while (shared.in_flight.load(Ordering::SeqCst) > 0 || shared.probes.load(Ordering::SeqCst) > 0)
        && Instant::now() < wait_until
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = shared.client.flush().await;
    debug("stragglers done");
    let mut fault_records = fault_task.await.unwrap_or_default();
    debug("faults done");
    let _ = monitor.await;
    debug("monitor done");
    shared
        .quality_tx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let _ = tokio::task::spawn_blocking(move || judge.join()).await;
    // Let the node settle: wait (at most 2 s) until it has counted every
    // event sent — ingested, rejected or dropped — so the node-side figures
    // cover the whole run.
    let sent_events = shared.published.load(Ordering::SeqCst)
        + shared.probe_events.load(Ordering::SeqCst)
        + shared.malformed_sent.load(Ordering::SeqCst);
    let mut after = config.metrics_addr.and_then(|a| scrape(a).ok());
    let settle_until = Instant::now() + Duration::from_secs(2);
    while let (Some(addr), Some(b), Some(a)) = (config.metrics_addr, &before, &after) {
        let counted: f64 = [
            node_metrics::EVENTS_INGESTED,
            node_metrics::EVENTS_REJECTED,
            node_metrics::EVENTS_DROPPED,
        ]
        .iter()
        .map(|name| metric_sum(a, name, &[]) - metric_sum(b, name, &[]))
        .sum();
        if counted >= sent_events as f64 || Instant::now() >= settle_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = scrape(addr).ok();
    }

    let stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
    let secs = elapsed.as_secs_f64().max(1e-9);
    let delta = |name: &str| match (&before, &after) {
        (Some(b), Some(a)) => Some(metric_sum(a, name, &[]) - metric_sum(b, name, &[])),
        _ => None,
    };
    for record in &mut fault_records {
        let inside: Vec<&Bucket> = stats
            .timeline
            .iter()
            .filter(|b| b.t_s > record.start_s && b.t_s - 1.0 < record.end_s)
            .collect();
        record.replies = inside.iter().map(|b| b.replies).sum();
        let fallbacks: f64 = inside
            .iter()
            .map(|b| b.fallback_share * b.replies as f64)
            .sum();
        record.fallback_share = if record.replies > 0 {
            fallbacks / record.replies as f64
        } else {
            0.0
        };
        record.worst_p99_ms = inside.iter().map(|b| b.p99_ms).fold(0.0, f64::max);
    }
    let ingested = delta(node_metrics::EVENTS_INGESTED);
    let published = shared.published.load(Ordering::SeqCst);
    let report = Report {
        seed: world.config().seed,
        duration_s: secs,
        stream_digest: format!("{:016x}", *digest.lock().unwrap_or_else(|e| e.into_inner())),
        events_published: published,
        probe_events: shared.probe_events.load(Ordering::SeqCst),
        events_per_s: published as f64 / secs,
        node_events_ingested: ingested,
        node_events_per_s: ingested.map(|n| n / secs),
        node_events_rejected: delta(node_metrics::EVENTS_REJECTED),
        requests: shared.sent.load(Ordering::SeqCst),
        replies: stats.replies,
        replies_per_s: stats.replies as f64 / secs,
        latency: Latency::of(&stats.all),
        by_source: stats.by_source.clone(),
        by_reason: stats.by_reason.clone(),
        errors: stats.errors.clone(),
        deadline_ms: config.deadline_ms,
        late_margin_ms: config.late_margin.as_secs_f64() * 1000.0,
        late_replies: stats.late,
        no_reply: stats.no_reply,
        shed_by_simulator: shared.shed.load(Ordering::SeqCst),
        freshness: Latency::of(&stats.freshness),
        quality: stats
            .quality
            .iter()
            .map(|(source, &(n, hits, ndcg))| {
                (
                    source.clone(),
                    Quality {
                        replies: n,
                        hit_rate: hits / n.max(1) as f64,
                        ndcg: ndcg / n.max(1) as f64,
                    },
                )
            })
            .collect(),
        slow_consumer_sim: shared.slow_consumers.load(Ordering::SeqCst),
        slow_consumer_node: delta(node_metrics::NATS_SLOW_CONSUMER),
        node_rss_bytes_max: stats.rss_max,
        node_resident_members: stats.resident,
        faults: fault_records,
        timeline: stats.timeline.clone(),
        cohorts: if config.cohorts {
            ["experiment", "control"]
                .iter()
                .zip(&stats.cohorts)
                .map(|(name, c)| {
                    let replies = c.hist.len();
                    (
                        name.to_string(),
                        Cohort {
                            replies,
                            latency: Latency::of(&c.hist),
                            fallback_share: c.fallbacks as f64 / replies.max(1) as f64,
                            late_replies: c.late,
                            no_reply: c.no_reply,
                        },
                    )
                })
                .collect()
        } else {
            BTreeMap::new()
        },
    };
    Ok(report)
}

/// Publishes the world's events until the budget, the clock or the stop
/// flag says enough, folding each published action into the digest.
async fn publish_events(
    shared: Arc<Shared>,
    actions: Box<dyn Iterator<Item = Action> + Send>,
    digest: Arc<Mutex<u64>>,
) {
    let config = &shared.config;
    let mut hash = *digest.lock().unwrap_or_else(|e| e.into_inner());
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= b as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    let mut published = 0u64;
    for action in actions {
        if published % 256 == 0
            && (shared.stop.load(Ordering::Relaxed) || shared.started.elapsed() >= config.duration)
        {
            break;
        }
        if config.max_events.is_some_and(|max| published >= max) {
            break;
        }
        match action {
            Action::Session { member, device } => {
                feed(b"S");
                feed(&member.0.to_le_bytes());
                feed(device.as_bytes());
                let mut sessions = shared.sessions.lock().unwrap_or_else(|e| e.into_inner());
                if sessions.len() >= 10_000 {
                    sessions.pop_front();
                }
                sessions.push_back((member, device));
            }
            Action::Event(event) => {
                let bytes = encode(&event);
                feed(b"E");
                feed(&bytes);
                if event.kind == EventKind::Play && judged(config, event.member) {
                    shared
                        .played
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(event.member)
                        .or_default()
                        .push(event.item);
                }
                if shared
                    .client
                    .publish(shared.subjects.events(event.member), bytes.into())
                    .await
                    .is_err()
                {
                    record_error(&shared, "publish_failed");
                }
                published += 1;
                shared.published.store(published, Ordering::Relaxed);
                if config.events_per_sec > 0.0 {
                    let due = shared.started
                        + Duration::from_secs_f64(published as f64 / config.events_per_sec);
                    if due > Instant::now() + Duration::from_millis(1) {
                        tokio::time::sleep_until(due.into()).await;
                    }
                }
            }
        }
    }
    let _ = shared.client.flush().await;
    *digest.lock().unwrap_or_else(|e| e.into_inner()) = hash;
}

fn judged(config: &DriveConfig, member: MemberId) -> bool {
    config.quality_every > 0 && member.0 % config.quality_every == 0
}

/// The member the next request is for: the latest session opener, else a
/// random member of the world.
fn next_member(shared: &Shared, counter: u64) -> (MemberId, &'static str) {
    if let Some(next) = shared
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop_back()
    {
        return next;
    }
    let members = shared.world.config().members.max(1);
    let id = 1 + spread(counter) % members;
    (MemberId(id), crate::world::DEVICES[(id % 3) as usize])
}

/// The splitmix64 finaliser: every bit of `counter` moves every bit of the
/// result. (A bare multiply keeps the low bits of the counter in the low
/// bits of the result, so a closed-loop worker, whose counters step by
/// twice the concurrency, only ever asked the members of one residue class.)
fn spread(counter: u64) -> u64 {
    let mut z = counter.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Takes one request from the run's budget; false once it is spent.
fn take_request(shared: &Shared) -> bool {
    shared
        .config
        .max_requests
        .is_none_or(|max| shared.issued.fetch_add(1, Ordering::Relaxed) < max)
}

/// Whether the run's request budget is spent.
fn spent(shared: &Shared) -> bool {
    shared
        .config
        .max_requests
        .is_some_and(|max| shared.issued.load(Ordering::Relaxed) >= max)
}

async fn generate_requests(shared: Arc<Shared>) {
    let config = shared.config.clone();
    let running = |shared: &Shared| {
        !shared.stop.load(Ordering::Relaxed) && shared.started.elapsed() < config.duration
    };
    match config.load {
        Load::None => {
            while running(&shared) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Load::Open { rps } => {
            let mut credit = 0.0f64;
            let mut last = Instant::now();
            let mut counter = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while running(&shared) && !spent(&shared) {
                tick.tick().await;
                let now = Instant::now();
                credit +=
                    (now - last).as_secs_f64() * rps * shared.spike.load(Ordering::Relaxed) as f64;
                last = now;
                while credit >= 1.0 {
                    credit -= 1.0;
                    counter += 1;
                    if shared.in_flight.load(Ordering::Relaxed) >= config.max_in_flight {
                        shared.shed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if !take_request(&shared) {
                        break;
                    }
                    let (member, device) = next_member(&shared, counter);
                    let shared = shared.clone();
                    shared.in_flight.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        request(&shared, member, device).await;
                        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            }
        }
        Load::Closed { concurrency } => {
            // Twice the workers; the second half only works during a spike.
            let workers: Vec<_> = (0..concurrency * 2)
                .map(|w| {
                    let shared = shared.clone();
                    let config = config.clone();
                    tokio::spawn(async move {
                        let mut counter = w as u64;
                        while !shared.stop.load(Ordering::Relaxed)
                            && shared.started.elapsed() < config.duration
                            && !spent(&shared)
                        {
                            if w >= concurrency
                                && w >= concurrency * shared.spike.load(Ordering::Relaxed) as usize
                            {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                continue;
                            }
                            if !take_request(&shared) {
                                break;
                            }
                            counter += (concurrency * 2) as u64;
                            let (member, device) = next_member(&shared, counter);
                            shared.in_flight.fetch_add(1, Ordering::SeqCst);
                            request(&shared, member, device).await;
                            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for worker in workers {
                let _ = worker.await;
            }
        }
    }
}

fn record_error(shared: &Shared, code: &str) {
    *shared
        .stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .errors
        .entry(code.to_owned())
        .or_default() += 1;
}

/// One request, fully accounted for.
async fn request(shared: &Arc<Shared>, member: MemberId, device: &'static str) {
    let config = &shared.config;
    let payload = encode(&RecommendRequest {
        k: Some(config.k),
        device: Some(device.to_owned()),
        deadline_ms: Some(config.deadline_ms),
        ..Default::default()
    });
    shared.sent.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let wait = Duration::from_millis(config.deadline_ms) + config.no_reply_after;
    let outcome = tokio::time::timeout(
        wait,
        shared
            .client
            .request(shared.subjects.recommend(member), payload.into()),
    )
    .await;
    let elapsed = started.elapsed();
    let message = match outcome {
        Err(_) => {
            let mut stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            stats.no_reply += 1;
            stats.cohorts[cohort(member)].no_reply += 1;
            return;
        }
        Ok(Err(e)) => {
            let code = match e.kind() {
                async_nats::RequestErrorKind::NoResponders => "no_responders",
                async_nats::RequestErrorKind::TimedOut => "timed_out",
                async_nats::RequestErrorKind::Other => "request_failed",
            };
            record_error(shared, code);
            return;
        }
        Ok(Ok(message)) => message,
    };
    let reply = match decode::<RecommendReply>(&message.payload, 1 << 20) {
        Ok(RecommendReply::Ok(reply)) => reply,
        Ok(RecommendReply::Error(e)) => return record_error(shared, e.error.code.as_str()),
        Err(_) => return record_error(shared, "undecodable_reply"),
    };
    let source = reply.source.as_str();
    let fallback = reply.source != reco_messages::Source::Model;
    {
        let mut stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        let us = elapsed.as_micros().max(1) as u64;
        let _ = stats.all.record(us);
        let _ = stats.bucket.record(us);
        stats.replies += 1;
        stats.bucket_replies += 1;
        stats.bucket_fallbacks += fallback as u64;
        if fallback {
            *stats
                .bucket_reasons
                .entry(reply.reason.map_or("none", |r| r.as_str()))
                .or_default() += 1;
        }
        *stats.by_source.entry(source.to_owned()).or_default() += 1;
        *stats
            .by_reason
            .entry(reply.reason.map_or("none", |r| r.as_str()).to_owned())
            .or_default() += 1;
        let late = elapsed > Duration::from_millis(config.deadline_ms) + config.late_margin;
        stats.late += late as u64;
        let c = &mut stats.cohorts[cohort(member)];
        let _ = c.hist.record(us);
        c.fallbacks += fallback as u64;
        c.late += late as u64;
    }
    let items: Vec<ItemId> = reply.items.iter().map(|s| s.item).collect();
    if judged(config, member) {
        if let Some(tx) = shared
            .quality_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = tx.try_send((member, source.to_owned(), items.clone()));
        }
    }
    if !fallback && config.probe_every > 0 {
        let n = shared.model_replies.fetch_add(1, Ordering::Relaxed);
        if n % config.probe_every == 0
            && !items.is_empty()
            && shared.probes.load(Ordering::SeqCst) < 4
        {
            shared.probes.fetch_add(1, Ordering::SeqCst);
            let shared = shared.clone();
            tokio::spawn(async move {
                probe_freshness(&shared, member, device, items[0]).await;
                shared.probes.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}

/// The member plays the top item it was shown; how long until a reply no
/// longer shows it (the play was taken into account)?
async fn probe_freshness(shared: &Shared, member: MemberId, device: &'static str, item: ItemId) {
    let config = &shared.config;
    let event = Event {
        member,
        item,
        kind: EventKind::Play,
        value: 600.0,
        at_ms: None,
        device: Some(device.to_owned()),
    };
    let payload = encode(&RecommendRequest {
        k: Some(config.k),
        device: Some(device.to_owned()),
        deadline_ms: Some(config.deadline_ms),
        ..Default::default()
    });
    let played = Instant::now();
    if shared
        .client
        .publish(shared.subjects.events(member), encode(&event).into())
        .await
        .is_err()
    {
        return;
    }
    shared.probe_events.fetch_add(1, Ordering::Relaxed);
    for _ in 0..50 {
        let wait = Duration::from_millis(config.deadline_ms) + config.no_reply_after;
        let Ok(Ok(message)) = tokio::time::timeout(
            wait,
            shared
                .client
                .request(shared.subjects.recommend(member), payload.clone().into()),
        )
        .await
        else {
            return;
        };
        if let Ok(RecommendReply::Ok(reply)) = decode::<RecommendReply>(&message.payload, 1 << 20) {
            if reply.items.iter().all(|s| s.item != item) {
                let us = played.elapsed().as_micros().max(1) as u64;
                let _ = shared
                    .stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .freshness
                    .record(us);
                return;
            }
        }
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Judges served lists against members' true tastes on a thread of its own
/// (a scan of the catalogue per list: no place for it on the I/O runtime).
fn spawn_judge(shared: Arc<Shared>, rx: mpsc::Receiver<Served>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let k = shared.config.k as usize;
        for (member_id, source, served) in rx {
            let seen = shared
                .played
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&member_id)
                .cloned()
                .unwrap_or_default();
            let member = shared.world.member(member_id);
            let relevant = shared.world.true_top(&member, 2 * k, &seen);
            let (hit, ndcg) = judge(&served, &relevant, k);
            let mut stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            let entry = stats.quality.entry(source).or_insert((0, 0.0, 0.0));
            entry.0 += 1;
            entry.1 += hit;
            entry.2 += ndcg;
        }
    })
}

/// Hit (0 or 1) and NDCG at `k` of `served` against the set `relevant`.
pub fn judge(served: &[ItemId], relevant: &[ItemId], k: usize) -> (f64, f64) {
    let gain = |i: usize| 1.0 / ((i + 2) as f64).log2();
    let dcg: f64 = served
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, item)| relevant.contains(item))
        .map(|(i, _)| gain(i))
        .sum();
    let ideal: f64 = (0..k.min(relevant.len())).map(gain).sum();
    let hit = if dcg > 0.0 { 1.0 } else { 0.0 };
    (hit, if ideal > 0.0 { dcg / ideal } else { 0.0 })
}

/// Once per second: closes a timeline bucket and polls the node's health;
/// four times a second: refreshes the progress line.
async fn monitor(shared: Arc<Shared>) {
    let bar = if shared.config.progress {
        let bar = indicatif::ProgressBar::new(shared.config.duration.as_secs());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len}s {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_events = 0u64;
    let mut n = 0u64;
    let mut last = Bucket::default();
    let health_subject = shared.subjects.admin_health();
    loop {
        tick.tick().await;
        n += 1;
        let done =
            shared.stop.load(Ordering::Relaxed) && shared.in_flight.load(Ordering::Relaxed) == 0;
        if n % 4 == 0 || done {
            let events = shared.published.load(Ordering::Relaxed);
            {
                let mut stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
                let q = |h: &Histogram<u64>, q| {
                    if h.is_empty() {
                        0.0
                    } else {
                        h.value_at_quantile(q) as f64 / 1000.0
                    }
                };
                let bucket = Bucket {
                    t_s: shared.started.elapsed().as_secs_f64(),
                    events: events - last_events,
                    replies: stats.bucket_replies,
                    p50_ms: q(&stats.bucket, 0.5),
                    p90_ms: q(&stats.bucket, 0.9),
                    p99_ms: q(&stats.bucket, 0.99),
                    fallback_share: if stats.bucket_replies > 0 {
                        stats.bucket_fallbacks as f64 / stats.bucket_replies as f64
                    } else {
                        0.0
                    },
                    fallback_by_reason: stats
                        .bucket_reasons
                        .iter()
                        .map(|(reason, n)| {
                            (
                                (*reason).to_owned(),
                                *n as f64 / stats.bucket_replies as f64,
                            )
                        })
                        .collect(),
                };
                stats.bucket.reset();
                stats.bucket_reasons.clear();
                stats.bucket_replies = 0;
                stats.bucket_fallbacks = 0;
                stats.timeline.push(bucket.clone());
                last = bucket;
            }
            last_events = events;
            let health = tokio::time::timeout(
                Duration::from_millis(500),
                shared
                    .client
                    .request(health_subject.clone(), Vec::new().into()),
            )
            .await;
            if let Ok(Ok(message)) = health {
                if let Ok(health) = decode::<Health>(&message.payload, 1 << 20) {
                    let mut stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
                    stats.rss_max = stats.rss_max.max(health.rss_bytes);
                    stats.resident = health.resident_members;
                }
            }
        }
        if let Some(bar) = &bar {
            bar.set_position(
                shared
                    .started
                    .elapsed()
                    .as_secs()
                    .min(shared.config.duration.as_secs()),
            );
            bar.set_message(format!(
                "{:.0} ev/s  {:.0} req/s  p99 {:.1} ms  fallback {:.0}%  sent {}",
                last.events as f64,
                last.replies as f64,
                last.p99_ms,
                last.fallback_share * 100.0,
                shared.sent.load(Ordering::Relaxed)
            ));
        }
        if done {
            break;
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// Applies each fault in its window and records what happened.
async fn run_faults(shared: Arc<Shared>, nats: Option<Arc<Mutex<NatsServer>>>) -> Vec<FaultRecord> {
    let mut records = Vec::new();
    let faults = shared.config.faults.clone();
    for fault in faults {
        let start = shared.started + fault.start;
        let end = start + fault.length;
        if start >= shared.started + shared.config.duration {
            continue;
        }
        while Instant::now() < start {
            if shared.stop.load(Ordering::Relaxed) {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(10).min(start - Instant::now())).await;
        }
        let at = |t: Instant| (t - shared.started).as_secs_f64();
        let mut note = String::new();
        let rejected_before = shared
            .config
            .metrics_addr
            .and_then(|a| scrape(a).ok())
            .map(|t| metric_sum(&t, node_metrics::EVENTS_REJECTED, &[]));
        // With cohorts, model faults hit the experiment cohort only.
        let model_cohort = shared.config.cohorts.then_some(faults::EXPERIMENT);
        let describe = |applied: Result<faults::Applied, String>| match applied {
            Ok(faults::Applied::Yes) if model_cohort.is_some() => {
                "applied (experiment cohort)".to_owned()
            }
            Ok(faults::Applied::Yes) => "applied".to_owned(),
            Ok(faults::Applied::EveryMember) => {
                "applied to every member: the node cannot limit model faults to a cohort".to_owned()
            }
            Ok(faults::Applied::Refused) => {
                "unsupported: the node does not accept faults (set [node] fault_injection = true)"
                    .to_owned()
            }
            Err(e) => e,
        };
        let outcome = match &fault.kind {
            FaultKind::ModelSlow { delay_ms } => describe(
                faults::set_model_delay(&shared.client, &shared.subjects, *delay_ms, model_cohort)
                    .await,
            ),
            // Every 4th scoring request crashes its worker for the window.
            FaultKind::ModelCrash => describe(
                faults::set_model_crash(&shared.client, &shared.subjects, 4, model_cohort).await,
            ),
            FaultKind::Malformed { count } => {
                let payloads = faults::malformed_payloads(
                    shared.world.config().seed,
                    *count,
                    shared.world.config().members,
                    &shared.subjects,
                    shared.config.cohorts,
                );
                let mut failed = 0;
                for (subject, payload) in payloads {
                    let ok = shared.client.publish(subject, payload.into()).await.is_ok();
                    failed += !ok as u32;
                    shared
                        .malformed_sent
                        .fetch_add(ok as u64, Ordering::Relaxed);
                }
                let _ = shared.client.flush().await;
                if failed == 0 {
                    "applied".to_owned()
                } else {
                    format!("applied, {failed} publishes failed")
                }
            }
            FaultKind::Spike { factor } => {
                shared.spike.store(*factor, Ordering::SeqCst);
                "applied".to_owned()
            }
            FaultKind::NatsRestart => match &nats {
                None => {
                    "unsupported: the simulator did not start the NATS server (--nats was given)"
                        .to_owned()
                }
                Some(server) => {
                    let server = server.clone();
                    match tokio::task::spawn_blocking(move || {
                        server.lock().unwrap_or_else(|e| e.into_inner()).restart()
                    })
                    .await
                    {
                        Ok(Ok(())) => "applied".to_owned(),
                        Ok(Err(e)) => format!("failed: {e:#}"),
                        Err(e) => format!("failed: {e}"),
                    }
                }
            },
        };
        while Instant::now() < end && !shared.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(
                Duration::from_millis(10).min(end.saturating_duration_since(Instant::now())),
            )
            .await;
        }
        match &fault.kind {
            FaultKind::ModelSlow { .. } if outcome.starts_with("applied") => {
                if let Err(e) =
                    faults::set_model_delay(&shared.client, &shared.subjects, 0, None).await
                {
                    note = format!("could not end the slowdown: {e}");
                }
            }
            FaultKind::ModelCrash if outcome.starts_with("applied") => {
                if let Err(e) =
                    faults::set_model_crash(&shared.client, &shared.subjects, 0, None).await
                {
                    note = format!("could not end the crashes: {e}");
                }
            }
            FaultKind::Spike { .. } => shared.spike.store(1, Ordering::SeqCst),
            FaultKind::Malformed { count } => {
                let after = shared
                    .config
                    .metrics_addr
                    .and_then(|a| scrape(a).ok())
                    .map(|t| metric_sum(&t, node_metrics::EVENTS_REJECTED, &[]));
                if let (Some(b), Some(a)) = (rejected_before, after) {
                    note = format!("node rejected {:.0} of {count}", a - b);
                }
            }
            _ => {}
        }
        records.push(FaultRecord {
            fault: fault.kind.to_string(),
            start_s: at(start),
            end_s: at(Instant::now()),
            outcome,
            replies: 0,
            fallback_share: 0.0,
            worst_p99_ms: 0.0,
            note,
        });
    }
    records
}

/// With `RECO_SIM_DEBUG` set, says which stage of a run finished (to find
/// what a run that does not end is waiting for).
fn debug(what: &str) {
    if std::env::var_os("RECO_SIM_DEBUG").is_some() {
        eprintln!("reco-sim debug: {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndcg_is_one_for_the_ideal_list_and_zero_without_hits() {
        let ids = |v: &[u64]| v.iter().map(|&i| ItemId(i)).collect::<Vec<_>>();
        assert_eq!(judge(&ids(&[1, 2, 3]), &ids(&[1, 2, 3, 4]), 3), (1.0, 1.0));
        assert_eq!(judge(&ids(&[7, 8, 9]), &ids(&[1, 2, 3]), 3), (0.0, 0.0));
        let (hit, ndcg) = judge(&ids(&[7, 1, 9]), &ids(&[1, 2, 3]), 3);
        assert_eq!(hit, 1.0);
        assert!(ndcg > 0.0 && ndcg < 1.0);
    }
}
