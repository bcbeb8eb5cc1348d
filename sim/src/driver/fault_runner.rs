//! The fault runner: applies each scheduled fault in its window and records
//! what happened.

use super::*;

/// Applies each fault in its window and records what happened.
pub(super) async fn run_faults(
    shared: Arc<Shared>,
    nats: Option<Arc<Mutex<NatsServer>>>,
) -> Vec<FaultRecord> {
    let mut records = Vec::new();
    let mut lost = Vec::new();
    let faults = shared.config.faults.clone();
    for fault in faults {
        let start = shared.started + fault.start;
        let end = start + fault.length;
        if start >= shared.started + shared.config.duration {
            continue;
        }
        while Instant::now() < start {
            if shared.stop.load(Ordering::Relaxed) {
                return with_losses(records, lost).await;
            }
            tokio::time::sleep(Duration::from_millis(10).min(start - Instant::now())).await;
        }
        let at = |t: Instant| (t - shared.started).as_secs_f64();
        let mut note = String::new();
        let losses_before = losses(&shared);
        let node_before = shared.config.metrics_addr.and_then(|a| scrape(a).ok());
        let rejected_before = shared
            .config
            .metrics_addr
            .and_then(|a| scrape(a).ok())
            .map(|t| metric_sum(&t, node_metrics::EVENTS_REJECTED_TOTAL, &[]));
        // With cohorts, model faults hit the experiment cohort only.
        let model_cohort = shared.config.cohorts.then_some(faults::EXPERIMENT);
        let describe = |applied: Result<faults::Applied, String>| match applied {
            Ok(faults::Applied::Yes) if model_cohort.is_some() => {
                "applied (experiment cohort)".to_owned()
            }
            Ok(faults::Applied::Yes) => "applied".to_owned(),
            Ok(faults::Applied::EveryMember) => {
                "applied to every member: the node cannot limit model faults to a cohort".to_owned()
            }
            Ok(faults::Applied::Refused) => {
                "unsupported: the node does not accept faults (set [node] fault_injection = true)"
                    .to_owned()
            }
            Err(e) => e,
        };
        let mut victim = None;
        let outcome = match &fault.kind {
            kind @ (FaultKind::NodeKill
            | FaultKind::NodeHang
            | FaultKind::NodeStop
            | FaultKind::NodeJoin) => match &shared.config.nodes {
                None => {
                    "unsupported: node faults need nodes the simulator started (--nodes)".to_owned()
                }
                Some(set) => {
                    let (outcome, what, hit) =
                        crate::cluster::start_node_fault(set, &shared.client, kind).await;
                    victim = hit;
                    note = what;
                    outcome
                }
            },
            FaultKind::ModelSlow { delay_ms } => describe(
                faults::set_model_delay(&shared.client, &shared.subjects, *delay_ms, model_cohort)
                    .await,
            ),
            // Sustained: every 2nd scoring request crashes its worker for
            // the whole window, enough to exhaust the model subtree.
            FaultKind::ModelCrash => describe(
                faults::set_model_crash(&shared.client, &shared.subjects, 2, model_cohort).await,
            ),
            FaultKind::BigPayloads { count } => match faults::big_payloads(
                &shared.client,
                &shared.subjects,
                *count,
                shared.world.config().members,
            )
            .await
            {
                Ok(sent) => {
                    shared.malformed_sent.fetch_add(sent, Ordering::Relaxed);
                    "applied".to_owned()
                }
                Err(e) => format!("failed: {e}"),
            },
            FaultKind::MemberFlood { members } => {
                let admin = reco_client::Admin::new(shared.client.clone(), shared.subjects.clone());
                let before = admin.health().await.ok();
                // Ids far above the world's members: never seen with an event.
                let first = shared.world.config().members.max(1) * 1_000 + 1_000_000;
                match faults::member_flood(&shared.client, &shared.subjects, first, *members, end)
                    .await
                {
                    Ok(flood) => {
                        let after = admin.health().await.ok();
                        let mib = |h: &Option<reco_messages::admin::Health>| {
                            h.as_ref()
                                .map_or(0.0, |h| h.rss_bytes as f64 / f64::from(1 << 20))
                        };
                        let resident = |h: &Option<reco_messages::admin::Health>| {
                            h.as_ref().map_or(0, |h| h.resident_members)
                        };
                        note = format!(
                            "{} requests for new member ids, {} answered; resident members {} -> {}, node RSS {:.0} -> {:.0} MiB",
                            flood.sent,
                            flood.answered,
                            resident(&before),
                            resident(&after),
                            mib(&before),
                            mib(&after)
                        );
                        "applied".to_owned()
                    }
                    Err(e) => format!("failed: {e}"),
                }
            }
            FaultKind::Malformed { count } => {
                let payloads = faults::malformed_payloads(
                    shared.world.config().seed,
                    *count,
                    shared.world.config().members,
                    &shared.subjects,
                    shared.config.cohorts,
                );
                let mut failed = 0;
                for (subject, payload) in payloads {
                    let ok = shared.client.publish(subject, payload.into()).await.is_ok();
                    failed += !ok as u32;
                    shared
                        .malformed_sent
                        .fetch_add(ok as u64, Ordering::Relaxed);
                }
                let _ = shared.client.flush().await;
                if failed == 0 {
                    "applied".to_owned()
                } else {
                    format!("applied, {failed} publishes failed")
                }
            }
            FaultKind::Spike { factor } => {
                shared.spike.store(*factor, Ordering::SeqCst);
                "applied".to_owned()
            }
            FaultKind::NatsRestart => match &nats {
                None => {
                    "unsupported: the simulator did not start the NATS server (--nats was given)"
                        .to_owned()
                }
                Some(server) => {
                    let server = server.clone();
                    match tokio::task::spawn_blocking(move || {
                        server.lock().unwrap_or_else(|e| e.into_inner()).restart()
                    })
                    .await
                    {
                        Ok(Ok(())) => "applied".to_owned(),
                        Ok(Err(e)) => format!("failed: {e:#}"),
                        Err(e) => format!("failed: {e}"),
                    }
                }
            },
        };
        while Instant::now() < end && !shared.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(
                Duration::from_millis(10).min(end.saturating_duration_since(Instant::now())),
            )
            .await;
        }
        match &fault.kind {
            kind if kind.is_node_fault() => {
                if let Some(set) = &shared.config.nodes {
                    let after = crate::cluster::end_node_fault(set, kind, victim.as_deref()).await;
                    if !after.is_empty() {
                        note = format!("{note}; {after}");
                    }
                }
            }
            FaultKind::ModelSlow { .. } if outcome.starts_with("applied") => {
                if let Err(e) =
                    faults::set_model_delay(&shared.client, &shared.subjects, 0, None).await
                {
                    note = format!("could not end the slowdown: {e}");
                }
            }
            FaultKind::Spike { .. } => shared.spike.store(1, Ordering::SeqCst),
            FaultKind::ModelCrash if outcome.starts_with("applied") => {
                if let Err(e) =
                    faults::set_model_crash(&shared.client, &shared.subjects, 0, None).await
                {
                    note = format!("could not end the crashes: {e}");
                } else if let (Some(b), Some(a)) = (
                    &node_before,
                    shared.config.metrics_addr.and_then(|a| scrape(a).ok()),
                ) {
                    let labels = ["supervisor=\"model\""];
                    let exhausted =
                        metric_sum(&a, node_metrics::SUPERVISOR_EXHAUSTED_TOTAL, &labels)
                            - metric_sum(b, node_metrics::SUPERVISOR_EXHAUSTED_TOTAL, &labels);
                    note =
                        format!("model subtree exhausted {exhausted:.0} times; the node stayed up");
                }
            }
            FaultKind::BigPayloads { count } if outcome.starts_with("applied") => {
                if let (Some(b), Some(a)) = (
                    &node_before,
                    shared.config.metrics_addr.and_then(|a| scrape(a).ok()),
                ) {
                    let delta = |name: &str, labels: &[&str]| {
                        metric_sum(&a, name, labels) - metric_sum(b, name, labels)
                    };
                    note = format!(
                        "node rejected {:.0} of {count}; node NATS disconnections {:.0}",
                        delta(node_metrics::EVENTS_REJECTED_TOTAL, &[]),
                        delta(node_metrics::NATS_EVENTS_TOTAL, &["event=\"disconnected\""])
                    );
                }
            }
            FaultKind::Malformed { count } => {
                let after = shared
                    .config
                    .metrics_addr
                    .and_then(|a| scrape(a).ok())
                    .map(|t| metric_sum(&t, node_metrics::EVENTS_REJECTED_TOTAL, &[]));
                if let (Some(b), Some(a)) = (rejected_before, after) {
                    note = format!("node rejected {:.0} of {count}", a - b);
                }
            }
            _ => {}
        }
        let end_s = at(Instant::now());
        // Requests of the window are settled (answered or given up) at most
        // `no_reply_after` past their deadline: count the losses then,
        // without holding up the next fault.
        let settle =
            Duration::from_millis(shared.config.deadline_ms) + shared.config.no_reply_after;
        let counted = {
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(settle).await;
                let node_after = shared.config.metrics_addr.and_then(|a| scrape(a).ok());
                losses_before.lost(
                    &losses(&shared),
                    node_before.as_deref(),
                    node_after.as_deref(),
                )
            })
        };
        lost.push(counted);
        records.push(FaultRecord {
            fault: fault.kind.to_string(),
            start_s: at(start),
            end_s,
            lost: String::new(),
            outcome,
            replies: 0,
            fallback_share: 0.0,
            worst_p99_ms: 0.0,
            note,
        });
    }
    with_losses(records, lost).await
}

/// Fills each record's `lost` once its requests have settled.
async fn with_losses(
    mut records: Vec<FaultRecord>,
    lost: Vec<tokio::task::JoinHandle<String>>,
) -> Vec<FaultRecord> {
    for (record, counted) in records.iter_mut().zip(lost) {
        record.lost = counted.await.unwrap_or_default();
    }
    records
}

/// What the simulator had counted at one moment: what it sent and what
/// went missing.
struct Losses {
    sent: u64,
    no_reply: u64,
    errors: u64,
    events: u64,
}

fn losses(shared: &Shared) -> Losses {
    let stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
    Losses {
        sent: shared.sent.load(Ordering::SeqCst),
        no_reply: stats.no_reply,
        errors: stats.errors.values().sum(),
        events: shared.published.load(Ordering::SeqCst)
            + shared.probe_events.load(Ordering::SeqCst),
    }
}

impl Losses {
    /// What was lost between `self` and `after`: requests without a reply
    /// or with an error, and events the node never counted (ingested,
    /// rejected or dropped) when its metrics are known.
    fn lost(&self, after: &Losses, node_before: Option<&str>, node_after: Option<&str>) -> String {
        let requests = after.sent - self.sent;
        let unanswered = after.no_reply - self.no_reply;
        let errors = after.errors - self.errors;
        let events = after.events - self.events;
        let mut text = format!(
            "{unanswered} of {requests} requests unanswered, {errors} answered with an error"
        );
        if let (Some(b), Some(a)) = (node_before, node_after) {
            let counted: f64 = [
                node_metrics::EVENTS_INGESTED_TOTAL,
                node_metrics::EVENTS_DROPPED_TOTAL,
            ]
            .iter()
            .map(|name| metric_sum(a, name, &[]) - metric_sum(b, name, &[]))
            .sum();
            let missing = (events as f64 - counted).max(0.0);
            text.push_str(&format!(
                "; {events} events sent, {missing:.0} not (yet) counted by the node"
            ));
        } else {
            text.push_str(&format!("; {events} events sent"));
        }
        text
    }
}
