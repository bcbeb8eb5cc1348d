//! What degradation cost: the node's counterfactual log, read during a run.
//!
//! When reco's model misses a request's deadline the fallback answers; for a
//! sampled share of those requests the node publishes the model's late list
//! beside what it served on `<prefix>.counterfactual`
//! ([`reco_messages::Counterfactual`], recorded in a JetStream stream). The
//! simulator subscribes to that subject for the length of a run and says,
//! over those records, how much the two lists overlap and how good each one
//! is against the synthetic members' true tastes — the same judge (hit@k,
//! NDCG@k against the member's true top-2k unseen items) as the per-source
//! quality of the report. A positive `ndcg_lost` is what serving the
//! fallback instead of waiting for the model cost.
//!
//! Quality is judged only for the members whose plays the simulator tracks
//! (the report's quality cohort), so that items they have seen are left out
//! as the node leaves them out; overlap and lateness cover every record.

use crate::driver::judge;
use crate::report::Latency;
use crate::world::World;
use futures::StreamExt;
use reco_messages::{decode, Counterfactual, ItemId, MemberId};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The cost of degradation over the counterfactual records of a run.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct DegradationCost {
    /// Records received (sampled late model answers).
    pub records: u64,
    /// Records that did not decode (counted, skipped).
    pub bad: u64,
    /// Records by the source that was served (`nearline`, `precomputed`, `popular`).
    pub by_served_source: BTreeMap<String, u64>,
    /// Mean share of the late model list's items that the served list also
    /// held (|late ∩ served| / |late|; 1 = the fallback said the same).
    pub overlap: f64,
    /// Records judged for quality (members of the quality cohort).
    pub judged: u64,
    /// hit@k of the late model lists.
    pub late_hit_rate: f64,
    /// NDCG@k of the late model lists.
    pub late_ndcg: f64,
    /// hit@k of what was served.
    pub served_hit_rate: f64,
    /// NDCG@k of what was served.
    pub served_ndcg: f64,
    /// `late_ndcg - served_ndcg`: the quality the fallback gave up.
    pub ndcg_lost: f64,
    /// How late the model answered after the fallback replied.
    pub late: Latency,
}

/// Accumulates records into a [`DegradationCost`].
#[derive(Debug)]
pub struct CostAcc {
    k: usize,
    records: u64,
    bad: u64,
    by_served_source: BTreeMap<String, u64>,
    overlap: f64,
    judged: u64,
    late: (f64, f64),
    served: (f64, f64),
    late_ms: hdrhistogram::Histogram<u64>,
}

impl CostAcc {
    /// An empty accumulator judging at `k`.
    pub fn new(k: usize) -> Self {
        CostAcc {
            k,
            records: 0,
            bad: 0,
            by_served_source: BTreeMap::new(),
            overlap: 0.0,
            judged: 0,
            late: (0.0, 0.0),
            served: (0.0, 0.0),
            late_ms: crate::report::histogram(),
        }
    }

    /// Adds one record; `relevant` is the member's true top unseen items
    /// when the member is judged.
    pub fn add(&mut self, record: &Counterfactual, relevant: Option<&[ItemId]>) {
        self.records += 1;
        *self
            .by_served_source
            .entry(record.served_source.as_str().to_owned())
            .or_default() += 1;
        let late: Vec<ItemId> = record.late_items.iter().map(|s| s.item).collect();
        let served: Vec<ItemId> = record.served_items.iter().map(|s| s.item).collect();
        if !late.is_empty() {
            let shared = late.iter().filter(|i| served.contains(i)).count();
            self.overlap += shared as f64 / late.len() as f64;
        }
        let _ = self
            .late_ms
            .record(record.late_ms.saturating_mul(1000).max(1));
        if let Some(relevant) = relevant {
            self.judged += 1;
            let (hit, ndcg) = judge(&late, relevant, self.k);
            self.late.0 += hit;
            self.late.1 += ndcg;
            let (hit, ndcg) = judge(&served, relevant, self.k);
            self.served.0 += hit;
            self.served.1 += ndcg;
        }
    }

    /// Counts a record that did not decode.
    pub fn bad(&mut self) {
        self.bad += 1;
    }

    /// The cost so far.
    pub fn cost(&self) -> DegradationCost {
        let per = |x: f64, n: u64| if n == 0 { 0.0 } else { x / n as f64 };
        let (late_ndcg, served_ndcg) = (
            per(self.late.1, self.judged),
            per(self.served.1, self.judged),
        );
        DegradationCost {
            records: self.records,
            bad: self.bad,
            by_served_source: self.by_served_source.clone(),
            overlap: per(self.overlap, self.records),
            judged: self.judged,
            late_hit_rate: per(self.late.0, self.judged),
            late_ndcg,
            served_hit_rate: per(self.served.0, self.judged),
            served_ndcg,
            ndcg_lost: late_ndcg - served_ndcg,
            late: Latency::of(&self.late_ms),
        }
    }
}

/// What a running listener needs to judge a record: the member's seen
/// items when the member is in the quality cohort (`None` otherwise).
pub type SeenOf = Arc<dyn Fn(MemberId) -> Option<Vec<ItemId>> + Send + Sync>;

/// Subscribes to `subject` and accumulates every record into the returned
/// accumulator until the subscription ends or the task is aborted. The
/// subscription is made before this returns, so nothing published after it
/// is missed.
///
/// # Errors
/// When the subscription cannot be made.
pub async fn listen(
    client: &async_nats::Client,
    subject: String,
    world: Arc<World>,
    k: usize,
    seen_of: SeenOf,
    max_payload: usize,
) -> anyhow::Result<(Arc<Mutex<CostAcc>>, tokio::task::JoinHandle<()>)> {
    let mut records = client.subscribe(subject).await?;
    let acc = Arc::new(Mutex::new(CostAcc::new(k)));
    let task = {
        let acc = acc.clone();
        tokio::spawn(async move {
            while let Some(message) = records.next().await {
                let record: Result<Counterfactual, _> = decode(&message.payload, max_payload);
                let mut acc = acc.lock().unwrap_or_else(|e| e.into_inner());
                match record {
                    Ok(record) => {
                        // A scan of the catalogue per judged record; records
                        // are a sampled share of late answers, so few.
                        let relevant = seen_of(record.member).map(|seen| {
                            let member = world.member(record.member);
                            world.true_top(&member, 2 * k, &seen)
                        });
                        acc.add(&record, relevant.as_deref());
                    }
                    Err(_) => acc.bad(),
                }
            }
        })
    };
    Ok((acc, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_messages::{Reason, ScoredItem, Source};

    fn items(ids: &[u64]) -> Vec<ScoredItem> {
        ids.iter()
            .map(|&i| ScoredItem {
                item: ItemId(i),
                score: 1.0,
            })
            .collect()
    }

    fn record(late: &[u64], served: &[u64], late_ms: u64) -> Counterfactual {
        Counterfactual {
            member: MemberId(1),
            request_id: 1,
            node: "n".into(),
            at_ms: 0,
            k: 3,
            late_items: items(late),
            late_source: Source::Model,
            late_model_version: None,
            served_items: items(served),
            served_source: Source::Precomputed,
            reason: Reason::Deadline,
            served_version: None,
            late_ms,
        }
    }

    #[test]
    fn overlap_and_quality_of_both_lists_are_averaged_over_records() {
        let relevant = [ItemId(1), ItemId(2), ItemId(3)];
        let mut acc = CostAcc::new(3);
        // The model had it right, the fallback shared one item, unranked.
        acc.add(&record(&[1, 2, 3], &[9, 8, 1], 100), Some(&relevant));
        // Not judged: overlap only.
        acc.add(&record(&[4, 5, 6], &[4, 5, 6], 300), None);
        acc.bad();
        let cost = acc.cost();
        assert_eq!((cost.records, cost.judged, cost.bad), (2, 1, 1));
        assert!((cost.overlap - (1.0 / 3.0 + 1.0) / 2.0).abs() < 1e-9);
        assert_eq!((cost.late_hit_rate, cost.late_ndcg), (1.0, 1.0));
        assert_eq!(cost.served_hit_rate, 1.0);
        assert!(cost.served_ndcg > 0.0 && cost.served_ndcg < 1.0);
        assert!((cost.ndcg_lost - (1.0 - cost.served_ndcg)).abs() < 1e-9);
        assert_eq!(cost.by_served_source.get("precomputed"), Some(&2));
        assert_eq!(cost.late.count, 2);
        assert!(cost.late.max_ms >= 299.0);
    }
}
