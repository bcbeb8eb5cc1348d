//! The fault runner: applies each scheduled fault in its window and records
//! what happened.

use super::*;

/// Applies each fault in its window and records what happened.
pub(super) async fn run_faults(
    shared: Arc<Shared>,
    nats: Option<Arc<Mutex<NatsServer>>>,
) -> Vec<FaultRecord> {
    let mut records = Vec::new();
    let faults = shared.config.faults.clone();
    for fault in faults {
        let start = shared.started + fault.start;
        let end = start + fault.length;
        if start >= shared.started + shared.config.duration {
            continue;
        }
        while Instant::now() < start {
            if shared.stop.load(Ordering::Relaxed) {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(10).min(start - Instant::now())).await;
        }
        let at = |t: Instant| (t - shared.started).as_secs_f64();
        let mut note = String::new();
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
            // Every 4th scoring request crashes its worker for the window.
            FaultKind::ModelCrash => describe(
                faults::set_model_crash(&shared.client, &shared.subjects, 4, model_cohort).await,
            ),
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
            FaultKind::ModelCrash if outcome.starts_with("applied") => {
                if let Err(e) =
                    faults::set_model_crash(&shared.client, &shared.subjects, 0, None).await
                {
                    note = format!("could not end the crashes: {e}");
                }
            }
            FaultKind::Spike { .. } => shared.spike.store(1, Ordering::SeqCst),
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
        records.push(FaultRecord {
            fault: fault.kind.to_string(),
            start_s: at(start),
            end_s: at(Instant::now()),
            outcome,
            replies: 0,
            fallback_share: 0.0,
            worst_p99_ms: 0.0,
            note,
        });
    }
    records
}
