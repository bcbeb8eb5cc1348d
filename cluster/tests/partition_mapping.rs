//! The server's `{{partition(N,1)}}` mapping and reco's partition function
//! agree, and the generated configuration is what a real server accepts.

use futures::StreamExt;
use reco_cluster::testing::NatsServer;
use reco_cluster::ServerConfig;
use reco_messages::partition::{partition_of, partition_of_token, Partition};
use reco_messages::{MemberId, Subjects};
use std::collections::BTreeMap;
use std::time::Duration;

fn members() -> Vec<u64> {
    let mut members: Vec<u64> = (0..1200).collect();
    // Large and irregular ids too.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..300 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        members.push(x >> (x % 50));
    }
    members.push(u64::MAX);
    members.sort_unstable();
    members.dedup();
    members
}

async fn partitions_seen_by_the_server(partitions: u32, prefix: &str) {
    let subjects = Subjects::new(prefix).unwrap();
    let server = NatsServer::start(
        ServerConfig::new()
            .partitions(&subjects, partitions)
            .unwrap(),
    );
    let client = server.client().await;
    let mut mapped = client
        .subscribe(subjects.p_events_wildcard())
        .await
        .unwrap();
    let mut unmapped = client
        .subscribe(format!("{prefix}.events.*"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let members = members();
    for &m in &members {
        client
            .publish(subjects.events(MemberId(m)), "x".into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let mut seen: BTreeMap<u64, Partition> = BTreeMap::new();
    while seen.len() < members.len() {
        let message = tokio::time::timeout(Duration::from_secs(10), mapped.next())
            .await
            .expect("the server delivered every mapped event")
            .unwrap();
        let (k, member) = subjects.member_of_p_event(&message.subject).unwrap();
        seen.insert(member.0, k);
    }
    for &m in &members {
        assert_eq!(
            seen[&m],
            partition_of(MemberId(m), partitions),
            "member {m}: server and reco disagree ({partitions} partitions)"
        );
    }
    // Once mapped, the public subject delivers nothing.
    let nothing = tokio::time::timeout(Duration::from_millis(200), unmapped.next()).await;
    assert!(
        nothing.is_err(),
        "an unmapped subscriber received {nothing:?}"
    );
}

#[tokio::test]
async fn server_partitions_members_exactly_as_reco_computes() {
    partitions_seen_by_the_server(64, "reco").await;
    partitions_seen_by_the_server(7, "prod.reco").await;
}

#[tokio::test]
async fn a_token_with_leading_zeros_is_hashed_as_published() {
    let subjects = Subjects::default();
    let server = NatsServer::start(ServerConfig::new().partitions(&subjects, 64).unwrap());
    let client = server.client().await;
    let mut mapped = client
        .subscribe(subjects.p_events_wildcard())
        .await
        .unwrap();
    client.flush().await.unwrap();
    client
        .publish("reco.events.0042", "x".into())
        .await
        .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(10), mapped.next())
        .await
        .unwrap()
        .unwrap();
    let k = partition_of_token("0042", 64);
    assert_eq!(message.subject.as_str(), format!("reco.p.events.{k}.0042"));
    // reco refuses such a subject: it would split member 42 over two partitions.
    assert!(subjects.member_of_p_event(&message.subject).is_err());
}

#[tokio::test]
async fn requests_reach_the_partition_subscriber_and_replies_come_back() {
    let subjects = Subjects::default();
    let server = NatsServer::start(ServerConfig::new().partitions(&subjects, 16).unwrap());
    let client = server.client().await;
    let member = MemberId(4242);
    let k = partition_of(member, 16);
    let mut owner = client
        .subscribe(subjects.p_recommend_partition(k))
        .await
        .unwrap();
    let responder = client.clone();
    let task = tokio::spawn(async move {
        let request = owner.next().await.unwrap();
        responder
            .publish(request.reply.unwrap(), request.subject.to_string().into())
            .await
            .unwrap();
    });
    client.flush().await.unwrap();
    let reply = client
        .request(subjects.recommend(member), "ask".into())
        .await
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&reply.payload).unwrap(),
        subjects.p_recommend(k, member)
    );
    task.await.unwrap();
    // A partition nobody owns answers "no responders" at once: the caller's
    // cue to ask the fallback subject.
    let other = (0..)
        .map(MemberId)
        .find(|&m| partition_of(m, 16) != k)
        .unwrap();
    let error = client
        .request(subjects.recommend(other), "ask".into())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), async_nats::RequestErrorKind::NoResponders);
}
