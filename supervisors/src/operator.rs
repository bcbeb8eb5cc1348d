//! The node's HTTP surface: Prometheus metrics on `/metrics` and, beside
//! them on the same address, a small live page for operators on `/` with
//! its data as JSON on `/api/status`.
//!
//! Why a page when Prometheus and Grafana exist: a person who has just
//! started a node (or is looking at one that misbehaves) has no dashboard
//! yet; the page shows what `reco tree`, `reco model` and the metrics say,
//! in one place, with nothing to install: the supervision tree with restart
//! counts and last failures, replies by source and reason and latency
//! percentiles over the last minutes, the model and lists in service, and
//! the partitions each node on the prefix serves (every node answers
//! `admin.health`; the page collects the answers for a moment).
//!
//! It reads only what the node already publishes: the metrics registry
//! (sampled every [`SAMPLE_EVERY`] into a window of [`WINDOW`]) and the
//! node's own admin subjects (`admin.health`, `admin.tree`) over its NATS
//! connection, handed over with [`attach`] once the node has connected.
//! It runs on a thread of its own (a single-threaded tokio runtime), so a
//! slow browser never competes with the request path's arbiters.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use reco_messages::admin::{Health, TreeNode};
use reco_messages::metrics as m;
use reco_messages::{decode, Subjects};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the metrics are sampled for the page's window.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// How far back the page's replies and latency figures reach.
pub const WINDOW: Duration = Duration::from_secs(300);
/// How long the page waits for the node's admin replies.
const ADMIN_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the page collects the health replies of every node on the
/// prefix (for partitions per node): every node answers `admin.health`.
const GATHER_FOR: Duration = Duration::from_millis(250);
/// The page itself: static HTML and script that render `/api/status`.
const PAGE: &str = include_str!("operator.html");
/// Replies to the admin subjects are small; anything larger is refused.
const ADMIN_REPLY_LIMIT: usize = 1 << 20;

/// The node's NATS connection and subjects, once it has them.
static NODE: Mutex<Option<(async_nats::Client, Subjects)>> = Mutex::new(None);

/// Hands the page the node's NATS connection (called by the node once it
/// has connected; before that the page says the node is starting).
pub fn attach(client: async_nats::Client, subjects: Subjects) {
    *NODE.lock().unwrap_or_else(|e| e.into_inner()) = Some((client, subjects));
}

/// Why the HTTP surface could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address is taken or not ours to bind.
    #[error(
        "cannot serve metrics and the operator page on {addr}: {source}. \
Another reco node (or program) may be using it: pass --metrics-addr HOST:PORT \
(or node.metrics_addr in the config file; \"\" disables the endpoint)"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The server thread could not be started.
    #[error("cannot start the HTTP server thread: {0}")]
    Thread(std::io::Error),
}

/// Binds `addr` now (so a taken port is an error at start-up, not a log
/// line later) and serves `/metrics`, `/` and `/api/status` from a thread
/// of its own. Returns the bound address (useful with port 0).
pub fn serve(addr: SocketAddr, handle: PrometheusHandle) -> Result<SocketAddr, ServeError> {
    let listener = TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ServeError::Bind { addr, source })?;
    std::thread::Builder::new()
        .name("reco-http".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(%error, "The HTTP server's runtime could not start.");
                    return;
                }
            };
            runtime.block_on(run(listener, handle));
        })
        .map_err(ServeError::Thread)?;
    Ok(bound)
}

struct State {
    handle: PrometheusHandle,
    window: Mutex<Window>,
    started: Instant,
}

async fn run(listener: TcpListener, handle: PrometheusHandle) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "The HTTP listener could not be registered.");
            return;
        }
    };
    let state = Arc::new(State {
        handle,
        window: Mutex::new(Window::default()),
        started: Instant::now(),
    });
    let sampler = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tick.tick().await;
            sampler.handle.run_upkeep();
            let sample = Sample::parse(&sampler.handle.render());
            sampler
                .window
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Instant::now(), sample);
        }
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "HTTP accept failed.");
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&state, request).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(%error, "HTTP connection ended with an error.");
            }
        });
    }
}

async fn respond(state: &State, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&hyper::Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.handle.render(),
        ),
        (&hyper::Method::GET, "/") => reply(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        (&hyper::Method::GET, "/api/status") => {
            let status = status(state).await;
            match serde_json::to_string(&status) {
                Ok(json) => reply(StatusCode::OK, "application/json", json),
                Err(error) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("cannot encode the status: {error}"),
                ),
            }
        }
        (&hyper::Method::GET, _) => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: reco serves /, /api/status and /metrics\n",
        ),
        _ => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET is served\n",
        ),
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

/// What `/api/status` returns (and the page shows).
#[derive(Debug, Serialize)]
pub struct Status {
    /// Seconds since the HTTP surface started (about the node's uptime).
    pub uptime_s: f64,
    /// When this status was taken, ms since the Unix epoch.
    pub now_ms: u64,
    /// The node's `admin.health` reply; `None` while it is starting or if
    /// it did not answer in time.
    pub health: Option<Health>,
    /// The live supervision tree (`admin.tree`), same conditions.
    pub tree: Option<TreeNode>,
    /// Why health or tree are missing, for the page to show.
    pub admin_error: Option<String>,
    /// Seconds the window covers (less than [`WINDOW`] just after start).
    pub window_s: f64,
    /// Replies in the window by source and reason.
    pub replies: Vec<ReplyCount>,
    /// Replies per second in each sample interval of the window (oldest
    /// first): model and fallback.
    pub rate: Vec<RatePoint>,
    /// Latency percentiles of the replies in the window, ms (`None`
    /// without replies).
    pub latency_ms: Option<Percentiles>,
    /// Every node that answered health on the prefix, by name: where the
    /// partitions are.
    pub nodes: Vec<NodePartitions>,
}

/// One node's place: its mode and the partitions it serves.
#[derive(Debug, Serialize, PartialEq)]
pub struct NodePartitions {
    /// The node's name.
    pub node: String,
    /// `single` or `cluster`.
    pub mode: String,
    /// The partitions it serves now (empty alone).
    pub partitions: Vec<u32>,
    /// The same as ranges, e.g. `0-3, 7, 9-11` (`-` when none).
    pub ranges: String,
    /// Its model version.
    pub model_version: Option<String>,
}

/// `0-3, 7, 9-11` for partitions 0, 1, 2, 3, 7, 9, 10, 11; `-` for none.
fn ranges(partitions: &[u32]) -> String {
    let mut sorted = partitions.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut at = 0;
    while at < sorted.len() {
        let start = sorted[at];
        let mut end = start;
        while at + 1 < sorted.len() && sorted[at + 1] == end + 1 {
            at += 1;
            end += 1;
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        at += 1;
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// The health of every node answering on `subject` within [`GATHER_FOR`],
/// one entry per node name, sorted by name.
async fn gather_nodes(client: &async_nats::Client, subject: String) -> Vec<NodePartitions> {
    use futures::StreamExt as _;
    let inbox = client.new_inbox();
    let Ok(mut replies) = client.subscribe(inbox.clone()).await else {
        return Vec::new();
    };
    if client
        .publish_with_reply(subject, inbox, Bytes::new())
        .await
        .is_err()
    {
        return Vec::new();
    }
    let until = tokio::time::Instant::now() + GATHER_FOR;
    let mut nodes: BTreeMap<String, NodePartitions> = BTreeMap::new();
    while let Ok(Some(message)) = tokio::time::timeout_at(until, replies.next()).await {
        let Ok(health) = decode::<Health>(&message.payload, ADMIN_REPLY_LIMIT) else {
            continue;
        };
        let cluster = health.cluster.unwrap_or_default();
        nodes.insert(
            cluster.node.clone(),
            NodePartitions {
                ranges: ranges(&cluster.partitions),
                node: cluster.node,
                mode: cluster.mode,
                partitions: cluster.partitions,
                model_version: health.model_version,
            },
        );
    }
    nodes.into_values().collect()
}

/// Replies of one (source, reason) in the window.
#[derive(Debug, Serialize, PartialEq)]
pub struct ReplyCount {
    /// `model`, `nearline`, `precomputed`, `popular`.
    pub source: String,
    /// `none`, `deadline`, `overloaded`, `model_unavailable`, `cold_start`.
    pub reason: String,
    /// Replies.
    pub count: f64,
}

/// Replies per second in one sample interval.
#[derive(Debug, Serialize, PartialEq)]
pub struct RatePoint {
    /// Seconds before now (end of the interval).
    pub ago_s: f64,
    /// Model replies per second.
    pub model: f64,
    /// Fallback replies per second (every other source).
    pub fallback: f64,
}

/// Latency percentiles, ms.
#[derive(Debug, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

async fn status(state: &State) -> Status {
    let node = NODE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (health, tree, admin_error, nodes) = match node {
        None => (
            None,
            None,
            Some("the node is starting (not connected to NATS yet)".to_owned()),
            Vec::new(),
        ),
        Some((client, subjects)) => {
            let (health, tree, nodes) = tokio::join!(
                ask::<Health>(&client, subjects.admin_health()),
                ask::<TreeNode>(&client, subjects.admin_tree()),
                gather_nodes(&client, subjects.admin_health())
            );
            let error = match (&health, &tree) {
                (Err(e), _) | (_, Err(e)) => Some(e.clone()),
                _ => None,
            };
            (health.ok(), tree.ok(), error, nodes)
        }
    };
    let window = state.window.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    Status {
        uptime_s: state.started.elapsed().as_secs_f64(),
        now_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        health,
        tree,
        admin_error,
        window_s: window.span(),
        replies: window.replies(),
        rate: window.rate(now),
        latency_ms: window.latency(),
        nodes,
    }
}

async fn ask<T: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: String,
) -> Result<T, String> {
    let what = subject.clone();
    match tokio::time::timeout(ADMIN_TIMEOUT, client.request(subject, Bytes::new())).await {
        Err(_) => Err(format!("{what}: no reply within {ADMIN_TIMEOUT:?}")),
        Ok(Err(error)) => Err(format!("{what}: {error}")),
        Ok(Ok(message)) => {
            decode(&message.payload, ADMIN_REPLY_LIMIT).map_err(|e| format!("{what}: {e}"))
        }
    }
}

/// The figures the page needs from one rendering of the metrics.
#[derive(Clone, Debug, Default, PartialEq)]
struct Sample {
    /// `reco_replies_total` by (source, reason).
    replies: BTreeMap<(String, String), f64>,
    /// `reco_recommend_latency_seconds` cumulative buckets summed over
    /// sources, by upper bound (seconds; `+Inf` as infinity).
    latency: Vec<(f64, f64)>,
}

impl Sample {
    fn parse(text: &str) -> Sample {
        let replies_name = m::REPLIES_TOTAL;
        let bucket_name = format!("{}_bucket", m::RECOMMEND_LATENCY_SECONDS);
        let mut sample = Sample::default();
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, labels_of(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            if name == replies_name {
                let key = (
                    labels.get("source").cloned().unwrap_or_default(),
                    labels.get("reason").cloned().unwrap_or_default(),
                );
                *sample.replies.entry(key).or_default() += value;
            } else if name == bucket_name {
                let le = match labels.get("le").map(String::as_str) {
                    Some("+Inf") => f64::INFINITY,
                    Some(le) => match le.parse::<f64>() {
                        Ok(le) => le,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += value;
            }
        }
        sample.latency = buckets.into_values().collect();
        sample
            .latency
            .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        sample
    }
}

/// `a="x",b="y"` → map (values unescaped for `\"` and `\\`).
fn labels_of(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, next)) = chars.next() {
                        value.push(next);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    labels
}

/// Samples of the last [`WINDOW`] (plus the one just before it, as the
/// base of the deltas).
#[derive(Default)]
struct Window {
    samples: VecDeque<(Instant, Sample)>,
}

impl Window {
    fn push(&mut self, at: Instant, sample: Sample) {
        self.samples.push_back((at, sample));
        while self.samples.len() > 2 && at.duration_since(self.samples[1].0) > WINDOW {
            self.samples.pop_front();
        }
    }

    fn span(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(first), Some(last)) => last.0.duration_since(first.0).as_secs_f64(),
            _ => 0.0,
        }
    }

    fn ends(&self) -> Option<(&Sample, &Sample)> {
        Some((&self.samples.front()?.1, &self.samples.back()?.1))
    }

    fn replies(&self) -> Vec<ReplyCount> {
        let Some((first, last)) = self.ends() else {
            return Vec::new();
        };
        last.replies
            .iter()
            .map(|((source, reason), value)| ReplyCount {
                source: source.clone(),
                reason: reason.clone(),
                count: (value
                    - first
                        .replies
                        .get(&(source.clone(), reason.clone()))
                        .unwrap_or(&0.0))
                .max(0.0),
            })
            .filter(|r| r.count > 0.0)
            .collect()
    }

    fn rate(&self, now: Instant) -> Vec<RatePoint> {
        self.samples
            .iter()
            .zip(self.samples.iter().skip(1))
            .map(|((a_at, a), (b_at, b))| {
                let dt = b_at.duration_since(*a_at).as_secs_f64().max(1e-3);
                let mut model = 0.0;
                let mut fallback = 0.0;
                for (key, value) in &b.replies {
                    let delta = (value - a.replies.get(key).unwrap_or(&0.0)).max(0.0);
                    if key.0 == "model" {
                        model += delta;
                    } else {
                        fallback += delta;
                    }
                }
                RatePoint {
                    ago_s: now.duration_since(*b_at).as_secs_f64(),
                    model: model / dt,
                    fallback: fallback / dt,
                }
            })
            .collect()
    }

    fn latency(&self) -> Option<Percentiles> {
        let (first, last) = self.ends()?;
        let delta: Vec<(f64, f64)> = last
            .latency
            .iter()
            .map(|(le, count)| {
                let before = first
                    .latency
                    .iter()
                    .find(|(l, _)| l == le)
                    .map_or(0.0, |(_, c)| *c);
                (*le, (count - before).max(0.0))
            })
            .collect();
        let total = delta.last()?.1;
        (total > 0.0).then(|| Percentiles {
            p50: quantile(&delta, 0.5) * 1000.0,
            p90: quantile(&delta, 0.9) * 1000.0,
            p99: quantile(&delta, 0.99) * 1000.0,
        })
    }
}

/// The `q` quantile of cumulative buckets, interpolated linearly inside
/// the bucket that holds it (as Prometheus's `histogram_quantile`); the
/// largest finite bound when it falls in `+Inf`.
fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return 0.0;
    };
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return lower.0;
            }
            let inside = count - lower.1;
            return if inside > 0.0 {
                lower.0 + (le - lower.0) * (rank - lower.1) / inside
            } else {
                le
            };
        }
        lower = (le, count);
    }
    lower.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_read_as_ranges() {
        assert_eq!(ranges(&[]), "-");
        assert_eq!(ranges(&[7]), "7");
        assert_eq!(ranges(&[11, 0, 1, 2, 3, 7, 9, 10, 3]), "0-3, 7, 9-11");
    }

    const TEXT: &str = r#"# TYPE reco_replies_total counter
reco_replies_total{source="model",reason="none"} 90
reco_replies_total{source="popular",reason="cold_start"} 10
reco_recommend_latency_seconds_bucket{source="model",le="0.001"} 50
reco_recommend_latency_seconds_bucket{source="model",le="0.01"} 90
reco_recommend_latency_seconds_bucket{source="model",le="+Inf"} 90
reco_recommend_latency_seconds_bucket{source="popular",le="0.001"} 10
reco_recommend_latency_seconds_bucket{source="popular",le="0.01"} 10
reco_recommend_latency_seconds_bucket{source="popular",le="+Inf"} 10
"#;

    #[test]
    fn a_sample_reads_replies_by_source_and_reason_and_sums_latency_buckets() {
        let sample = Sample::parse(TEXT);
        assert_eq!(
            sample.replies[&("model".to_owned(), "none".to_owned())],
            90.0
        );
        assert_eq!(
            sample.latency,
            vec![(0.001, 60.0), (0.01, 100.0), (f64::INFINITY, 100.0)]
        );
    }

    #[test]
    fn the_window_reports_deltas_rates_and_percentiles() {
        let start = Instant::now();
        let mut window = Window::default();
        window.push(start, Sample::default());
        window.push(start + Duration::from_secs(2), Sample::parse(TEXT));
        let replies = window.replies();
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0].count, 90.0);
        let rate = window.rate(start + Duration::from_secs(2));
        assert_eq!(rate.len(), 1);
        assert_eq!((rate[0].model, rate[0].fallback), (45.0, 5.0));
        let latency = window.latency().unwrap();
        // 60 of 100 under 1 ms: the median interpolates inside [0, 1] ms.
        assert!((latency.p50 - 0.5 / 0.6).abs() < 1e-9, "{latency:?}");
        assert!(latency.p99 > 1.0 && latency.p99 <= 10.0, "{latency:?}");
    }

    #[test]
    fn labels_with_escaped_quotes_parse() {
        let labels = labels_of(r#"a="x\"y",b="z""#);
        assert_eq!(labels["a"], "x\"y");
        assert_eq!(labels["b"], "z");
    }
}
