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
    /// The fallback share split by the replies' `reason` (`deadline`,
    /// `cold_start`, …; `none` for a nearline list that answered without
    /// being degraded): shares of all replies of the bucket.
    pub fallback_by_reason: BTreeMap<String, f64>,
}

/// The fallback reasons, in the order reports and plots show them, with
/// what each means for a reader who has not read the wire contract.
pub const REASONS: [(&str, &str); 5] = [
    (
        "deadline",
        "the model did not answer in time; the member's latest list answered",
    ),
    (
        "overloaded",
        "the model pool or the member's shard was full; shed to the fallback",
    ),
    (
        "model_unavailable",
        "no model loaded or its workers down (crash, restart)",
    ),
    (
        "cold_start",
        "the member had sent no event the model knows yet: its precomputed list, \
else the popular list, answers by design (not a failure)",
    ),
    (
        "none",
        "a fresh nearline list answered without being degraded",
    ),
];

/// One line of the verdict: a target and whether the run met it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Check {
    /// What is judged.
    pub what: String,
    /// The target, in words.
    pub target: String,
    /// What the run showed.
    pub observed: String,
    /// Whether the target was met.
    pub met: bool,
}

/// Highest share of degraded replies (deadline, overloaded,
/// model_unavailable) outside fault windows that still passes: the
/// threshold of the `RecoDeadlineMissesHigh` alert in `ops/prometheus`.
pub const HEALTHY_FALLBACK_TARGET: f64 = 0.05;

/// Fewest judged replies per source before a quality comparison counts.
const QUALITY_MIN_REPLIES: u64 = 20;

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
    /// What degradation cost, from the node's counterfactual log (late
    /// model lists beside what was served); `None` when the model missed no
    /// deadline and nothing was logged.
    pub degradation: Option<crate::counterfactual::DegradationCost>,
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

    /// Share of replies outside every fault window that were degraded by
    /// the node's health (deadline, overloaded, model_unavailable; not cold
    /// starts), from the per-second timeline; `None` without such replies.
    pub fn degraded_share_outside_faults(&self) -> Option<f64> {
        let mut replies = 0.0;
        let mut degraded = 0.0;
        for bucket in &self.timeline {
            let start = bucket.t_s - 1.0;
            let in_fault = self
                .faults
                .iter()
                .any(|f| start < f.end_s + 1.0 && bucket.t_s > f.start_s);
            if in_fault {
                continue;
            }
            replies += bucket.replies as f64;
            degraded += bucket.replies as f64
                * ["deadline", "overloaded", "model_unavailable"]
                    .iter()
                    .map(|r| bucket.fallback_by_reason.get(*r).copied().unwrap_or(0.0))
                    .sum::<f64>();
        }
        (replies > 0.0).then(|| degraded / replies)
    }

    /// The run judged against reco's targets: every request answered, no
    /// reply after the deadline, the model answering outside faults, each
    /// fault absorbed within the deadline, the model ranking better than
    /// the popular list, no slow consumer.
    pub fn verdict(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        let limit = self.deadline_ms as f64 + self.late_margin_ms;
        let errors: u64 = self.errors.values().sum();
        checks.push(Check {
            what: "every request answered".into(),
            target: "no request without a reply, no error reply".into(),
            observed: format!(
                "{} of {} without reply, {errors} errors, {} not sent (simulator saturated)",
                self.no_reply, self.requests, self.shed_by_simulator
            ),
            met: self.no_reply == 0 && errors == 0 && self.shed_by_simulator == 0,
        });
        checks.push(Check {
            what: "replies by the deadline".into(),
            target: format!(
                "none later than {} ms + {} ms margin",
                self.deadline_ms, self.late_margin_ms
            ),
            observed: format!(
                "{} late of {}, worst {:.2} ms",
                self.late_replies, self.replies, self.latency.max_ms
            ),
            met: self.late_replies == 0 && self.latency.max_ms <= limit,
        });
        if let Some(share) = self.degraded_share_outside_faults() {
            checks.push(Check {
                what: "model answers outside faults".into(),
                target: format!(
                    "≤ {:.0}% degraded (deadline, overloaded, model_unavailable; cold starts excluded)",
                    HEALTHY_FALLBACK_TARGET * 100.0
                ),
                observed: format!("{:.1}% degraded", share * 100.0),
                met: share <= HEALTHY_FALLBACK_TARGET,
            });
        }
        for fault in &self.faults {
            let applied = fault.outcome == "applied";
            checks.push(Check {
                what: format!("fault {} absorbed", fault.fault),
                target: format!("applied, and its replies within {limit} ms at p99"),
                observed: format!(
                    "{}; {} replies, {:.0}% from a fallback, worst p99 {:.2} ms",
                    fault.outcome,
                    fault.replies,
                    fault.fallback_share * 100.0,
                    fault.worst_p99_ms
                ),
                met: applied && fault.replies > 0 && fault.worst_p99_ms <= limit,
            });
        }
        if let (Some(model), Some(popular)) =
            (self.quality.get("model"), self.quality.get("popular"))
        {
            if model.replies >= QUALITY_MIN_REPLIES && popular.replies >= QUALITY_MIN_REPLIES {
                checks.push(Check {
                    what: "personalisation pays".into(),
                    target: "model NDCG@k above the popular list's".into(),
                    observed: format!("model {:.3} vs popular {:.3}", model.ndcg, popular.ndcg),
                    met: model.ndcg > popular.ndcg,
                });
            }
        }
        let node_slow = self.slow_consumer_node.unwrap_or(0.0);
        checks.push(Check {
            what: "no message dropped by NATS".into(),
            target: "no slow-consumer event, simulator or node".into(),
            observed: format!(
                "simulator {}, node {}",
                self.slow_consumer_sim,
                self.slow_consumer_node
                    .map_or("unknown".into(), |n| format!("{n:.0}"))
            ),
            met: self.slow_consumer_sim == 0 && node_slow == 0.0,
        });
        checks
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
        let fallbacks: u64 = self
            .by_reason
            .iter()
            .filter(|(r, _)| r.as_str() != "none")
            .map(|(_, n)| n)
            .sum();
        let _ = writeln!(
            w,
            "  fallbacks     {fallbacks} of {} replies ({:.1}%) answered by a list instead of the model, by reason:",
            self.replies,
            if self.replies > 0 { fallbacks as f64 * 100.0 / self.replies as f64 } else { 0.0 }
        );
        for (reason, meaning) in REASONS {
            if reason == "none" {
                continue;
            }
            let n = self.by_reason.get(reason).copied().unwrap_or(0);
            let _ = writeln!(
                w,
                "    {reason:<18}{n:>8} ({:>5.1}%)  {meaning}",
                if self.replies > 0 {
                    n as f64 * 100.0 / self.replies as f64
                } else {
                    0.0
                }
            );
        }
        for (reason, n) in &self.by_reason {
            if reason != "none" && !REASONS.iter().any(|(r, _)| r == reason) {
                let _ = writeln!(w, "    {reason:<18}{n:>8}");
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(w, "  errors        {}", join(&self.errors, 0));
        }
        let f = &self.freshness;
        let _ = writeln!(
            w,
            "  freshness ms  {} probes  p50 {:.2}  p99 {:.2}  max {:.2}",
            f.count, f.p50_ms, f.p99_ms, f.max_ms
        );
        let _ = writeln!(
            w,
            "  quality       judged against each member's true taste (members whose id is a multiple of 10):"
        );
        let _ = writeln!(
            w,
            "                hit@k = share of replies with at least one of the member's true top-2k unseen items;"
        );
        let _ = writeln!(
            w,
            "                ndcg@k = how high those items rank (1 = all at the top, 0 = none shown)"
        );
        let _ = writeln!(w, "                source        replies  hit@k   ndcg@k");
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
        if let Some(d) = &self.degradation {
            let _ = writeln!(
                w,
                "  degradation   {} late model lists logged by the node (counterfactual log, sampled), served instead: {}",
                d.records,
                join(&d.by_served_source, d.records)
            );
            let _ = writeln!(
                w,
                "                overlap {:.3} (share of the late list also served); the model was late by p50 {:.0} ms, max {:.0} ms",
                d.overlap, d.late.p50_ms, d.late.max_ms
            );
            let _ = writeln!(
                w,
                "                judged {:>5}  late model hit@k {:.3} ndcg@k {:.3}  served hit@k {:.3} ndcg@k {:.3}  ndcg lost {:+.3}",
                d.judged, d.late_hit_rate, d.late_ndcg, d.served_hit_rate, d.served_ndcg, d.ndcg_lost
            );
        }
        for fault in &self.faults {
            let _ = writeln!(w, "  fault         {} {:.1}-{:.1} s: {}; {} replies, fallback {:.0}%, worst p99 {:.2} ms{}", fault.fault, fault.start_s, fault.end_s, fault.outcome, fault.replies, fault.fallback_share * 100.0, fault.worst_p99_ms, if fault.note.is_empty() { String::new() } else { format!("; {}", fault.note) });
        }
        let checks = self.verdict();
        let met = checks.iter().filter(|c| c.met).count();
        let _ = writeln!(
            w,
            "verdict: {} ({met} of {} targets met)",
            if met == checks.len() { "PASS" } else { "FAIL" },
            checks.len()
        );
        for check in &checks {
            let _ = writeln!(
                w,
                "  {} {}\n           target {}\n           saw    {}",
                if check.met { "met   " } else { "MISSED" },
                check.what,
                check.target,
                check.observed
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(t: f64, deadline_share: f64) -> Bucket {
        Bucket {
            t_s: t,
            replies: 100,
            fallback_share: deadline_share + 0.2,
            fallback_by_reason: [
                ("deadline".to_owned(), deadline_share),
                ("cold_start".to_owned(), 0.2),
            ]
            .into_iter()
            .collect(),
            ..Bucket::default()
        }
    }

    fn report() -> Report {
        Report {
            deadline_ms: 50,
            late_margin_ms: 1.0,
            requests: 1_000,
            replies: 1_000,
            latency: Latency {
                max_ms: 49.7,
                ..Latency::default()
            },
            by_source: [("model".to_owned(), 700), ("popular".to_owned(), 300)].into(),
            by_reason: [
                ("none".to_owned(), 700),
                ("cold_start".to_owned(), 200),
                ("deadline".to_owned(), 100),
            ]
            .into(),
            quality: [
                (
                    "model".to_owned(),
                    Quality {
                        replies: 50,
                        hit_rate: 0.6,
                        ndcg: 0.2,
                    },
                ),
                (
                    "popular".to_owned(),
                    Quality {
                        replies: 30,
                        hit_rate: 0.3,
                        ndcg: 0.1,
                    },
                ),
            ]
            .into(),
            slow_consumer_node: Some(0.0),
            // Deadline misses only inside the fault (seconds 4-6).
            timeline: (1..=10)
                .map(|t| bucket(t as f64, if (5..=6).contains(&t) { 0.9 } else { 0.01 }))
                .collect(),
            faults: vec![FaultRecord {
                fault: "model_slow(delay_ms=120)".into(),
                start_s: 4.0,
                end_s: 6.0,
                outcome: "applied".into(),
                replies: 200,
                fallback_share: 0.9,
                worst_p99_ms: 49.5,
                note: String::new(),
            }],
            ..Report::default()
        }
    }

    #[test]
    fn a_run_within_the_deadline_that_absorbs_its_fault_passes() {
        let report = report();
        let checks = report.verdict();
        assert!(checks.iter().all(|c| c.met), "{checks:#?}");
        let share = report.degraded_share_outside_faults().unwrap();
        assert!(
            (share - 0.01).abs() < 1e-9,
            "cold starts and the fault's window are left out: {share}"
        );
        assert!(report
            .table()
            .contains("verdict: PASS (6 of 6 targets met)"));
    }

    #[test]
    fn late_replies_and_a_slow_model_outside_faults_fail_the_verdict() {
        let mut report = report();
        report.late_replies = 3;
        report.latency.max_ms = 52.8;
        report.timeline[0] = bucket(1.0, 0.5);
        let table = report.table();
        assert!(
            table.contains("verdict: FAIL (4 of 6 targets met)"),
            "{table}"
        );
        assert!(table.contains("MISSED replies by the deadline"), "{table}");
        assert!(
            table.contains("MISSED model answers outside faults"),
            "{table}"
        );
    }

    #[test]
    fn the_table_splits_fallbacks_by_reason_and_explains_cold_starts_and_quality() {
        let table = report().table();
        assert!(
            table.contains("300 of 1000 replies (30.0%) answered by a list"),
            "{table}"
        );
        assert!(
            table.contains("deadline               100 ( 10.0%)"),
            "{table}"
        );
        assert!(
            table.contains("cold_start             200 ( 20.0%)"),
            "{table}"
        );
        assert!(
            table.contains("answers by design (not a failure)"),
            "{table}"
        );
        assert!(table.contains("hit@k = share of replies"), "{table}");
        assert!(table.contains("ndcg@k = how high"), "{table}");
    }
}
