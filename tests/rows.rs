//! The rows of a page end to end (issue 13): a model trained by `reco train`
//! on the repository's MovieLens data with its `movies.csv`, a real
//! nats-server and `reco serve`, asked with `reco recommend --row …` as a
//! person would. Genre rows are the member's ranking within the genre,
//! `because:` lists items near the one given, `continue` lists what the
//! member started and did not finish, and every row that needs the model
//! falls back to its own offline list when the model is late.

use reco_e2e::{reco_binary, NatsServer, Node};
use reco_messages::admin::SetFaults;
use reco_messages::metrics as nm;
use reco_messages::{
    decode, encode, ErrorCode, MemberId, Reason, RecommendReply, RecommendRequest, Recommendations,
    Source, Subjects,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/ml-latest-small");

/// One model for every test of this file, trained by `reco train` with the
/// items file found beside the ratings (the default of `--items`).
fn model() -> &'static Path {
    static MODEL: OnceLock<tempfile::TempDir> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let output = Command::new(reco_binary())
                .args(["train", "--ratings", &format!("{DATA}/ratings.csv")])
                .args([
                    "--out",
                    dir.path().to_str().unwrap(),
                    "--version",
                    "rows-v1",
                ])
                .env_remove("RECO_NATS_URL")
                .output()
                .expect("reco train runs");
            let log = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(output.status.success(), "reco train failed:\n{log}");
            assert!(log.contains("Item data: "), "{log}");
            dir
        })
        .path()
}

/// `reco recommend --member <member> <args>` against `nats`, its JSON reply.
fn recommend(nats: &str, member: u64, args: &[&str]) -> RecommendReply {
    let output = Command::new(reco_binary())
        .args(["recommend", "--nats", nats, "--member", &member.to_string()])
        .args(args)
        .output()
        .expect("reco recommend runs");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "reco recommend printed no reply ({e}):\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn ok(reply: RecommendReply) -> Recommendations {
    match reply {
        RecommendReply::Ok(r) => r,
        RecommendReply::Error(e) => panic!("expected a list, got {e:?}"),
    }
}

fn ids(list: &Recommendations) -> Vec<u64> {
    list.items.iter().map(|s| s.item.0).collect()
}

fn genres_of(list: &Recommendations, item: u64) -> Vec<String> {
    let details = list.details.as_ref().expect("the reply has details");
    let found = details.iter().find(|d| d.item.0 == item);
    found.expect("every item has details").genres.clone()
}

/// The items `member` rated in the training data.
fn rated_by(member: u64) -> HashSet<u64> {
    let text = std::fs::read_to_string(PathBuf::from(DATA).join("ratings.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split(',');
            let user: u64 = fields.next()?.parse().ok()?;
            let item: u64 = fields.next()?.parse().ok()?;
            (user == member).then_some(item)
        })
        .collect()
}

async fn ask(
    client: &async_nats::Client,
    member: u64,
    row: &str,
    deadline_ms: u64,
) -> RecommendReply {
    let request = RecommendRequest {
        k: Some(10),
        row: Some(row.to_owned()),
        deadline_ms: Some(deadline_ms),
        details: Some(true),
        ..Default::default()
    };
    let reply = client
        .request(
            Subjects::default().recommend(MemberId(member)),
            encode(&request).into(),
        )
        .await
        .expect("every request gets a reply");
    decode(&reply.payload, 1 << 22).expect("replies decode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genre_because_and_continue_rows_answer_reco_recommend() {
    let nats = NatsServer::start();
    let node = Node::start(&nats.url(), Some(model()), "");
    let url = nats.url();

    // genre:Comedy is member 7's own ranking of the comedies: exactly the
    // comedies of its top picks, in the same order with the same scores.
    let comedies = ok(recommend(&url, 7, &["--row", "genre:Comedy", "--k", "10"]));
    assert_eq!(comedies.row.as_deref(), Some("genre:Comedy"));
    assert_eq!(
        comedies.source,
        Source::Model,
        "{comedies:?}\n{}",
        node.log()
    );
    assert_eq!(comedies.items.len(), 10);
    for item in ids(&comedies) {
        assert!(
            genres_of(&comedies, item).contains(&"Comedy".to_owned()),
            "{item}"
        );
    }
    let top = ok(recommend(&url, 7, &["--k", "500"]));
    assert_eq!(top.row.as_deref(), Some("top"));
    let top_comedies: Vec<_> = top
        .items
        .iter()
        .filter(|s| genres_of(&top, s.item.0).contains(&"Comedy".to_owned()))
        .take(10)
        .copied()
        .collect();
    // The same ranking (the full scan's kernel may differ in the last bits).
    assert_eq!(
        ids(&comedies),
        top_comedies.iter().map(|s| s.item.0).collect::<Vec<_>>()
    );
    for (a, b) in comedies.items.iter().zip(&top_comedies) {
        assert!((a.score - b.score).abs() < 1e-4, "{a:?} {b:?}");
    }
    // Matched without regard to case; another member gets another ranking.
    let lower = ok(recommend(&url, 7, &["--row", "genre:comedy", "--k", "10"]));
    assert_eq!(lower.items, comedies.items);
    assert_ne!(
        ok(recommend(
            &url,
            400,
            &["--row", "genre:Comedy", "--k", "10"]
        ))
        .items,
        comedies.items
    );
    // None of member 7's rated films comes back.
    let rated = rated_by(7);
    assert!(ids(&comedies).iter().all(|i| !rated.contains(i)));

    // because:260 (Star Wars): its sequels lead, and it is not its own
    // neighbour. Member 1 never rated them, so they are not left out.
    let near = ok(recommend(&url, 1, &["--row", "because:260", "--k", "5"]));
    assert_eq!(
        (near.row.as_deref(), near.source),
        (Some("because:260"), Source::Model)
    );
    let near_ids = ids(&near);
    assert!(!near_ids.contains(&260));
    assert!(
        near_ids.contains(&1196) && near_ids.contains(&1210),
        "Empire Strikes Back and Return of the Jedi near Star Wars: {:?}",
        near.details
    );
    // For member 7 the ones it rated are left out.
    let near_7 = ids(&ok(recommend(
        &url,
        7,
        &["--row", "because:260", "--k", "20"],
    )));
    assert!(near_7.iter().all(|i| !rated.contains(i)), "{near_7:?}");

    // continue: a film started (25 minutes) and one watched to the end.
    for (item, seconds) in [("2571", "1500"), ("1", "6000")] {
        let output = Command::new(reco_binary())
            .args(["event", "--nats", &url, "--member", "7", "--item", item])
            .args(["--kind", "play", "--value", seconds])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let started = Instant::now();
    let row = loop {
        let row = ok(recommend(&url, 7, &["--row", "continue"]));
        if !row.items.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (row.row.as_deref(), row.source),
        (Some("continue"), Source::Recent)
    );
    assert_eq!(ids(&row), vec![2571], "{row:?}");
    assert!(!row.degraded);
    let details = row.details.unwrap();
    assert_eq!(details[0].title, "Matrix, The (1999)");

    // Unknown genres and items are refused with what to send instead.
    for (row, says) in [
        ("genre:Comdy", "unknown genre \"Comdy\""),
        ("because:99999999", "item 99999999 is unknown"),
    ] {
        match recommend(&url, 7, &["--row", row]) {
            RecommendReply::Error(e) => {
                assert_eq!(e.error.code, ErrorCode::BadRequest);
                assert!(e.error.message.contains(says), "{row}: {}", e.error.message);
            }
            other => panic!("{row}: {other:?}"),
        }
    }
    // No `reco nearline` runs here: the near-real-time row answers popular,
    // saying why (tests/aggregate_rows.rs serves it from real snapshots).
    match recommend(&url, 7, &["--row", "trending"]) {
        RecommendReply::Ok(r) => {
            assert_eq!(r.source, Source::Popular, "{r:?}");
            assert!(r.degraded);
            assert_eq!(r.reason, Some(Reason::AggregatesUnavailable));
            assert_eq!(r.row.as_deref(), Some("trending"));
        }
        other => panic!("trending: {other:?}"),
    }
    assert!(node.metric(nm::ROW_REPLIES_TOTAL, &["row=\"genre\""]) >= 3.0);
    assert!(node.metric(nm::ROW_REPLIES_TOTAL, &["row=\"continue\""]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_has_its_own_fallback_when_the_model_is_late() {
    let nats = NatsServer::start();
    let node = Node::start(
        &nats.url(),
        Some(model()),
        "[node]\nfault_injection = true\n",
    );
    let client = nats.client().await;
    // On time first: the model answers the model rows.
    for row in ["top", "genre:Comedy", "because:260", "new"] {
        let reply = ok(ask(&client, 7, row, 2_000).await);
        assert_eq!(reply.source, Source::Model, "{row}: {reply:?}");
    }
    NatsServer::admin(&client)
        .faults(&SetFaults {
            model_delay_ms: Some(400),
            ..Default::default()
        })
        .await
        .unwrap();
    // Late: each row answers from its own list before the deadline.
    let genre = ok(ask(&client, 7, "genre:Comedy", 100).await);
    assert_eq!(
        (genre.source, genre.reason, genre.row.as_deref()),
        (
            Source::Popular,
            Some(Reason::Deadline),
            Some("genre:Comedy")
        )
    );
    assert_eq!(genre.items.len(), 10);
    for item in ids(&genre) {
        assert!(genres_of(&genre, item).contains(&"Comedy".to_owned()));
    }
    let because = ok(ask(&client, 1, "because:260", 100).await);
    assert_eq!(
        (because.source, because.reason),
        (Source::Precomputed, Some(Reason::Deadline))
    );
    assert!(
        ids(&because).contains(&1196) && !ids(&because).contains(&260),
        "{because:?}"
    );
    let new = ok(ask(&client, 7, "new", 100).await);
    assert_eq!(
        (new.source, new.reason),
        (Source::Popular, Some(Reason::Deadline))
    );
    assert!(!new.items.is_empty());
    let top = ok(ask(&client, 7, "top", 100).await);
    assert_eq!(
        (top.source, top.reason),
        (Source::Precomputed, Some(Reason::Deadline))
    );
    // Rows that need no model answer as asked, on time.
    let popular = ok(ask(&client, 7, "popular", 100).await);
    assert_eq!((popular.source, popular.degraded), (Source::Popular, false));
    assert_eq!(popular.items.len(), 10);
    // Popular scores are member shares, on the model's scale (0..1).
    assert!(
        popular
            .items
            .iter()
            .all(|s| s.score > 0.0 && s.score <= 1.0),
        "{popular:?}"
    );
    // Asked on the fallback subject (the caller rule), a row gets its own
    // list too, at once.
    let request = RecommendRequest {
        k: Some(10),
        row: Some("genre:Comedy".into()),
        details: Some(true),
        ..Default::default()
    };
    let failover = client
        .request(
            Subjects::default().fallback_recommend(MemberId(7)),
            encode(&request).into(),
        )
        .await
        .unwrap();
    let failover = ok(decode(&failover.payload, 1 << 22).unwrap());
    assert_eq!(
        (failover.source, failover.reason, failover.row.as_deref()),
        (
            Source::Popular,
            Some(Reason::Failover),
            Some("genre:Comedy")
        )
    );
    assert_eq!(failover.items.len(), 10);
    for item in ids(&failover) {
        assert!(genres_of(&failover, item).contains(&"Comedy".to_owned()));
    }
    let cont = ok(ask(&client, 7, "continue", 100).await);
    assert_eq!((cont.source, cont.degraded), (Source::Recent, false));
    assert!(
        node.metric(
            nm::ROW_REPLIES_TOTAL,
            &["row=\"because\"", "reason=\"deadline\""]
        ) >= 1.0,
        "{}",
        node.metrics()
    );
}
