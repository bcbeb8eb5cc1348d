//! Monitoring: one timeline bucket a second, the progress line, and the
//! node's health (memory, resident members) through the admin client.

use super::*;

/// Once per second: closes a timeline bucket and polls the node's health;
/// four times a second: refreshes the progress line.
pub(super) async fn monitor(shared: Arc<Shared>) {
    let bar = if shared.config.progress {
        let bar = indicatif::ProgressBar::new(shared.config.duration.as_secs());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len}s {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_events = 0u64;
    let mut n = 0u64;
    let mut last = Bucket::default();
    let admin = reco_client::Admin::new(shared.client.clone(), shared.subjects.clone())
        .with_timeout(Duration::from_millis(500));
    loop {
        tick.tick().await;
        n += 1;
        let done =
            shared.stop.load(Ordering::Relaxed) && shared.in_flight.load(Ordering::Relaxed) == 0;
        if n % 4 == 0 || done {
            let events = shared.published.load(Ordering::Relaxed);
            {
                let mut stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
                let q = |h: &Histogram<u64>, q| {
                    if h.is_empty() {
                        0.0
                    } else {
                        h.value_at_quantile(q) as f64 / 1000.0
                    }
                };
                let bucket = Bucket {
                    t_s: shared.started.elapsed().as_secs_f64(),
                    events: events - last_events,
                    replies: stats.bucket_replies,
                    p50_ms: q(&stats.bucket, 0.5),
                    p90_ms: q(&stats.bucket, 0.9),
                    p99_ms: q(&stats.bucket, 0.99),
                    fallback_share: if stats.bucket_replies > 0 {
                        stats.bucket_fallbacks as f64 / stats.bucket_replies as f64
                    } else {
                        0.0
                    },
                    fallback_by_reason: stats
                        .bucket_reasons
                        .iter()
                        .map(|(reason, n)| {
                            (
                                (*reason).to_owned(),
                                *n as f64 / stats.bucket_replies as f64,
                            )
                        })
                        .collect(),
                };
                stats.bucket.reset();
                stats.bucket_reasons.clear();
                stats.bucket_replies = 0;
                stats.bucket_fallbacks = 0;
                stats.timeline.push(bucket.clone());
                last = bucket;
            }
            last_events = events;
            if let Ok(health) = admin.health().await {
                let mut stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
                stats.rss_max = stats.rss_max.max(health.rss_bytes);
                stats.resident = health.resident_members;
            }
        }
        if let Some(bar) = &bar {
            bar.set_position(
                shared
                    .started
                    .elapsed()
                    .as_secs()
                    .min(shared.config.duration.as_secs()),
            );
            bar.set_message(format!(
                "{:.0} ev/s  {:.0} req/s  p99 {:.1} ms  fallback {:.0}%  sent {}",
                last.events as f64,
                last.replies as f64,
                last.p99_ms,
                last.fallback_share * 100.0,
                shared.sent.load(Ordering::Relaxed)
            ));
        }
        if done {
            break;
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}
