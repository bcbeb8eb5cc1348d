//! The operator files under `ops/` name only metrics reco really exports: a
//! dashboard panel or an alert on a renamed metric would stay silently
//! empty. (`promtool check rules` and `promtool test rules` check the rule
//! syntax and behaviour: `ops/check.sh`, run by `.ci/run`.)

use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `"reco_…"` string literal in the workspace's Rust sources: the
/// metric names the code defines.
fn metric_names_in_code() -> BTreeSet<String> {
    fn walk(dir: &Path, names: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("readable source tree") {
            let path = entry.expect("readable entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "data" {
                    walk(&path, names);
                }
            } else if name.ends_with(".rs") {
                let text = std::fs::read_to_string(&path).expect("readable source");
                for (start, _) in text.match_indices("\"reco_") {
                    let rest = &text[start + 1..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    if rest[end..].starts_with('"') {
                        names.insert(rest[..end].to_owned());
                    }
                }
            }
        }
    }
    let mut names = BTreeSet::new();
    walk(root(), &mut names);
    names
}

/// The `reco_…` metric names a PromQL text uses, without the suffixes
/// Prometheus adds to histograms and summaries.
fn metrics_used(promql: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = promql;
    while let Some(at) = rest.find("reco_") {
        let preceded_by_word = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded_by_word {
            let name = &tail[..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            used.insert(base.to_owned());
        }
        rest = &tail[end..];
    }
    used
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_is_json_and_queries_only_metrics_the_code_defines() {
    let path = root().join("ops/grafana/reco.json");
    let text = std::fs::read_to_string(&path).expect("ops/grafana/reco.json exists");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().expect("every panel has an id")),
            "duplicate panel id in {panel}"
        );
    }
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 20, "only {} queries", exprs.len());
    let defined = metric_names_in_code();
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metrics_used(e)).collect();
    let unknown: Vec<&String> = used.difference(&defined).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics no code defines: {unknown:?}"
    );
    for must in [
        "reco_replies_total",
        "reco_recommend_latency_seconds",
        "reco_supervisor_restarts_total",
        "reco_nats_slow_consumer_total",
    ] {
        assert!(used.contains(must), "the dashboard does not show {must}");
    }
}

#[test]
fn the_alerting_rules_use_only_metrics_the_code_defines() {
    let text = std::fs::read_to_string(root().join("ops/prometheus/reco-alerts.yml"))
        .expect("ops/prometheus/reco-alerts.yml exists");
    let exprs: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let used = metrics_used(&exprs);
    let defined = metric_names_in_code();
    let unknown: Vec<&String> = used.difference(&defined).collect();
    assert!(
        unknown.is_empty(),
        "the alerting rules use metrics no code defines: {unknown:?}"
    );
    for must in [
        "reco_replies_total",
        "reco_supervisor_restarts_total",
        "reco_supervisor_escalations_total",
        "reco_nats_slow_consumer_total",
        "reco_node_up",
    ] {
        assert!(used.contains(must), "no alert on {must}");
    }
}

#[test]
fn the_metric_name_scan_finds_names_and_ignores_recording_rules() {
    let used = metrics_used(
        "sum(rate(reco_replies_total[5m])) / reco:replies:rate5m + \
         histogram_quantile(0.9, rate(reco_recommend_latency_seconds_bucket[1m]))",
    );
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        ["reco_recommend_latency_seconds", "reco_replies_total"]
    );
}
