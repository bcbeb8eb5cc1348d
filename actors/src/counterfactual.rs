//! The counterfactual log: what a late model would have said.
//!
//! Purpose: when the model misses a request's deadline, the fallback
//! answers (`reason: deadline`) and the model's work used to be thrown away.
//! For a sampled share of those requests ([`CounterfactualSettings::sample_rate`])
//! the session keeps waiting for the model after the fallback has replied
//! (at most [`CounterfactualSettings::max_late`]) and hands the late list,
//! beside what was served, to this log, which publishes it as a
//! [`Counterfactual`] on `<prefix>.counterfactual` (a JetStream stream
//! records it server-side, like the event log). `reco-sim` reads it to say
//! what degradation cost.
//!
//! Sampling is decided when the model is asked, before anyone knows whether
//! it will be late: an unsampled request that misses its deadline is skipped
//! by the workers as before (no wasted scoring), a sampled one is scored even
//! after its deadline ([`crate::model::Score::keep_late`]). The decision does
//! not depend on lateness, so the published share of late answers is the
//! sampling rate; `reco_counterfactual_total{outcome}` counts both sides
//! (`published`, `dropped`, `failed`, `lost` for sampled late requests,
//! `unsampled` for the others).
//!
//! Off the request path: the caller has already been answered when a record
//! is made; records go through a bounded queue (`try_send`, a full queue
//! drops and counts) to one task on the NATS runtime that encodes and
//! publishes them. Nothing here blocks a session.
//!
//! Emits: `reco_counterfactual_total{outcome}`,
//! `reco_counterfactual_late_seconds`; the publisher runs in the span
//! `counterfactual_publisher`, a session's wait in its request's span.
//! Logs: WARN when a record cannot be published.
//!
//! Fails: a record that cannot be queued or published is counted and lost;
//! the request it describes was answered long before.

use crate::metrics as m;
use crate::model::ScoreOutcome;
use crate::signals::now_ms;
use actix::MailboxError;
use async_nats::Client;
use reco_messages::{encode, Counterfactual, MemberId, Reason, ScoredItem, Source};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Settings of the counterfactual log, from the node's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct CounterfactualSettings {
    /// Share of model-bound requests whose late answer is kept (0 to 1;
    /// 0 disables the log).
    pub sample_rate: f64,
    /// Records waiting to be published; beyond it they are dropped.
    pub queue: usize,
    /// How long after the fallback replied a sampled request still waits
    /// for the model.
    pub max_late: Duration,
}

impl Default for CounterfactualSettings {
    fn default() -> Self {
        Self {
            sample_rate: 0.1,
            queue: 1024,
            max_late: Duration::from_secs(5),
        }
    }
}

/// What was served instead of the model: the facts a record needs from the
/// session, gathered when the fallback replied.
#[derive(Clone, Debug)]
pub struct Served {
    /// The member.
    pub member: MemberId,
    /// The request's id in this node.
    pub request_id: u64,
    /// Items asked for.
    pub k: usize,
    /// The served list.
    pub items: Vec<ScoredItem>,
    /// Its source.
    pub source: Source,
    /// Why the fallback answered.
    pub reason: Reason,
    /// The version behind the served list.
    pub version: Option<String>,
    /// When the fallback replied.
    pub replied: Instant,
}

#[derive(Debug)]
struct Inner {
    settings: CounterfactualSettings,
    queue: tokio::sync::mpsc::Sender<Counterfactual>,
    node: String,
    /// State of the sampler (splitmix64).
    draws: AtomicU64,
}

/// The handle sessions use, cheap to clone; disabled, it samples nothing.
#[derive(Clone, Debug, Default)]
pub struct CounterfactualLog {
    inner: Option<Arc<Inner>>,
}

impl CounterfactualLog {
    /// A log that samples nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// A log publishing on `subject` with `client` from one task spawned on
    /// `runtime` (the runtime that owns the connection). `node` names this
    /// node in the records. A sample rate of 0 gives a disabled log.
    pub fn start(
        client: Client,
        subject: String,
        node: String,
        settings: CounterfactualSettings,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let (log, mut records) = Self::queued(node, settings);
        if log.inner.is_some() {
            let span = tracing::info_span!("counterfactual_publisher", subject = %subject);
            let publisher = async move {
                while let Some(record) = records.recv().await {
                    match client
                        .publish(subject.clone(), encode(&record).into())
                        .await
                    {
                        Ok(()) => {
                            metrics::counter!(m::COUNTERFACTUAL_TOTAL, "outcome" => "published")
                                .increment(1)
                        }
                        Err(error) => {
                            metrics::counter!(m::COUNTERFACTUAL_TOTAL, "outcome" => "failed")
                                .increment(1);
                            tracing::warn!(%error, "A counterfactual record could not be published.");
                        }
                    }
                }
            };
            runtime.spawn(publisher.instrument(span));
        }
        log
    }

    /// A log whose records go to the returned receiver (the publisher task
    /// reads it; tests read it directly).
    pub fn queued(
        node: String,
        settings: CounterfactualSettings,
    ) -> (Self, tokio::sync::mpsc::Receiver<Counterfactual>) {
        let (tx, rx) = tokio::sync::mpsc::channel(settings.queue.max(1));
        let enabled = settings.sample_rate > 0.0;
        let seed = u64::from(std::process::id()) ^ now_ms().rotate_left(17);
        let log = CounterfactualLog {
            inner: enabled.then(|| {
                Arc::new(Inner {
                    settings,
                    queue: tx,
                    node,
                    draws: AtomicU64::new(seed),
                })
            }),
        };
        (log, rx)
    }

    /// Whether this request's late answer is to be kept: true with
    /// probability `sample_rate`, decided before the model is asked.
    pub fn sample(&self) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        let rate = inner.settings.sample_rate;
        if rate >= 1.0 {
            return true;
        }
        // splitmix64 over a shared counter: independent of everything the
        // request is, cheap, lock-free.
        let mut z = inner
            .draws
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64) < rate
    }

    /// Counts a late request that was not sampled (the denominator of the
    /// published share).
    pub fn unsampled(&self) {
        if self.inner.is_some() {
            metrics::counter!(m::COUNTERFACTUAL_TOTAL, "outcome" => "unsampled").increment(1);
        }
    }

    /// After the fallback replied to a sampled request: waits (at most
    /// `max_late`) for the model's answer and queues the record. Runs on
    /// the session's arbiter as a spawned future; never blocks.
    pub async fn follow<F>(&self, pending: F, served: Served)
    where
        F: Future<Output = Result<ScoreOutcome, MailboxError>>,
    {
        let Some(inner) = &self.inner else {
            return;
        };
        let late = tokio::time::timeout(inner.settings.max_late, pending).await;
        let Ok(Ok(ScoreOutcome::Scored { items, version })) = late else {
            metrics::counter!(m::COUNTERFACTUAL_TOTAL, "outcome" => "lost").increment(1);
            return;
        };
        let late_by = served.replied.elapsed();
        metrics::histogram!(m::COUNTERFACTUAL_LATE_SECONDS).record(late_by.as_secs_f64());
        self.record(Counterfactual {
            member: served.member,
            request_id: served.request_id,
            node: inner.node.clone(),
            at_ms: now_ms(),
            k: u32::try_from(served.k).unwrap_or(u32::MAX),
            late_items: items,
            late_source: Source::Model,
            late_model_version: Some(version),
            served_items: served.items,
            served_source: served.source,
            reason: served.reason,
            served_version: served.version,
            late_ms: u64::try_from(late_by.as_millis()).unwrap_or(u64::MAX),
        });
    }

    /// Queues `record` for publishing; a full queue drops it (counted).
    fn record(&self, record: Counterfactual) {
        let Some(inner) = &self.inner else {
            return;
        };
        if inner.queue.try_send(record).is_err() {
            metrics::counter!(m::COUNTERFACTUAL_TOTAL, "outcome" => "dropped").increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_messages::ItemId;
    use reco_models::Scored;

    fn settings(rate: f64, queue: usize) -> CounterfactualSettings {
        CounterfactualSettings {
            sample_rate: rate,
            queue,
            max_late: Duration::from_millis(200),
        }
    }

    fn served(request_id: u64) -> Served {
        Served {
            member: MemberId(7),
            request_id,
            k: 2,
            items: vec![ScoredItem {
                item: ItemId(1),
                score: 3.0,
            }],
            source: Source::Precomputed,
            reason: Reason::Deadline,
            version: Some("lists-1".into()),
            replied: Instant::now(),
        }
    }

    fn scored() -> ScoreOutcome {
        ScoreOutcome::Scored {
            items: vec![Scored {
                item: ItemId(9),
                score: 0.5,
            }],
            version: "m1".into(),
        }
    }

    #[test]
    fn the_sampled_share_is_the_rate_within_binomial_bounds() {
        // 20 000 draws at 0.1: mean 2 000, sd ≈ 42; ±6 sd is 250.
        let (log, _rx) = CounterfactualLog::queued("n".into(), settings(0.1, 8));
        let hits = (0..20_000).filter(|_| log.sample()).count();
        assert!((1_750..=2_250).contains(&hits), "{hits}");
        let (none, _rx) = CounterfactualLog::queued("n".into(), settings(0.0, 8));
        assert!(!(0..1_000).any(|_| none.sample()));
        let (all, _rx) = CounterfactualLog::queued("n".into(), settings(1.0, 8));
        assert!((0..1_000).all(|_| all.sample()));
    }

    #[tokio::test]
    async fn a_late_answer_is_queued_with_both_lists_and_a_full_queue_drops() {
        let (log, mut rx) = CounterfactualLog::queued("node-a".into(), settings(1.0, 1));
        let late = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(scored())
        };
        log.follow(late, served(5)).await;
        // The queue (1) is full now: the next record is dropped, not waited for.
        log.follow(async { Ok(scored()) }, served(6)).await;
        let record = rx.recv().await.unwrap();
        assert_eq!(record.request_id, 5);
        assert_eq!(record.node, "node-a");
        assert_eq!(record.late_items[0].item, ItemId(9));
        assert_eq!(record.served_items[0].item, ItemId(1));
        assert_eq!(
            (record.late_source, record.served_source, record.reason),
            (Source::Model, Source::Precomputed, Reason::Deadline)
        );
        assert_eq!(record.late_model_version.as_deref(), Some("m1"));
        assert!(record.late_ms >= 20, "{}", record.late_ms);
        assert!(rx.try_recv().is_err(), "the second record was dropped");
    }

    #[tokio::test]
    async fn an_answer_later_than_max_late_or_none_is_not_recorded() {
        let (log, mut rx) = CounterfactualLog::queued("n".into(), settings(1.0, 8));
        log.follow(std::future::pending(), served(1)).await;
        log.follow(async { Ok(ScoreOutcome::Unavailable) }, served(2))
            .await;
        assert!(rx.try_recv().is_err());
    }
}
