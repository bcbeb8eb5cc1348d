//! Rows `trending` and `billboard` end to end (issue 15): a real
//! nats-server, a `reco serve` node and a `reco nearline` job. Events
//! published on the events subject reach the node's trending row (and the
//! take rates it serves from) within the snapshot interval plus a second;
//! the billboard answers from the member's model scores and the take rates,
//! and features a title launched after the model was trained; without a
//! snapshot both rows answer from the popular list and say why.

use reco_e2e::{ask_row, Fixture, NatsServer, NearlineProcess, Node};
use reco_messages::{
    encode, Event, EventKind, ItemId, MemberId, Reason, RecommendReply, Recommendations, Source,
    Subjects,
};
use std::time::{Duration, Instant};

/// The snapshot interval of the job under test.
const INTERVAL: Duration = Duration::from_millis(1000);
/// A title the fixture model does not know: launched after its training.
const LAUNCHED: ItemId = ItemId(5);

const NODE_CONFIG: &str =
    "[node]\nfault_injection = true\n[streaming]\nsnapshot_bucket = \"rows_snap\"\n";
const JOB_CONFIG: &str =
    "[streaming]\ncheckpoint_bucket = \"rows_ck\"\nsnapshot_bucket = \"rows_snap\"\n\
     checkpoint_interval_ms = 500\nsnapshot_interval_ms = 1000\nmetrics_addr = \"\"\n";

fn ok(reply: RecommendReply) -> Recommendations {
    match reply {
        RecommendReply::Ok(r) => r,
        RecommendReply::Error(e) => panic!("error reply: {e:?}"),
    }
}

fn event(member: u64, item: ItemId, kind: EventKind) -> Event {
    Event {
        member: MemberId(member),
        item,
        kind,
        value: 0.0,
        at_ms: None,
        device: None,
    }
}

async fn publish(client: &async_nats::Client, events: &[Event]) {
    let subjects = Subjects::default();
    for e in events {
        client
            .publish(subjects.events(e.member), encode(e).into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trending_and_billboard_follow_the_event_stream() {
    let nats = NatsServer::start();
    let fixture = Fixture::write(200, 8, 0, "v1");
    let node = Node::start(&nats.url(), Some(fixture.path()), NODE_CONFIG);
    let client = nats.client().await;

    // No snapshot yet: both rows answer from the popular list and say why.
    for row in ["trending", "billboard"] {
        let r = ok(ask_row(&client, 1, row, 3).await);
        assert_eq!(r.source, Source::Popular, "{row}: {r:?}");
        assert!(r.degraded);
        assert_eq!(r.reason, Some(Reason::AggregatesUnavailable));
        assert_eq!(r.items.len(), 3);
    }

    let mut job = NearlineProcess::start(&nats.url(), JOB_CONFIG);
    job.wait_log("Aggregation job ready.").await;

    // Every title of the catalogue: 20 impressions and 2 plays each (take
    // rate 0.1, not trending). A title the model knows surges: 6 more
    // plays. The launched title: 20 impressions, 12 plays (0.6).
    let surging = fixture.items[50];
    let mut events = Vec::new();
    for &item in &fixture.items {
        for m in 0..20 {
            events.push(event(100 + m, item, EventKind::Impression));
        }
        for m in 0..2 {
            events.push(event(100 + m, item, EventKind::Play));
        }
    }
    for m in 0..6 {
        events.push(event(200 + m, surging, EventKind::Play));
    }
    for m in 0..20 {
        events.push(event(300 + m, LAUNCHED, EventKind::Impression));
    }
    for m in 0..12 {
        events.push(event(300 + m, LAUNCHED, EventKind::Play));
    }
    publish(&client, &events).await;
    let published = Instant::now();

    // The node's trending row shows both within the interval plus a second.
    let trending = loop {
        let r = ok(ask_row(&client, 1, "trending", 5).await);
        let items: Vec<ItemId> = r.items.iter().map(|s| s.item).collect();
        if r.source == Source::Trending && items.contains(&LAUNCHED) && items.contains(&surging) {
            break r;
        }
        assert!(
            published.elapsed() < Duration::from_secs(60),
            "trending never showed the events: {r:?}\nnode:\n{}\njob:\n{}",
            node.log(),
            job.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = published.elapsed();
    eprintln!("trending row updated {took:?} after the events were published");
    assert!(
        took <= INTERVAL + Duration::from_secs(1),
        "trending row took {took:?} (interval {INTERVAL:?} + 1 s)"
    );
    assert!(!trending.degraded);
    assert_eq!(trending.items[0].item, LAUNCHED, "{trending:?}");
    // The snapshot it was read from holds the take rates of every event.
    let version = trending.aggregates_version.clone().expect("provenance");
    let js = async_nats::jetstream::new(client.clone());
    let snapshot = reco_streaming::snapshot::fetch(&js, "rows_snap", &version)
        .await
        .unwrap();
    assert_eq!(snapshot.last_sequence, events.len() as u64);
    let launched = snapshot.title(LAUNCHED).unwrap();
    assert_eq!(launched.day.take_rate(), Some(0.6));
    assert_eq!(
        snapshot.title(fixture.items[0]).unwrap().day.take_rate(),
        Some(0.1)
    );
    assert_eq!(snapshot.title(surging).unwrap().day.take_rate(), Some(0.4));
    let health = reco_e2e::NatsServer::admin(&client).health().await.unwrap();
    assert!(health.aggregates_version.is_some(), "{health:?}");
    assert!(health.aggregates_age_ms.is_some_and(|age| age < 60_000));

    // A member the model can score (one play): the billboard answers from
    // its scores and the take rates, and features the launched title.
    publish(&client, &[event(7, fixture.items[120], EventKind::Play)]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut launched_featured = 0;
    for _ in 0..40 {
        let r = ok(ask_row(&client, 7, "billboard", 1).await);
        assert_eq!(r.source, Source::Billboard, "{r:?}");
        assert!(!r.degraded, "{r:?}");
        assert_eq!(r.model_version.as_deref(), Some("v1"));
        assert!(r.aggregates_version.is_some());
        assert_eq!(r.items.len(), 1);
        assert_ne!(
            r.items[0].item, fixture.items[120],
            "seen items are never featured"
        );
        launched_featured += usize::from(r.items[0].item == LAUNCHED);
    }
    eprintln!("launched title featured {launched_featured} of 40 billboards");
    assert!(
        launched_featured >= 10,
        "launched title featured {launched_featured} of 40"
    );
    // A member nobody knows: the bandit over take rates alone, degraded.
    let cold = ok(ask_row(&client, 9_999, "billboard", 2).await);
    assert_eq!(cold.source, Source::Billboard);
    assert_eq!(cold.reason, Some(Reason::ColdStart));
    assert_eq!(cold.items.len(), 2);
    assert!(node.metric(reco_messages::metrics::BILLBOARD_NEW_TITLES_TOTAL, &[]) >= 10.0);
    // A model slower than the deadline: the billboard answers in time with
    // the bandit over take rates alone, and says why.
    let slow = reco_messages::admin::SetFaults {
        model_delay_ms: Some(3_000),
        ..Default::default()
    };
    assert!(NatsServer::admin(&client).faults(&slow).await.is_ok());
    let late = ok(ask_row(&client, 7, "billboard", 1).await);
    assert_eq!(late.source, Source::Billboard, "{late:?}");
    assert_eq!(late.reason, Some(Reason::Deadline));
    assert!(late.degraded && late.model_version.is_none());
    assert_eq!(late.items.len(), 1);

    // The snapshot gauges are set every second.
    node.wait_metric(Duration::from_secs(5), "the snapshot gauges", |text| {
        reco_e2e::metric_sum(
            text,
            reco_messages::metrics::AGGREGATES_SNAPSHOT_SEQUENCE,
            &[],
        ) >= events.len() as f64
            && reco_e2e::metric_sum(
                text,
                reco_messages::metrics::AGGREGATES_SNAPSHOT_AGE_SECONDS,
                &[],
            ) >= 0.0
    })
    .await;
}
