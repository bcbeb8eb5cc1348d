//! Supervision end to end: panics are contained, counted and restarted while
//! every request is still answered; poisoned events are quarantined; the
//! root giving up stops the node cleanly; operators read and retune the tree.

use futures::stream::{self, StreamExt};
use reco_e2e::{ask, metric_sum, play, Fixture, NatsServer, Node};
use reco_messages::admin::{SetFaults, TreeNode};
use reco_messages::metrics as nm;
use reco_messages::{decode, Event, MemberId, Reason, RecommendReply, Source, Subjects};
use std::time::Duration;

const LIMIT: usize = 1 << 20;

async fn set_faults(client: &async_nats::Client, faults: SetFaults) {
    assert!(NatsServer::admin(client).faults(&faults).await.is_ok());
}

async fn panic_every(client: &async_nats::Client, n: u64) {
    let faults = SetFaults {
        model_panic_every: Some(n),
        ..Default::default()
    };
    set_faults(client, faults).await;
}

async fn tree(client: &async_nats::Client) -> TreeNode {
    NatsServer::admin(client).tree().await.unwrap()
}

fn find<'a>(node: &'a TreeNode, name: &str) -> Option<&'a TreeNode> {
    if node.name == name {
        return Some(node);
    }
    node.children.iter().find_map(|c| find(c, name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_worker_panicking_every_nth_request_leaves_no_request_unanswered() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(2_000, 16, 100, "fixture-v1");
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[node]\nfault_injection = true\n[supervision.model]\nmax_restarts = 1000\nbackoff_min_ms = 20\nbackoff_max_ms = 200\n[model]\nbreaker_enabled = false\n",
    );
    let client = nats.client().await;
    for member in 0..50u64 {
        play(&client, member, fixture.items[member as usize]).await;
    }
    panic_every(&client, 7).await;

    let total = 300u64;
    let replies: Vec<RecommendReply> = stream::iter(0..total)
        .map(|i| {
            let client = client.clone();
            async move { ask(&client, i % 50, 2_000).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(replies.len() as u64, total, "every request was answered");
    let (mut model, mut unavailable) = (0, 0);
    for reply in replies {
        match reply {
            RecommendReply::Ok(r) if r.source == Source::Model => model += 1,
            RecommendReply::Ok(r) => {
                assert!(r.degraded);
                assert!(
                    matches!(
                        r.reason,
                        Some(Reason::ModelUnavailable | Reason::Overloaded)
                    ),
                    "{r:?}"
                );
                assert_eq!(r.items.len(), 10, "the fallback answers in full");
                unavailable += 1;
            }
            RecommendReply::Error(e) => panic!("a request failed: {e:?}"),
        }
    }
    assert!(
        model > 0 && unavailable > 0,
        "model {model}, fallback {unavailable}"
    );
    let metrics = node.metrics();
    let panics = metric_sum(
        &metrics,
        nm::ACTOR_PANICS_TOTAL,
        &["actor=\"model_worker\""],
    );
    assert!(
        panics >= 1.0 && panics <= unavailable as f64,
        "panics {panics}"
    );
    node.wait_metric(Duration::from_secs(10), "worker restarts", |m| {
        metric_sum(m, nm::SUPERVISOR_RESTARTS_TOTAL, &["supervisor=\"model\""]) >= 1.0
    })
    .await;
    panic_every(&client, 0).await;
    node.wait_metric(Duration::from_secs(10), "every worker up again", |m| {
        metric_sum(m, nm::MODEL_WORKERS_UP, &["pool=\"online\""]) == 2.0
    })
    .await;
    let model_tree = tree(&client).await;
    let restarts: u64 = find(&model_tree, "model")
        .unwrap()
        .children
        .iter()
        .map(|w| w.restarts)
        .sum();
    assert!(restarts >= 1);
    assert!(
        node.log()
            .contains("Actor panicked while handling a message"),
        "{}",
        node.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_event_is_quarantined_and_other_members_are_unaffected() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(2_000, 16, 100, "fixture-v1");
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[node]\nfault_injection = true\n[sessions]\nquarantine_after = 3\n",
    );
    let client = nats.client().await;
    let mut dlq = client
        .subscribe(Subjects::default().dlq_events())
        .await
        .unwrap();
    let poison = fixture.items[99];
    set_faults(
        &client,
        SetFaults {
            poison_item: Some(Some(poison.0)),
            ..Default::default()
        },
    )
    .await;

    play(&client, 1, fixture.items[1]).await;
    play(&client, 2, fixture.items[2]).await;
    play(&client, 1, poison).await;
    play(&client, 2, fixture.items[3]).await;
    play(&client, 1, fixture.items[4]).await;

    let copy = tokio::time::timeout(Duration::from_secs(10), dlq.next())
        .await
        .expect("the poisoned event is dead-lettered")
        .unwrap();
    let event: Event = decode(&copy.payload, LIMIT).unwrap();
    assert_eq!((event.member, event.item), (MemberId(1), poison));
    let reason = copy
        .headers
        .unwrap()
        .get("Reco-Dlq-Reason")
        .unwrap()
        .to_string();
    assert!(
        reason.contains("quarantined") && reason.contains("3 times"),
        "{reason}"
    );

    // Member 2 never noticed; member 1's session was restarted and took the
    // events after the poisoned one.
    for (member, played) in [
        (2u64, vec![fixture.items[2], fixture.items[3]]),
        (1, vec![fixture.items[4]]),
    ] {
        match ask(&client, member, 2_000).await {
            RecommendReply::Ok(r) => {
                assert_eq!(r.source, Source::Model, "member {member}: {r:?}");
                assert!(r.items.iter().all(|i| !played.contains(&i.item)));
            }
            RecommendReply::Error(e) => panic!("{e:?}"),
        }
    }
    let metrics = node.metrics();
    assert_eq!(metric_sum(&metrics, nm::EVENTS_QUARANTINED_TOTAL, &[]), 1.0);
    assert_eq!(
        metric_sum(&metrics, nm::ACTOR_PANICS_TOTAL, &["actor=\"session\""]),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reco_tree_prints_the_live_tree_and_restart_counts_move_after_failures() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(500, 8, 10, "fixture-v1");
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[node]\nfault_injection = true\nshards = 2\n[model]\nworkers = 2\n",
    );
    let reco_tree = || {
        let output = std::process::Command::new(reco_e2e::reco_binary())
            .args(["tree", "--nats", &nats.url()])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let text = reco_tree();
    for line in [
        "root [supervisor one_for_one, permanent] running restarts=0",
        "├── model [supervisor one_for_one, permanent] running restarts=0",
        "│   ├── worker-0 [permanent] running restarts=0",
        "│   └── worker-1 [permanent] running restarts=0",
        "├── nearline [supervisor one_for_one, permanent] running restarts=0",
        "│   └── worker-0 [permanent] running restarts=0",
        "├── sessions [supervisor one_for_one, permanent] running restarts=0",
        "│   ├── shard-0 [permanent] running restarts=0",
        "│   └── shard-1 [permanent] running restarts=0",
        "├── ingress [transient] running restarts=0",
        "├── telemetry [permanent] running restarts=0",
        "├── loader [permanent] running restarts=0",
        "└── aggregates [permanent] running restarts=0",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }

    let client = nats.client().await;
    play(&client, 5, fixture.items[0]).await;
    panic_every(&client, 1).await;
    let reply = ask(&client, 5, 2_000).await;
    assert!(matches!(reply, RecommendReply::Ok(r) if r.reason == Some(Reason::ModelUnavailable)));
    panic_every(&client, 0).await;
    node.wait_metric(Duration::from_secs(10), "the worker to restart", |m| {
        metric_sum(m, nm::SUPERVISOR_RESTARTS_TOTAL, &["supervisor=\"model\""]) >= 1.0
    })
    .await;
    let text = reco_tree();
    assert!(
        text.contains("restarts=1 last_failure=\"panicked: injected fault"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_keeps_crashing_stays_down_without_stopping_the_node_and_comes_back() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(1_000, 8, 50, "fixture-v1");
    // The defaults of the model subtree (stay_down), with a small intensity
    // so that it is exhausted within a few requests.
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[node]\nfault_injection = true\n[supervision.model]\nmax_restarts = 3\nbackoff_min_ms = 1\nbackoff_max_ms = 5\nretry_after_ms = 300\n[model]\nbreaker_enabled = false\n",
    );
    let client = nats.client().await;
    for member in 0..20u64 {
        play(&client, member, fixture.items[member as usize]).await;
    }
    panic_every(&client, 2).await;
    // Keep asking until the subtree has been exhausted (and retried) at
    // least twice: every request is answered all along.
    let mut answered = 0u64;
    let mut exhausted = 0.0;
    for round in 0..200u64 {
        let replies: Vec<RecommendReply> = stream::iter(0..8u64)
            .map(|i| {
                let client = client.clone();
                async move { ask(&client, (round * 8 + i) % 20, 2_000).await }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for reply in replies {
            match reply {
                RecommendReply::Ok(r) => {
                    assert_eq!(r.items.len(), 10, "{r:?}");
                    answered += 1;
                }
                RecommendReply::Error(e) => panic!("a request failed: {e:?}"),
            }
        }
        exhausted = metric_sum(
            &node.metrics(),
            nm::SUPERVISOR_EXHAUSTED_TOTAL,
            &["supervisor=\"model\""],
        );
        if exhausted >= 2.0 {
            break;
        }
    }
    assert!(
        exhausted >= 2.0,
        "the model subtree was exhausted {exhausted} times"
    );
    assert!(answered >= 8);
    assert!(
        node.log().contains("the subtree stays down"),
        "{}",
        node.log()
    );
    // The root never heard of it: the node still serves, from the model
    // once the fault is cleared.
    panic_every(&client, 0).await;
    let mut from_model = false;
    for _ in 0..100 {
        if let RecommendReply::Ok(r) = ask(&client, 3, 2_000).await {
            if r.source == Source::Model {
                from_model = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        from_model,
        "the model serves again after the fault is cleared"
    );
    assert!(!node.log().contains("Root supervisor gave up"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_giving_up_shuts_the_node_down_cleanly_with_a_non_zero_exit() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(500, 8, 10, "fixture-v1");
    let mut node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[node]\nfault_injection = true\n[supervision.model]\nmax_restarts = 0\non_exhausted = \"escalate\"\n[supervision.root]\nmax_restarts = 0\n",
    );
    let client = nats.client().await;
    play(&client, 5, fixture.items[0]).await;
    panic_every(&client, 1).await;
    // The request that kills the worker is still answered.
    let reply = ask(&client, 5, 2_000).await;
    assert!(matches!(reply, RecommendReply::Ok(r) if r.degraded));
    let status = node.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "the node must exit non-zero");
    let log = node.log();
    assert!(log.contains("Root supervisor gave up"), "{log}");
    assert!(
        log.contains("supervisor model exceeded its restart intensity"),
        "{log}"
    );
    assert!(log.contains("Node drained."), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_new_supervision_limits_without_a_restart() {
    let nats = NatsServer::start();
    let node = Node::start(&nats.url(), None, "[supervision.model]\nmax_restarts = 5\n");
    let client = nats.client().await;
    assert_eq!(
        find(&tree(&client).await, "model")
            .unwrap()
            .strategy
            .as_deref(),
        Some("one_for_one")
    );
    std::fs::write(
        node.config_path(),
        "[supervision.model]\nstrategy = \"one_for_all\"\nmax_restarts = 7\n",
    )
    .unwrap();
    node.hangup();
    node.wait_log(Duration::from_secs(10), "Supervision settings reloaded.")
        .await;
    assert_eq!(
        find(&tree(&client).await, "model")
            .unwrap()
            .strategy
            .as_deref(),
        Some("one_for_all")
    );
    let log = node.log();
    assert!(
        log.contains("Supervisor reconfigured.") && log.contains("max_restarts: 7"),
        "{log}"
    );

    // An invalid file is refused and the settings in force stay; the admin
    // request does what SIGHUP does and says what happened.
    std::fs::write(
        node.config_path(),
        "[supervision.model]\nbackoff_factor = 99.0\n",
    )
    .unwrap();
    node.hangup();
    node.wait_log(Duration::from_secs(10), "Configuration not reloaded")
        .await;
    let model_strategy = |tree: TreeNode| find(&tree, "model").unwrap().strategy.clone();
    assert_eq!(
        model_strategy(tree(&client).await).as_deref(),
        Some("one_for_all")
    );
    let reload = || async { NatsServer::admin(&client).reload().await.unwrap() };
    assert!(reload().await.error.unwrap().contains("backoff_factor"));
    std::fs::write(
        node.config_path(),
        "[supervision.model]\nstrategy = \"rest_for_one\"\n",
    )
    .unwrap();
    assert_eq!(
        reload().await.applied,
        vec!["root", "model", "nearline", "sessions"]
    );
    assert_eq!(
        model_strategy(tree(&client).await).as_deref(),
        Some("rest_for_one")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_model_workers_do_not_leak_threads() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(500, 8, 10, "fixture-v1");
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[node]\nfault_injection = true\n[supervision.model]\nmax_restarts = 1000\nbackoff_min_ms = 1\nbackoff_max_ms = 2\n[model]\nbreaker_enabled = false\n",
    );
    let client = nats.client().await;
    play(&client, 5, fixture.items[0]).await;
    assert!(
        matches!(ask(&client, 5, 2_000).await, RecommendReply::Ok(r) if r.source == Source::Model)
    );
    let before = node.threads();
    panic_every(&client, 1).await;
    for _ in 0..30 {
        let _ = ask(&client, 5, 2_000).await;
        node.wait_metric(Duration::from_secs(10), "both workers up", |m| {
            metric_sum(m, nm::MODEL_WORKERS_UP, &["pool=\"online\""]) == 2.0
        })
        .await;
    }
    let restarts = node.metric(nm::SUPERVISOR_RESTARTS_TOTAL, &["supervisor=\"model\""]);
    assert!(restarts >= 30.0, "restarts {restarts}");
    let after = node.threads();
    assert!(
        after <= before + 2,
        "threads grew from {before} to {after} over {restarts} restarts"
    );
}

/// Issue 11's acceptance: `model_panic_every: 2` held for two minutes under
/// load (`RECO_PANIC_HOLD_SECS` shortens it for a quick look): the node
/// stays up, every request is answered (from the fallback while the model
/// subtree is down), and the model serves again within a second of the
/// fault being cleared. The node runs with the default supervision (it
/// takes about two minutes; one test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_panic_every_2_held_for_two_minutes_under_load_never_stops_the_node() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Instant;
    let hold = Duration::from_secs(
        std::env::var("RECO_PANIC_HOLD_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(120),
    );
    let nats = NatsServer::start();
    let fixture = Fixture::write(1_000, 8, 50, "fixture-v1");
    // Default supervision and breaker: the breaker stays open for
    // breaker_open_ms (500 ms by default) after failures, then probes.
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[node]\nfault_injection = true\n",
    );
    let client = nats.client().await;
    for member in 0..20u64 {
        play(&client, member, fixture.items[member as usize]).await;
    }
    panic_every(&client, 2).await;
    // Load: 8 requests in flight all along; each must be answered.
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, from_model) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (client, stop) = (client.clone(), stop.clone());
        let (answered, from_model) = (answered.clone(), from_model.clone());
        tokio::spawn(async move {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let replies: Vec<RecommendReply> = stream::iter(0..8u64)
                    .map(|i| {
                        let client = client.clone();
                        async move { ask(&client, (round * 8 + i) % 20, 500).await }
                    })
                    .buffer_unordered(8)
                    .collect()
                    .await;
                for reply in replies {
                    match reply {
                        RecommendReply::Ok(r) => {
                            assert_eq!(r.items.len(), 10, "{r:?}");
                            answered.fetch_add(1, Ordering::Relaxed);
                            if r.source == Source::Model {
                                from_model.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        RecommendReply::Error(e) => panic!("a request failed: {e:?}"),
                    }
                }
                round += 1;
            }
        })
    };
    let started = Instant::now();
    while started.elapsed() < hold {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!load.is_finished(), "the load stopped: a request failed");
        // The node is up and answers its health all along.
        NatsServer::admin(&client).health().await.unwrap();
    }
    let exhausted = node.metric(nm::SUPERVISOR_EXHAUSTED_TOTAL, &["supervisor=\"model\""]);
    let answered_under_fault = answered.load(Ordering::Relaxed);
    panic_every(&client, 0).await;
    let cleared = Instant::now();
    let model_before = from_model.load(Ordering::Relaxed);
    while from_model.load(Ordering::Relaxed) == model_before {
        assert!(
            cleared.elapsed() < Duration::from_secs(10),
            "the model never served again:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let back_after = cleared.elapsed();
    stop.store(true, Ordering::Relaxed);
    load.await.expect("every request was answered");
    println!(
        "model_panic_every=2 for {hold:?}: {answered_under_fault} requests answered under the fault, \
         model subtree exhausted {exhausted} times, model served again {:.0} ms after clearing",
        back_after.as_secs_f64() * 1000.0
    );
    assert!(
        back_after < Duration::from_secs(1),
        "the model served again only after {back_after:?}"
    );
    assert!(answered_under_fault > 0);
    assert!(!node.log().contains("Root supervisor gave up"));
    assert!(!node.log().contains("Node drained"), "{}", node.log());
}
