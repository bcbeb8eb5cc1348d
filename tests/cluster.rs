//! Many nodes on one NATS, end to end: three `reco serve` processes on a
//! real nats-server started with the configuration `reco nats-config`
//! generates, under a steady load of events (acknowledged by JetStream) and
//! requests (following the caller rule). The node owning the most partitions
//! is killed with SIGKILL: every request is still answered (counting the
//! fallback subject), events acknowledged while its partitions had no owner
//! are applied by the new owners (a played item is excluded from the
//! member's next reply), and every partition is served again.
//!
//! Also: a node alone on a plain server keeps working as before, and a
//! second one on the same prefix refuses to start.

use async_nats::jetstream;
use reco_client::caller::ask_with_fallback;
use reco_cluster::assignment::assign;
use reco_cluster::testing::NatsServer as ConfiguredServer;
use reco_cluster::{NodeId, ServerConfig};
use reco_e2e::{Fixture, NatsServer, Node};
use reco_messages::partition::{partition_of, Partition};
use reco_messages::{
    decode, encode, Event, EventKind, ItemId, MemberId, RecommendReply, RecommendRequest, Subjects,
};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 16;
const LEASE_MS: u64 = 2000;
const MEMBERS: u64 = 120;

fn node_config(id: &str) -> String {
    format!(
        "[node]\nshards = 1\n\
         [model]\nworkers = 1\n\
         [nearline]\nenabled = false\n\
         [cluster]\nnode_id = \"{id}\"\npartitions = {PARTITIONS}\nlease_ms = {LEASE_MS}\nreplay_window_secs = 600\n"
    )
}

fn serving(node: &Node) -> f64 {
    node.metric("reco_partition_serving", &[])
}

/// Polls until each node serves the number of partitions rendezvous
/// hashing gives it among `ids` (so all of them, each once); returns how
/// long that took. Panics after `limit`.
async fn converged(nodes: &[&Node], ids: &[&str], limit: Duration) -> Duration {
    let node_ids: Vec<NodeId> = ids.iter().map(|id| NodeId::new(id).unwrap()).collect();
    let owners = assign(PARTITIONS, &node_ids);
    let want: Vec<f64> = node_ids
        .iter()
        .map(|id| owners.values().filter(|o| *o == id).count() as f64)
        .collect();
    let started = Instant::now();
    loop {
        let counts: Vec<f64> = nodes.iter().map(|n| serving(n)).collect();
        if counts == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "partitions not served as assigned: {counts:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The three nodes of the failover tests.
const THREE: [&str; 3] = ["node-1", "node-2", "node-3"];

/// A server with the partition mapping, a model, and [`THREE`] nodes on
/// it, each serving its rendezvous share.
async fn three_nodes() -> (ConfiguredServer, Fixture, Vec<Node>) {
    let server = ConfiguredServer::start(
        ServerConfig::new()
            .partitions(&Subjects::default(), PARTITIONS)
            .unwrap(),
    );
    let fixture = Fixture::write(400, 8, 200, "v1");
    let nodes: Vec<Node> = THREE
        .iter()
        .map(|id| Node::start(&server.url(), Some(fixture.path()), &node_config(id)))
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    converged(&refs, &THREE, Duration::from_secs(30)).await;
    (server, fixture, nodes)
}

async fn ask(client: &async_nats::Client, member: u64) -> (reco_messages::Recommendations, bool) {
    let request = RecommendRequest {
        k: Some(10),
        deadline_ms: Some(300),
        ..Default::default()
    };
    let (reply, via_fallback) = ask_with_fallback(
        client,
        &Subjects::default(),
        MemberId(member),
        encode(&request).into(),
        Duration::from_millis(1000),
    )
    .await
    .expect("every request is answered, on the fallback subject at worst");
    match decode::<RecommendReply>(&reply.payload, 1 << 20).expect("replies decode") {
        RecommendReply::Ok(recommendations) => (recommendations, via_fallback),
        RecommendReply::Error(error) => panic!("error reply: {error:?}"),
    }
}

async fn play(js: &jetstream::Context, member: u64, item: ItemId) {
    let event = Event {
        member: MemberId(member),
        item,
        kind: EventKind::Play,
        value: 600.0,
        at_ms: None,
        device: None,
    };
    js.publish(
        Subjects::default().events(MemberId(member)),
        encode(&event).into(),
    )
    .await
    .expect("published")
    .await
    .expect("JetStream acknowledged the event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_request_and_no_acknowledged_event() {
    let subjects = Subjects::default();
    let (server, _fixture, nodes) = three_nodes().await;
    let ids = THREE;
    for node in &nodes {
        node.wait_log(Duration::from_secs(30), "this node joins the cluster")
            .await;
    }
    let health = server
        .client()
        .await
        .request(subjects.admin_health(), "".into())
        .await
        .unwrap();
    let health: reco_messages::admin::Health = decode(&health.payload, 1 << 20).unwrap();
    let cluster = health.cluster.expect("health tells the node's place");
    assert_eq!(cluster.mode, "cluster");
    assert!(ids.contains(&cluster.node.as_str()));
    assert!(!cluster.partitions.is_empty());
    // The converged owners are rendezvous hashing's: the victim is the node
    // with the most partitions.
    let node_ids: Vec<NodeId> = ids.iter().map(|id| NodeId::new(id).unwrap()).collect();
    let owners = assign(PARTITIONS, &node_ids);
    let (victim, _) = node_ids
        .iter()
        .enumerate()
        .max_by_key(|(_, id)| owners.values().filter(|o| o == id).count())
        .unwrap();
    let victim_partitions: BTreeSet<Partition> = owners
        .iter()
        .filter(|(_, o)| **o == node_ids[victim])
        .map(|(k, _)| *k)
        .collect();
    let victims: Vec<u64> = (0..MEMBERS)
        .filter(|&m| victim_partitions.contains(&partition_of(MemberId(m), PARTITIONS)))
        .collect();
    assert!(!victims.is_empty());

    let client = server.client().await;
    let js = jetstream::new(client.clone());
    // Each victim member's current top item: played during the outage, it
    // must be gone from the member's next reply.
    let tops = top_items(&client, &victims[..victims.len().min(12)]).await;

    let load = Load::start(&client, &js).await;
    load.running(50).await;

    let killed_at = Instant::now();
    nodes[victim].kill();
    for &(m, item) in &tops {
        play(&js, m, item).await;
    }
    let survivors: Vec<&Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n)
        .collect();
    let survivor_ids: Vec<&str> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, id)| *id)
        .collect();
    converged(&survivors, &survivor_ids, Duration::from_secs(30)).await;
    let recovered = killed_at.elapsed();

    played_items_are_excluded(&client, &tops).await;
    let report = load.finish().await;
    let violations = order_violations(&survivors);
    assert_eq!(violations, 0, "per-member order broken on a survivor");
    eprintln!(
        "SIGKILL of {} ({} of {PARTITIONS} partitions): served again after {recovered:?} \
         (lease {LEASE_MS} ms); {} requests answered, {} by the fallback subject, {} answered \
         twice (0 served twice); {} events acknowledged; {violations} order violations",
        ids[victim],
        victim_partitions.len(),
        report.answered,
        report.via_fallback,
        report.answered_twice,
        report.events,
    );
}

/// A steady load: events acknowledged by JetStream (clicks, which exclude
/// nothing) and requests following the caller rule; a request without any
/// answer or an event without an acknowledgement fails the task.
///
/// How the acceptance's invariants are observed:
/// - per-member order: each event carries a producer time (`at_ms`) that
///   grows with every event the producer sends, so per member too; a
///   session that applies an event older than one it applied before
///   counts it in `reco_events_out_of_order_total` (read on every node).
/// - double answers: requests are published with reply subjects of their
///   own (`<inbox>.<n>`) on one subscription that stays open for the whole
///   run, so every reply to a request is seen, not only the first; a
///   request with two non-degraded replies was answered by two owners.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    via_fallback: Arc<AtomicU64>,
    events: Arc<AtomicU64>,
    replies: Arc<Replies>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    collector: tokio::task::JoinHandle<()>,
}

/// Every reply to the load's requests, by request number.
#[derive(Default)]
struct Replies {
    waiting: std::sync::Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<bool>>>,
    /// (replies, non-degraded replies) per request.
    counts: std::sync::Mutex<std::collections::HashMap<u64, (u32, u32)>>,
}

/// What a load saw.
#[derive(Debug)]
struct LoadReport {
    answered: u64,
    via_fallback: u64,
    events: u64,
    /// Requests that got more than one reply (of any kind).
    answered_twice: usize,
    /// Requests that got more than one non-degraded reply.
    served_twice: usize,
}

impl Load {
    async fn start(client: &async_nats::Client, js: &jetstream::Context) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (answered, via_fallback, events) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let replies = Arc::new(Replies::default());
        let inbox = client.new_inbox();
        let collector = {
            let replies = replies.clone();
            let mut sub = client.subscribe(format!("{inbox}.*")).await.unwrap();
            client.flush().await.unwrap();
            tokio::spawn(async move {
                use futures::StreamExt;
                while let Some(message) = sub.next().await {
                    let Some(n) = message
                        .subject
                        .rsplit('.')
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    let no_responders =
                        message.status == Some(async_nats::StatusCode::NO_RESPONDERS);
                    if !no_responders {
                        let full = matches!(
                            decode::<RecommendReply>(&message.payload, 1 << 20),
                            Ok(RecommendReply::Ok(r)) if !r.degraded
                        );
                        let mut counts = replies.counts.lock().unwrap();
                        let entry = counts.entry(n).or_default();
                        entry.0 += 1;
                        entry.1 += u32::from(full);
                    }
                    if let Some(waiter) = replies.waiting.lock().unwrap().remove(&n) {
                        let _ = waiter.send(!no_responders);
                    }
                }
            })
        };
        let requester = {
            let (client, stop, answered, via_fallback, replies) = (
                client.clone(),
                stop.clone(),
                answered.clone(),
                via_fallback.clone(),
                replies.clone(),
            );
            tokio::spawn(async move {
                let subjects = Subjects::default();
                let request = encode(&RecommendRequest {
                    k: Some(10),
                    deadline_ms: Some(300),
                    ..Default::default()
                });
                let (mut m, mut n) = (0, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let member = MemberId(m % MEMBERS);
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    replies.waiting.lock().unwrap().insert(n, tx);
                    client
                        .publish_with_reply(
                            subjects.recommend(member),
                            format!("{inbox}.{n}"),
                            request.clone().into(),
                        )
                        .await
                        .unwrap();
                    let replied = matches!(
                        tokio::time::timeout(Duration::from_millis(1000), rx).await,
                        Ok(Ok(true))
                    );
                    if !replied {
                        // The caller rule: no responders or a timed-out try.
                        replies.waiting.lock().unwrap().remove(&n);
                        let reply = client
                            .request(subjects.fallback_recommend(member), request.clone().into())
                            .await
                            .expect("the fallback subject answers");
                        assert!(matches!(
                            decode::<RecommendReply>(&reply.payload, 1 << 20),
                            Ok(RecommendReply::Ok(_))
                        ));
                        via_fallback.fetch_add(1, Ordering::Relaxed);
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                    m += 7;
                    n += 1;
                }
            })
        };
        let producer = {
            let (js, stop, events) = (js.clone(), stop.clone(), events.clone());
            tokio::spawn(async move {
                // Producer times grow with every event (by 1 ms, slower
                // than the clock), so per member too.
                let first_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let event = Event {
                        member: MemberId(i % MEMBERS),
                        item: ItemId(1000 + 7 * (i % 400)),
                        kind: EventKind::Click,
                        value: 0.0,
                        at_ms: Some(first_ms + i),
                        device: None,
                    };
                    js.publish(
                        Subjects::default().events(MemberId(i % MEMBERS)),
                        encode(&event).into(),
                    )
                    .await
                    .unwrap()
                    .await
                    .expect("JetStream acknowledged the event");
                    events.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        Load {
            stop,
            answered,
            via_fallback,
            events,
            replies,
            tasks: vec![requester, producer],
            collector,
        }
    }

    /// Waits until `requests` requests were answered (the load runs).
    async fn running(&self, requests: u64) {
        while self.answered.load(Ordering::Relaxed) < requests {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the load, waits a second for late replies, and asserts that
    /// no request was served twice.
    async fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await
                .expect("no request went unanswered and every event was acknowledged");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.collector.abort();
        let counts = self.replies.counts.lock().unwrap();
        let report = LoadReport {
            answered: self.answered.load(Ordering::Relaxed),
            via_fallback: self.via_fallback.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            answered_twice: counts.values().filter(|c| c.0 > 1).count(),
            served_twice: counts.values().filter(|c| c.1 > 1).count(),
        };
        assert_eq!(
            report.served_twice, 0,
            "requests with two non-degraded replies: {report:?}"
        );
        report
    }
}

/// Events applied out of per-member order on `nodes` (0 expected).
fn order_violations(nodes: &[&Node]) -> u64 {
    nodes
        .iter()
        .map(|n| n.metric("reco_events_out_of_order_total", &[]) as u64)
        .sum()
}

/// Each of `members`' current top item.
async fn top_items(client: &async_nats::Client, members: &[u64]) -> Vec<(u64, ItemId)> {
    let mut tops = Vec::new();
    for &m in members {
        let (reply, _) = ask(client, m).await;
        tops.push((m, reply.items.first().expect("a non-empty list").item));
    }
    tops
}

/// Asks each member again: the reply comes from its partition's owner and
/// leaves out the item it played.
///
/// A reply can still come from the fallback subject when the owner's
/// reply misses the caller's per-try timeout on a loaded machine (the
/// cluster tests run their nodes side by side on 2 cores): such a member
/// is asked again, for up to 10 s. How soon partitions are served again
/// is what [`converged`] measures.
async fn played_items_are_excluded(client: &async_nats::Client, played: &[(u64, ItemId)]) {
    for &(m, item) in played {
        let asked = Instant::now();
        let (mut reply, mut fell_back) = ask(client, m).await;
        while fell_back && asked.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            (reply, fell_back) = ask(client, m).await;
        }
        if asked.elapsed() > Duration::from_secs(1) {
            eprintln!(
                "member {m}: answered by its owner after {:?}",
                asked.elapsed()
            );
        }
        assert!(!fell_back, "member {m}: its partition has an owner again");
        assert!(
            reply.items.iter().all(|s| s.item != item),
            "member {m}: item {item:?}, played during the move, is still recommended"
        );
    }
}

/// The members among `0..MEMBERS` whose partition `owner` holds in the
/// rendezvous assignment over `ids`.
fn members_of(owner: &str, ids: &[&str]) -> Vec<u64> {
    let node_ids: Vec<NodeId> = ids.iter().map(|id| NodeId::new(id).unwrap()).collect();
    let owners = assign(PARTITIONS, &node_ids);
    (0..MEMBERS)
        .filter(|&m| owners[&partition_of(MemberId(m), PARTITIONS)].as_str() == owner)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_node_hands_over_and_a_joining_node_takes_its_share_without_losing_events() {
    let (server, fixture, mut nodes) = three_nodes().await;
    let ids = THREE;
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let load = Load::start(&client, &js).await;
    load.running(50).await;

    // SIGTERM: the node hands its partitions over before it exits.
    let leaving = members_of("node-3", &ids);
    let tops = top_items(&client, &leaving[..leaving.len().min(8)]).await;
    let stopped_at = Instant::now();
    nodes[2].terminate();
    for &(m, item) in &tops {
        play(&js, m, item).await;
    }
    let survivors = ["node-1", "node-2"];
    converged(&[&nodes[0], &nodes[1]], &survivors, Duration::from_secs(30)).await;
    let handed_over = stopped_at.elapsed();
    nodes[2].wait_exit(Duration::from_secs(30));
    played_items_are_excluded(&client, &tops).await;

    // A fourth node joins: it takes its share, each partition replayed.
    let joined = ["node-1", "node-2", "node-4"];
    let moving = members_of("node-4", &joined);
    let tops = top_items(&client, &moving[..moving.len().min(8)]).await;
    let joined_at = Instant::now();
    nodes.push(Node::start(
        &server.url(),
        Some(fixture.path()),
        &node_config("node-4"),
    ));
    for &(m, item) in &tops {
        play(&js, m, item).await;
    }
    converged(
        &[&nodes[0], &nodes[1], &nodes[3]],
        &joined,
        Duration::from_secs(30),
    )
    .await;
    let rebalanced = joined_at.elapsed();
    played_items_are_excluded(&client, &tops).await;
    let report = load.finish().await;
    let violations = order_violations(&[&nodes[0], &nodes[1], &nodes[3]]);
    eprintln!(
        "SIGTERM of node-3: its partitions served again after {handed_over:?}; node-4 joined and \
         served its share {rebalanced:?} after its start; {} requests answered, {} by the \
         fallback subject, {} answered twice (0 served twice); {} events acknowledged; \
         {violations} order violations",
        report.answered, report.via_fallback, report.answered_twice, report.events,
    );
    assert_eq!(violations, 0, "per-member order broken");
}

#[tokio::test]
async fn a_node_alone_on_a_plain_server_serves_and_a_second_one_refuses_to_start() {
    let server = NatsServer::start();
    let fixture = Fixture::write(200, 8, 50, "v1");
    let config = "[node]\nshards = 1\n[model]\nworkers = 1\n[cluster]\nlease_ms = 1000\n";
    let first = Node::start(&server.url(), Some(fixture.path()), config);
    assert!(first.log().contains("single mode"), "{}", first.log());
    let client = server.client().await;
    let reply = reco_e2e::ask(&client, 3, 500).await;
    assert!(matches!(reply, RecommendReply::Ok(_)));
    // The fallback subject is answered too.
    let request = RecommendRequest::default();
    let reply = client
        .request(
            Subjects::default().fallback_recommend(MemberId(3)),
            encode(&request).into(),
        )
        .await
        .unwrap();
    assert!(matches!(
        decode::<RecommendReply>(&reply.payload, 1 << 20).unwrap(),
        RecommendReply::Ok(r) if r.reason == Some(reco_messages::Reason::Failover)
    ));

    let health = client
        .request(Subjects::default().admin_health(), "".into())
        .await
        .unwrap();
    let health: reco_messages::admin::Health = decode(&health.payload, 1 << 20).unwrap();
    let cluster = health.cluster.expect("health tells the node's mode");
    assert_eq!(cluster.mode, "single");
    assert!(cluster.partitions.is_empty());

    let refused = reco_sim::process::Node::start(&server.url(), Some(fixture.path()), config);
    let error = format!(
        "{:#}",
        refused.err().expect("the second node refuses to start")
    );
    assert!(error.contains("reco nats-config"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_node_loses_its_partitions_and_stops_answering_for_them_when_it_resumes() {
    let (server, _fixture, nodes) = three_nodes().await;
    let ids = THREE;
    let refs: Vec<&Node> = nodes.iter().collect();
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let load = Load::start(&client, &js).await;
    load.running(50).await;

    let hung = members_of("node-2", &ids);
    let tops = top_items(&client, &hung[..hung.len().min(8)]).await;
    let paused_at = Instant::now();
    nodes[1].pause();
    for &(m, item) in &tops {
        play(&js, m, item).await;
    }
    let survivors = ["node-1", "node-3"];
    converged(&[&nodes[0], &nodes[2]], &survivors, Duration::from_secs(30)).await;
    let moved = paused_at.elapsed();
    played_items_are_excluded(&client, &tops).await;

    // Resumed, it finds its leases gone and drops them (fencing), then
    // rejoins and gets its share back, replayed.
    nodes[1].resume();
    nodes[1]
        .wait_log(Duration::from_secs(30), "Partition lease lost")
        .await;
    converged(&refs, &ids, Duration::from_secs(30)).await;
    played_items_are_excluded(&client, &tops).await;
    let report = load.finish().await;
    let violations = order_violations(&refs);
    eprintln!(
        "SIGSTOP of node-2: its partitions served by others after {moved:?}; after SIGCONT it \
         dropped its stale leases and rejoined; {} requests answered, {} by the fallback \
         subject, {} answered twice (0 served twice); {} events acknowledged; {violations} \
         order violations",
        report.answered, report.via_fallback, report.answered_twice, report.events,
    );
    assert_eq!(violations, 0, "per-member order broken");
}

#[tokio::test]
async fn training_reads_events_stored_under_the_partitioned_subjects() {
    use reco_offline::event_log::EventsLogConfig;
    use reco_offline::event_log::{ensure_stream, read_interactions};
    let subjects = Subjects::default();
    let server = ConfiguredServer::start(
        ServerConfig::new()
            .partitions(&subjects, PARTITIONS)
            .unwrap(),
    );
    let js = jetstream::new(server.client().await);
    let config = EventsLogConfig::default();
    ensure_stream(&js, &config, &subjects).await.unwrap();
    for m in 0..20 {
        play(&js, m, ItemId(1000 + m)).await;
    }
    let read = read_interactions(&js, &config.stream, &subjects, 1 << 16)
        .await
        .unwrap();
    assert_eq!((read.events, read.bad), (20, 0));
    assert_eq!(read.ratings.len(), 20);
}

/// Asks a node alone for `member`'s list (generous deadline: the model
/// answers on a loaded machine too).
async fn ask_alone(client: &async_nats::Client, member: u64) -> reco_messages::Recommendations {
    match reco_e2e::ask(client, member, 3000).await {
        RecommendReply::Ok(recommendations) => recommendations,
        RecommendReply::Error(error) => panic!("error reply: {error:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_alone_answers_from_its_replayed_events() {
    use reco_messages::{Reason, Source};
    let server = NatsServer::start();
    let fixture = Fixture::write(200, 8, 50, "v1");
    let config = "[node]\nshards = 1\n[model]\nworkers = 1\n\
                  [cluster]\nlease_ms = 1000\nreplay_window_secs = 600\n";
    let mut node = Node::start(&server.url(), Some(fixture.path()), config);
    assert!(node.log().contains("single mode"), "{}", node.log());
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    // A member with neither history nor a precomputed list: cold until it
    // acts.
    let member = 4242;
    let cold = ask_alone(&client, member).await;
    assert_eq!(cold.reason, Some(Reason::ColdStart));
    let played = [fixture.items[3], fixture.items[10], fixture.items[17]];
    for item in played {
        play(&js, member, item).await;
    }
    let started = Instant::now();
    loop {
        let reply = ask_alone(&client, member).await;
        if reply.reason != Some(Reason::ColdStart) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the live node never applied the plays"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for how in ["SIGKILL", "SIGTERM"] {
        if how == "SIGKILL" {
            node.kill();
        } else {
            node.terminate();
        }
        node.wait_exit(Duration::from_secs(30));
        let restarted_at = Instant::now();
        node = Node::start(&server.url(), Some(fixture.path()), config);
        let ready = restarted_at.elapsed();
        // Its first answer already knows what the member did.
        let reply = ask_alone(&client, member).await;
        assert_ne!(
            reply.reason,
            Some(Reason::ColdStart),
            "after {how}: the restarted node answered cold: {reply:?}\n{}",
            node.log()
        );
        assert_eq!(reply.source, Source::Model, "after {how}: {reply:?}");
        for item in played {
            assert!(
                reply.items.iter().all(|s| s.item != item),
                "after {how}: played item {item:?} recommended again: {reply:?}"
            );
        }
        assert!(
            node.metric("reco_replay_events_total", &[]) >= played.len() as f64,
            "after {how}: {}",
            node.log()
        );
        assert!(node.log().contains("Recent events replayed"));
        eprintln!("after {how}: restarted node ready in {ready:?}, answered from replayed events");
    }
}

/// Runs `reco <args>` and returns its standard output (panics on failure).
fn reco(args: &[&str]) -> String {
    let output = std::process::Command::new(reco_e2e::reco_binary())
        .args(args)
        .output()
        .expect("reco runs");
    assert!(
        output.status.success(),
        "reco {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_seen_through_their_micro_service_and_admin_requests_reach_one_node() {
    use futures::StreamExt;
    use reco_messages::admin::{Health, NodeStatus};
    let subjects = Subjects::default();
    let server = ConfiguredServer::start(
        ServerConfig::new()
            .partitions(&subjects, PARTITIONS)
            .unwrap(),
    );
    let fixture = Fixture::write(100, 8, 20, "v1");
    let ids = ["node-a", "node-b"];
    let nodes: Vec<Node> = ids
        .iter()
        .map(|id| Node::start(&server.url(), Some(fixture.path()), &node_config(id)))
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    converged(&refs, &ids, Duration::from_secs(30)).await;
    let client = server.client().await;
    for m in 0..20 {
        let _ = ask(&client, m).await;
    }

    // $SRV.PING.reco: every node answers, its metadata names it.
    let inbox = client.new_inbox();
    let mut pongs = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply("$SRV.PING.reco", inbox, "".into())
        .await
        .unwrap();
    let mut named = BTreeSet::new();
    while let Ok(Some(pong)) = tokio::time::timeout(Duration::from_secs(1), pongs.next()).await {
        let pong: serde_json::Value = serde_json::from_slice(&pong.payload).unwrap();
        assert_eq!(pong["name"], "reco");
        assert_eq!(pong["metadata"]["prefix"], "reco");
        named.insert(pong["metadata"]["node"].as_str().unwrap().to_owned());
    }
    assert_eq!(named, ids.iter().map(|s| s.to_string()).collect());

    // reco cluster: both nodes, every partition served once, traffic counted.
    let url = server.url();
    let statuses: Vec<NodeStatus> =
        serde_json::from_str(&reco(&["cluster", "--nats", &url, "--json"])).unwrap();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    let mut served: Vec<u32> = statuses.iter().flat_map(|s| s.serving.clone()).collect();
    served.sort_unstable();
    assert_eq!(served, (0..PARTITIONS).collect::<Vec<_>>());
    for status in &statuses {
        assert_eq!(status.mode, "cluster");
        assert_eq!(status.lease_ages_ms.len(), status.serving.len());
        assert!(status.lease_ages_ms.iter().all(|&(_, age)| age <= LEASE_MS));
    }
    assert_eq!(statuses.iter().map(|s| s.requests).sum::<u64>(), 20);
    let table = reco(&["cluster", "--nats", &url]);
    assert!(
        table.contains("node-a") && table.contains("node-b"),
        "{table}"
    );
    assert!(
        table.contains(&format!("every partition of {PARTITIONS} is served")),
        "{table}"
    );

    // Admin requests addressed to one node are answered by that node.
    for id in ids {
        let health: Health =
            serde_json::from_str(&reco(&["health", "--nats", &url, "--node", id, "--json"]))
                .unwrap();
        assert_eq!(health.cluster.unwrap().node, id);
        let tree = reco(&["tree", "--nats", &url, "--node", id]);
        assert!(tree.contains("root"), "{tree}");
    }
    let all = reco(&["tree", "--nats", &url, "--node", "all"]);
    assert!(
        all.contains("== node node-a") && all.contains("== node node-b"),
        "{all}"
    );
    eprintln!("{table}");
}
