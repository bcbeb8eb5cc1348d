//! The counterfactual log end to end: a real nats-server, a real `reco
//! serve` whose model is slowed past the callers' deadline, and the
//! JetStream stream that records `<prefix>.counterfactual`.

use async_nats::jetstream;
use futures::stream::{self, StreamExt};
use reco_e2e::{Fixture, NatsServer, Node};
use reco_messages::metrics as nm;
use reco_messages::{decode, Counterfactual, ItemId, Reason, RecommendReply, Source, Subjects};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const STREAM: &str = "RECO_CF_TEST";
const RATE: f64 = 0.25;
const REQUESTS: u64 = 240;
const MEMBERS: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_model_answers_are_recorded_beside_what_was_served_at_the_sampling_rate() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(2_000, 16, 100, "fixture-cf");
    // Every scoring pass sleeps 250 ms; callers wait 60 ms. The breaker is
    // off so that every request asks the model (and is late).
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        &format!(
            "[model]\ntest_delay_ms = 250\nbreaker_enabled = false\n\
             [counterfactual]\nsample_rate = {RATE}\nstream = \"{STREAM}\"\n"
        ),
    );
    let client = nats.client().await;
    for member in 0..MEMBERS {
        reco_e2e::play(&client, member, fixture.items[member as usize]).await;
    }
    node.wait_metric(Duration::from_secs(20), "events applied", |m| {
        reco_e2e::metric_sum(m, nm::EVENTS_INGESTED_TOTAL, &[]) >= MEMBERS as f64
    })
    .await;

    let replies: Vec<(u64, RecommendReply)> = stream::iter(0..REQUESTS)
        .map(|n| {
            let client = client.clone();
            async move { (n % MEMBERS, reco_e2e::ask(&client, n % MEMBERS, 60).await) }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    // What each member was served on a missed deadline.
    let mut served: HashMap<u64, Vec<Vec<ItemId>>> = HashMap::new();
    let mut late = 0u64;
    for (member, reply) in replies {
        let RecommendReply::Ok(reply) = reply else {
            panic!("member {member}: {reply:?}");
        };
        if reply.reason == Some(Reason::Deadline) {
            late += 1;
            served
                .entry(member)
                .or_default()
                .push(reply.items.iter().map(|s| s.item).collect());
        }
    }
    assert!(
        late >= REQUESTS * 9 / 10,
        "the slowed model misses almost every deadline ({late} of {REQUESTS})"
    );

    // Every late request is accounted for: sampled ones end published (or
    // dropped, or lost), the others are counted unsampled.
    let outcome = |m: &str, o: &str| {
        reco_e2e::metric_sum(m, nm::COUNTERFACTUAL_TOTAL, &[&format!("outcome=\"{o}\"")])
    };
    node.wait_metric(
        Duration::from_secs(30),
        "every late request accounted for",
        |m| {
            ["published", "unsampled", "dropped", "lost", "failed"]
                .iter()
                .map(|o| outcome(m, o))
                .sum::<f64>()
                >= late as f64
        },
    )
    .await;
    let metrics = node.metrics();
    let published = outcome(&metrics, "published");
    assert_eq!(outcome(&metrics, "dropped"), 0.0, "{metrics}");
    assert_eq!(outcome(&metrics, "lost"), 0.0, "{metrics}");

    // The published share of late answers is the sampling rate: binomial
    // (n = late, p = 0.25), sd ≈ 6.7 at n = 240; ±4.5 sd leaves a false
    // failure about once in 150 000 runs.
    let mean = RATE * late as f64;
    let sd = (late as f64 * RATE * (1.0 - RATE)).sqrt();
    eprintln!(
        "{published} of {late} late answers published (rate {RATE}, expected {mean:.1} ± {sd:.1})"
    );
    assert!(
        (published - mean).abs() <= 4.5 * sd,
        "published {published} of {late} late answers, expected {mean:.1} ± {:.1}",
        4.5 * sd
    );

    // The stream recorded every published record, with both lists.
    let js = jetstream::new(client.clone());
    let mut recorded = js
        .get_stream(STREAM)
        .await
        .expect("the node created the stream");
    let info = recorded.info().await.unwrap().clone();
    assert_eq!(
        info.config.subjects,
        vec![Subjects::default().counterfactual()]
    );
    assert!(
        info.config.max_bytes > 0 && !info.config.max_age.is_zero(),
        "bounded retention"
    );
    assert_eq!(info.state.messages as f64, published);
    let consumer = recorded
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut ids = HashSet::new();
    for _ in 0..info.state.messages {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("a stored record")
            .unwrap()
            .unwrap();
        let record: Counterfactual = decode(&message.payload, 1 << 20).expect("records decode");
        assert!(ids.insert(record.request_id), "one record per request");
        let member = record.member.0;
        assert_eq!(record.reason, Reason::Deadline);
        assert_eq!(record.late_source, Source::Model);
        assert_eq!(record.late_model_version.as_deref(), Some("fixture-cf"));
        // The nearline list (refreshed after the play) or the precomputed one.
        assert!(
            matches!(record.served_source, Source::Nearline | Source::Precomputed),
            "{:?}",
            record.served_source
        );
        assert_eq!(record.k, 10);
        assert_eq!(record.late_items.len(), 10);
        assert_eq!(record.served_items.len(), 10);
        let seen = fixture.items[member as usize];
        assert!(
            !record.late_items.iter().any(|s| s.item == seen),
            "the late list leaves out seen items too"
        );
        // What the record says was served is what the caller got.
        let served_items: Vec<ItemId> = record.served_items.iter().map(|s| s.item).collect();
        assert!(
            served[&member].contains(&served_items),
            "member {member}: {served_items:?} was not served"
        );
        // Asked at 60 ms (less the reply margin), the model answered after
        // its 250 ms sleep.
        assert!(
            (100..5_000).contains(&record.late_ms),
            "late by {} ms",
            record.late_ms
        );
        assert!(!record.node.is_empty());
    }
}
