//! `ModelWorker`: the model actors that score items for a member online.
//!
//! Purpose: fold a user vector in from a member's recent events against the
//! frozen item factors and return the top k items, within the request's
//! deadline or not at all.
//!
//! Mailbox: [`Score`] → [`ScoreOutcome`]. Workers run on a `SyncArbiter`
//! (dedicated threads), so scoring never blocks an arbiter that serves
//! sessions. actix's `SyncArbiter` queue is unbounded and `send()` ignores
//! capacity, so admission is bounded here instead: [`ModelPool::try_score`]
//! refuses work (`Refusal::Overloaded`) once `max_in_flight` requests are
//! admitted and not finished.
//!
//! State: none of its own; the model in service lives in a [`ModelHandle`]
//! shared by every worker. A request reads the handle once, so it finishes
//! on the version it started with even if a new one is swapped in.
//!
//! Emits: `reco_model_requests_total{outcome}`, `reco_model_score_seconds`,
//! `reco_model_in_flight`, `reco_model_items`.
//!
//! Fails: a worker skips a request whose deadline has passed (`Expired`),
//! answers `Unavailable` when no model is loaded, and `Cold` when none of the
//! member's items is in the model. A worker restart loses nothing: the model
//! is in the shared handle.

use crate::metrics as m;
use actix::prelude::*;
use arc_swap::ArcSwapOption;
use reco_messages::ItemId;
use reco_models::{ItemFactors, Scored};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The item-factor model in service, shared by the workers; empty until one
/// is loaded.
#[derive(Clone, Debug, Default)]
pub struct ModelHandle {
    current: Arc<ArcSwapOption<ItemFactors>>,
}

impl ModelHandle {
    /// A handle serving `model` (or nothing).
    pub fn new(model: Option<ItemFactors>) -> Self {
        let handle = ModelHandle {
            current: Arc::new(ArcSwapOption::from(model.map(Arc::new))),
        };
        handle.publish_gauges();
        handle
    }

    /// The model in service now.
    pub fn load(&self) -> Option<Arc<ItemFactors>> {
        self.current.load_full()
    }

    /// Puts `model` in service; requests that already read the old one
    /// finish with it.
    pub fn swap(&self, model: Arc<ItemFactors>) -> Option<Arc<ItemFactors>> {
        let old = self.current.swap(Some(model));
        self.publish_gauges();
        old
    }

    fn publish_gauges(&self) {
        let items = self.load().map_or(0, |m| m.len());
        metrics::gauge!(m::MODEL_ITEMS).set(items as f64);
    }
}

/// Faults injected into the model workers on purpose, for tests and the
/// simulator; shared by every worker and changeable while the node runs.
/// All off by default.
#[derive(Clone, Debug, Default)]
pub struct InjectedFaults {
    model_delay_ms: Arc<AtomicU64>,
}

impl InjectedFaults {
    /// Faults with every scoring request delayed by `model_delay_ms`.
    pub fn new(model_delay_ms: u64) -> Self {
        let faults = InjectedFaults::default();
        faults.set_model_delay_ms(model_delay_ms);
        faults
    }

    /// How long each scoring request sleeps first.
    pub fn model_delay(&self) -> Duration {
        Duration::from_millis(self.model_delay_ms.load(Ordering::Relaxed))
    }

    /// Changes the delay of every later scoring request.
    pub fn set_model_delay_ms(&self, ms: u64) {
        self.model_delay_ms.store(ms, Ordering::Relaxed);
    }
}

/// Score items for a member.
#[derive(Debug, Message)]
#[rtype(result = "ScoreOutcome")]
pub struct Score {
    /// The member's recent (item, weight) interactions.
    pub interactions: Vec<(ItemId, f32)>,
    /// How many items to return.
    pub k: usize,
    /// Items to leave out (sorted).
    pub exclude: Vec<ItemId>,
    /// When the answer stops being useful.
    pub deadline: Instant,
    permit: Option<Permit>,
}

impl Score {
    /// A scoring request (admitted to the pool by [`ModelPool::try_score`]).
    pub fn new(
        interactions: Vec<(ItemId, f32)>,
        k: usize,
        exclude: Vec<ItemId>,
        deadline: Instant,
    ) -> Self {
        Score {
            interactions,
            k,
            exclude,
            deadline,
            permit: None,
        }
    }
}

/// What a worker made of a [`Score`] request.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoreOutcome {
    /// The top items and the version of the model that scored them.
    Scored {
        /// Best first.
        items: Vec<Scored>,
        /// Model version.
        version: String,
    },
    /// The deadline had passed before the worker got to it; nothing computed.
    Expired,
    /// None of the member's items is known to the model.
    Cold,
    /// No model is loaded.
    Unavailable,
}

/// A model actor: one per `SyncArbiter` thread.
#[derive(Debug)]
pub struct ModelWorker {
    model: ModelHandle,
    faults: InjectedFaults,
}

impl ModelWorker {
    /// A worker scoring with whatever model `model` holds.
    pub fn new(model: ModelHandle, faults: InjectedFaults) -> Self {
        ModelWorker { model, faults }
    }
}

impl Actor for ModelWorker {
    type Context = SyncContext<Self>;
}

impl Handler<Score> for ModelWorker {
    type Result = MessageResult<Score>;

    fn handle(&mut self, msg: Score, _ctx: &mut Self::Context) -> Self::Result {
        let _permit = msg.permit;
        let delay = self.faults.model_delay();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let started = Instant::now();
        if started >= msg.deadline {
            metrics::counter!(m::MODEL_REQUESTS_TOTAL, "outcome" => "expired").increment(1);
            return MessageResult(ScoreOutcome::Expired);
        }
        let Some(model) = self.model.load() else {
            metrics::counter!(m::MODEL_REQUESTS_TOTAL, "outcome" => "unavailable").increment(1);
            return MessageResult(ScoreOutcome::Unavailable);
        };
        let Some(user) = model.fold_in(&msg.interactions) else {
            metrics::counter!(m::MODEL_REQUESTS_TOTAL, "outcome" => "cold").increment(1);
            return MessageResult(ScoreOutcome::Cold);
        };
        let items = model.top_k(&user, msg.k, &msg.exclude);
        metrics::histogram!(m::MODEL_SCORE_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::counter!(m::MODEL_REQUESTS_TOTAL, "outcome" => "scored").increment(1);
        MessageResult(ScoreOutcome::Scored {
            items,
            version: model.version().to_owned(),
        })
    }
}

/// Counts one admitted request until it is finished or dropped.
#[derive(Debug)]
struct Permit {
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(m::MODEL_IN_FLIGHT).decrement(1.0);
    }
}

/// Why the pool would not take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_in_flight` requests are already admitted.
    Overloaded,
    /// The workers are gone or no model is loaded.
    Unavailable,
}

/// The front of the model worker pool, cheap to clone into every session.
#[derive(Clone, Debug)]
pub struct ModelPool {
    workers: Addr<ModelWorker>,
    model: ModelHandle,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
}

impl ModelPool {
    /// Starts `workers` worker threads scoring with `model`, admitting at
    /// most `max_in_flight` requests at a time. Must run inside an actix
    /// system.
    pub fn start(
        workers: usize,
        max_in_flight: usize,
        model: ModelHandle,
        faults: InjectedFaults,
    ) -> Self {
        let for_workers = model.clone();
        let addr = SyncArbiter::start(workers.max(1), move || {
            ModelWorker::new(for_workers.clone(), faults.clone())
        });
        ModelPool {
            workers: addr,
            model,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: max_in_flight.max(1),
        }
    }

    /// The model handle the workers read (for hot swaps and status).
    pub fn model(&self) -> &ModelHandle {
        &self.model
    }

    /// Admits `score` if there is room and a model, returning the future of
    /// its outcome; the caller bounds it with its own deadline.
    pub fn try_score(
        &self,
        mut score: Score,
    ) -> Result<impl Future<Output = Result<ScoreOutcome, MailboxError>>, Refusal> {
        if !self.workers.connected() || self.model.load().is_none() {
            metrics::counter!(m::MODEL_REQUESTS_TOTAL, "outcome" => "refused_unavailable")
                .increment(1);
            return Err(Refusal::Unavailable);
        }
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            metrics::counter!(m::MODEL_REQUESTS_TOTAL, "outcome" => "refused_overloaded")
                .increment(1);
            return Err(Refusal::Overloaded);
        }
        metrics::gauge!(m::MODEL_IN_FLIGHT).increment(1.0);
        score.permit = Some(Permit {
            in_flight: self.in_flight.clone(),
        });
        Ok(self.workers.send(score))
    }
}
