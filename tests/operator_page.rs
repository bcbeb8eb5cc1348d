//! The operator page `reco serve` serves beside `/metrics`, loaded in a
//! real browser (Debian's headless Chromium): it shows the supervision
//! tree, and after an injected fault it shows the restart and the failure.
//!
//! Chromium comes from `scripts/test.sh` (it installs Debian's `chromium`
//! when missing); without it this test fails with that hint, never skips.

use reco_e2e::{ask, play, Fixture, NatsServer, Node};
use reco_messages::admin::SetFaults;
use reco_messages::{decode, encode, Subjects};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The Chromium binary: `RECO_CHROMIUM`, else `chromium` or
/// `chromium-browser` on the PATH.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("RECO_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser"] {
        if let Some(found) = std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
        {
            return found;
        }
    }
    panic!(
        "the operator page test needs Chromium: install Debian's package \
         (apt-get install -y chromium; scripts/test.sh does) or set RECO_CHROMIUM"
    );
}

/// GET `path` from `addr` (HTTP/1.0), the body as text.
fn get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the node's HTTP address");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// The page's DOM after its script ran (headless, a fresh profile).
fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().expect("temporary profile directory");
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("cannot run chromium");
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && dom.contains("<html"),
        "chromium failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    dom
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_page_shows_the_tree_and_the_restart_after_an_injected_fault() {
    chromium();
    let nats = NatsServer::start();
    let fixture = Fixture::write(500, 16, 10, "fixture-page");
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[node]\nfault_injection = true\n[supervision.model]\nbackoff_min_ms = 10\nbackoff_max_ms = 50\n",
    );
    let page = format!("http://{}/", node.http_addr());

    let before = tokio::task::spawn_blocking({
        let page = page.clone();
        move || dump_dom(&page)
    })
    .await
    .unwrap();
    for name in [
        "root",
        "model",
        "worker-0",
        "sessions",
        "ingress",
        "telemetry",
    ] {
        assert!(
            before.contains(&format!(r#"data-name="{name}""#)),
            "the page shows no {name} in the tree:\n{before}"
        );
    }
    assert!(
        before.contains("fixture-page"),
        "no model version:\n{before}"
    );
    assert!(
        before.contains(r#"data-mode="single""#),
        "the partitions table does not show the node alone:\n{before}"
    );
    assert!(
        !before.contains(r#"class="restarts some""#) && !before.contains(r#"class="failure""#),
        "a restart before any fault:\n{before}"
    );

    // The fault: every scoring request panics its worker.
    let client = nats.client().await;
    let faults = SetFaults {
        model_panic_every: Some(1),
        ..Default::default()
    };
    let reply = client
        .request(Subjects::default().admin_faults(), encode(&faults).into())
        .await
        .unwrap();
    assert!(decode::<reco_messages::admin::Faults>(&reply.payload, 1 << 20).is_ok());
    play(&client, 3, fixture.items[0]).await;
    node.wait_metric(Duration::from_secs(30), "the play to be ingested", |m| {
        reco_e2e::metric_sum(m, "reco_events_ingested_total", &[]) >= 1.0
    })
    .await;
    let _ = ask(&client, 3, 500).await;
    node.wait_metric(Duration::from_secs(30), "a model worker restart", |m| {
        reco_e2e::metric_sum(m, "reco_supervisor_restarts_total", &[]) >= 1.0
    })
    .await;

    // The page's window is sampled every 2 s: wait until its data has the
    // fallback replies before loading it.
    let status = format!("{}", node.http_addr());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let json = get(&status, "/api/status");
        if json.contains("model_unavailable") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page's data never showed the fallback:\n{json}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = tokio::task::spawn_blocking(move || dump_dom(&page))
        .await
        .unwrap();
    assert!(
        after.contains(r#"class="restarts some""#)
            && after.contains(r#"class="failure">last failure"#),
        "the page does not show the restart:\n{after}"
    );
    assert!(
        after.contains(r#"data-reason="model_unavailable""#),
        "the replies table does not show the fallback's reason:\n{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_page_shows_the_partitions_of_every_node() {
    use reco_cluster::testing::NatsServer as ConfiguredServer;
    use reco_cluster::ServerConfig;
    const PARTITIONS: u32 = 8;
    chromium();
    let server = ConfiguredServer::start(
        ServerConfig::new()
            .partitions(&Subjects::default(), PARTITIONS)
            .unwrap(),
    );
    let fixture = Fixture::write(300, 8, 10, "fixture-parts");
    let config = |id: &str| {
        format!(
            "[node]\nshards = 1\n[model]\nworkers = 1\n[nearline]\nenabled = false\n\
             [cluster]\nnode_id = \"{id}\"\npartitions = {PARTITIONS}\nlease_ms = 1000\n"
        )
    };
    let nodes: Vec<Node> = ["node-a", "node-b"]
        .iter()
        .map(|id| Node::start(&server.url(), Some(fixture.path()), &config(id)))
        .collect();
    // Wait until the two nodes serve every partition between them.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while nodes
        .iter()
        .map(|n| n.metric("reco_partition_serving", &[]))
        .sum::<f64>()
        < f64::from(PARTITIONS)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the partitions were never all served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = format!("http://{}/", nodes[0].http_addr());
    let dom = tokio::task::spawn_blocking(move || dump_dom(&page))
        .await
        .unwrap();
    let mut served = 0;
    for (id, node) in ["node-a", "node-b"].iter().zip(&nodes) {
        let count = node.metric("reco_partition_serving", &[]) as u32;
        served += count;
        assert!(
            dom.contains(&format!(
                r#"data-node="{id}" data-mode="cluster" data-partitions="{count}""#
            )),
            "the page does not show {id} with its {count} partitions:\n{dom}"
        );
    }
    assert_eq!(served, PARTITIONS);
}

#[test]
fn a_taken_metrics_port_is_refused_at_start_with_a_hint_about_metrics_addr() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = Command::new(reco_e2e::reco_binary())
        .args([
            "serve",
            "--nats",
            "nats://127.0.0.1:1",
            "--metrics-addr",
            &addr,
        ])
        .env_remove("RECO_NATS_URL")
        .output()
        .expect("reco runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&addr) && stderr.contains("pass --metrics-addr"),
        "{stderr}"
    );
}
