//! The near-real-time aggregation job (`reco nearline`, issue 15) end to
//! end against a real nats-server: snapshots follow published events within
//! the snapshot interval plus a second; a job killed with SIGKILL mid-stream
//! and restarted ends with exactly the counts of an uninterrupted run; batch
//! and streaming agree on the same events.

use rand::{Rng, SeedableRng};
use reco_e2e::{metric_sum, reco_binary, NatsServer, NearlineProcess};
use reco_messages::{
    decode, encode, AggregatesPublished, Event, EventKind, ItemId, MemberId, Subjects,
};
use reco_models::aggregates::{
    observed_from_ratings, AggregateParams, AggregateSnapshot, AggregateState, Window,
};
use reco_offline::event_log;
use reco_offline::event_log::EventsLogConfig;
use reco_streaming::checkpoint::Checkpoints;
use reco_streaming::{batch, snapshot, StreamingSettings};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STREAM: &str = "RECO_EVENTS";
const WAIT: Duration = Duration::from_secs(60);

fn job_config(
    checkpoint_bucket: &str,
    snapshot_bucket: &str,
    checkpoint_ms: u64,
    metrics_addr: &str,
) -> String {
    format!(
        "[streaming]\ncheckpoint_bucket = \"{checkpoint_bucket}\"\nsnapshot_bucket = \"{snapshot_bucket}\"\n\
         checkpoint_interval_ms = {checkpoint_ms}\nsnapshot_interval_ms = 1000\nmetrics_addr = \"{metrics_addr}\"\n"
    )
}

async fn ensure_stream(client: &async_nats::Client) -> async_nats::jetstream::Context {
    let js = async_nats::jetstream::new(client.clone());
    event_log::ensure_stream(&js, &EventsLogConfig::default(), &Subjects::default())
        .await
        .expect("the event stream can be created");
    js
}

fn event(member: u64, item: u64, kind: EventKind, value: f32, device: Option<&str>) -> Event {
    Event {
        member: MemberId(member),
        item: ItemId(item),
        kind,
        value,
        at_ms: None,
        device: device.map(str::to_owned),
    }
}

async fn publish_all(client: &async_nats::Client, events: &[Event]) {
    let subjects = Subjects::default();
    for e in events {
        client
            .publish(subjects.events(e.member), encode(e).into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
}

/// Random events over 40 titles, every kind, a few devices.
fn random_events(seed: u64, n: usize) -> Vec<Event> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let devices = [None, Some("tv"), Some("web"), Some("phone")];
    (0..n)
        .map(|_| {
            let kind = EventKind::ALL[rng.gen_range(0..EventKind::ALL.len())];
            let value = match kind {
                EventKind::Rate => rng.gen_range(1..=5) as f32,
                EventKind::Play | EventKind::Stop => rng.gen_range(0.0..3000.0),
                _ => 0.0,
            };
            event(
                rng.gen_range(0..500),
                rng.gen_range(1..=40),
                kind,
                value,
                devices[rng.gen_range(0..devices.len())],
            )
        })
        .collect()
}

/// Waits until the stream holds `sequence` (the server stored every event
/// published so far).
async fn wait_stored(js: &async_nats::jetstream::Context, sequence: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut stream = js.get_stream(STREAM).await.unwrap();
        if stream.info().await.unwrap().state.last_sequence >= sequence {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the stream never stored {sequence}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the checkpoint in `bucket` satisfies `done`, returns it.
async fn wait_checkpoint(
    js: &async_nats::jetstream::Context,
    bucket: &str,
    done: impl Fn(&AggregateState) -> bool,
) -> AggregateState {
    let checkpoints = Checkpoints::open(js, bucket).await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(state) = checkpoints.load().await.unwrap() {
            if done(&state) {
                return state;
            }
        }
        assert!(
            Instant::now() < deadline,
            "checkpoint in {bucket} never got there"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_show_in_a_snapshot_within_the_interval_plus_a_second() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let js = ensure_stream(&client).await;
    let interval = Duration::from_millis(1000);
    let mut job = NearlineProcess::start(&nats.url(), &job_config("ck_snap", "snap", 200, ""));
    job.wait_log("Aggregation job ready.").await;

    let mut notices = client
        .subscribe(Subjects::default().published_aggregates())
        .await
        .unwrap();
    // Round trip: the server has our subscription before anything below.
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, Vec::new().into()).await.unwrap();
    futures::StreamExt::next(&mut echo).await.unwrap();

    // Title 10: 20 impressions, 10 plays (take rate 0.5); title 20: 40
    // impressions, 4 plays (0.1) and one completed viewing; title 30: 8
    // plays from search, no impression.
    let mut events = Vec::new();
    for i in 0..20 {
        events.push(event(i, 10, EventKind::Impression, 0.0, Some("tv")));
    }
    for i in 0..10 {
        events.push(event(i, 10, EventKind::Play, 0.0, Some("tv")));
    }
    for i in 0..40 {
        events.push(event(i, 20, EventKind::Impression, 0.0, Some("web")));
    }
    for i in 0..4 {
        events.push(event(i, 20, EventKind::Play, 0.0, Some("web")));
    }
    events.push(event(1, 20, EventKind::Stop, 1500.0, Some("web")));
    for i in 0..8 {
        events.push(event(i, 30, EventKind::Play, 0.0, None));
    }
    publish_all(&client, &events).await;
    let last = events.len() as u64;
    wait_stored(&js, last).await;
    let stored_at = Instant::now();

    let notice = tokio::time::timeout(interval + Duration::from_secs(1), async {
        loop {
            let message = futures::StreamExt::next(&mut notices).await.unwrap();
            let notice: AggregatesPublished = decode(&message.payload, 1 << 20).unwrap();
            if notice.last_sequence >= last {
                return notice;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no snapshot with sequence {last} within {:?} of the events being stored:\n{}",
            interval + Duration::from_secs(1),
            job.log()
        )
    });
    eprintln!(
        "snapshot {} announced {:?} after the events were stored",
        notice.version,
        stored_at.elapsed()
    );

    let snapshot = snapshot::fetch(&js, &notice.bucket, &notice.version)
        .await
        .unwrap();
    let title = |item| snapshot.title(ItemId(item)).unwrap();
    assert_eq!(title(10).hour.impressions, 20);
    assert_eq!(title(10).hour.take_rate(), Some(0.5));
    assert_eq!(title(20).day.take_rate(), Some(0.1));
    assert_eq!(title(20).total.completed, 1);
    assert_eq!(title(20).total.play_ms, 1_500_000);
    assert_eq!(title(30).hour.take_rate(), None);
    assert_eq!(title(10).by_device, vec![("tv".to_owned(), title(10).day)]);
    let trending: Vec<u64> = snapshot.trending.iter().map(|t| t.item.0).collect();
    assert_eq!(trending, vec![10, 30, 20], "{:?}", snapshot.trending);

    // The early read an operator prints: the same counts, with intervals.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("reco.toml");
    std::fs::write(&config, job_config("ck_snap", "snap", 200, "")).unwrap();
    let output = Command::new(reco_binary())
        .args([
            "insights",
            "--item",
            "10",
            "--nats",
            &nats.url(),
            "--config",
        ])
        .arg(&config)
        .env_remove("RECO_NATS_URL")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{text}");
    let hour = text.lines().find(|l| l.starts_with("hour")).unwrap();
    assert!(hour.contains(" 20 ") && hour.contains("50.0 %"), "{text}");
    assert!(
        text.contains("titles of the same age (1): median take rate 10.0 %"),
        "{text}"
    );
    job.signal("-TERM");
    assert!(job.wait_exit().success(), "{}", job.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_mid_stream_restarts_from_its_checkpoint_with_the_counts_of_an_uninterrupted_run(
) {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let js = ensure_stream(&client).await;
    let first = random_events(1, 3000);
    let second = random_events(2, 1500);
    let third = random_events(3, 1500);
    let total = (first.len() + second.len() + third.len()) as u64;

    // The reference: an uninterrupted job, in process, on buckets of its own.
    let (stop_reference, stopped) = tokio::sync::oneshot::channel::<()>();
    let reference = tokio::spawn(reco_streaming::run(
        nats.client().await,
        Subjects::default(),
        StreamingSettings {
            checkpoint_bucket: "ck_reference".into(),
            snapshot_bucket: "snap_reference".into(),
            checkpoint_interval: Duration::from_millis(200),
            ..StreamingSettings::default()
        },
        async {
            let _ = stopped.await;
        },
    ));

    publish_all(&client, &first).await;
    // Checkpoints every 3 s, so the kill below lands between two of them.
    let metrics_addr: std::net::SocketAddr = format!("127.0.0.1:{}", reco_e2e::free_port())
        .parse()
        .unwrap();
    let config = job_config("ck_killed", "snap_killed", 3000, &metrics_addr.to_string());
    let mut job = NearlineProcess::start(&nats.url(), &config);
    job.wait_log("Aggregation job ready.").await;
    let checkpointed = wait_checkpoint(&js, "ck_killed", |s| s.last_sequence() > 0)
        .await
        .last_sequence();
    publish_all(&client, &second).await;
    // Killed once it has applied events past its checkpoint: their counts
    // exist only in the dead process's memory.
    let deadline = Instant::now() + WAIT;
    let applied_at_kill = loop {
        let text = reco_sim::process::scrape(metrics_addr).unwrap_or_default();
        let applied = metric_sum(&text, "reco_aggregates_last_sequence", &[]) as u64;
        if applied > checkpointed {
            job.signal("-KILL");
            break applied;
        }
        assert!(
            Instant::now() < deadline,
            "the job never got past {checkpointed}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let status = job.wait_exit();
    assert!(!status.success(), "SIGKILL should end the job: {status}");
    publish_all(&client, &third).await;
    wait_stored(&js, total).await;

    let mut restarted = NearlineProcess::start(&nats.url(), &config);
    let ready = restarted.wait_log("Aggregation job ready.").await;
    let resumed_after: u64 = ready
        .split("resumed_after=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resumed_after in {ready:?}"));
    assert!(
        resumed_after > 0 && resumed_after < applied_at_kill,
        "the restart resumed after {resumed_after}, the killed job had applied {applied_at_kill}: nothing to redo"
    );
    let recovered = wait_checkpoint(&js, "ck_killed", |s| s.last_sequence() == total).await;

    wait_checkpoint(&js, "ck_reference", |s| s.last_sequence() == total).await;
    stop_reference.send(()).unwrap();
    let uninterrupted = reference.await.unwrap().unwrap().state;

    let batch = batch::aggregate_stream(&js, STREAM, 1 << 16, AggregateParams::default())
        .await
        .unwrap();
    eprintln!(
        "killed after applying {applied_at_kill}, resumed after {resumed_after} of {total}; {} titles, {} events applied",
        recovered.titles(),
        recovered.events_applied()
    );
    assert_eq!(recovered.events_applied(), total);
    assert_eq!(recovered, uninterrupted, "restarted vs uninterrupted");
    assert_eq!(recovered, batch, "restarted vs batch");
    let now = recovered.watermark_ms();
    for item in 1..=40 {
        for window in Window::ALL {
            assert_eq!(
                recovered.window(ItemId(item), window, now),
                uninterrupted.window(ItemId(item), window, now)
            );
        }
    }
    restarted.signal("-TERM");
    assert!(restarted.wait_exit().success(), "{}", restarted.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_and_streaming_agree_on_the_same_events_bad_ones_included() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let js = ensure_stream(&client).await;
    let events = random_events(9, 800);
    publish_all(&client, &events[..400]).await;
    // Bytes that are not events are skipped the same way by both.
    // (the last: five stars is the most a rating can be).
    let invalid = encode(&event(1, 1, EventKind::Rate, 9.0, None));
    for junk in [&b"\xc1"[..], b"not msgpack", &invalid] {
        client
            .publish("reco.events.1", bytes::Bytes::copy_from_slice(junk))
            .await
            .unwrap();
    }
    publish_all(&client, &events[400..]).await;
    let total = events.len() as u64 + 3;
    wait_stored(&js, total).await;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let streaming = tokio::spawn(reco_streaming::run(
        client.clone(),
        Subjects::default(),
        StreamingSettings {
            checkpoint_interval: Duration::from_millis(100),
            ..StreamingSettings::default()
        },
        async {
            let _ = stopped.await;
        },
    ));
    let last_event = total; // the last message is an event
    wait_checkpoint(&js, &StreamingSettings::default().checkpoint_bucket, |s| {
        s.last_sequence() == last_event
    })
    .await;
    stop.send(()).unwrap();
    let report = streaming.await.unwrap().unwrap();

    let read = batch::read_stream(&js, STREAM, 1 << 16).await.unwrap();
    assert_eq!(read.bad, 3);
    assert_eq!(read.events.len(), events.len());
    let batch = AggregateState::batch(AggregateParams::default(), &read.events);
    assert_eq!(report.state, batch);
    assert_eq!(report.state.events_applied(), events.len() as u64);
    let now = batch.watermark_ms();
    assert_eq!(report.state.snapshot(now, 50), batch.snapshot(now, 50));

    // `reco train --from-stream --aggregates` is the same batch.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("aggregates.bin");
    let status = Command::new(reco_binary())
        .args([
            "train",
            "--from-stream",
            "--nats",
            &nats.url(),
            "--aggregates",
        ])
        .arg(&out)
        .env_remove("RECO_NATS_URL")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let written = AggregateSnapshot::from_bytes(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(written, batch.snapshot(now, 100));
}

#[test]
fn reco_train_computes_the_aggregates_of_a_ratings_file_with_the_same_function() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ratings.csv");
    let hour = 3600;
    let t0 = 1_700_000_000 / hour * hour;
    let mut text = String::from("userId,movieId,rating,timestamp\n");
    // Title 5: 2 plays a day ago; title 6: 6 plays in the last hour; title
    // 7: 4 plays spread over the day.
    for (user, movie, at) in [
        (1, 5, t0),
        (2, 5, t0 + 60),
        (3, 7, t0 + 2 * hour),
        (4, 7, t0 + 6 * hour),
        (5, 7, t0 + 12 * hour),
        (6, 7, t0 + 20 * hour),
    ] {
        text.push_str(&format!("{user},{movie},4.0,{at}\n"));
    }
    for user in 10..16 {
        text.push_str(&format!("{user},6,3.5,{}\n", t0 + 23 * hour + user));
    }
    std::fs::write(&csv, &text).unwrap();
    let out = dir.path().join("aggregates.bin");
    let status = Command::new(reco_binary())
        .args(["train", "--ratings"])
        .arg(&csv)
        .arg("--aggregates")
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let written = AggregateSnapshot::from_bytes(&std::fs::read(&out).unwrap()).unwrap();
    let ratings = reco_models::parse_ratings(text.as_bytes()).unwrap();
    let batch = AggregateState::batch(AggregateParams::default(), &observed_from_ratings(&ratings));
    assert_eq!(written, batch.snapshot(batch.watermark_ms(), 100));
    assert_eq!(written.title(ItemId(6)).unwrap().hour.plays, 6);
    assert_eq!(written.title(ItemId(7)).unwrap().day.plays, 4);
    assert_eq!(written.title(ItemId(5)).unwrap().total.plays, 2);
    let trending: Vec<u64> = written.trending.iter().map(|t| t.item.0).collect();
    assert_eq!(trending, vec![6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_loader_swaps_in_new_snapshots_and_keeps_the_old_one_on_a_damaged_or_stale_notice() {
    use reco_models::aggregates::Observed;
    use reco_streaming::loader::{AggregatesHandle, AggregatesLoader};
    let nats = NatsServer::start();
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    let subjects = Subjects::default();
    let bucket = "snap_loader";
    let store = snapshot::open_bucket(&js, bucket).await.unwrap();
    let observed: Vec<Observed> = random_events(4, 30)
        .into_iter()
        .enumerate()
        .map(|(i, event)| Observed {
            sequence: i as u64 + 1,
            event,
            time_ms: 1_700_000_000_000 + i as u64,
        })
        .collect();
    let state_at = |n: usize| AggregateState::batch(AggregateParams::default(), &observed[..n]);
    let publish = |n: usize, now: u64| {
        let (client, subjects, store) = (client.clone(), subjects.clone(), store.clone());
        async move {
            snapshot::publish(
                &client,
                &subjects,
                &store,
                bucket,
                &state_at(n).snapshot(now, 10),
                5,
            )
            .await
            .unwrap()
            .version
        }
    };
    // A snapshot published before the node starts is loaded at start-up.
    let v1 = publish(10, 1_800_000_000_000).await;
    let handle = AggregatesHandle::default();
    let serve = AggregatesLoader {
        client: nats.client().await,
        subjects: subjects.clone(),
        bucket: bucket.into(),
        handle: handle.clone(),
    }
    .subscribe()
    .await
    .unwrap();
    tokio::spawn(serve);
    let wait_version = |want: String| {
        let handle = handle.clone();
        async move {
            let deadline = Instant::now() + WAIT;
            let mut seen = Vec::new();
            loop {
                let now = handle.load().map(|l| l.version.clone());
                if seen.last() != Some(&now) {
                    seen.push(now.clone());
                }
                if now.as_deref() == Some(want.as_str()) {
                    return seen;
                }
                assert!(
                    Instant::now() < deadline,
                    "{want} never in service: {seen:?}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_version(v1.clone()).await;
    let v2 = publish(20, 1_800_000_001_000).await;
    wait_version(v2.clone()).await;
    assert_eq!(
        handle.load().unwrap().snapshot,
        state_at(20).snapshot(1_800_000_001_000, 10)
    );

    // A damaged object, then a replay of the older v1 notice: neither is
    // swapped in; the next good snapshot is.
    let damaged = snapshot::version_name(25, 1_800_000_002_000);
    let mut bytes = state_at(25).snapshot(1_800_000_002_000, 10).to_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    store
        .put(damaged.as_str(), &mut bytes.as_slice())
        .await
        .unwrap();
    for (version, last_sequence) in [(damaged.clone(), 25), (v1.clone(), 10)] {
        let notice = AggregatesPublished {
            version,
            bucket: bucket.into(),
            published_at_ms: 0,
            last_sequence,
        };
        client
            .publish(subjects.published_aggregates(), encode(&notice).into())
            .await
            .unwrap();
    }
    let v3 = publish(30, 1_800_000_003_000).await;
    let seen = wait_version(v3.clone()).await;
    assert!(
        !seen.contains(&Some(damaged.clone())) && !seen.contains(&Some(v1.clone())),
        "{seen:?}"
    );
    assert_eq!(handle.load().unwrap().snapshot.last_sequence, 30);
}
