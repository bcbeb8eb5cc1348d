//! The partition host against a real server with the mapping: an acquired
//! partition is replayed before its requests are subscribed, its traffic
//! comes out in the public subject form, and a revoked partition stops
//! answering (the caller gets "no responders": its cue for the fallback).
//! Also: the mapping probe and the single-mode guard.

use async_nats::jetstream::{self, stream};
use reco_cluster::probe::{hold_single, keep_single, probe_mapping, MappingProbe, SingleModeError};
use reco_cluster::testing::NatsServer;
use reco_cluster::{Fence, HostSettings, Leases, NodeId, Ownership, PartitionHost, ServerConfig};
use reco_messages::partition::partition_of;
use reco_messages::{MemberId, Subjects};
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 8;

#[tokio::test]
async fn an_acquired_partition_is_replayed_then_served_and_a_revoked_one_is_not() {
    let subjects = Subjects::default();
    let server = NatsServer::start(
        ServerConfig::new()
            .partitions(&subjects, PARTITIONS)
            .unwrap(),
    );
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "RECO_EVENTS".into(),
        subjects: vec![subjects.p_events_wildcard()],
        ..Default::default()
    })
    .await
    .unwrap();
    let member = MemberId(31);
    let k = partition_of(member, PARTITIONS);
    for i in 0..50 {
        js.publish(subjects.events(member), format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let fence = Fence::new(PARTITIONS);
    fence.hold(k, Instant::now() + Duration::from_secs(60));
    let host = PartitionHost::new(
        client.clone(),
        subjects.clone(),
        HostSettings {
            stream: "RECO_EVENTS".into(),
            replay_window: Duration::from_secs(60),
            partitions: PARTITIONS,
            events_capacity: 16,
            requests_capacity: 16,
        },
        fence.clone(),
    );
    let (ownership, changes) = tokio::sync::mpsc::channel(8);
    let (mut traffic, task) = host.start(changes);
    ownership.send(Ownership::Acquired(k)).await.unwrap();
    // First the mark that has the ingress forget the partition's stale
    // sessions, then the replay.
    let mark = tokio::time::timeout(Duration::from_secs(10), traffic.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        subjects.partition_of_p_acquired(&mark.subject),
        Some((k, PARTITIONS))
    );
    for i in 0..50 {
        let event = tokio::time::timeout(Duration::from_secs(10), traffic.events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(event.subject.as_str(), subjects.events(member));
        assert_eq!(event.payload, format!("{i}").as_bytes());
    }
    traffic
        .status
        .wait_for(|s| s.serving.contains(&k))
        .await
        .unwrap();

    // A responder standing in for the ingress.
    let responder_client = client.clone();
    let mut requests = traffic.requests;
    let expected = subjects.recommend(member);
    let responder = tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            assert_eq!(request.subject.as_str(), expected);
            responder_client
                .publish(request.reply.unwrap(), "answer".into())
                .await
                .unwrap();
        }
    });
    let reply = client
        .request(subjects.recommend(member), "ask".into())
        .await
        .unwrap();
    assert_eq!(reply.payload, "answer".as_bytes());

    // Live events keep flowing after the replay.
    js.publish(subjects.events(member), "live".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let live = tokio::time::timeout(Duration::from_secs(10), traffic.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.payload, "live".as_bytes());

    let (done, acked) = tokio::sync::oneshot::channel();
    ownership
        .send(Ownership::Revoke { partition: k, done })
        .await
        .unwrap();
    acked.await.unwrap();
    let error = client
        .request(subjects.recommend(member), "ask".into())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), async_nats::RequestErrorKind::NoResponders);
    drop(ownership);
    task.await.unwrap();
    responder.await.unwrap();
}

#[tokio::test]
async fn a_partition_whose_lease_ran_out_is_not_answered() {
    let subjects = Subjects::default();
    let server = NatsServer::start(
        ServerConfig::new()
            .partitions(&subjects, PARTITIONS)
            .unwrap(),
    );
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "EV".into(),
        subjects: vec![subjects.p_events_wildcard()],
        ..Default::default()
    })
    .await
    .unwrap();
    let member = MemberId(5);
    let k = partition_of(member, PARTITIONS);
    let fence = Fence::new(PARTITIONS);
    fence.hold(k, Instant::now() + Duration::from_secs(60));
    let host = PartitionHost::new(
        client.clone(),
        subjects.clone(),
        HostSettings {
            stream: "EV".into(),
            replay_window: Duration::from_secs(60),
            partitions: PARTITIONS,
            events_capacity: 16,
            requests_capacity: 16,
        },
        fence.clone(),
    );
    let (ownership, changes) = tokio::sync::mpsc::channel(8);
    let (mut traffic, _task) = host.start(changes);
    ownership.send(Ownership::Acquired(k)).await.unwrap();
    traffic
        .status
        .wait_for(|s| s.serving.contains(&k))
        .await
        .unwrap();
    // The lease runs out (as after a pause) before the rebalancer noticed.
    fence.drop_partition(k);
    let asked = client.request(subjects.recommend(member), "ask".into());
    let outcome = tokio::time::timeout(Duration::from_millis(500), asked).await;
    assert!(
        !matches!(outcome, Ok(Ok(_))),
        "a fenced partition was answered"
    );
    assert!(traffic.requests.try_recv().is_err());
}

#[tokio::test]
async fn the_probe_tells_a_plain_server_from_a_mapped_one_and_checks_the_count() {
    let subjects = Subjects::new("prod.reco").unwrap();
    let plain = NatsServer::plain();
    let client = plain.client().await;
    assert_eq!(
        probe_mapping(&client, &subjects, 64).await.unwrap(),
        MappingProbe::Absent
    );
    let mapped = NatsServer::start(ServerConfig::new().partitions(&subjects, 64).unwrap());
    let client = mapped.client().await;
    assert_eq!(
        probe_mapping(&client, &subjects, 64).await.unwrap(),
        MappingProbe::Partitioned {
            partitions_agree: true
        }
    );
    assert_eq!(
        probe_mapping(&client, &subjects, 63).await.unwrap(),
        MappingProbe::Partitioned {
            partitions_agree: false
        }
    );
    // Another prefix is not mapped on that server.
    assert_eq!(
        probe_mapping(&client, &Subjects::default(), 64)
            .await
            .unwrap(),
        MappingProbe::Absent
    );
}

#[tokio::test]
async fn a_second_node_on_a_plain_server_refuses_to_start_and_says_how_to_fix_it() {
    let subjects = Subjects::default();
    let server = NatsServer::plain();
    let open = |name: &'static str| {
        let url = server.url();
        async move {
            let js = jetstream::new(async_nats::connect(url).await.unwrap());
            Leases::open(
                &js,
                "RECO_LEASES_reco",
                Duration::from_secs(1),
                NodeId::new(name).unwrap(),
            )
            .await
            .unwrap()
        }
    };
    let (first, second) = (open("first").await, open("second").await);
    let lease = hold_single(&first, &subjects).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let keeper = tokio::spawn(keep_single(first.clone(), lease, async move {
        let _ = stopped.await;
    }));
    let refused = hold_single(&second, &subjects).await.unwrap_err();
    assert!(
        matches!(refused, SingleModeError::AnotherNode { ref holder, .. } if holder == "first")
    );
    let text = refused.to_string();
    assert!(
        text.contains("reco nats-config --partitions 64 --prefix reco --fragment"),
        "{text}"
    );
    // Once the first leaves, a node may run alone again at once.
    stop.send(()).unwrap();
    keeper.await.unwrap().unwrap();
    second
        .acquire(reco_cluster::probe::SINGLE_LEASE_KEY)
        .await
        .expect("a released single-mode lease is free at once");
}
