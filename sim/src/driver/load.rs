//! Load generation: the world's events published as fast as allowed (or
//! paced), and recommend requests open loop (a target rate) or closed loop
//! (a fixed number in flight), each one accounted for.

use super::*;

/// Publishes the world's events until the budget, the clock or the stop
/// flag says enough, folding each published action into the digest.
pub(super) async fn publish_events(
    shared: Arc<Shared>,
    actions: Box<dyn Iterator<Item = Action> + Send>,
    digest: Arc<Mutex<u64>>,
) {
    let config = &shared.config;
    let mut hash = *digest.lock().unwrap_or_else(|e| e.into_inner());
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= b as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    let mut published = 0u64;
    for action in actions {
        if published % 256 == 0
            && (shared.stop.load(Ordering::Relaxed) || shared.started.elapsed() >= config.duration)
        {
            break;
        }
        if config.max_events.is_some_and(|max| published >= max) {
            break;
        }
        match action {
            Action::Session { member, device } => {
                feed(b"S");
                feed(&member.0.to_le_bytes());
                feed(device.as_bytes());
                let mut sessions = shared.sessions.lock().unwrap_or_else(|e| e.into_inner());
                if sessions.len() >= 10_000 {
                    sessions.pop_front();
                }
                sessions.push_back((member, device));
            }
            Action::Event(event) => {
                let bytes = encode(&event);
                feed(b"E");
                feed(&bytes);
                if event.kind == EventKind::Play && judged(config, event.member) {
                    shared
                        .played
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(event.member)
                        .or_default()
                        .push(event.item);
                }
                if shared
                    .client
                    .publish(shared.subjects.events(event.member), bytes.into())
                    .await
                    .is_err()
                {
                    record_error(&shared, "publish_failed");
                }
                published += 1;
                shared.published.store(published, Ordering::Relaxed);
                if config.events_per_sec > 0.0 {
                    let due = shared.started
                        + Duration::from_secs_f64(published as f64 / config.events_per_sec);
                    if due > Instant::now() + Duration::from_millis(1) {
                        tokio::time::sleep_until(due.into()).await;
                    }
                }
            }
        }
    }
    let _ = shared.client.flush().await;
    *digest.lock().unwrap_or_else(|e| e.into_inner()) = hash;
}

pub(super) fn judged(config: &DriveConfig, member: MemberId) -> bool {
    config.quality_every > 0 && member.0 % config.quality_every == 0
}

/// The member the next request is for: the latest session opener, else a
/// random member of the world.
pub(super) fn next_member(shared: &Shared, counter: u64) -> (MemberId, &'static str) {
    if let Some(next) = shared
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop_back()
    {
        return next;
    }
    let members = shared.world.config().members.max(1);
    let id = 1 + spread(counter) % members;
    (MemberId(id), crate::world::DEVICES[(id % 3) as usize])
}

/// The splitmix64 finaliser: every bit of `counter` moves every bit of the
/// result. (A bare multiply keeps the low bits of the counter in the low
/// bits of the result, so a closed-loop worker, whose counters step by
/// twice the concurrency, only ever asked the members of one residue class.)
pub(super) fn spread(counter: u64) -> u64 {
    let mut z = counter.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Takes one request from the run's budget; false once it is spent.
pub(super) fn take_request(shared: &Shared) -> bool {
    shared
        .config
        .max_requests
        .is_none_or(|max| shared.issued.fetch_add(1, Ordering::Relaxed) < max)
}

/// Whether the run's request budget is spent.
pub(super) fn spent(shared: &Shared) -> bool {
    shared
        .config
        .max_requests
        .is_some_and(|max| shared.issued.load(Ordering::Relaxed) >= max)
}

pub(super) async fn generate_requests(shared: Arc<Shared>) {
    let config = shared.config.clone();
    let running = |shared: &Shared| {
        !shared.stop.load(Ordering::Relaxed) && shared.started.elapsed() < config.duration
    };
    match config.load {
        Load::None => {
            while running(&shared) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Load::Open { rps } => {
            let mut credit = 0.0f64;
            let mut last = Instant::now();
            let mut counter = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while running(&shared) && !spent(&shared) {
                tick.tick().await;
                let now = Instant::now();
                credit +=
                    (now - last).as_secs_f64() * rps * shared.spike.load(Ordering::Relaxed) as f64;
                last = now;
                while credit >= 1.0 {
                    credit -= 1.0;
                    counter += 1;
                    if shared.in_flight.load(Ordering::Relaxed) >= config.max_in_flight {
                        shared.shed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if !take_request(&shared) {
                        break;
                    }
                    let (member, device) = next_member(&shared, counter);
                    let shared = shared.clone();
                    shared.in_flight.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        request(&shared, member, device).await;
                        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            }
        }
        Load::Closed { concurrency } => {
            // Twice the workers; the second half only works during a spike.
            let workers: Vec<_> = (0..concurrency * 2)
                .map(|w| {
                    let shared = shared.clone();
                    let config = config.clone();
                    tokio::spawn(async move {
                        let mut counter = w as u64;
                        while !shared.stop.load(Ordering::Relaxed)
                            && shared.started.elapsed() < config.duration
                            && !spent(&shared)
                        {
                            if w >= concurrency
                                && w >= concurrency * shared.spike.load(Ordering::Relaxed) as usize
                            {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                continue;
                            }
                            if !take_request(&shared) {
                                break;
                            }
                            counter += (concurrency * 2) as u64;
                            let (member, device) = next_member(&shared, counter);
                            shared.in_flight.fetch_add(1, Ordering::SeqCst);
                            request(&shared, member, device).await;
                            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for worker in workers {
                let _ = worker.await;
            }
        }
    }
}

pub(super) fn record_error(shared: &Shared, code: &str) {
    *shared
        .stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .errors
        .entry(code.to_owned())
        .or_default() += 1;
}

/// How long past its deadline a try waits before the caller asks the
/// fallback subject.
pub(super) const TRY_MARGIN: Duration = Duration::from_millis(100);

/// One request, fully accounted for.
pub(super) async fn request(shared: &Arc<Shared>, member: MemberId, device: &'static str) {
    let config = &shared.config;
    let payload = encode(&RecommendRequest {
        k: Some(config.k),
        device: Some(device.to_owned()),
        deadline_ms: Some(config.deadline_ms),
        ..Default::default()
    });
    shared.sent.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let wait = Duration::from_millis(config.deadline_ms) + config.no_reply_after;
    // The caller rule: on no responders (the member's partition has no
    // owner right now) or a try that times out, ask the fallback subject.
    // A node answers by the deadline (from a fallback if need be), so a try
    // still unanswered TRY_MARGIN after it went to a node that is gone or
    // hung.
    let outcome = tokio::time::timeout(
        wait * 2,
        reco_client::caller::ask_with_fallback(
            &shared.client,
            &shared.subjects,
            member,
            payload.into(),
            Duration::from_millis(config.deadline_ms) + TRY_MARGIN,
        ),
    )
    .await
    .map(|answered| answered.map(|(message, _)| message));
    let elapsed = started.elapsed();
    let message = match outcome {
        Err(_) => {
            let mut stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            stats.no_reply += 1;
            stats.cohorts[cohort(member)].no_reply += 1;
            return;
        }
        Ok(Err(e)) => {
            let code = match e.kind() {
                async_nats::RequestErrorKind::NoResponders => "no_responders",
                async_nats::RequestErrorKind::TimedOut => "timed_out",
                async_nats::RequestErrorKind::Other => "request_failed",
            };
            record_error(shared, code);
            return;
        }
        Ok(Ok(message)) => message,
    };
    let reply = match decode::<RecommendReply>(&message.payload, 1 << 20) {
        Ok(RecommendReply::Ok(reply)) => reply,
        Ok(RecommendReply::Error(e)) => return record_error(shared, e.error.code.as_str()),
        Err(_) => return record_error(shared, "undecodable_reply"),
    };
    let source = reply.source.as_str();
    let fallback = reply.source != reco_messages::Source::Model;
    {
        let mut stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        let us = elapsed.as_micros().max(1) as u64;
        let _ = stats.all.record(us);
        let _ = stats.bucket.record(us);
        stats.replies += 1;
        stats.bucket_replies += 1;
        stats.bucket_fallbacks += fallback as u64;
        if fallback {
            *stats
                .bucket_reasons
                .entry(reply.reason.map_or("none", |r| r.as_str()))
                .or_default() += 1;
        }
        *stats.by_source.entry(source.to_owned()).or_default() += 1;
        *stats
            .by_reason
            .entry(reply.reason.map_or("none", |r| r.as_str()).to_owned())
            .or_default() += 1;
        let late = elapsed > Duration::from_millis(config.deadline_ms) + config.late_margin;
        stats.late += late as u64;
        let c = &mut stats.cohorts[cohort(member)];
        let _ = c.hist.record(us);
        c.fallbacks += fallback as u64;
        c.late += late as u64;
    }
    let items: Vec<ItemId> = reply.items.iter().map(|s| s.item).collect();
    if judged(config, member) {
        if let Some(tx) = shared
            .quality_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = tx.try_send((member, device, source.to_owned(), items.clone()));
        }
    }
    if !fallback && config.probe_every > 0 {
        let n = shared.model_replies.fetch_add(1, Ordering::Relaxed);
        if n % config.probe_every == 0
            && !items.is_empty()
            && shared.probes.load(Ordering::SeqCst) < 4
        {
            shared.probes.fetch_add(1, Ordering::SeqCst);
            let shared = shared.clone();
            tokio::spawn(async move {
                probe_freshness(&shared, member, device, items[0]).await;
                shared.probes.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}
