//! Hot swap end to end: a node serving v1 takes v2 as soon as it is
//! published, under a steady stream of requests, without failing one; a
//! corrupt v3 is rejected and v2 keeps serving.

use futures::stream::{self, StreamExt};
use reco_e2e::{metric_sum, Fixture, NatsServer, Node};
use reco_messages::admin::ModelCommand;
use reco_messages::metrics as nm;
use reco_messages::{
    decode, encode, Event, EventKind, MemberId, ModelPublished, RecommendReply, RecommendRequest,
    Source, Subjects,
};
use reco_offline::publish::PublishConfig;
use reco_offline::{artifacts, publish};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LIMIT: usize = 1 << 20;

async fn version_in_service(client: &async_nats::Client) -> Option<String> {
    NatsServer::admin(client)
        .health()
        .await
        .unwrap()
        .model_version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_version_is_swapped_in_under_load_and_a_corrupt_one_is_rejected() {
    let nats = NatsServer::start();
    let v1 = Fixture::write(1_000, 8, 50, "v1");
    let node = Node::start(
        &nats.url(),
        Some(v1.path()),
        "[publish]\nbucket = \"models_swap\"\n",
    );
    let client = nats.client().await;
    let subjects = Subjects::default();
    for member in 0..20u64 {
        let event = Event {
            member: MemberId(member),
            item: v1.items[member as usize],
            kind: EventKind::Play,
            value: 60.0,
            at_ms: None,
            device: None,
        };
        client
            .publish(subjects.events(MemberId(member)), encode(&event).into())
            .await
            .unwrap();
    }

    // A steady stream of requests while v2 is published.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut versions = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 20_000 {
                let batch: Vec<RecommendReply> = stream::iter(i..i + 4)
                    .map(|n| {
                        let client = client.clone();
                        async move {
                            let request = RecommendRequest {
                                deadline_ms: Some(5_000),
                                ..Default::default()
                            };
                            let subject = Subjects::default().recommend(MemberId(n % 20));
                            let reply = client.request(subject, encode(&request).into()).await;
                            decode(&reply.expect("every request is answered").payload, LIMIT)
                                .unwrap()
                        }
                    })
                    .buffer_unordered(4)
                    .collect()
                    .await;
                for reply in batch {
                    match reply {
                        RecommendReply::Ok(r) => {
                            assert_eq!(r.source, Source::Model, "{r:?}");
                            versions
                                .push(r.model_version.expect("model replies name their version"));
                        }
                        RecommendReply::Error(e) => panic!("a request failed: {e:?}"),
                    }
                }
                i += 4;
            }
            versions
        })
    };

    let config = PublishConfig {
        bucket: "models_swap".into(),
        keep_versions: 5,
        ..PublishConfig::default()
    };
    let v2 = Fixture::write(1_000, 8, 50, "v2");
    let (model, lists) = artifacts::load(v2.path()).unwrap();
    // Let some v1 replies through first.
    node.wait_metric(Duration::from_secs(20), "v1 replies", |m| {
        metric_sum(m, nm::REPLIES_TOTAL, &["source=\"model\""]) >= 20.0
    })
    .await;
    publish::publish(&client, &subjects, &config, &model, &lists, 0.1)
        .await
        .unwrap();
    node.wait_metric(Duration::from_secs(20), "the swap", |m| {
        metric_sum(m, nm::MODEL_SWAPS_TOTAL, &["outcome=\"ok\""]) >= 1.0
    })
    .await;
    node.wait_metric(Duration::from_secs(20), "v2 replies", |m| {
        metric_sum(m, nm::REPLIES_TOTAL, &["source=\"model\""]) >= 100.0
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let versions = load.await.unwrap();
    let first_v2 = versions
        .iter()
        .position(|v| v == "v2")
        .expect("replies switched to v2");
    assert!(first_v2 > 0, "v1 served before the swap");
    assert!(versions[..first_v2].iter().all(|v| v == "v1"));
    // Requests in flight at the swap may still finish on v1; after that, v2 only.
    let settled = (first_v2 + 8).min(versions.len());
    assert!(
        versions[settled..].iter().all(|v| v == "v2"),
        "{versions:?}"
    );
    assert_eq!(version_in_service(&client).await.as_deref(), Some("v2"));

    // v3: stored complete in the node's bucket (announced elsewhere, so
    // this node does not see it), then its model object is overwritten,
    // then announced here. (A notice naming another bucket is refused
    // before anything is read: tests/signed_models.rs.)
    let v3 = Fixture::write(1_000, 8, 50, "v3");
    let (model, lists) = artifacts::load(v3.path()).unwrap();
    let quiet = Subjects::new("elsewhere").unwrap();
    let corrupt = config.clone();
    publish::publish(&client, &quiet, &corrupt, &model, &lists, 0.1)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let store = js.get_object_store("models_swap").await.unwrap();
    let mut garbage: &[u8] = b"definitely not an item-factor artifact";
    store.put("v3/model.bin", &mut garbage).await.unwrap();
    let notice = ModelPublished {
        version: "v3".into(),
        bucket: "models_swap".into(),
        published_at_ms: 0,
    };
    client
        .publish(subjects.published_model(), encode(&notice).into())
        .await
        .unwrap();
    node.wait_metric(Duration::from_secs(20), "v3 rejected", |m| {
        metric_sum(m, nm::MODEL_SWAPS_TOTAL, &["outcome=\"rejected\""]) >= 1.0
    })
    .await;
    assert_eq!(version_in_service(&client).await.as_deref(), Some("v2"));
    node.wait_log(Duration::from_secs(5), "Published model version rejected")
        .await;
    let request = RecommendRequest {
        deadline_ms: Some(5_000),
        ..Default::default()
    };
    let reply = client
        .request(subjects.recommend(MemberId(1)), encode(&request).into())
        .await
        .unwrap();
    match decode::<RecommendReply>(&reply.payload, LIMIT).unwrap() {
        RecommendReply::Ok(r) => assert_eq!(r.model_version.as_deref(), Some("v2")),
        RecommendReply::Error(e) => panic!("{e:?}"),
    }

    // Pinning: a publication is not swapped in while pinned; unpinned, the
    // next one is; pinning an older version rolls back.
    let command = |command: ModelCommand| {
        let client = client.clone();
        async move { NatsServer::admin(&client).model(&command).await.unwrap() }
    };
    let status = command(ModelCommand {
        pin: Some("v2".into()),
        unpin: false,
    })
    .await;
    assert_eq!(
        (status.version.as_deref(), status.pinned),
        (Some("v2"), true)
    );
    // The corrupt v3 is complete as far as the bucket knows.
    assert_eq!(status.available, vec!["v2", "v3"]);
    let publish_fixture = |version: &'static str| {
        let (client, subjects, config) = (client.clone(), subjects.clone(), config.clone());
        async move {
            let fixture = Fixture::write(1_000, 8, 50, version);
            let (model, lists) = artifacts::load(fixture.path()).unwrap();
            publish::publish(&client, &subjects, &config, &model, &lists, 0.1)
                .await
                .unwrap();
        }
    };
    publish_fixture("v4").await;
    node.wait_metric(Duration::from_secs(20), "v4 ignored while pinned", |m| {
        metric_sum(m, nm::MODEL_SWAPS_TOTAL, &["outcome=\"pinned\""]) >= 1.0
    })
    .await;
    assert_eq!(version_in_service(&client).await.as_deref(), Some("v2"));
    command(ModelCommand {
        pin: None,
        unpin: true,
    })
    .await;
    publish_fixture("v5").await;
    node.wait_metric(Duration::from_secs(20), "v5 swapped in", |m| {
        metric_sum(m, nm::MODEL_SWAPS_TOTAL, &["outcome=\"ok\""]) >= 2.0
    })
    .await;
    assert_eq!(version_in_service(&client).await.as_deref(), Some("v5"));
    // Roll back with the CLI.
    let output = std::process::Command::new(reco_e2e::reco_binary())
        .args(["model", "--nats", &nats.url(), "--pin", "v4"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["version"], "v4");
    assert_eq!(status["pinned"], true);
    assert_eq!(version_in_service(&client).await.as_deref(), Some("v4"));
    let refused = command(ModelCommand {
        pin: Some("v9".into()),
        unpin: false,
    })
    .await;
    assert!(refused.error.unwrap().contains("v9"));
    assert_eq!(refused.version.as_deref(), Some("v4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_node_loads_the_newest_published_version_unless_told_not_to() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let subjects = Subjects::default();
    let config = PublishConfig {
        bucket: "models_start".into(),
        keep_versions: 5,
        ..PublishConfig::default()
    };
    for version in ["v2", "v3"] {
        let fixture = Fixture::write(1_000, 8, 50, version);
        let (model, lists) = artifacts::load(fixture.path()).unwrap();
        publish::publish(&client, &subjects, &config, &model, &lists, 0.1)
            .await
            .unwrap();
    }
    let v1 = Fixture::write(1_000, 8, 50, "v1");
    // Told not to: it keeps the model it was started with.
    let node = Node::start(
        &nats.url(),
        Some(v1.path()),
        "[publish]\nbucket = \"models_start\"\nload_newest_at_start = false\n",
    );
    node.wait_log(Duration::from_secs(10), "Node ready.").await;
    // Gate: the loader has passed the point where it would have loaded the
    // newest version, and said it does not.
    node.wait_log(
        Duration::from_secs(10),
        "Not loading the newest published version at start",
    )
    .await;
    assert_eq!(version_in_service(&client).await.as_deref(), Some("v1"));
    drop(node);
    // By default: v1 at once, then v3, the newest published.
    let node = Node::start(
        &nats.url(),
        Some(v1.path()),
        "[publish]\nbucket = \"models_start\"\n",
    );
    node.wait_metric(Duration::from_secs(20), "newest version loaded", |m| {
        metric_sum(m, nm::MODEL_SWAPS_TOTAL, &["outcome=\"ok\""]) >= 1.0
    })
    .await;
    assert_eq!(version_in_service(&client).await.as_deref(), Some("v3"));
    node.wait_log(
        Duration::from_secs(5),
        "Loading the newest published version.",
    )
    .await;
}
