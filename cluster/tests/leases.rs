//! Partition leases against a real server: exclusive acquire, CAS renewal,
//! a stale or taken lease refused, expiry then takeover, release.

use async_nats::jetstream;
use reco_cluster::lease::{partition_key, LeaseError, Leases};
use reco_cluster::testing::NatsServer;
use reco_cluster::NodeId;
use reco_messages::partition::Partition;
use std::time::{Duration, Instant};

const BUCKET: &str = "RECO_LEASES_test";

async fn leases(server: &NatsServer, node: &str, length: Duration) -> Leases {
    let js = jetstream::new(server.client().await);
    Leases::open(&js, BUCKET, length, NodeId::new(node).unwrap())
        .await
        .unwrap()
}

/// Polls `acquire` until it succeeds (the gate of an expiry), at most 20 s.
async fn acquire_when_free(leases: &Leases, key: &str) -> (reco_cluster::Lease, Instant) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match leases.acquire(key).await {
            Ok(lease) => return (lease, Instant::now()),
            Err(LeaseError::Held { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("lease never became free: {error}"),
        }
    }
}

#[tokio::test]
async fn only_one_node_holds_a_lease_and_renewals_are_compare_and_swap() {
    let server = NatsServer::plain();
    let a = leases(&server, "a", Duration::from_secs(30)).await;
    let b = leases(&server, "b", Duration::from_secs(30)).await;
    let key = partition_key(Partition(3));
    let mut lease = a.acquire(&key).await.unwrap();
    assert!(matches!(
        b.acquire(&key).await,
        Err(LeaseError::Held { .. })
    ));
    assert!(matches!(
        a.acquire(&key).await,
        Err(LeaseError::Held { .. })
    ));
    assert_eq!(b.holder(&key).await.unwrap().unwrap().node, "a");

    let first = lease.revision();
    a.renew(&mut lease).await.unwrap();
    assert!(lease.revision() > first);
    assert!(lease.valid_until() > Instant::now() + Duration::from_secs(20));

    // Another writer on the key: the next renewal is refused (fencing).
    let js = jetstream::new(server.client().await);
    let kv = js.get_key_value(BUCKET).await.unwrap();
    kv.put(&key, "intruder".into()).await.unwrap();
    let refused = a.renew(&mut lease).await.unwrap_err();
    assert!(matches!(refused, LeaseError::Lost { .. }), "{refused}");
    assert!(refused.is_lost());
}

#[tokio::test]
async fn a_renewal_stored_after_a_timeout_is_recognised_as_ours() {
    let server = NatsServer::plain();
    let a = leases(&server, "a", Duration::from_secs(30)).await;
    let key = partition_key(Partition(0));
    let mut lease = a.acquire(&key).await.unwrap();
    let mut stale = lease.clone();
    a.renew(&mut lease).await.unwrap();
    // `stale` still has the old revision, as after a renewal whose reply
    // was lost: the value is ours, so the lease carries on.
    a.renew(&mut stale).await.unwrap();
    assert!(stale.revision() > lease.revision());
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_its_old_holder_is_refused() {
    let server = NatsServer::plain();
    let length = Duration::from_millis(1500);
    let a = leases(&server, "a", length).await;
    let b = leases(&server, "b", length).await;
    let key = partition_key(Partition(9));
    let acquired = Instant::now();
    let mut lease = a.acquire(&key).await.unwrap();
    // Local validity ends before the server can let anyone else in.
    assert!(lease.valid_until() <= acquired + length);
    let (_taken, at) = acquire_when_free(&b, &key).await;
    assert!(
        at >= lease.valid_until(),
        "b took the lease before a's local validity ended"
    );
    assert_eq!(a.holder(&key).await.unwrap().unwrap().node, "b");
    let refused = a.renew(&mut lease).await.unwrap_err();
    assert!(refused.is_lost(), "{refused}");
    eprintln!(
        "lease of {length:?} taken over {:?} after it was acquired",
        at - acquired
    );
}

#[tokio::test]
async fn a_released_lease_is_free_at_once_and_a_lost_one_cannot_be_released() {
    let server = NatsServer::plain();
    let a = leases(&server, "a", Duration::from_secs(30)).await;
    let b = leases(&server, "b", Duration::from_secs(30)).await;
    let key = partition_key(Partition(1));
    let lease = a.acquire(&key).await.unwrap();
    let old = lease.clone();
    a.release(lease).await.unwrap();
    assert_eq!(a.holder(&key).await.unwrap(), None);
    let taken = b.acquire(&key).await.unwrap();
    // a's old lease no longer matches: releasing it must not free b's.
    assert!(matches!(a.release(old).await, Err(LeaseError::Lost { .. })));
    assert_eq!(a.holder(&key).await.unwrap().unwrap().node, "b");
    b.release(taken).await.unwrap();
}

#[tokio::test]
async fn every_node_uses_the_lease_length_of_the_bucket() {
    let server = NatsServer::plain();
    let first = leases(&server, "a", Duration::from_secs(4)).await;
    let second = leases(&server, "b", Duration::from_secs(9)).await;
    assert_eq!(first.length(), Duration::from_secs(4));
    assert_eq!(second.length(), Duration::from_secs(4));
}
