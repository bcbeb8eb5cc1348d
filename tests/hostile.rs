//! Hostile input costs nothing downstream: oversized events are rejected
//! without the node losing its connection, their dead-letter copies are
//! bounded excerpts, and forged reply subjects are never answered.

use futures::StreamExt;
use reco_e2e::{ask, metric_sum, play, Fixture, NatsServer, Node};
use reco_messages::metrics as nm;
use reco_messages::subjects::{DLQ_EXCERPT_BYTES, HEADER_DLQ_BYTES, HEADER_DLQ_REASON};
use reco_messages::{MemberId, RecommendReply, Subjects};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_just_under_the_server_limit_are_rejected_without_losing_the_connection() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(500, 8, 10, "fixture-v1");
    let node = Node::start(&nats.url(), Some(fixture.path()), "");
    let client = nats.client().await;
    let subjects = Subjects::default();
    let mut dlq = client.subscribe(subjects.dlq_events()).await.unwrap();
    client.flush().await.unwrap();
    // nats-server's default max_payload is 1 MiB; leave room for the
    // protocol line so the server accepts the message itself.
    let size = (1 << 20) - 256;
    let big = vec![0x93u8; size];
    let rounds = 20;
    for round in 0..rounds {
        client
            .publish(subjects.events(MemberId(7)), big.clone().into())
            .await
            .unwrap();
        // Valid traffic around the junk is served.
        play(&client, round, fixture.items[round as usize]).await;
    }
    for _ in 0..rounds {
        let copy = tokio::time::timeout(Duration::from_secs(30), dlq.next())
            .await
            .expect("every rejected event is dead-lettered")
            .unwrap();
        assert!(
            copy.payload.len() <= DLQ_EXCERPT_BYTES,
            "{}",
            copy.payload.len()
        );
        let headers = copy.headers.expect("dead-letter headers");
        assert_eq!(
            headers.get(HEADER_DLQ_BYTES).map(|v| v.as_str()),
            Some(size.to_string().as_str())
        );
        assert!(headers.get(HEADER_DLQ_REASON).is_some());
    }
    let reply = ask(&client, 3, 2_000).await;
    assert!(matches!(reply, RecommendReply::Ok(_)), "{reply:?}");
    let metrics = node.metrics();
    assert_eq!(
        metric_sum(&metrics, nm::EVENTS_REJECTED_TOTAL, &["why=\"too_large\""]),
        rounds as f64
    );
    assert_eq!(
        metric_sum(&metrics, nm::NATS_EVENTS_TOTAL, &["event=\"disconnected\""]),
        0.0,
        "the node never lost its connection:\n{}",
        node.log()
    );
    // Rejections are logged sampled, not once per message.
    let logged = node.log().matches("Event rejected.").count();
    assert!(logged < rounds as usize, "{logged} rejection lines");
    // The event log recorded the plays and none of the junk, so junk cannot
    // push real history out of its size cap.
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream("RECO_EVENTS").await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    assert_eq!(state.messages, rounds, "{state:?}");
    assert!(state.bytes < 64 * 1024 * rounds, "{state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_reply_subject_is_recos_own_is_never_answered() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(500, 8, 10, "fixture-v1");
    let node = Node::start(&nats.url(), Some(fixture.path()), "");
    let client = nats.client().await;
    let subjects = Subjects::default();
    // An attacker names a node's event subject as the reply subject, hoping
    // the reply is taken as an event.
    let target = subjects.events(MemberId(9));
    let mut watch = client.subscribe(target.clone()).await.unwrap();
    client
        .publish_with_reply(subjects.recommend(MemberId(3)), target, Vec::new().into())
        .await
        .unwrap();
    node.wait_metric(Duration::from_secs(10), "the forged request counted", |m| {
        metric_sum(
            m,
            nm::REQUEST_ERRORS_TOTAL,
            &["code=\"forbidden_reply_subject\""],
        ) == 1.0
    })
    .await;
    // A real request after it is answered; by then the forged one's reply
    // would have been published before it.
    let reply = ask(&client, 3, 2_000).await;
    assert!(matches!(reply, RecommendReply::Ok(_)), "{reply:?}");
    client.flush().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), watch.next())
            .await
            .is_err(),
        "nothing was published on the forged reply subject"
    );
}
