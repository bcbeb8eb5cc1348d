//! The offline loop end to end: `reco serve` records events in JetStream,
//! the record survives a node restart, `reco train --from-stream` learns
//! from it and `--publish` stores an immutable version and announces it.

use futures::StreamExt;
use reco_e2e::{reco_binary, Fixture, NatsServer, Node};
use reco_messages::{encode, Event, EventKind, ItemId, MemberId, ModelPublished, Subjects};
use reco_offline::publish::PublishConfig;
use reco_offline::{artifacts, publish};
use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

const STREAM: &str = "RECO_EVENTS";

/// Returns once the server has processed everything `client` sent (so a
/// subscription made before is registered).
async fn round_trip(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, "".into()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), echo.next())
        .await
        .expect("the server echoes within 10 s");
}

/// Publishes one event per (member, item, kind) and returns the pairs that
/// count as interactions.
async fn publish_events(
    client: &async_nats::Client,
    events: &[(u64, u64, EventKind)],
) -> HashSet<(u64, u64)> {
    let subjects = Subjects::default();
    let mut pairs = HashSet::new();
    for &(member, item, kind) in events {
        let event = Event {
            member: MemberId(member),
            item: ItemId(item),
            kind,
            value: 1.0,
            at_ms: Some(1_700_000_000_000),
            device: None,
        };
        client
            .publish(subjects.events(MemberId(member)), encode(&event).into())
            .await
            .unwrap();
        // The one weighting: every kind but impressions is an interaction.
        if kind != EventKind::Impression {
            pairs.insert((member, item));
        }
    }
    pairs
}

/// Waits until the event stream holds `count` messages.
async fn wait_stored(client: &async_nats::Client, count: u64) {
    let js = async_nats::jetstream::new(client.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut stream = js
            .get_stream(STREAM)
            .await
            .expect("the node created the stream");
        let stored = stream.info().await.unwrap().state.messages;
        if stored == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "stream holds {stored} events, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn batch(members: std::ops::Range<u64>, items: u64) -> Vec<(u64, u64, EventKind)> {
    let kinds = [
        EventKind::Play,
        EventKind::Rate,
        EventKind::ListAdd,
        EventKind::Click,
        EventKind::Impression,
    ];
    let mut events = Vec::new();
    for member in members {
        for j in 0..items {
            let item = 100 + (member * 3 + j * 7) % 40;
            events.push((member, item, kinds[(j as usize) % kinds.len()]));
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_recorded_by_serve_survive_a_node_restart_and_train_a_published_model() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(200, 8, 0, "fixture-v1");
    let client = nats.client().await;

    let mut node = Node::start(&nats.url(), Some(fixture.path()), "");
    assert!(
        node.log().contains("Recording events in JetStream."),
        "{}",
        node.log()
    );
    let first = batch(0..20, 8);
    let mut pairs = publish_events(&client, &first).await;
    // A record that does not decode: dead-lettered by the node, recorded by
    // the stream, skipped (and counted) by training.
    client
        .publish(Subjects::default().events(MemberId(3)), "garbage".into())
        .await
        .unwrap();
    wait_stored(&client, first.len() as u64 + 1).await;
    node.terminate();
    assert!(node.wait_exit(Duration::from_secs(30)).success());

    // The restarted node reuses the stream and its events, and applies a
    // changed retention to it.
    let mut node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[events_log]\nmax_age_secs = 86400\n",
    );
    let mut stream = async_nats::jetstream::new(client.clone())
        .get_stream(STREAM)
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.max_age, Duration::from_secs(86_400));
    assert_eq!(info.state.messages, first.len() as u64 + 1);
    let second = batch(20..40, 8);
    pairs.extend(publish_events(&client, &second).await);
    let total = (first.len() + second.len() + 1) as u64;
    wait_stored(&client, total).await;
    node.terminate();
    assert!(node.wait_exit(Duration::from_secs(30)).success());

    let mut announcements = client
        .subscribe(Subjects::default().published_model())
        .await
        .unwrap();
    round_trip(&client).await;
    let out = tempfile::tempdir().unwrap();
    // Signed with the trainer's key (tests/signed_models.rs covers refusals).
    let key = reco_offline::signing::SigningKey::generate();
    let key_file = out.path().join("trainer.key");
    key.write(&key_file).unwrap();
    let output = Command::new(reco_binary())
        .args([
            "train",
            "--from-stream",
            "--publish",
            "--json",
            "--version",
            "from-log-1",
        ])
        .args(["--factors", "8", "--iterations", "5", "--reg", "1"])
        .arg("--nats")
        .arg(nats.url())
        .arg("--out")
        .arg(out.path())
        .arg("--signing-key-file")
        .arg(&key_file)
        .env_remove("RECO_NATS_URL")
        .output()
        .expect("reco train runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "reco train failed:\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("--json prints JSON on stdout");
    assert_eq!(report["stream"]["events"], total, "{report:#}");
    assert_eq!(report["stream"]["bad"], 1, "{report:#}");
    let impressions = first
        .iter()
        .chain(&second)
        .filter(|e| e.2 == EventKind::Impression)
        .count();
    assert_eq!(
        report["stream"]["ignored"], impressions as u64,
        "{report:#}"
    );
    assert_eq!(report["interactions"], pairs.len() as u64, "{report:#}");
    assert_eq!(report["members"], 40, "{report:#}");
    assert_eq!(report["published"]["version"], "from-log-1", "{report:#}");

    let announced = tokio::time::timeout(Duration::from_secs(10), announcements.next())
        .await
        .expect("a notification within 10 s")
        .unwrap();
    let notice: ModelPublished = reco_messages::decode(&announced.payload, 1 << 20).unwrap();
    assert_eq!(notice.version, "from-log-1");
    assert_eq!(notice.bucket, "reco_models");

    let js = async_nats::jetstream::new(client.clone());
    let trusted = reco_offline::signing::TrustedKeys::parse(&[key.public_hex()]).unwrap();
    let (model, lists, manifest) =
        publish::fetch_verified(&js, &notice.bucket, &notice.version, &trusted)
            .await
            .expect("the announced version loads, signed by the trainer's key");
    let items: HashSet<u64> = pairs.iter().map(|p| p.1).collect();
    assert_eq!(model.len(), items.len());
    assert_eq!(lists.members.len(), 40);
    assert_eq!(manifest.items, items.len());
    let (on_disk, _) = artifacts::load(out.path()).unwrap();
    assert_eq!(on_disk, model, "--out and --publish write the same model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_versions_are_immutable_pruned_beyond_the_kept_count_and_announced() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let subjects = Subjects::default();
    let mut announcements = client.subscribe(subjects.published_model()).await.unwrap();
    round_trip(&client).await;
    let config = PublishConfig {
        bucket: "models_test".into(),
        keep_versions: 2,
        ..PublishConfig::default()
    };
    let mut deleted = Vec::new();
    for version in ["v1", "v2", "v3"] {
        let fixture = Fixture::write(50, 4, 5, version);
        let (model, lists) = artifacts::load(fixture.path()).unwrap();
        let published = publish::publish(&client, &subjects, &config, &model, &lists, 1.5)
            .await
            .unwrap();
        assert_eq!(published.manifest.version, version);
        deleted.extend(published.deleted);
        let message = tokio::time::timeout(Duration::from_secs(10), announcements.next())
            .await
            .unwrap()
            .unwrap();
        let notice: ModelPublished = reco_messages::decode(&message.payload, 1 << 20).unwrap();
        assert_eq!(notice.version, version);
    }
    assert_eq!(deleted, vec!["v1".to_owned()]);

    let js = async_nats::jetstream::new(client.clone());
    let (model, lists, manifest) = publish::fetch_published(&js, "models_test", "v3")
        .await
        .unwrap();
    assert_eq!((model.version(), lists.version.as_str()), ("v3", "v3"));
    assert_eq!((manifest.items, manifest.members_with_lists), (50, 5));
    assert!(matches!(
        publish::fetch_published(&js, "models_test", "v1").await,
        Err(publish::PublishError::NotFound { .. })
    ));

    // Versions are immutable: publishing v3 again is refused and announces nothing.
    let fixture = Fixture::write(60, 4, 5, "v3");
    let (model, lists) = artifacts::load(fixture.path()).unwrap();
    assert!(matches!(
        publish::publish(&client, &subjects, &config, &model, &lists, 1.0).await,
        Err(publish::PublishError::Exists { .. })
    ));
    // ... and so is the name of a pruned version.
    let fixture = Fixture::write(60, 4, 5, "v1");
    let (model, lists) = artifacts::load(fixture.path()).unwrap();
    assert!(matches!(
        publish::publish(&client, &subjects, &config, &model, &lists, 1.0).await,
        Err(publish::PublishError::Exists { .. })
    ));
    let (still, _, _) = publish::fetch_published(&js, "models_test", "v3")
        .await
        .unwrap();
    assert_eq!(still.len(), 50);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), announcements.next())
            .await
            .is_err(),
        "a refused publication announces nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_from_an_empty_event_log_fails_at_once_with_a_clear_error() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(50, 4, 0, "fixture-v1");
    let mut node = Node::start(&nats.url(), Some(fixture.path()), "");
    node.terminate();
    let status = node.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", node.log());
    let started = Instant::now();
    let output = Command::new(reco_binary())
        .args(["train", "--from-stream", "--holdout-fraction", "0.2"])
        .arg("--nats")
        .arg(nats.url())
        .env_remove("RECO_NATS_URL")
        .output()
        .expect("reco train runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("Read 0 events from stream RECO_EVENTS"),
        "{stderr}"
    );
    assert!(stderr.contains("no ratings to train on"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it did not wait for events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_event_log_disabled_records_nothing() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(50, 4, 0, "fixture-v1");
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[events_log]\nenabled = false\n",
    );
    assert!(node.log().contains("Event log disabled"), "{}", node.log());
    let js = async_nats::jetstream::new(nats.client().await);
    assert!(
        js.get_stream(STREAM).await.is_err(),
        "no stream was created"
    );
}

/// Runs `reco train` with `args` and returns its `--json` report.
fn train_json(args: &[&str]) -> serde_json::Value {
    let output = Command::new(reco_binary())
        .arg("train")
        .args(args)
        .arg("--json")
        .env_remove("RECO_NATS_URL")
        .output()
        .expect("reco train runs");
    assert!(
        output.status.success(),
        "reco train failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints JSON on stdout")
}

#[test]
fn a_written_split_trained_with_test_file_reproduces_the_holdout_figures() {
    let ratings = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/ml-latest-small/ratings.csv"
    );
    let dir = tempfile::tempdir().unwrap();
    let split = dir.path().join("split");
    let split = split.to_str().unwrap();
    let held = train_json(&[
        "--ratings",
        ratings,
        "--holdout-fraction",
        "0.2",
        "--split-seed",
        "42",
        "--write-split",
        split,
        "--version",
        "v",
    ]);
    for tier in ["model", "nearline", "precomputed", "popular"] {
        let m = &held["tiers"][tier];
        for key in ["precision", "recall", "ndcg", "hit_rate"] {
            assert!(m[key].as_f64().unwrap() > 0.0, "{tier}.{key}: {held:#}");
        }
        assert_eq!(m["members"], 671, "{held:#}");
    }
    let train = format!("{split}/train.csv");
    let test = format!("{split}/test.csv");
    let given = train_json(&["--ratings", &train, "--test", &test, "--version", "v"]);
    assert_eq!(given["tiers"], held["tiers"], "same split, same figures");
    assert_eq!(given["interactions"], held["interactions"]);
}
