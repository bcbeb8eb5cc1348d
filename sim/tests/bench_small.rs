//! A short `reco-sim bench` against a real (debug) node: every figure the
//! issue names is present, with its ceiling and ratio. Speed is not asserted
//! (debug build, shared cores); the figures only have to exist and be sane.

use reco_sim::bench::{run, BenchConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_bench_reports_every_figure_with_ceilings_and_ratios() {
    let config = BenchConfig {
        events: 2_000,
        items: 500,
        factors: 16,
        concurrency: 4,
        duration_s: 0.5,
        residents: 2_000,
        ..BenchConfig::default()
    };
    let report = run(config, |_| {}).await.unwrap();
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    let number = |path: &str| {
        json.pointer(path)
            .and_then(|v| v.as_f64())
            .unwrap_or_else(|| panic!("{path} missing in {json:#}"))
    };
    for path in [
        "/ingest/ceiling_events_per_s",
        "/ingest/reco_events_per_s",
        "/ingest/ratio",
        "/recommend/echo/throughput_per_s",
        "/recommend/reco/throughput_per_s",
        "/recommend/throughput_ratio",
        "/recommend/echo/latency/p99_ms",
        "/recommend/reco/latency/p50_ms",
        "/recommend/reco/latency/p90_ms",
        "/recommend/reco/latency/p99_ms",
        "/recommend/reco/latency/p999_ms",
        "/recommend/reco/latency/max_ms",
        "/recommend/p99_ratio",
        "/recommend/p99_over_echo_ms",
        "/recommend/model_score_ms",
        "/fresh/echo/throughput_per_s",
        "/fresh/reco/throughput_per_s",
        "/fresh/throughput_ratio",
        "/fresh/echo/latency/p99_ms",
        "/fresh/reco/latency/p99_ms",
        "/fresh/p99_over_echo_ms",
        "/slow_model/worst_ms",
        "/slow_model/worst_over_deadline_ms",
        "/resident/bytes_per_member",
    ] {
        assert!(
            number(path) > 0.0 || path.ends_with("_ms"),
            "{path} = {} in {json:#}",
            number(path)
        );
    }
    assert_eq!(report.ingest.reco_lost, 0, "{}", report.table());
    assert!(report.recommend.reco.replies > 0 && report.recommend.echo.replies > 0);
    assert!(
        report
            .slow_model
            .reco
            .by_source
            .keys()
            .any(|s| s != "model"),
        "{}",
        report.table()
    );
    assert_eq!(report.resident.as_ref().unwrap().resident_members, 2_000);
    // After a fresh event the model is asked (nothing can be reused).
    assert!(report.fresh.reco.replies > 0 && report.fresh.echo.replies > 0);
    assert!(report.table().contains("after an event"));
    assert_eq!(report.targets.len(), 6);
    assert!(report.table().contains("ratio"));
}
