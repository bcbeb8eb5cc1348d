//! A partition's intake replays its stored events in per-member order, says
//! when it has caught up, then delivers new events.

use async_nats::jetstream::{self, stream};
use reco_cluster::testing::NatsServer;
use reco_cluster::{Intake, PartitionIntake, ServerConfig, Start};
use reco_messages::partition::{partition_of, Partition};
use reco_messages::{MemberId, Subjects};
use std::collections::BTreeMap;
use std::time::Duration;

const STREAM: &str = "RECO_EVENTS";
const PARTITIONS: u32 = 8;

async fn setup() -> (NatsServer, jetstream::Context, Subjects) {
    let subjects = Subjects::default();
    let server = NatsServer::start(
        ServerConfig::new()
            .partitions(&subjects, PARTITIONS)
            .unwrap(),
    );
    let js = jetstream::new(server.client().await);
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec![subjects.p_events_wildcard()],
        max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .unwrap();
    (server, js, subjects)
}

/// Publishes `count` events round-robin over `members` with a per-member
/// counter as payload ("member:n"), each acknowledged by JetStream.
async fn publish(
    js: &jetstream::Context,
    subjects: &Subjects,
    members: &[u64],
    counters: &mut BTreeMap<u64, u64>,
    count: usize,
) {
    let mut acks = Vec::with_capacity(count);
    for i in 0..count {
        let m = members[i % members.len()];
        let n = counters.entry(m).or_default();
        *n += 1;
        acks.push(
            js.publish(subjects.events(MemberId(m)), format!("{m}:{n}").into())
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.expect("JetStream stored the event");
    }
}

/// Reads events until `done` says stop, checking per-member order.
async fn read(
    intake: &mut PartitionIntake,
    subjects: &Subjects,
    k: Partition,
    last: &mut BTreeMap<u64, u64>,
    until_caught_up: bool,
    want: u64,
) -> (u64, bool) {
    let mut events = 0;
    let mut caught_up = false;
    while (until_caught_up && !caught_up) || (!until_caught_up && events < want) {
        let item = tokio::time::timeout(Duration::from_secs(10), intake.next())
            .await
            .expect("the intake delivered in time")
            .expect("the intake is open")
            .expect("the intake reads");
        match item {
            Intake::Event(event) => {
                let (pk, member) = subjects.member_of_p_event(&event.subject).unwrap();
                assert_eq!(pk, k, "an event of another partition came through");
                let text = std::str::from_utf8(&event.payload).unwrap();
                let (m, n) = text.split_once(':').unwrap();
                assert_eq!(m.parse::<u64>().unwrap(), member.0);
                let n: u64 = n.parse().unwrap();
                let before = last.insert(member.0, n).unwrap_or(0);
                assert_eq!(n, before + 1, "member {member}: event {n} after {before}");
                events += 1;
            }
            Intake::CaughtUp { replayed, .. } => {
                assert!(!caught_up, "caught up twice");
                assert_eq!(replayed, events);
                caught_up = true;
            }
        }
    }
    (events, caught_up)
}

#[tokio::test]
async fn a_partition_is_replayed_in_member_order_then_followed_live() {
    let (_server, js, subjects) = setup().await;
    let members: Vec<u64> = (1..=200).collect();
    let mut counters = BTreeMap::new();
    publish(&js, &subjects, &members, &mut counters, 5000).await;

    let k = Partition(5);
    let in_k = |m: &u64| partition_of(MemberId(*m), PARTITIONS) == k;
    let expected: u64 = counters
        .iter()
        .filter(|(m, _)| in_k(m))
        .map(|(_, n)| n)
        .sum();
    assert!(expected > 0);
    let mut intake = PartitionIntake::open(
        &js,
        STREAM,
        subjects.p_events_partition(k),
        Start::Since(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    let mut last = BTreeMap::new();
    let (replayed, _) = read(&mut intake, &subjects, k, &mut last, true, 0).await;
    assert_eq!(replayed, expected, "every stored event of the partition");
    assert!(intake.is_caught_up());
    for (m, n) in &counters {
        if in_k(m) {
            assert_eq!(last.get(m), Some(n), "member {m} fully replayed");
        }
    }

    // New events keep coming, still in order.
    let before: BTreeMap<u64, u64> = counters.clone();
    publish(&js, &subjects, &members, &mut counters, 2000).await;
    let more: u64 = counters
        .iter()
        .filter(|(m, _)| in_k(m))
        .map(|(m, n)| n - before.get(m).copied().unwrap_or(0))
        .sum();
    read(&mut intake, &subjects, k, &mut last, false, more).await;

    // A later intake resumes right after the last event delivered.
    let resume = intake.last_sequence() + 1;
    publish(&js, &subjects, &members, &mut counters, 500).await;
    let mut resumed = PartitionIntake::open(
        &js,
        STREAM,
        subjects.p_events_partition(k),
        Start::Sequence(resume),
    )
    .await
    .unwrap();
    let (again, caught_up) = read(&mut resumed, &subjects, k, &mut last, true, 0).await;
    assert!(caught_up && again > 0);
    for (m, n) in &counters {
        if in_k(m) {
            assert_eq!(last.get(m), Some(n), "member {m} after resuming");
        }
    }
}

#[tokio::test]
async fn an_empty_partition_is_caught_up_at_once() {
    let (_server, js, subjects) = setup().await;
    let mut intake = PartitionIntake::open(
        &js,
        STREAM,
        subjects.p_events_partition(Partition(2)),
        Start::Since(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), intake.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(first, Intake::CaughtUp { replayed: 0, .. }));
}

#[tokio::test]
async fn events_older_than_the_window_are_not_replayed() {
    let (_server, js, subjects) = setup().await;
    let member = 77;
    let k = partition_of(MemberId(member), PARTITIONS);
    let mut counters = BTreeMap::new();
    publish(&js, &subjects, &[member], &mut counters, 10).await;
    // The gate: the stored time of the last old event is in the past.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut intake = PartitionIntake::open(
        &js,
        STREAM,
        subjects.p_events_partition(k),
        Start::Since(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    publish(&js, &subjects, &[member], &mut counters, 3).await;
    // Only the three new ones arrive, from 11 on.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let item = tokio::time::timeout(Duration::from_secs(5), intake.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Intake::Event(event) = item {
            seen.push(String::from_utf8(event.payload.to_vec()).unwrap());
        }
    }
    assert_eq!(seen, vec!["77:11", "77:12", "77:13"]);
}
