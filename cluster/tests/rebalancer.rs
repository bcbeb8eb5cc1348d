//! Rebalancers of several nodes against a real server: every partition gets
//! exactly one owner, spread by rendezvous hashing; a joining node takes only
//! its share; a node that stops hands over at once; a node that crashes is
//! replaced once its leases expire. No two nodes ever hold a partition at
//! the same instant.

use async_nats::jetstream;
use reco_cluster::assignment::assign;
use reco_cluster::testing::NatsServer;
use reco_cluster::{Fence, Leases, Membership, NodeId, Ownership, Rebalancer, RebalancerSettings};
use reco_messages::partition::Partition;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 64;
const LEASE: Duration = Duration::from_millis(2000);

struct TestNode {
    id: NodeId,
    fence: Fence,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    listener: tokio::task::JoinHandle<()>,
}

async fn start(server: &NatsServer, name: &str) -> TestNode {
    start_with(server, name, LEASE).await
}

async fn start_with(server: &NatsServer, name: &str, lease: Duration) -> TestNode {
    let id = NodeId::new(name).unwrap();
    let js = jetstream::new(server.client().await);
    let leases = Leases::open(&js, "RECO_LEASES_t", lease, id.clone())
        .await
        .unwrap();
    let membership = Membership::open(&js, "RECO_NODES_t", lease, id.clone())
        .await
        .unwrap();
    let rebalancer = Rebalancer::new(leases, membership, RebalancerSettings::new(PARTITIONS));
    let fence = rebalancer.fence();
    let (changes, mut received) = tokio::sync::mpsc::channel(256);
    let listener = tokio::spawn(async move {
        while let Some(change) = received.recv().await {
            if let Ownership::Revoke { done, .. } = change {
                let _ = done.send(());
            }
        }
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(rebalancer.run(changes, async move {
        let _ = stopped.await;
    }));
    TestNode {
        id,
        fence,
        stop: Some(stop),
        task,
        listener,
    }
}

/// Partition → the nodes holding it at one instant.
fn holders(nodes: &[&TestNode]) -> BTreeMap<Partition, Vec<NodeId>> {
    let now = Instant::now();
    (0..PARTITIONS)
        .map(Partition)
        .map(|k| {
            let ids = nodes
                .iter()
                .filter(|n| n.fence.holds_at(k, now))
                .map(|n| n.id.clone())
                .collect();
            (k, ids)
        })
        .collect()
}

/// Polls until every partition is held by the node `assign` names among
/// `nodes`; returns how long that took. Panics after 30 s.
async fn converged(nodes: &[&TestNode]) -> Duration {
    let started = Instant::now();
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.id.clone()).collect();
    let want = assign(PARTITIONS, &ids);
    loop {
        let now = holders(nodes);
        if want.iter().all(|(k, owner)| now[k] == vec![owner.clone()]) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no convergence: want {want:?}, have {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Samples every node's fence continuously; counts instants where a
/// partition had two holders.
fn watch_overlaps(fences: Vec<Fence>) -> (Arc<AtomicU64>, Arc<AtomicBool>) {
    let (overlaps, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (o, s) = (overlaps.clone(), stop.clone());
    tokio::spawn(async move {
        while !s.load(Ordering::Relaxed) {
            let now = Instant::now();
            for k in (0..PARTITIONS).map(Partition) {
                if fences.iter().filter(|f| f.holds_at(k, now)).count() > 1 {
                    o.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    (overlaps, stop)
}

impl TestNode {
    async fn stop(mut self) -> Duration {
        let started = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
        self.listener.await.unwrap();
        started.elapsed()
    }

    fn kill(self) {
        self.task.abort();
        self.listener.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_spread_over_nodes_and_a_joining_node_takes_only_its_share() {
    let server = NatsServer::plain();
    let (a, b, c) = (
        start(&server, "node-a").await,
        start(&server, "node-b").await,
        start(&server, "node-c").await,
    );
    let (overlaps, done) = watch_overlaps(vec![a.fence.clone(), b.fence.clone(), c.fence.clone()]);
    converged(&[&a, &b, &c]).await;
    let before = holders(&[&a, &b, &c]);
    let counts: Vec<usize> = [&a, &b, &c]
        .iter()
        .map(|n| n.fence.held_at(Instant::now()).len())
        .collect();
    assert!(counts.iter().all(|&n| (10..=35).contains(&n)), "{counts:?}");

    let d = start(&server, "node-d").await;
    let took = converged(&[&a, &b, &c, &d]).await;
    let after = holders(&[&a, &b, &c, &d]);
    let moved: Vec<Partition> = before
        .keys()
        .filter(|k| before[k] != after[k])
        .copied()
        .collect();
    assert!(moved.iter().all(|k| after[k] == vec![d.id.clone()]));
    assert_eq!(moved.len(), d.fence.held_at(Instant::now()).len());
    eprintln!(
        "node-d joined: {} partitions moved in {took:?}; before {counts:?}",
        moved.len()
    );
    done.store(true, Ordering::Relaxed);
    assert_eq!(overlaps.load(Ordering::Relaxed), 0, "two holders at once");
    for node in [a, b, c, d] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_hands_its_partitions_over_at_once() {
    let server = NatsServer::plain();
    // Leases far longer than the convergence limit: only a hand-over can
    // make the others serve the partitions in time.
    let long = Duration::from_secs(120);
    let (a, b, c) = (
        start_with(&server, "node-a", long).await,
        start_with(&server, "node-b", long).await,
        start_with(&server, "node-c", long).await,
    );
    converged(&[&a, &b, &c]).await;
    let (overlaps, done) = watch_overlaps(vec![a.fence.clone(), b.fence.clone(), c.fence.clone()]);
    let moving = c.fence.held_at(Instant::now()).len();
    let started = Instant::now();
    c.stop().await;
    converged(&[&a, &b]).await;
    let took = started.elapsed();
    eprintln!("graceful stop: {moving} partitions served again after {took:?} (lease {long:?})");
    done.store(true, Ordering::Relaxed);
    assert_eq!(overlaps.load(Ordering::Relaxed), 0, "two holders at once");
    for node in [a, b] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_nodes_partitions_are_taken_over_once_its_leases_expire() {
    let server = NatsServer::plain();
    let (a, b, c) = (
        start(&server, "node-a").await,
        start(&server, "node-b").await,
        start(&server, "node-c").await,
    );
    converged(&[&a, &b, &c]).await;
    let (overlaps, done) = watch_overlaps(vec![a.fence.clone(), b.fence.clone(), c.fence.clone()]);
    let lost = c.fence.held_at(Instant::now()).len();
    let started = Instant::now();
    c.kill();
    converged(&[&a, &b]).await;
    let took = started.elapsed();
    eprintln!("crash: {lost} partitions served again after {took:?} (lease {LEASE:?})");
    done.store(true, Ordering::Relaxed);
    assert_eq!(overlaps.load(Ordering::Relaxed), 0, "two holders at once");
    for node in [a, b] {
        node.stop().await;
    }
}
