//! The demo: without `nats-server` on the PATH it fails with the install
//! hint; with it, a shortened run goes end to end.

use std::process::Command;

#[test]
fn demo_without_nats_server_says_how_to_install_it() {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_reco-sim"))
        .args(["demo", "--duration", "1"])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nats-server is not installed"), "{stderr}");
    assert!(
        stderr.contains("apt-get install -y nats-server"),
        "{stderr}"
    );
}

/// The demo end to end, shortened: trains on MovieLens, serves, drives
/// synthetic members with its one fault, and reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_demo_trains_serves_and_reports_its_fault() {
    let options = reco_sim::demo::DemoOptions {
        nats: None,
        ratings: reco_sim::demo::default_ratings(),
        seed: 1,
        members: 300,
        duration: std::time::Duration::from_secs(3),
        rps: 100.0,
        events_per_sec: 1_000.0,
        progress: false,
    };
    let report = reco_sim::demo::demo(options, |_| {}).await.unwrap();
    let table = report.table();
    assert!(report.replies > 0, "{table}");
    assert_eq!(report.faults.len(), 1, "{table}");
    assert_eq!(report.faults[0].outcome, "applied", "{table}");
    assert!(report.node_events_ingested.unwrap_or(0.0) > 0.0, "{table}");
}
