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
use crate::process::{metric_sum, scrape, NatsServer};
use crate::report::{histogram, Bucket, Cohort, FaultRecord, Latency, Quality, Report};
use crate::world::{Action, World};
use hdrhistogram::Histogram;
use reco_messages::metrics as node_metrics;
use reco_messages::{
    decode, encode, Event, EventKind, ItemId, MemberId, RecommendReply, RecommendRequest, Subjects,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

mod fault_runner;
mod freshness;
mod load;
mod monitor;
mod quality;

use fault_runner::run_faults;
use freshness::probe_freshness;
use load::{generate_requests, publish_events};
use monitor::monitor;
pub use quality::judge;
use quality::spawn_judge;

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
    /// The nodes the simulator started (`--nodes`): node faults act on
    /// them.
    pub nodes: Option<Arc<crate::cluster::NodeSet>>,
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
            nodes: None,
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

/// A served list to judge: member, the device that asked, source, items.
type Served = (MemberId, &'static str, String, Vec<ItemId>);

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

/// Connects a client that counts slow-consumer events into `counter`, with
/// no client-side request timeout (every request is bounded and measured
/// here) and retrying while the server starts.
pub async fn connect(url: &str, counter: Arc<AtomicU64>) -> anyhow::Result<async_nats::Client> {
    connect_with(url, counter, reco_client::NatsSecurity::default()).await
}

/// [`connect`] with credentials and TLS (`reco-sim run --nats-*` or the
/// `RECO_NATS_*` variables; credentials in the URL work too).
pub async fn connect_with(
    url: &str,
    counter: Arc<AtomicU64>,
    security: reco_client::NatsSecurity,
) -> anyhow::Result<async_nats::Client> {
    Ok(reco_client::ConnectOptions::new(url)
        .security(security)
        .name("reco-sim")
        .slow_consumers(counter)
        .no_request_timeout()
        .retry_on_initial_connect()
        .connect()
        .await?)
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
    // The node's counterfactual log: late model lists beside what was served.
    let seen_of: crate::counterfactual::SeenOf = {
        let shared = shared.clone();
        Arc::new(move |member| {
            load::judged(&shared.config, member).then(|| {
                shared
                    .played
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&member)
                    .cloned()
                    .unwrap_or_default()
            })
        })
    };
    let counterfactual = crate::counterfactual::listen(
        &shared.client,
        shared.subjects.counterfactual(),
        world.clone(),
        config.k as usize,
        seen_of,
        1 << 20,
    )
    .await
    .map_err(|error| eprintln!("reco-sim: not reading the counterfactual log: {error:#}"))
    .ok();
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
    let degradation = match counterfactual {
        Some((acc, task)) => {
            let deadline_misses = {
                let stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
                stats.by_reason.get("deadline").copied().unwrap_or(0)
            };
            // Late answers keep coming after the last reply: wait (at most
            // 3 s) until none has arrived for 300 ms.
            let records = || acc.lock().unwrap_or_else(|e| e.into_inner()).cost().records;
            let until = Instant::now() + Duration::from_secs(3);
            let mut last = (records(), Instant::now());
            while deadline_misses > 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now = records();
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() >= Duration::from_millis(300) {
                    break;
                }
            }
            task.abort();
            let cost = acc.lock().unwrap_or_else(|e| e.into_inner()).cost();
            (deadline_misses > 0 || cost.records > 0).then_some(cost)
        }
        None => None,
    };
    debug("counterfactual log done");
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
            node_metrics::EVENTS_INGESTED_TOTAL,
            node_metrics::EVENTS_REJECTED_TOTAL,
            node_metrics::EVENTS_DROPPED_TOTAL,
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
    let ingested = delta(node_metrics::EVENTS_INGESTED_TOTAL);
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
        node_events_rejected: delta(node_metrics::EVENTS_REJECTED_TOTAL),
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
        slow_consumer_node: delta(node_metrics::NATS_SLOW_CONSUMER_TOTAL),
        node_rss_bytes_max: stats.rss_max,
        node_resident_members: stats.resident,
        faults: fault_records,
        timeline: stats.timeline.clone(),
        degradation,
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

/// With `RECO_SIM_DEBUG` set, says which stage of a run finished (to find
/// what a run that does not end is waiting for).
fn debug(what: &str) {
    if std::env::var_os("RECO_SIM_DEBUG").is_some() {
        eprintln!("reco-sim debug: {what}");
    }
}
