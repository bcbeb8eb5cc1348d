//! What a run measured, as JSON for machines and a table for people.
//!
//! The report is honest by construction: every figure says what was counted
//! and over which window, requests that got no reply are counted (never
//! dropped from the latency histogram silently), and fault windows are
//! listed with what was observed inside them, including faults the node
//! refused.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Percentiles of a latency histogram recorded in microseconds, in
/// milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Worst.
    pub max_ms: f64,
}

impl Latency {
    /// Summarises a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// A new histogram of microseconds, 1 µs to 1 h, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

/// Quality of what one source served, against members' true tastes.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Quality {
    /// Replies judged.
    pub replies: u64,
    /// Share of replies with at least one truly relevant item in the top k.
    pub hit_rate: f64,
    /// Mean NDCG at k (binary relevance: the member's true top `2k` unseen items).
    pub ndcg: f64,
}

/// One second of the run.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Bucket {
    /// Seconds since the start of the run (end of the bucket).
    pub t_s: f64,
    /// Events published in the bucket.
    pub events: u64,
    /// Replies received.
    pub replies: u64,
    /// Median latency.
    pub p50_ms: f64,
    /// 90th percentile latency.
    pub p90_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Share of replies not from the model.
    pub fallback_share: f64,
}

/// A fault as scheduled and as it happened.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FaultRecord {
    /// Kind and parameters, e.g. `model_slow(delay_ms=120)`.
    pub fault: String,
    /// Start, seconds since the start of the run.
    pub start_s: f64,
    /// End, seconds since the start of the run.
    pub end_s: f64,
    /// `applied`, or why not (`unsupported: …`, `failed: …`).
    pub outcome: String,
    /// Replies inside the window.
    pub replies: u64,
    /// Share of replies not from the model inside the window.
    pub fallback_share: f64,
    /// Worst per-second p99 inside the window.
    pub worst_p99_ms: f64,
    /// Fault-specific observation (e.g. payloads the node rejected).
    pub note: String,
}

/// What one cohort saw (experiment: even member ids, control: odd).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Cohort {
    /// Lists received.
    pub replies: u64,
    /// Their latency.
    pub latency: Latency,
    /// Share not from the model.
    pub fallback_share: f64,
    /// Later than deadline + margin.
    pub late_replies: u64,
    /// Without any reply.
    pub no_reply: u64,
}

/// The report of one `run` (or the reco part of a demo).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// World seed.
    pub seed: u64,
    /// Wall-clock length of the load, seconds.
    pub duration_s: f64,
    /// Digest of the world's event stream as published (same seed → same digest).
    pub stream_digest: String,
    /// Events published by the simulator.
    pub events_published: u64,
    /// Extra plays published by freshness probes (reactions to served
    /// lists: node-dependent, so outside the digest).
    pub probe_events: u64,
    /// Published per second.
    pub events_per_s: f64,
    /// Events the node counted as ingested during the run (metrics), if known.
    pub node_events_ingested: Option<f64>,
    /// Node-ingested per second, if known.
    pub node_events_per_s: Option<f64>,
    /// Payloads the node rejected during the run, if known.
    pub node_events_rejected: Option<f64>,
    /// Requests sent.
    pub requests: u64,
    /// Lists received.
    pub replies: u64,
    /// Lists per second.
    pub replies_per_s: f64,
    /// Latency of lists received.
    pub latency: Latency,
    /// Replies by `source`.
    pub by_source: BTreeMap<String, u64>,
    /// Replies by `reason` (`none` for a healthy model reply).
    pub by_reason: BTreeMap<String, u64>,
    /// Error replies and transport errors by code.
    pub errors: BTreeMap<String, u64>,
    /// Deadline used in requests, ms.
    pub deadline_ms: u64,
    /// Margin over the deadline before a reply counts as late, ms.
    pub late_margin_ms: f64,
    /// Replies later than deadline + margin.
    pub late_replies: u64,
    /// Requests that got no reply at all within the wait.
    pub no_reply: u64,
    /// Requests the simulator itself did not send because too many were
    /// already in flight (the open loop outran the node).
    pub shed_by_simulator: u64,
    /// Play → first reply that no longer shows the played item.
    pub freshness: Latency,
    /// Quality per source.
    pub quality: BTreeMap<String, Quality>,
    /// Slow-consumer events seen by the simulator's NATS client.
    pub slow_consumer_sim: u64,
    /// Slow-consumer events the node counted during the run, if known.
    pub slow_consumer_node: Option<f64>,
    /// Largest RSS the node reported, bytes.
    pub node_rss_bytes_max: u64,
    /// Members resident in the node at the end.
    pub node_resident_members: u64,
    /// Faults injected.
    pub faults: Vec<FaultRecord>,
    /// Per-second timeline.
    pub timeline: Vec<Bucket>,
    /// Experiment vs. control, when the run split members into cohorts.
    pub cohorts: BTreeMap<String, Cohort>,
}

impl Report {
    /// Share of replies not from the model.
    pub fn fallback_share(&self) -> f64 {
        let model = self.by_source.get("model").copied().unwrap_or(0);
        if self.replies == 0 {
            0.0
        } else {
            1.0 - model as f64 / self.replies as f64
        }
    }

    /// The report as a table for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(
            w,
            "reco-sim report (seed {}, {:.1} s, stream digest {})",
            self.seed, self.duration_s, self.stream_digest
        );
        let _ = writeln!(
            w,
            "  events        {:>10} published  {:>10.0}/s  (+{} freshness-probe plays)",
            self.events_published, self.events_per_s, self.probe_events
        );
        if let (Some(n), Some(r)) = (self.node_events_ingested, self.node_events_per_s) {
            let _ = writeln!(
                w,
                "                {n:>10.0} ingested   {r:>10.0}/s  (rejected {:.0})",
                self.node_events_rejected.unwrap_or(0.0)
            );
        }
        let _ = writeln!(
            w,
            "  requests      {:>10} sent       {:>10} lists  {:.0}/s",
            self.requests, self.replies, self.replies_per_s
        );
        let l = &self.latency;
        let _ = writeln!(
            w,
            "  latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
        let _ = writeln!(w, "  deadline      {} ms + {} ms margin: {} late, {} without reply, {} shed by the simulator", self.deadline_ms, self.late_margin_ms, self.late_replies, self.no_reply, self.shed_by_simulator);
        let _ = writeln!(w, "  sources       {}", join(&self.by_source, self.replies));
        let _ = writeln!(w, "  reasons       {}", join(&self.by_reason, self.replies));
        if !self.errors.is_empty() {
            let _ = writeln!(w, "  errors        {}", join(&self.errors, 0));
        }
        let f = &self.freshness;
        let _ = writeln!(
            w,
            "  freshness ms  {} probes  p50 {:.2}  p99 {:.2}  max {:.2}",
            f.count, f.p50_ms, f.p99_ms, f.max_ms
        );
        let _ = writeln!(w, "  quality       source        replies  hit@k   ndcg@k");
        for (source, q) in &self.quality {
            let _ = writeln!(
                w,
                "                {source:<12} {:>8}  {:.3}   {:.3}",
                q.replies, q.hit_rate, q.ndcg
            );
        }
        let _ = writeln!(
            w,
            "  slow consumer sim {}  node {}",
            self.slow_consumer_sim,
            self.slow_consumer_node
                .map_or("?".into(), |n| format!("{n:.0}"))
        );
        let _ = writeln!(
            w,
            "  node          RSS max {:.1} MiB, {} resident members",
            self.node_rss_bytes_max as f64 / 1048576.0,
            self.node_resident_members
        );
        for (name, c) in &self.cohorts {
            let _ = writeln!(
                w,
                "  cohort        {name:<10} {:>8} lists  p50 {:.2}  p99 {:.2}  max {:.2} ms  fallback {:.1}%  late {}  no reply {}",
                c.replies, c.latency.p50_ms, c.latency.p99_ms, c.latency.max_ms, c.fallback_share * 100.0, c.late_replies, c.no_reply
            );
        }
        for fault in &self.faults {
            let _ = writeln!(w, "  fault         {} {:.1}-{:.1} s: {}; {} replies, fallback {:.0}%, worst p99 {:.2} ms{}", fault.fault, fault.start_s, fault.end_s, fault.outcome, fault.replies, fault.fallback_share * 100.0, fault.worst_p99_ms, if fault.note.is_empty() { String::new() } else { format!("; {}", fault.note) });
        }
        out
    }
}

fn join(map: &BTreeMap<String, u64>, total: u64) -> String {
    map.iter()
        .map(|(k, v)| {
            if total > 0 {
                format!("{k} {v} ({:.1}%)", *v as f64 * 100.0 / total as f64)
            } else {
                format!("{k} {v}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
