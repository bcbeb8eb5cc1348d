//! The simulator against a real node: determinism of what it publishes,
//! faults, and quality per source.
//!
//! Each test stands up its own private nats-server and a debug `reco serve`
//! (build it first: `cargo build -p reco-supervisors`, which
//! `cargo test --workspace` does), with tiny worlds so the suite stays fast.

use reco_sim::demo::world_stack;
use reco_sim::driver::{connect, drive, DriveConfig, Load};
use reco_sim::faults::{Fault, FaultKind};
use reco_sim::report::Report;
use reco_sim::world::{World, WorldConfig};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

fn tiny(seed: u64) -> WorldConfig {
    WorldConfig {
        seed,
        items: 400,
        dim: 8,
        members: 300,
        taste_strength: 10.0,
        ..WorldConfig::default()
    }
}

async fn run(
    world: &Arc<World>,
    stack: &reco_sim::demo::Stack,
    config: DriveConfig,
    actions: bool,
) -> Report {
    let slow = Arc::new(AtomicU64::new(0));
    let client = connect(&stack.url, slow.clone()).await.unwrap();
    let actions: Box<dyn Iterator<Item = _> + Send> = if actions {
        Box::new(world.actions())
    } else {
        Box::new(std::iter::empty())
    };
    drive(
        client,
        slow,
        world.clone(),
        actions,
        DriveConfig {
            metrics_addr: Some(stack.node.metrics_addr()),
            ..config
        },
        stack.nats.clone(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_with_the_same_seed_publish_the_same_event_stream() {
    let world = Arc::new(World::synthetic(tiny(7)));
    let stack = world_stack(&world, None, 50).unwrap();
    let config = || DriveConfig {
        duration: Duration::from_secs(20),
        max_events: Some(1_500),
        load: Load::Closed { concurrency: 2 },
        ..DriveConfig::default()
    };
    let first = run(&world, &stack, config(), true).await;
    let second = run(&world, &stack, config(), true).await;
    assert_eq!(first.events_published, 1_500);
    assert_eq!(first.stream_digest, second.stream_digest);
    let other = Arc::new(World::synthetic(tiny(8)));
    let third = run(&other, &stack, config(), true).await;
    assert_ne!(first.stream_digest, third.stream_digest);
    // Every request is accounted for.
    for r in [&first, &second, &third] {
        let errors: u64 = r.errors.values().sum();
        assert_eq!(r.requests, r.replies + r.no_reply + errors, "{}", r.table());
        assert_eq!(
            r.node_events_ingested,
            Some(1_500.0 + r.probe_events as f64),
            "{}",
            r.table()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_injected_in_their_windows_and_reported() {
    let world = Arc::new(World::synthetic(tiny(3)));
    let stack = world_stack(&world, None, 50).unwrap();
    let at = |ms| Duration::from_millis(ms);
    let config = DriveConfig {
        duration: Duration::from_secs(5),
        events_per_sec: 1_000.0,
        load: Load::Closed { concurrency: 2 },
        faults: vec![
            Fault {
                kind: FaultKind::ModelSlow { delay_ms: 120 },
                start: at(1_000),
                length: at(800),
            },
            Fault {
                kind: FaultKind::Malformed { count: 200 },
                start: at(2_000),
                length: at(500),
            },
            Fault {
                kind: FaultKind::Spike { factor: 2 },
                start: at(2_600),
                length: at(500),
            },
            Fault {
                kind: FaultKind::ModelCrash,
                start: at(3_200),
                length: at(300),
            },
            Fault {
                kind: FaultKind::NatsRestart,
                start: at(3_600),
                length: at(600),
            },
        ],
        cohorts: true,
        ..DriveConfig::default()
    };
    let report = run(&world, &stack, config, true).await;
    let table = report.table();
    let outcome = |prefix: &str| {
        report
            .faults
            .iter()
            .find(|f| f.fault.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} missing:\n{table}"))
    };
    let slow = outcome("model_slow");
    assert_eq!(slow.outcome, "applied", "{table}");
    assert!(
        report.by_reason.get("deadline").copied().unwrap_or(0) > 0,
        "{table}"
    );
    // Counted over the whole run (the window's own note may lag on a busy machine).
    assert!(
        outcome("malformed").note.starts_with("node rejected"),
        "{table}"
    );
    assert_eq!(report.node_events_rejected, Some(200.0), "{table}");
    assert_eq!(outcome("spike").outcome, "applied", "{table}");
    assert_eq!(outcome("model_crash").outcome, "applied", "{table}");
    assert_eq!(outcome("nats_restart").outcome, "applied", "{table}");
    assert!(report.replies > 0 && report.timeline.len() >= 4, "{table}");
    for cohort in ["experiment", "control"] {
        assert!(report.cohorts[cohort].replies > 0, "{table}");
    }
    assert!(reco_sim::plot::svg(&report).contains("model_slow"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quality_ranks_model_above_precomputed_above_popular() {
    // Strong tastes; a thin offline past (2 plays) behind the precomputed
    // lists; a richer live session behind the model. Nearline is pending
    // (nodes do not produce it yet), so its row is absent.
    let world = Arc::new(World::synthetic(WorldConfig {
        items: 1_000,
        members: 400,
        taste_strength: 12.0,
        ..tiny(11)
    }));
    let stack = world_stack(&world, None, 500).unwrap();
    // Live events for part of the members, no requests.
    let ingest = DriveConfig {
        duration: Duration::from_secs(30),
        max_events: Some(2_500),
        load: Load::None,
        quality_every: 1,
        ..DriveConfig::default()
    };
    run(&world, &stack, ingest, true).await;
    // Requests only: members with live events get the model, the others
    // their precomputed list (members 1..=200) or the popular list.
    let ask = DriveConfig {
        duration: Duration::from_secs(3),
        load: Load::Closed { concurrency: 4 },
        deadline_ms: 500,
        quality_every: 1,
        probe_every: 0,
        ..DriveConfig::default()
    };
    let report = run(&world, &stack, ask, false).await;
    let table = report.table();
    eprintln!("{table}");
    let ndcg = |s: &str| {
        report
            .quality
            .get(s)
            .unwrap_or_else(|| panic!("no {s} row:\n{table}"))
            .ndcg
    };
    for s in ["model", "precomputed", "popular"] {
        assert!(report.quality[s].replies >= 20, "{table}");
    }
    assert!(ndcg("model") > ndcg("precomputed"), "{table}");
    assert!(ndcg("precomputed") > ndcg("popular"), "{table}");
}
