//! The Python producer and caller of `examples/python/` against a real
//! nats-server and a real `reco serve` node: what a user in another
//! language copies must keep working with the wire contract.
//!
//! The examples run in a venv under `target/python-venv` made by
//! `scripts/python-venv.sh` (pinned nats-py and msgpack; it installs
//! Debian's python3-venv when missing). Without Python the test fails with
//! the script's message: it never skips.

use reco_e2e::{Fixture, NatsServer, Node};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, made once per test binary.
fn python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = PYTHON.get_or_init(|| {
        let output = Command::new("bash")
            .arg(root().join("scripts/python-venv.sh"))
            .output()
            .map_err(|e| format!("cannot run scripts/python-venv.sh: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "the Python examples need python3 with nats-py and msgpack, and \
                 scripts/python-venv.sh could not set them up:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Ok(root().join(path))
    });
    match made {
        Ok(path) => path,
        Err(why) => panic!("{why}"),
    }
}

fn run_example(script: &str, args: &[&str]) -> Output {
    Command::new(python())
        .arg(root().join("examples/python").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `caller.py --json` and returns the reply it printed.
fn recommend(url: &str, member: u64) -> serde_json::Value {
    let member = member.to_string();
    let out = run_example(
        "caller.py",
        &[
            "--nats",
            url,
            "--member",
            &member,
            "--k",
            "10",
            "--deadline-ms",
            "200",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "caller.py failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("caller.py printed no JSON ({e}):\n{}", text(&out.stdout)))
}

fn items(reply: &serde_json::Value) -> Vec<u64> {
    reply["items"]
        .as_array()
        .expect("items is a list")
        .iter()
        .map(|i| i["item"].as_u64().expect("item ids are u64"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_producer_plays_an_item_and_python_caller_gets_a_list_without_it() {
    python();
    let nats = NatsServer::start();
    let fixture = Fixture::write(500, 16, 10, "fixture-py");
    let node = Node::start(&nats.url(), Some(fixture.path()), "");
    let member = 42; // no precomputed list: cold until it plays

    let cold = recommend(&nats.url(), member);
    assert_eq!(cold["member"], member, "{cold}");
    assert_eq!(cold["reason"], "cold_start", "{cold}");
    assert_eq!(
        cold["subject"],
        format!("reco.recommend.{member}"),
        "{cold}"
    );
    let first = items(&cold)[0];

    let played = first.to_string();
    let out = run_example(
        "producer.py",
        &[
            "--nats",
            &nats.url(),
            "--member",
            &member.to_string(),
            "--item",
            &played,
            "--kind",
            "play",
            "--value",
            "1200",
            "--device",
            "tv",
        ],
    );
    assert!(
        out.status.success(),
        "producer.py failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The gate: the node has taken the Python event in (and rejected none).
    node.wait_metric(Duration::from_secs(30), "the play to be ingested", |m| {
        reco_e2e::metric_sum(m, "reco_events_ingested_total", &["kind=\"play\""]) >= 1.0
    })
    .await;
    assert_eq!(node.metric("reco_events_rejected_total", &[]), 0.0);

    let warm = recommend(&nats.url(), member);
    let warm_items = items(&warm);
    assert_eq!(warm_items.len(), 10, "{warm}");
    assert!(
        !warm_items.contains(&first),
        "the played item {first} is still recommended: {warm}"
    );
    assert_ne!(warm["reason"], "cold_start", "{warm}");
    assert_eq!(warm["model_version"], fixture.version, "{warm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_caller_tries_the_fallback_subject_and_says_when_nobody_answers() {
    python();
    let nats = NatsServer::start();
    // No node on this server: both subjects meet "no responders".
    let out = run_example(
        "caller.py",
        &[
            "--nats",
            &nats.url(),
            "--member",
            "7",
            "--deadline-ms",
            "50",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("reco.recommend.7: no responders")
            && stderr.contains("reco.fallback.recommend.7: no responders")
            && stderr.contains("is a `reco serve` node running"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_caller_reports_reco_error_replies() {
    python();
    let nats = NatsServer::start();
    let fixture = Fixture::write(100, 8, 0, "fixture-py-err");
    let _node = Node::start(&nats.url(), Some(fixture.path()), "");
    // k = 0 is out of range: the node answers with an ErrorReply.
    let out = run_example(
        "caller.py",
        &["--nats", &nats.url(), "--member", "7", "--k", "0"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad_request"), "{stderr}");
}
