//! Nearline end to end: an important event refreshes the member's list
//! between requests, the list is the first fallback tier, and a stale list
//! is not served.

use reco_e2e::{metric_sum, play, Fixture, NatsServer, Node};
use reco_messages::metrics as nm;
use reco_messages::{Reason, RecommendReply, Recommendations, Source};
use std::time::Duration;

async fn ask(client: &async_nats::Client, member: u64, deadline_ms: u64) -> Recommendations {
    match reco_e2e::ask(client, member, deadline_ms).await {
        RecommendReply::Ok(r) => r,
        RecommendReply::Error(e) => panic!("{e:?}"),
    }
}

async fn wait_refreshes(node: &Node, n: f64) {
    node.wait_metric(Duration::from_secs(10), "nearline refreshes", |m| {
        metric_sum(m, nm::NEARLINE_REFRESHES_TOTAL, &["outcome=\"stored\""]) >= n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_play_the_next_recommendations_reflect_it_through_the_nearline_list() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(2_000, 16, 100, "fixture-v1");
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[nearline]\nanswer_when_fresh = true\ndebounce_ms = 20\n",
    );
    let client = nats.client().await;
    let first = fixture.items[10];
    play(&client, 7, first).await;
    wait_refreshes(&node, 1.0).await;
    let before = ask(&client, 7, 2_000).await;
    assert_eq!(before.source, Source::Nearline, "{before:?}");
    assert!(!before.degraded && before.reason.is_none());
    assert_eq!(before.items.len(), 10);
    assert!(before.items.iter().all(|i| i.item != first));

    // Play the top recommendation: the refreshed list leaves it out and
    // changes.
    let second = before.items[0].item;
    play(&client, 7, second).await;
    wait_refreshes(&node, 2.0).await;
    let after = ask(&client, 7, 2_000).await;
    assert_eq!(after.source, Source::Nearline);
    assert!(after
        .items
        .iter()
        .all(|i| i.item != first && i.item != second));
    assert_ne!(after.items, before.items);
    let metrics = node.metrics();
    assert!(
        metric_sum(
            &metrics,
            &format!("{}_count", nm::NEARLINE_FRESHNESS_SECONDS),
            &[]
        ) >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nearline_list_is_the_first_fallback_when_the_model_is_late() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(2_000, 16, 100, "fixture-v1");
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[model]\ntest_delay_ms = 300\n[nearline]\ndebounce_ms = 20\n",
    );
    let client = nats.client().await;
    play(&client, 3, fixture.items[0]).await;
    wait_refreshes(&node, 1.0).await;
    let reply = ask(&client, 3, 80).await;
    assert_eq!(
        (reply.source, reply.reason),
        (Source::Nearline, Some(Reason::Deadline))
    );
    assert!(reply.degraded);
    assert!(reply.items.iter().all(|i| i.item != fixture.items[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_nearline_list_is_not_served() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(2_000, 16, 100, "fixture-v1");
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        "[model]\ntest_delay_ms = 300\n[nearline]\ndebounce_ms = 0\nmax_age_ms = 1\n",
    );
    let client = nats.client().await;
    play(&client, 3, fixture.items[0]).await;
    wait_refreshes(&node, 1.0).await;
    let reply = ask(&client, 3, 80).await;
    assert_eq!(
        (reply.source, reply.reason),
        (Source::Precomputed, Some(Reason::Deadline))
    );
}
