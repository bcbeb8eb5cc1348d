//! A flood of requests naming distinct unknown member ids (issue 11): the
//! node answers every one, members with events keep their sessions and are
//! served throughout, and resident sessions stay capped by
//! `sessions.max_resident + sessions.max_visitors` (members with no events,
//! the "visitors", are passivated first).
//!
//! The default run floods 20,000 ids against tiny caps. The README's memory
//! figure comes from the same test with a million ids and the default caps:
//! `RECO_FLOOD_MEMBERS=1000000 RECO_FLOOD_DEFAULT_CAPS=1 cargo test --test
//! member_flood -- --nocapture` (it prints the node's RSS before and after).

use futures::StreamExt;
use reco_e2e::{ask, play, Fixture, NatsServer, Node};
use reco_messages::metrics as nm;
use reco_messages::{encode, MemberId, RecommendReply, RecommendRequest, Subjects};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VALID: u64 = 50;
/// Flooded member ids start here (no event was ever published for them).
const UNKNOWN: u64 = 1_000_000_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_member_ids_keeps_sessions_capped_and_members_served() {
    let flood = env_u64("RECO_FLOOD_MEMBERS", 20_000);
    let default_caps = std::env::var_os("RECO_FLOOD_DEFAULT_CAPS").is_some();
    let (max_resident, max_visitors) = if default_caps {
        (1_000_000, 100_000)
    } else {
        (2_000, 200)
    };
    let nats = NatsServer::start();
    let fixture = Fixture::write(1_000, 16, VALID, "v-flood");
    let node = Node::start(
        &nats.url(),
        Some(fixture.path()),
        &format!(
            "[node]\nshards = 2\n[model]\nworkers = 1\n[nearline]\nenabled = false\n\
             [sessions]\nmax_resident = {max_resident}\nmax_visitors = {max_visitors}\n"
        ),
    );
    let client = nats.client().await;
    let admin = NatsServer::admin(&client);
    for member in 1..=VALID {
        play(&client, member, fixture.items[member as usize]).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while admin.health().await.unwrap().resident_members < VALID {
        assert!(
            Instant::now() < deadline,
            "the members' sessions never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = admin.health().await.unwrap();

    // The flood: requests for `flood` distinct ids never seen with an
    // event, at most 512 in flight, every reply counted.
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(format!("{inbox}.*")).await.unwrap();
    let answered = Arc::new(AtomicU64::new(0));
    let counter = {
        let answered = answered.clone();
        tokio::spawn(async move {
            while replies.next().await.is_some() {
                answered.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let subjects = Subjects::default();
    let request = encode(&RecommendRequest {
        deadline_ms: Some(200),
        ..Default::default()
    });
    let started = Instant::now();
    let mut valid_asked = 0u64;
    let mut peak_resident = 0u64;
    for i in 0..flood {
        while i - answered.load(Ordering::Relaxed) >= 512 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        client
            .publish_with_reply(
                subjects.recommend(MemberId(UNKNOWN + i)),
                format!("{inbox}.{i}"),
                request.clone().into(),
            )
            .await
            .unwrap();
        // Members with events are served throughout.
        if i % (flood / 20).max(1) == 0 {
            let member = 1 + valid_asked % VALID;
            match ask(&client, member, 2_000).await {
                RecommendReply::Ok(reply) => assert!(!reply.items.is_empty(), "{reply:?}"),
                other => panic!("member {member} was not served during the flood: {other:?}"),
            }
            valid_asked += 1;
            let resident = admin.health().await.unwrap().resident_members;
            peak_resident = peak_resident.max(resident);
            assert!(
                resident <= max_resident + max_visitors,
                "{resident} sessions resident, cap {max_resident} + {max_visitors}"
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::Relaxed) < flood {
        assert!(
            Instant::now() < deadline,
            "{} of {flood} flood requests answered",
            answered.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    counter.abort();
    let after = admin.health().await.unwrap();
    println!(
        "flood of {flood} unknown member ids in {:.1} s: resident {} -> {} (peak sampled {peak_resident}, \
         caps {max_resident} + {max_visitors}), node RSS {:.1} MiB -> {:.1} MiB",
        took.as_secs_f64(),
        before.resident_members,
        after.resident_members,
        before.rss_bytes as f64 / (1 << 20) as f64,
        after.rss_bytes as f64 / (1 << 20) as f64,
    );
    assert!(after.resident_members <= max_resident + max_visitors);
    // Visitors were passivated to make room; no member with events was.
    let passivated = |cause: &str| {
        node.metric(
            nm::SESSION_PASSIVATIONS_TOTAL,
            &[&format!("cause=\"{cause}\"")],
        )
    };
    if flood > max_visitors {
        assert!(passivated("visitor_capacity") > 0.0, "{}", node.metrics());
    }
    assert_eq!(passivated("capacity"), 0.0, "{}", node.metrics());
    // Each member with events is still resident and served with its events
    // folded in (the model answers it).
    for member in 1..=VALID {
        match ask(&client, member, 2_000).await {
            RecommendReply::Ok(reply) => assert!(!reply.items.is_empty()),
            other => panic!("member {member} was not served after the flood: {other:?}"),
        }
    }
    assert!(after.resident_members >= VALID, "{after:?}");
}
