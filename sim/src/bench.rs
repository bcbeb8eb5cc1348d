//! `reco-sim bench`: reco's speed beside the speed of the NATS it runs on.
//!
//! An absolute figure (events/s, p99) says as much about the machine as about
//! reco, so each scenario first measures its ceiling in the same run, on the
//! same server, with the same payloads: raw publish → subscribe for ingest,
//! request/reply against a trivial echo responder at the same concurrency for
//! recommendations. reco's figure is then reported beside it as a ratio.
//!
//! Scenarios: ingest only; recommend at a fixed concurrency with a 10k x 64
//! model (clustered as `reco train` clusters it, scanned as the node's
//! default `[model] scan` says), members without new events; recommend where
//! each request follows an event of its member (published just before the
//! request on the same connection, so no earlier answer still holds), whose
//! ceiling is the echo responder plus a trivial subscriber that decodes the
//! same events; the model slower than the deadline, each request again after
//! an event so no reused answer hides it (every reply must still come by
//! deadline + 1 ms); `residents` members made resident by one event
//! each (RSS per resident member).

use crate::driver::connect;
use crate::process::{metric_sum, scrape, NatsServer, Node};
use crate::report::{histogram, Latency};
use crate::setup::latent_model;
use crate::world::{Action, World, WorldConfig};
use anyhow::Result;
use bytes::Bytes;
use futures::StreamExt;
use reco_messages::admin::Health;
use reco_messages::metrics as node_metrics;
use reco_messages::{
    decode, encode, ItemId, MemberId, RecommendReply, RecommendRequest, Recommendations,
    ScoredItem, Source, Subjects,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Subject prefix of the pub/sub ceiling: the same subject shape as reco's
/// events.
const CEILING_PREFIX: &str = "bench.ceiling";
/// Subject prefix of the echo responder: the same shape as reco's requests.
const ECHO_PREFIX: &str = "bench.echo";

/// Sizes of a benchmark run.
#[derive(Clone, Debug, Serialize)]
pub struct BenchConfig {
    /// World seed.
    pub seed: u64,
    /// Events in the ingest scenario.
    pub events: u64,
    /// Catalogue size of the recommend scenarios.
    pub items: usize,
    /// Model factors of the recommend scenarios.
    pub factors: usize,
    /// Requests in flight in the recommend scenarios.
    pub concurrency: usize,
    /// How long each request scenario (and its echo ceiling) runs.
    pub duration_s: f64,
    /// Request deadline, ms.
    pub deadline_ms: u64,
    /// Members made resident in the memory scenario (0 skips it).
    pub residents: u64,
    /// NATS URL to use instead of a private server.
    #[serde(skip)]
    pub nats: Option<String>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            seed: 42,
            events: 500_000,
            items: 10_000,
            factors: 64,
            concurrency: 16,
            duration_s: 10.0,
            deadline_ms: 50,
            residents: 1_000_000,
            nats: None,
        }
    }
}

/// Ingest: raw NATS fan-in vs. reco's ingestion of the same payloads.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestFigures {
    /// Events sent.
    pub events: u64,
    /// Raw publish → subscribe, events/s.
    pub ceiling_events_per_s: f64,
    /// Events the ceiling subscriber lost (slow consumer).
    pub ceiling_lost: u64,
    /// reco, events/s (published → counted as ingested by the node).
    pub reco_events_per_s: f64,
    /// Events reco did not count as ingested by the end of the wait.
    pub reco_lost: u64,
    /// Of those, events the node counted as dropped (full mailboxes).
    pub reco_dropped: u64,
    /// reco / ceiling.
    pub ratio: f64,
}

/// A closed-loop request/reply measurement.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoopFigures {
    /// Replies received.
    pub replies: u64,
    /// Replies per second.
    pub throughput_per_s: f64,
    /// Latency.
    pub latency: Latency,
    /// Replies by source (reco only; reused model answers as
    /// `model_reused`).
    pub by_source: BTreeMap<String, u64>,
    /// Requests without a reply or with an error.
    pub failed: u64,
}

/// Recommend: echo ceiling vs. reco at the same concurrency.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RecommendFigures {
    /// Requests in flight.
    pub concurrency: usize,
    /// Catalogue size.
    pub items: usize,
    /// Model factors.
    pub factors: usize,
    /// Echo responder.
    pub echo: LoopFigures,
    /// reco.
    pub reco: LoopFigures,
    /// reco throughput / echo throughput.
    pub throughput_ratio: f64,
    /// reco p99 / echo p99.
    pub p99_ratio: f64,
    /// reco p99 − echo p99, ms.
    pub p99_over_echo_ms: f64,
    /// Mean time a model worker spent scoring one request, ms (from the
    /// node's `reco_model_score_seconds`): the CPU floor of a model reply.
    pub model_score_ms: f64,
}

/// Model slower than the deadline.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SlowModelFigures {
    /// Deadline of the requests, ms.
    pub deadline_ms: u64,
    /// Delay added to each model scoring, ms.
    pub model_delay_ms: u64,
    /// The measurement.
    pub reco: LoopFigures,
    /// Worst reply time, ms.
    pub worst_ms: f64,
    /// Worst reply time minus the deadline, ms.
    pub worst_over_deadline_ms: f64,
    /// Replies later than deadline + 1 ms.
    pub late_replies: u64,
}

/// Memory per resident member.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ResidentFigures {
    /// Members sent one event each.
    pub members: u64,
    /// Resident members the node reported at the end.
    pub resident_members: u64,
    /// RSS before, bytes.
    pub rss_before: u64,
    /// RSS after, bytes.
    pub rss_after: u64,
    /// (after − before) / resident members gained.
    pub bytes_per_member: f64,
    /// Seconds to make them resident.
    pub seconds: f64,
    /// Events the node dropped on the way (full mailboxes).
    pub dropped: u64,
}

/// A target of the issue and whether this run met it.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// What is measured.
    pub name: String,
    /// The target, in words.
    pub target: String,
    /// The measured value, in words.
    pub measured: String,
    /// Whether it was met.
    pub met: bool,
}

/// The whole benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Sizes.
    pub config: BenchConfig,
    /// Ingest.
    pub ingest: IngestFigures,
    /// Recommend, members without new events.
    pub recommend: RecommendFigures,
    /// Recommend, each request right after an event of its member (the
    /// ceiling: echo responder + a trivial subscriber of the events).
    pub fresh: RecommendFigures,
    /// Slow model.
    pub slow_model: SlowModelFigures,
    /// Residents (absent when skipped).
    pub resident: Option<ResidentFigures>,
    /// Targets.
    pub targets: Vec<Target>,
}

/// Runs every scenario; `log` gets one line per step.
pub async fn run(config: BenchConfig, log: impl Fn(&str)) -> Result<BenchReport> {
    let _own_server;
    let url = match &config.nats {
        Some(url) => url.clone(),
        None => {
            let server = NatsServer::start()?;
            let url = server.url();
            _own_server = server;
            url
        }
    };
    let world = World::synthetic(WorldConfig {
        seed: config.seed,
        items: config.items,
        dim: config.factors,
        members: 10_000,
        ..WorldConfig::default()
    });
    let model_dir = tempfile::tempdir()?;
    latent_model(&world, model_dir.path(), "bench-latent")?;
    let subjects = Subjects::default();
    let slow = Arc::new(AtomicU64::new(0));
    let client = connect(&url, slow.clone()).await?;

    // The same payloads for the ceiling and for reco.
    let events: Vec<(MemberId, Bytes)> = world
        .actions()
        .filter_map(|a| match a {
            Action::Event(e) => Some((e.member, Bytes::from(encode(&e)))),
            Action::Session { .. } => None,
        })
        .take(config.events as usize)
        .collect();

    log("ingest ceiling: raw NATS publish → subscribe");
    let (ceiling_rate, ceiling_lost) = pubsub_ceiling(&url, &client, &events).await?;
    let node_toml = format!(
        "[node]\nfault_injection = true\n[recommend]\ndefault_deadline_ms = {}\n[sessions]\nmax_resident = {}\n",
        config.deadline_ms,
        (config.residents + 100_000).max(1_000_000)
    );
    let node = Node::start(&url, Some(model_dir.path()), &node_toml)?;
    log("ingest: reco");
    let (reco_rate, reco_lost, reco_dropped) =
        ingest(&client, &subjects, node.metrics_addr(), &events).await?;
    let ingest = IngestFigures {
        events: events.len() as u64,
        ceiling_events_per_s: ceiling_rate,
        ceiling_lost,
        reco_events_per_s: reco_rate,
        reco_lost,
        reco_dropped,
        ratio: reco_rate / ceiling_rate.max(1e-9),
    };

    let duration = Duration::from_secs_f64(config.duration_s);
    let members: Vec<MemberId> = {
        let mut m: Vec<MemberId> = events.iter().map(|e| e.0).collect();
        m.sort_unstable();
        m.dedup();
        m
    };
    let request = Bytes::from(encode(&RecommendRequest {
        k: Some(10),
        deadline_ms: Some(config.deadline_ms),
        ..Default::default()
    }));
    log("recommend ceiling: echo responder");
    let echo = echo_ceiling(
        &url,
        &client,
        &members,
        request.clone(),
        config.concurrency,
        duration,
        None,
    )
    .await?;
    log("recommend: reco");
    let scoring = |text: &str| {
        let name = node_metrics::MODEL_SCORE_SECONDS;
        (
            metric_sum(text, &format!("{name}_sum"), &[]),
            metric_sum(text, &format!("{name}_count"), &[]),
        )
    };
    let score_before = scoring(&scrape(node.metrics_addr())?);
    let reco = closed_loop(
        &client,
        &|m| subjects.recommend(m),
        &members,
        request.clone(),
        config.concurrency,
        duration,
        None,
        None,
    )
    .await;
    let score_after = scoring(&scrape(node.metrics_addr())?);
    let recommend = RecommendFigures::of(&config, echo, reco, score_before, score_after);

    log("recommend after an event ceiling: echo responder + trivial subscriber");
    let catalogue = world.catalogue().ids().to_vec();
    let fresh_event = |subject: String, member: MemberId, i: u64| {
        let event = reco_messages::Event {
            member,
            item: catalogue[(i as usize).wrapping_mul(31) % catalogue.len().max(1)],
            kind: reco_messages::EventKind::Play,
            value: 60.0,
            at_ms: None,
            device: None,
        };
        (subject, Bytes::from(encode(&event)))
    };
    let ceiling_subjects = Subjects::new(CEILING_PREFIX)?;
    let subscriber = trivial_subscriber(&url, &ceiling_subjects).await?;
    let ceiling_event = |m: MemberId, i: u64| fresh_event(ceiling_subjects.events(m), m, i);
    let fresh_echo = echo_ceiling(
        &url,
        &client,
        &members,
        request.clone(),
        config.concurrency,
        duration,
        Some(&ceiling_event),
    )
    .await?;
    subscriber.abort();
    log("recommend after an event: reco");
    let reco_event = |m: MemberId, i: u64| fresh_event(subjects.events(m), m, i);
    let score_before = scoring(&scrape(node.metrics_addr())?);
    let fresh_reco = closed_loop(
        &client,
        &|m| subjects.recommend(m),
        &members,
        request.clone(),
        config.concurrency,
        duration,
        None,
        Some(&reco_event),
    )
    .await;
    let score_after = scoring(&scrape(node.metrics_addr())?);
    let fresh = RecommendFigures::of(&config, fresh_echo, fresh_reco, score_before, score_after);

    log("slow model: model delayed past the deadline");
    let delay = config.deadline_ms * 2;
    let applied = crate::faults::set_model_delay(&client, &subjects, delay, None).await;
    anyhow::ensure!(
        applied == Ok(crate::faults::Applied::Yes),
        "the node refused the model delay: {applied:?}"
    );
    let late_after = Duration::from_millis(config.deadline_ms + 1);
    let slow_loop = closed_loop(
        &client,
        &|m| subjects.recommend(m),
        &members,
        request.clone(),
        config.concurrency,
        duration,
        Some(late_after),
        // Each request after an event, so a reused answer cannot hide the
        // slow model.
        Some(&reco_event),
    )
    .await;
    let _ = crate::faults::set_model_delay(&client, &subjects, 0, None).await;
    let slow_model = SlowModelFigures {
        deadline_ms: config.deadline_ms,
        model_delay_ms: delay,
        worst_ms: slow_loop.latency.max_ms,
        worst_over_deadline_ms: slow_loop.latency.max_ms - config.deadline_ms as f64,
        late_replies: slow_loop.failed,
        reco: slow_loop,
    };
    drop(node);

    let resident = if config.residents > 0 {
        log("residents: one event per member on a fresh node");
        // Fresh: without the start-up replay of the earlier scenarios'
        // events (a restarted node alone rebuilds its members from them).
        let fresh = format!("{node_toml}[cluster]\nreplay_window_secs = 0\n");
        let node = Node::start(&url, Some(model_dir.path()), &fresh)?;
        Some(residents(&client, &subjects, &node, config.residents).await?)
    } else {
        None
    };
    let targets = targets(
        &config,
        &ingest,
        &recommend,
        &fresh,
        &slow_model,
        resident.as_ref(),
    );
    Ok(BenchReport {
        config,
        ingest,
        recommend,
        fresh,
        slow_model,
        resident,
        targets,
    })
}

impl RecommendFigures {
    /// reco beside its ceiling; `score_*` are the node's scoring (sum,
    /// count) before and after reco's loop.
    fn of(
        config: &BenchConfig,
        echo: LoopFigures,
        reco: LoopFigures,
        score_before: (f64, f64),
        score_after: (f64, f64),
    ) -> Self {
        let scored = score_after.1 - score_before.1;
        let model_score_ms = if scored > 0.0 {
            (score_after.0 - score_before.0) / scored * 1000.0
        } else {
            0.0
        };
        RecommendFigures {
            model_score_ms,
            concurrency: config.concurrency,
            items: config.items,
            factors: config.factors,
            throughput_ratio: reco.throughput_per_s / echo.throughput_per_s.max(1e-9),
            p99_ratio: reco.latency.p99_ms / echo.latency.p99_ms.max(1e-9),
            p99_over_echo_ms: reco.latency.p99_ms - echo.latency.p99_ms,
            echo,
            reco,
        }
    }
}

/// A trivial subscriber of the ceiling's events: decodes each one (as a
/// node must) and nothing more. Runs until aborted.
async fn trivial_subscriber(url: &str, ceiling: &Subjects) -> Result<tokio::task::JoinHandle<u64>> {
    let subscriber = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(url)
        .await?;
    let mut sub = subscriber.subscribe(ceiling.events_wildcard()).await?;
    subscriber.flush().await?;
    Ok(tokio::spawn(async move {
        let _connection = subscriber;
        let mut decoded = 0u64;
        while let Some(message) = sub.next().await {
            if decode::<reco_messages::Event>(&message.payload, 1 << 16).is_ok() {
                decoded += 1;
            }
        }
        decoded
    }))
}

/// Publishes every payload on one client and counts them on another.
async fn pubsub_ceiling(
    url: &str,
    publisher: &async_nats::Client,
    events: &[(MemberId, Bytes)],
) -> Result<(f64, u64)> {
    let subscriber = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(url)
        .await?;
    let ceiling = Subjects::new(CEILING_PREFIX)?;
    let mut sub = subscriber.subscribe(ceiling.events_wildcard()).await?;
    subscriber.flush().await?;
    // Make sure the subscription is live before timing. A flush does not
    // wait for the server, so a probe may be published before the server
    // knows the subscription: a second subscription on the same connection
    // (the server takes them in order) is probed until a probe arrives.
    let mut live = subscriber
        .subscribe(format!("{CEILING_PREFIX}.live"))
        .await?;
    let live_until = Instant::now() + Duration::from_secs(5);
    loop {
        publisher
            .publish(format!("{CEILING_PREFIX}.live"), Bytes::new())
            .await?;
        publisher.flush().await?;
        if tokio::time::timeout(Duration::from_millis(50), live.next())
            .await
            .is_ok()
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < live_until,
            "the ceiling subscription never became live"
        );
    }
    let n = events.len() as u64;
    let got = Arc::new(AtomicU64::new(0));
    let counter = {
        let got = got.clone();
        tokio::spawn(async move {
            while sub.next().await.is_some() {
                if got.fetch_add(1, Ordering::Relaxed) + 1 >= n {
                    break;
                }
            }
        })
    };
    let (done, seconds) = publish_paced(
        publisher,
        n,
        |i| {
            let (member, payload) = &events[i as usize];
            (ceiling.events(*member), payload.clone())
        },
        || Ok(got.load(Ordering::Relaxed)),
    )
    .await?;
    counter.abort();
    Ok((done as f64 / seconds.max(1e-9), n.saturating_sub(done)))
}

/// Publishes every payload to reco and waits until the node counted them.
async fn ingest(
    client: &async_nats::Client,
    subjects: &Subjects,
    metrics: SocketAddr,
    events: &[(MemberId, Bytes)],
) -> Result<(f64, u64, u64)> {
    let (done, dropped, seconds) = publish_to_node(client, metrics, events.len() as u64, |i| {
        let (member, payload) = &events[i as usize];
        (subjects.events(*member), payload.clone())
    })
    .await?;
    Ok((
        done as f64 / seconds.max(1e-9),
        (events.len() as u64).saturating_sub(done),
        dropped,
    ))
}

/// [`publish_paced`] to a node, whose settled events are those it ingested
/// or dropped (metrics). Returns ingested, dropped and seconds.
async fn publish_to_node(
    client: &async_nats::Client,
    metrics: SocketAddr,
    n: u64,
    event: impl Fn(u64) -> (String, Bytes),
) -> Result<(u64, u64, f64)> {
    let counts = || {
        scrape(metrics).map(|t| {
            (
                metric_sum(&t, node_metrics::EVENTS_INGESTED_TOTAL, &[]) as u64,
                metric_sum(&t, node_metrics::EVENTS_DROPPED_TOTAL, &[]) as u64,
            )
        })
    };
    let (base, base_dropped) = counts()?;
    let (_, seconds) = publish_paced(client, n, event, || {
        counts().map(|(i, d)| (i - base) + (d - base_dropped))
    })
    .await?;
    let (ingested, dropped) = counts()?;
    Ok((ingested - base, dropped - base_dropped, seconds))
}

/// Publishes `n` events made by `event(i)` while keeping at most `WINDOW`
/// of them unsettled (`settled()` counts those that left the pipe), so the
/// receiver's buffers — a node's mailboxes hold 8,192 events per shard —
/// never overflow: the figure is what the receiver sustains, not how fast a
/// buffer fills. The ceiling and reco are paced the same way. Then waits
/// for the tail; returns the settled count and the seconds it took.
async fn publish_paced(
    client: &async_nats::Client,
    n: u64,
    event: impl Fn(u64) -> (String, Bytes),
    mut settled: impl FnMut() -> Result<u64>,
) -> Result<(u64, f64)> {
    const CHUNK: u64 = 2_048;
    const WINDOW: u64 = 8_192;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut done = 0u64;
    while sent < n {
        let end = (sent + CHUNK).min(n);
        for i in sent..end {
            let (subject, payload) = event(i);
            client.publish(subject, payload).await?;
        }
        sent = end;
        // `done` only grows: no need to ask while the last answer suffices.
        let stall_until = Instant::now() + Duration::from_secs(10);
        while done + WINDOW < sent && Instant::now() < stall_until {
            client.flush().await?;
            done = settled()?;
            if done + WINDOW < sent {
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }
    }
    client.flush().await?;
    // The tail: wait until every event is settled, or progress stops.
    let mut last_progress = Instant::now();
    done = settled()?;
    while done < n && last_progress.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_micros(500)).await;
        let now = settled()?;
        if now > done {
            last_progress = Instant::now();
        }
        done = now;
    }
    let seconds = if done >= n {
        started.elapsed().as_secs_f64()
    } else {
        (last_progress - started).as_secs_f64()
    };
    Ok((done, seconds))
}

/// A trivial responder answering every request with a fixed list of 10.
async fn echo_ceiling(
    url: &str,
    client: &async_nats::Client,
    members: &[MemberId],
    request: Bytes,
    concurrency: usize,
    duration: Duration,
    event: Option<&EventMaker<'_>>,
) -> Result<LoopFigures> {
    let responder = async_nats::connect(url).await?;
    let echo = Subjects::new(ECHO_PREFIX)?;
    let mut sub = responder.subscribe(echo.recommend_wildcard()).await?;
    responder.flush().await?;
    let reply = Bytes::from(encode(&Recommendations {
        member: MemberId(1),
        items: (0..10)
            .map(|i| ScoredItem {
                item: ItemId(1_000 + i),
                score: 1.0,
            })
            .collect(),
        source: Source::Model,
        model_version: Some("echo".into()),
        degraded: false,
        reason: None,
        served_us: 10,
        lists_version: None,
        list_age_ms: None,
        signals: None,
        newest_signal_age_ms: None,
        aggregates_version: None,
        row: Some("top".into()),
        details: None,
        reused: false,
    }));
    let task = tokio::spawn(async move {
        while let Some(message) = sub.next().await {
            if let Some(to) = message.reply {
                let _ = responder.publish(to, reply.clone()).await;
            }
        }
    });
    // Wait until the responder answers.
    let probe_until = Instant::now() + Duration::from_secs(5);
    while client
        .request(echo.recommend(MemberId(0)), request.clone())
        .await
        .is_err()
    {
        anyhow::ensure!(
            Instant::now() < probe_until,
            "the echo responder never answered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let figures = closed_loop(
        client,
        &|m| echo.recommend(m),
        members,
        request,
        concurrency,
        duration,
        None,
        event,
    )
    .await;
    task.abort();
    Ok(figures)
}

/// The event published before the `i`-th request, for a member: (subject,
/// payload).
pub type EventMaker<'a> = dyn Fn(MemberId, u64) -> (String, Bytes) + Sync + 'a;

/// `concurrency` requesters for `duration`, over `members` round robin.
/// With `late_after`, replies slower than it count as failed. With `event`,
/// each request is preceded by that event of its member, published on the
/// same connection (so the server has it first); a failed publish counts
/// the request as failed. Latency is timed from the request.
#[allow(clippy::too_many_arguments)]
pub async fn closed_loop(
    client: &async_nats::Client,
    subject: &(dyn Fn(MemberId) -> String + Sync),
    members: &[MemberId],
    payload: Bytes,
    concurrency: usize,
    duration: Duration,
    late_after: Option<Duration>,
    event: Option<&EventMaker<'_>>,
) -> LoopFigures {
    struct Acc {
        hist: hdrhistogram::Histogram<u64>,
        by_source: BTreeMap<String, u64>,
        failed: u64,
    }
    let acc = Mutex::new(Acc {
        hist: histogram(),
        by_source: BTreeMap::new(),
        failed: 0,
    });
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let worker = || async {
        while started.elapsed() < duration {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let member = members[(i.wrapping_mul(7919) % members.len().max(1) as u64) as usize
                % members.len().max(1)];
            if let Some(event) = event {
                let (to, body) = event(member, i);
                if client.publish(to, body).await.is_err() {
                    acc.lock().unwrap_or_else(|e| e.into_inner()).failed += 1;
                    continue;
                }
            }
            let t0 = Instant::now();
            let reply = tokio::time::timeout(
                Duration::from_secs(5),
                client.request(subject(member), payload.clone()),
            )
            .await;
            let elapsed = t0.elapsed();
            let mut acc = acc.lock().unwrap_or_else(|e| e.into_inner());
            match reply {
                Ok(Ok(message)) => {
                    let _ = acc.hist.record(elapsed.as_micros().max(1) as u64);
                    if let Ok(RecommendReply::Ok(r)) =
                        decode::<RecommendReply>(&message.payload, 1 << 20)
                    {
                        // A reused model answer is counted apart.
                        let source = if r.reused {
                            format!("{}_reused", r.source.as_str())
                        } else {
                            r.source.as_str().to_owned()
                        };
                        *acc.by_source.entry(source).or_default() += 1;
                    }
                    if late_after.is_some_and(|l| elapsed > l) {
                        acc.failed += 1;
                    }
                }
                _ => acc.failed += 1,
            }
        }
    };
    futures::future::join_all((0..concurrency.max(1)).map(|_| worker())).await;
    let secs = started.elapsed().as_secs_f64();
    let acc = acc.into_inner().unwrap_or_else(|e| e.into_inner());
    LoopFigures {
        replies: acc.hist.len(),
        throughput_per_s: acc.hist.len() as f64 / secs.max(1e-9),
        latency: Latency::of(&acc.hist),
        by_source: acc.by_source,
        failed: acc.failed,
    }
}

async fn health(client: &async_nats::Client, subjects: &Subjects) -> Result<Health> {
    Ok(reco_client::Admin::new(client.clone(), subjects.clone())
        .with_timeout(Duration::from_secs(5))
        .health()
        .await?)
}

/// One event for each of `count` fresh members, paced so the node's
/// subscription never overflows; RSS growth per resident member.
async fn residents(
    client: &async_nats::Client,
    subjects: &Subjects,
    node: &Node,
    count: u64,
) -> Result<ResidentFigures> {
    let before = health(client, subjects).await?;
    const FIRST: u64 = 100_000_000;
    let started = Instant::now();
    let (_, dropped, _) = publish_to_node(client, node.metrics_addr(), count, |m| {
        let event = reco_messages::Event {
            member: MemberId(FIRST + m),
            item: ItemId(1 + m % 1_000),
            kind: reco_messages::EventKind::Play,
            value: 60.0,
            at_ms: None,
            device: Some("tv".into()),
        };
        (subjects.events(event.member), Bytes::from(encode(&event)))
    })
    .await?;
    let wait_until = Instant::now() + Duration::from_secs(5);
    let mut after = health(client, subjects).await?;
    while after.resident_members < before.resident_members + count && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = health(client, subjects).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    // Let the allocator settle, then read RSS once more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = health(client, subjects).await?;
    let gained = after
        .resident_members
        .saturating_sub(before.resident_members);
    Ok(ResidentFigures {
        members: count,
        resident_members: after.resident_members,
        rss_before: before.rss_bytes,
        rss_after: after.rss_bytes,
        bytes_per_member: after.rss_bytes.saturating_sub(before.rss_bytes) as f64
            / gained.max(1) as f64,
        seconds,
        dropped,
    })
}

fn targets(
    config: &BenchConfig,
    ingest: &IngestFigures,
    rec: &RecommendFigures,
    fresh: &RecommendFigures,
    slow: &SlowModelFigures,
    resident: Option<&ResidentFigures>,
) -> Vec<Target> {
    let mut out = vec![
        Target {
            name: "ingest".into(),
            target: ">= 0.7 x raw NATS pub/sub".into(),
            measured: format!(
                "{:.0} ev/s = {:.2} x {:.0} ev/s",
                ingest.reco_events_per_s, ingest.ratio, ingest.ceiling_events_per_s
            ),
            met: ingest.ratio >= 0.7 && ingest.reco_lost == 0,
        },
        Target {
            name: "recommend throughput".into(),
            target: ">= 0.6 x echo".into(),
            measured: format!(
                "{:.0}/s = {:.2} x {:.0}/s",
                rec.reco.throughput_per_s, rec.throughput_ratio, rec.echo.throughput_per_s
            ),
            met: rec.throughput_ratio >= 0.6,
        },
        Target {
            name: "recommend p99".into(),
            target: "<= echo p99 + 0.5 ms".into(),
            measured: format!(
                "{:.2} ms vs echo {:.2} ms ({:+.2} ms)",
                rec.reco.latency.p99_ms, rec.echo.latency.p99_ms, rec.p99_over_echo_ms
            ),
            met: rec.p99_over_echo_ms <= 0.5,
        },
        Target {
            name: "recommend after an event".into(),
            target: ">= 0.35 x echo + subscriber".into(),
            measured: format!(
                "{:.0}/s = {:.2} x {:.0}/s",
                fresh.reco.throughput_per_s, fresh.throughput_ratio, fresh.echo.throughput_per_s
            ),
            met: fresh.throughput_ratio >= 0.35,
        },
        Target {
            name: "slow model worst reply".into(),
            target: format!("<= deadline + 1 ms = {} ms", config.deadline_ms + 1),
            measured: format!(
                "{:.2} ms ({} late of {})",
                slow.worst_ms, slow.late_replies, slow.reco.replies
            ),
            met: slow.worst_ms <= (config.deadline_ms + 1) as f64 && slow.reco.replies > 0,
        },
    ];
    if let Some(r) = resident {
        out.push(Target {
            name: "memory per resident member".into(),
            target: "<= 1024 bytes".into(),
            measured: format!(
                "{:.0} bytes ({} resident)",
                r.bytes_per_member, r.resident_members
            ),
            met: r.bytes_per_member <= 1024.0 && r.resident_members >= r.members,
        });
    }
    out
}

impl BenchReport {
    /// The report as a table for people.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let w = &mut out;
        let i = &self.ingest;
        let r = &self.recommend;
        let s = &self.slow_model;
        let _ = writeln!(w, "reco-sim bench (seed {})", self.config.seed);
        let _ = writeln!(
            w,
            "{:<34} {:>14} {:>14} {:>8}",
            "figure", "reco", "ceiling", "ratio"
        );
        let _ = writeln!(
            w,
            "{:<34} {:>14.0} {:>14.0} {:>8.2}",
            format!("ingest events/s ({} events)", i.events),
            i.reco_events_per_s,
            i.ceiling_events_per_s,
            i.ratio
        );
        let _ = writeln!(
            w,
            "{:<34} {:>14.0} {:>14.0} {:>8.2}",
            format!("recommend/s ({} in flight)", r.concurrency),
            r.reco.throughput_per_s,
            r.echo.throughput_per_s,
            r.throughput_ratio
        );
        for (name, a, b) in [
            (
                "recommend p50 ms",
                r.reco.latency.p50_ms,
                r.echo.latency.p50_ms,
            ),
            (
                "recommend p90 ms",
                r.reco.latency.p90_ms,
                r.echo.latency.p90_ms,
            ),
            (
                "recommend p99 ms",
                r.reco.latency.p99_ms,
                r.echo.latency.p99_ms,
            ),
            (
                "recommend p99.9 ms",
                r.reco.latency.p999_ms,
                r.echo.latency.p999_ms,
            ),
            (
                "recommend max ms",
                r.reco.latency.max_ms,
                r.echo.latency.max_ms,
            ),
        ] {
            let _ = writeln!(w, "{name:<34} {a:>14.2} {b:>14.2} {:>8.2}", a / b.max(1e-9));
        }
        let _ = writeln!(
            w,
            "recommend sources: {:?}; model scoring {:.3} ms per request (mean)",
            r.reco.by_source, r.model_score_ms
        );
        let f = &self.fresh;
        let _ = writeln!(
            w,
            "{:<34} {:>14.0} {:>14.0} {:>8.2}",
            "after an event: recommend/s",
            f.reco.throughput_per_s,
            f.echo.throughput_per_s,
            f.throughput_ratio
        );
        for (name, a, b) in [
            (
                "after an event: p50 ms",
                f.reco.latency.p50_ms,
                f.echo.latency.p50_ms,
            ),
            (
                "after an event: p99 ms",
                f.reco.latency.p99_ms,
                f.echo.latency.p99_ms,
            ),
        ] {
            let _ = writeln!(w, "{name:<34} {a:>14.2} {b:>14.2} {:>8.2}", a / b.max(1e-9));
        }
        let _ = writeln!(
            w,
            "after an event sources: {:?}; model scoring {:.3} ms per request (mean)",
            f.reco.by_source, f.model_score_ms
        );
        let _ = writeln!(
            w,
            "{:<34} {:>14.2} {:>14} {:>8}",
            format!("slow model worst ms (deadline {})", s.deadline_ms),
            s.worst_ms,
            format!("<= {}", s.deadline_ms + 1),
            ""
        );
        let _ = writeln!(
            w,
            "  slow model: {} replies, p99 {:.2} ms, {} later than deadline + 1 ms, sources {:?}",
            s.reco.replies, s.reco.latency.p99_ms, s.late_replies, s.reco.by_source
        );
        if let Some(m) = &self.resident {
            let _ = writeln!(
                w,
                "{:<34} {:>14.0} {:>14} {:>8}",
                format!("bytes per resident member ({})", m.resident_members),
                m.bytes_per_member,
                "<= 1024",
                ""
            );
        }
        let _ = writeln!(w, "targets:");
        for t in &self.targets {
            let _ = writeln!(
                w,
                "  [{}] {:<28} {:<28} {}",
                if t.met { "met " } else { "MISS" },
                t.name,
                t.target,
                t.measured
            );
        }
        out
    }
}
