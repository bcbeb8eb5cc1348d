//! `ModelWorker`: the model actors that score items for a member online.
//!
//! Purpose: fold a user vector in from a member's training history (carried
//! by the model) and recent events against the frozen item factors and
//! return the top k items, leaving out the history like seen items, within
//! the request's deadline or not at all.
//!
//! Mailbox: `Drain` → `()`, a wake-up. Each worker is a `SyncArbiter` of
//! one dedicated thread with its own inbox of [`Score`] jobs, so scoring
//! never blocks an arbiter that serves sessions, and a supervisor can
//! replace one worker without touching the others. [`ModelPool::try_score`]
//! puts a job in the least loaded worker's inbox and wakes the worker only
//! when the inbox was empty; the worker takes everything queued and serves
//! it in one pass over the factor matrix
//! ([`ItemFactors::top_k_batch`](reco_models::ItemFactors::top_k_batch)).
//! Under load, requests that queued up while a pass ran are batched
//! together: the matrix is read once per batch instead of once per request,
//! and one thread hand-off serves many requests. actix's `SyncArbiter`
//! queue is unbounded, so admission is bounded here instead: the pool
//! refuses work (`Refusal::Overloaded`) once every worker has its share of
//! `max_in_flight`; with no worker up it refuses with
//! `Refusal::Unavailable`.
//!
//! State: none of its own; the model in service lives in a [`ModelHandle`]
//! shared by every worker. A request reads the handle once, so it finishes
//! on the version it started with even if a new one is swapped in.
//!
//! Emits: `reco_model_requests_total{outcome}`, `reco_model_score_seconds`
//! (a pass's time shared out over the requests it scored),
//! `reco_model_batch_size`, `reco_model_in_flight`, `reco_model_items`,
//! `reco_model_clusters`,
//! `reco_model_workers_up`. Logs: WARN when a worker thread's priority
//! cannot be lowered. Injected faults (delay, panics) come from the
//! [`crate::faults`] handle each worker holds.
//!
//! Fails: a worker skips a request whose deadline has passed (`Expired`)
//! unless it is sampled for the counterfactual log (`keep_late`),
//! answers `Unavailable` when no model is loaded, and `Cold` when none of the
//! member's items is in the model. A panic while scoring is caught: the
//! requests of that pass are answered `Unavailable` (the sessions fall back
//! with `reason: model_unavailable`), the worker leaves the pool, answers
//! what was queued to it at once, and reports the panic through its exit
//! hook; its supervisor starts a new worker thread (with a new inbox) after
//! a backoff. A restart loses nothing: the model is in the shared handle.

use crate::faults::InjectedFaults;
use crate::lifecycle::{isolate, ExitHook, ExitReason};
use crate::metrics as m;
use actix::prelude::*;
use arc_swap::ArcSwapOption;
use futures::channel::oneshot;
use reco_messages::{ItemId, MemberId};
use reco_models::{ItemFactors, Query, Scan, Scored};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
        let model = self.load();
        let items = model.as_ref().map_or(0, |m| m.len());
        metrics::gauge!(m::MODEL_ITEMS).set(items as f64);
        let clusters = model.as_ref().map_or(0, |m| m.clusters());
        metrics::gauge!(m::MODEL_CLUSTERS).set(clusters as f64);
    }
}

/// Score items for a member (a job for a model worker).
#[derive(Debug)]
pub struct Score {
    /// Whose request it is (injected faults may be limited to a cohort).
    pub member: MemberId,
    /// The member's recent (item, weight) interactions.
    pub interactions: Vec<(ItemId, f32)>,
    /// How many items to return.
    pub k: usize,
    /// Items to leave out (sorted).
    pub exclude: Vec<ItemId>,
    /// When the answer stops being useful.
    pub deadline: Instant,
    /// Leave out the items of the member's training history too (as seen
    /// items; default true).
    pub exclude_history: bool,
    /// Scale of the history's weights in the fold-in (default 1: the
    /// trained vector when there is no recent event).
    pub history_weight: f32,
    /// What to rank (default: the whole catalogue, top picks); see
    /// [`RowQuery`].
    pub row: RowQuery,
    /// Score it even after its deadline (default false): the counterfactual
    /// log wants to know what a late model would have said
    /// ([`crate::counterfactual`]).
    pub keep_late: bool,
    permit: Option<Permit>,
}

/// What a [`Score`] ranks: the rows of a page that need the model
/// (`crate::rows` chooses).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum RowQuery {
    /// The member's top picks over the whole catalogue.
    #[default]
    Top,
    /// The member's ranking of these candidates only (a genre, the newest
    /// titles).
    Within(Arc<[ItemId]>),
    /// The items nearest this one (cosine of item factors); needs no
    /// member vector.
    Near(ItemId),
}

impl Score {
    /// A scoring request (admitted to the pool by [`ModelPool::try_score`]).
    pub fn new(
        member: MemberId,
        interactions: Vec<(ItemId, f32)>,
        k: usize,
        exclude: Vec<ItemId>,
        deadline: Instant,
    ) -> Self {
        Score {
            member,
            interactions,
            k,
            exclude,
            deadline,
            exclude_history: true,
            history_weight: 1.0,
            row: RowQuery::Top,
            keep_late: false,
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

/// A scoring job in a worker's inbox: the request and where its outcome
/// goes.
#[derive(Debug)]
struct Job {
    score: Score,
    reply: oneshot::Sender<ScoreOutcome>,
}

/// The jobs waiting for one worker (one per worker incarnation, so a
/// restarted worker never inherits what its failed predecessor must answer).
#[derive(Debug, Default)]
struct Inbox {
    jobs: Mutex<Vec<Job>>,
}

impl Inbox {
    /// Queues `job`; true when the inbox was empty (the worker must be
    /// woken).
    fn push(&self, job: Job) -> bool {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.push(job);
        jobs.len() == 1
    }

    fn take(&self) -> Vec<Job> {
        std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Wakes a worker: serve everything in the inbox.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Drain;

/// A model actor: one per worker thread (a `SyncArbiter` of one).
pub struct ModelWorker {
    model: ModelHandle,
    /// Exact or cluster-pruned (the pool's setting).
    scan: Scan,
    faults: InjectedFaults,
    slot: Arc<WorkerSlot>,
    inbox: Arc<Inbox>,
    /// Which incarnation of its slot this worker is.
    generation: u64,
    exit: ExitHook,
    failed: bool,
}

impl std::fmt::Debug for ModelWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelWorker")
            .field("slot", &self.slot.index)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Actor for ModelWorker {
    type Context = SyncContext<Self>;
}

impl ModelWorker {
    fn count(&self, outcome: &'static str, n: usize) {
        if n > 0 {
            metrics::counter!(m::MODEL_REQUESTS_TOTAL, "pool" => self.slot.pool, "outcome" => outcome)
                .increment(n as u64);
        }
    }

    /// One pass: fold every live request in, then score them all in one
    /// scan of the factor matrix.
    fn score(&self, jobs: &[Job]) -> Vec<ScoreOutcome> {
        let started = Instant::now();
        let mut outcomes = vec![ScoreOutcome::Expired; jobs.len()];
        let Some(model) = self.model.load() else {
            self.count("unavailable", jobs.len());
            outcomes.fill(ScoreOutcome::Unavailable);
            return outcomes;
        };
        // (job, user vector, exclusions when they differ from the job's).
        let mut users: Vec<(usize, Vec<f32>, Vec<ItemId>)> = Vec::with_capacity(jobs.len());
        let (mut expired, mut cold, mut within) = (0, 0, 0);
        for (at, job) in jobs.iter().enumerate() {
            if started >= job.score.deadline && !job.score.keep_late {
                expired += 1;
                continue;
            }
            if self.faults.hits(job.score.member) {
                self.faults.maybe_panic();
            }
            // History ∪ recent: the member's training interactions (when
            // the model carries them) with its recent events.
            let score = &job.score;
            if let RowQuery::Near(item) = score.row {
                // No member vector: the item's neighbours.
                let items =
                    reco_models::rows::similar(&model, item, score.k, &excluded(&model, score));
                outcomes[at] = if items.is_empty() {
                    cold += 1;
                    ScoreOutcome::Cold
                } else {
                    ScoreOutcome::Scored {
                        items,
                        version: model.version().to_owned(),
                    }
                };
                continue;
            }
            match model.fold_in_member(score.member, &score.interactions, score.history_weight) {
                Some(user) => {
                    if let RowQuery::Within(candidates) = &score.row {
                        let items = reco_models::rows::top_k_within(
                            &model,
                            &user,
                            candidates,
                            score.k,
                            &excluded(&model, score),
                        );
                        outcomes[at] = ScoreOutcome::Scored {
                            items,
                            version: model.version().to_owned(),
                        };
                        within += 1;
                        continue;
                    }
                    let mut exclude = Vec::new();
                    if score.exclude_history {
                        exclude = model.history_items(score.member);
                        exclude.extend_from_slice(&score.exclude);
                    }
                    users.push((at, user, exclude));
                }
                None => {
                    cold += 1;
                    outcomes[at] = ScoreOutcome::Cold;
                }
            }
        }
        self.count("expired", expired);
        self.count("cold", cold);
        self.count("scored", within);
        if users.is_empty() {
            return outcomes;
        }
        let queries: Vec<Query<'_>> = users
            .iter()
            .map(|(at, user, exclude)| Query {
                user,
                k: jobs[*at].score.k,
                exclude: if exclude.is_empty() {
                    &jobs[*at].score.exclude
                } else {
                    exclude
                },
            })
            .collect();
        let answers = model.top_k_batch_with(&queries, self.scan);
        let per_request = started.elapsed().as_secs_f64() / users.len() as f64;
        let histogram = metrics::histogram!(m::MODEL_SCORE_SECONDS, "pool" => self.slot.pool);
        for ((at, _, _), items) in users.iter().zip(answers) {
            histogram.record(per_request);
            outcomes[*at] = ScoreOutcome::Scored {
                items,
                version: model.version().to_owned(),
            };
        }
        metrics::histogram!(m::MODEL_BATCH_SIZE, "pool" => self.slot.pool)
            .record(users.len() as f64);
        self.count("scored", users.len());
        outcomes
    }
}

impl Handler<Drain> for ModelWorker {
    type Result = ();

    fn handle(&mut self, _msg: Drain, _ctx: &mut Self::Context) {
        loop {
            let jobs = self.inbox.take();
            if jobs.is_empty() {
                return;
            }
            let delay = self.faults.model_delay();
            if delay.is_zero() {
                self.serve(jobs);
                continue;
            }
            if self.faults.model_cohort().is_none() {
                // The whole pass is slow: the worker is busy for the delay,
                // so the pool's capacity drops too.
                std::thread::sleep(delay);
                self.serve(jobs);
                continue;
            }
            // Only a cohort is hit: its members' answers are held back for
            // the delay (a slow dependency of theirs) without keeping the
            // worker from the others, so a control cohort is served as usual.
            let (hit, spared): (Vec<Job>, Vec<Job>) = jobs
                .into_iter()
                .partition(|job| self.faults.hits(job.score.member));
            self.serve(spared);
            if !hit.is_empty() {
                let due = Instant::now() + delay;
                let outcomes = self.outcomes(&hit);
                self.faults.hold_back(due, move || answer(hit, outcomes));
            }
        }
    }
}

impl ModelWorker {
    /// Scores `jobs` in one pass and answers them.
    fn serve(&mut self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let outcomes = self.outcomes(&jobs);
        answer(jobs, outcomes);
    }

    /// The outcomes of one pass over `jobs`; a panic takes the worker out
    /// of service (and every job of the pass is `Unavailable`).
    fn outcomes(&mut self, jobs: &[Job]) -> Vec<ScoreOutcome> {
        if self.failed {
            // Down: answer what was already queued at once, so the sessions
            // fall back instead of waiting for their deadline.
            self.count("worker_down", jobs.len());
            return vec![ScoreOutcome::Unavailable; jobs.len()];
        }
        match isolate("model_worker", "Score", || self.score(jobs)) {
            Ok(outcomes) => outcomes,
            Err(why) => {
                // Stop taking work; the supervisor starts a fresh worker (a
                // new thread and inbox) after its backoff. This thread ends
                // once its queue is answered and its address dropped.
                self.failed = true;
                self.slot.clear_if(self.generation);
                (self.exit)(ExitReason::Panicked(why));
                vec![ScoreOutcome::Unavailable; jobs.len()]
            }
        }
    }
}

/// The items a row query leaves out, sorted: the request's exclusions and,
/// when asked, the member's training history.
fn excluded(model: &ItemFactors, score: &Score) -> Vec<ItemId> {
    let mut exclude = score.exclude.clone();
    if score.exclude_history {
        exclude.extend(model.history_items(score.member));
    }
    if let RowQuery::Near(item) = score.row {
        exclude.push(item);
    }
    exclude.sort_unstable();
    exclude.dedup();
    exclude
}

/// Sends each job its outcome (a caller that gave up is simply gone) and
/// releases its admission permit.
fn answer(jobs: Vec<Job>, outcomes: Vec<ScoreOutcome>) {
    // A job without an outcome (never: a pass gives one per job) would
    // read as the model being unavailable.
    let outcomes = outcomes
        .into_iter()
        .chain(std::iter::repeat(ScoreOutcome::Unavailable));
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        let _ = job.reply.send(outcome);
    }
}

/// One worker's place in the pool: its address while it is up, and the
/// requests admitted to it.
#[derive(Debug)]
pub struct WorkerSlot {
    pool: &'static str,
    index: usize,
    running: ArcSwapOption<Running>,
    generation: AtomicU64,
    in_flight: Arc<AtomicUsize>,
}

impl WorkerSlot {
    fn clear_if(&self, generation: u64) {
        if self.generation.load(Ordering::Acquire) == generation
            && self.running.swap(None).is_some()
        {
            metrics::gauge!(m::MODEL_WORKERS_UP, "pool" => self.pool).decrement(1.0);
        }
    }
}

/// A worker in service: its address and its inbox.
#[derive(Debug)]
struct Running {
    addr: Addr<ModelWorker>,
    inbox: Arc<Inbox>,
}

/// A started worker, as its supervisor holds it.
#[derive(Debug)]
pub struct WorkerChild {
    slot: Arc<WorkerSlot>,
    generation: u64,
}

impl WorkerChild {
    /// Takes the worker out of the pool; its thread ends once its queue is
    /// answered.
    pub fn stop(&self) {
        self.slot.clear_if(self.generation);
    }

    /// Which worker this is.
    pub fn index(&self) -> usize {
        self.slot.index
    }
}

/// Counts one admitted request until it is finished or dropped.
#[derive(Debug)]
struct Permit {
    in_flight: Arc<AtomicUsize>,
    pool: &'static str,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(m::MODEL_IN_FLIGHT, "pool" => self.pool).decrement(1.0);
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
///
/// Each worker is its own `SyncArbiter` of one thread with its own queue, so
/// that a supervisor can restart one without touching the others; the pool
/// sends each request to the least loaded worker that is up, and admits at
/// most `max_in_flight / workers` (at least 1) per worker.
#[derive(Clone, Debug)]
pub struct ModelPool {
    name: &'static str,
    slots: Arc<[Arc<WorkerSlot>]>,
    model: ModelHandle,
    faults: InjectedFaults,
    per_worker: usize,
    nice: i32,
    scan: Scan,
}

impl ModelPool {
    /// A pool named `name` (the `pool` metric label: `online`, `nearline`)
    /// of `workers` slots, all down until [`ModelPool::start_worker`],
    /// admitting at most `max_in_flight` requests at a time.
    pub fn new(
        name: &'static str,
        workers: usize,
        max_in_flight: usize,
        model: ModelHandle,
        faults: InjectedFaults,
    ) -> Self {
        let workers = workers.max(1);
        let slots = (0..workers)
            .map(|index| {
                Arc::new(WorkerSlot {
                    pool: name,
                    index,
                    running: ArcSwapOption::empty(),
                    generation: AtomicU64::new(0),
                    in_flight: Arc::new(AtomicUsize::new(0)),
                })
            })
            .collect();
        ModelPool {
            name,
            slots,
            model,
            faults,
            per_worker: max_in_flight.div_ceil(workers).max(1),
            nice: 0,
            scan: Scan::Exact,
        }
    }

    /// The same pool whose workers scan this way (exact by default; a
    /// pruned scan reads only the best clusters of a clustered model, see
    /// [`Scan`]).
    pub fn with_scan(mut self, scan: Scan) -> Self {
        self.scan = scan;
        self
    }

    /// The same pool whose worker threads run at this niceness (0 to 19,
    /// clamped; higher yields the processor more readily). Nearline workers
    /// are background work: niced, they use what the online path leaves
    /// instead of competing with it. Where the system refuses, the worker
    /// logs it and runs at the default.
    pub fn with_nice(mut self, nice: i32) -> Self {
        self.nice = nice.clamp(0, 19);
        self
    }

    /// Number of worker slots.
    pub fn workers(&self) -> usize {
        self.slots.len()
    }

    /// Starts worker `index` on a new thread and puts it in service; `exit`
    /// is called if it fails. Must run inside an actix system.
    pub fn start_worker(&self, index: usize, exit: ExitHook) -> WorkerChild {
        let slot = self.slots[index].clone();
        let generation = slot.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let (model, faults, for_worker) = (self.model.clone(), self.faults.clone(), slot.clone());
        let inbox = Arc::new(Inbox::default());
        let for_inbox = inbox.clone();
        let (nice, pool, scan) = (self.nice, self.name, self.scan);
        let addr = SyncArbiter::start(1, move || {
            // Runs on the worker's own thread; on Linux a thread's niceness
            // is its own.
            if nice > 0 {
                let thread = rustix::thread::gettid();
                if let Err(error) = rustix::process::setpriority_process(Some(thread), nice) {
                    tracing::warn!(pool, nice, %error, "Could not lower the priority of a worker thread.");
                }
            }
            ModelWorker {
                model: model.clone(),
                scan,
                faults: faults.clone(),
                slot: for_worker.clone(),
                inbox: for_inbox.clone(),
                generation,
                exit: exit.clone(),
                failed: false,
            }
        });
        if slot
            .running
            .swap(Some(Arc::new(Running { addr, inbox })))
            .is_none()
        {
            metrics::gauge!(m::MODEL_WORKERS_UP, "pool" => self.name).increment(1.0);
        }
        WorkerChild { slot, generation }
    }

    /// Starts every worker unsupervised (tests and embedding).
    pub fn start_all(&self) -> Vec<WorkerChild> {
        (0..self.slots.len())
            .map(|i| self.start_worker(i, crate::lifecycle::unsupervised()))
            .collect()
    }

    /// The model handle the workers read (for hot swaps and status).
    pub fn model(&self) -> &ModelHandle {
        &self.model
    }

    /// Admits `score` if a worker is up with room and a model is loaded,
    /// returning the future of its outcome; the caller bounds it with its
    /// own deadline.
    pub fn try_score(
        &self,
        mut score: Score,
    ) -> Result<impl Future<Output = Result<ScoreOutcome, MailboxError>>, Refusal> {
        if self.model.load().is_none() {
            metrics::counter!(m::MODEL_REQUESTS_TOTAL, "pool" => self.name, "outcome" => "refused_unavailable")
                .increment(1);
            return Err(Refusal::Unavailable);
        }
        let mut any_up = false;
        let mut best: Option<(usize, usize)> = None; // (slot, load)
        for (index, slot) in self.slots.iter().enumerate() {
            if slot.running.load().is_none() {
                continue;
            }
            any_up = true;
            let load = slot.in_flight.load(Ordering::Acquire);
            if load < self.per_worker && best.is_none_or(|(_, l)| load < l) {
                best = Some((index, load));
            }
        }
        let chosen = best.and_then(|(index, _)| {
            let slot = &self.slots[index];
            slot.running.load_full().map(|running| (slot, running))
        });
        let Some((slot, running)) = chosen else {
            let (outcome, refusal) = if any_up {
                ("refused_overloaded", Refusal::Overloaded)
            } else {
                ("refused_unavailable", Refusal::Unavailable)
            };
            metrics::counter!(m::MODEL_REQUESTS_TOTAL, "pool" => self.name, "outcome" => outcome)
                .increment(1);
            return Err(refusal);
        };
        slot.in_flight.fetch_add(1, Ordering::AcqRel);
        metrics::gauge!(m::MODEL_IN_FLIGHT, "pool" => self.name).increment(1.0);
        score.permit = Some(Permit {
            in_flight: slot.in_flight.clone(),
            pool: self.name,
        });
        let (reply, outcome) = oneshot::channel();
        if running.inbox.push(Job { score, reply }) {
            running.addr.do_send(Drain);
        }
        // A job dropped unanswered (its worker gone) reads as a closed
        // mailbox, as a refused actix `send` would.
        Ok(async move { outcome.await.map_err(|_| MailboxError::Closed) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use reco_messages::admin::FaultCohort;
    use std::time::Duration;

    /// A model of `items` items in 4 dimensions, item i along axis i % 4.
    fn model(items: u64) -> ItemFactors {
        let factors = (0..items)
            .flat_map(|i| {
                let mut row = [0.05f32; 4];
                row[(i % 4) as usize] = 1.0;
                row
            })
            .collect();
        ItemFactors::new(
            "t".into(),
            4,
            (0..items).map(ItemId).collect(),
            factors,
            0.1,
            1.0,
        )
        .unwrap()
    }

    fn pool(faults: InjectedFaults) -> ModelPool {
        ModelPool::new("online", 1, 64, ModelHandle::new(Some(model(40))), faults)
    }

    fn score(member: u64, item: u64) -> Score {
        Score::new(
            MemberId(member),
            vec![(ItemId(item), 1.0)],
            3,
            vec![ItemId(item)],
            Instant::now() + Duration::from_secs(5),
        )
    }

    #[actix_rt::test]
    async fn queued_requests_are_each_answered_as_if_alone() {
        let pool = pool(InjectedFaults::default());
        let _workers = pool.start_all();
        let pending: Vec<_> = (0..12u64)
            .map(|n| pool.try_score(score(n, n % 8)).map_err(|_| ()).unwrap())
            .collect();
        let model = pool.model().load().unwrap();
        for (n, outcome) in futures::future::join_all(pending)
            .await
            .into_iter()
            .enumerate()
        {
            let n = n as u64;
            let user = model.fold_in(&[(ItemId(n % 8), 1.0)]).unwrap();
            let alone = model.top_k(&user, 3, &[ItemId(n % 8)]);
            match outcome.unwrap() {
                ScoreOutcome::Scored { items, version } => {
                    assert_eq!(items, alone);
                    assert_eq!(version, "t");
                }
                other => panic!("request {n}: {other:?}"),
            }
        }
    }

    #[actix_rt::test]
    async fn a_trained_members_reply_excludes_its_training_items() {
        use reco_models::{train_als, AlsParams, Interactions};
        // Two taste groups of 8 items; member 0 trained on 5 of group A.
        let mut triples = Vec::new();
        for m in 0..20u64 {
            let base = if m < 10 { 0 } else { 10 };
            for i in base..base + 8 {
                if m != 0 || i < 5 {
                    triples.push((MemberId(m), ItemId(i), 1.0));
                }
            }
        }
        let params = AlsParams {
            factors: 4,
            iterations: 10,
            reg: 0.1,
            alpha: 10.0,
            reg_exponent: 0.0,
            seed: 7,
            threads: 1,
            cg_steps: 0,
        };
        let data = Interactions::from_triples(triples);
        let trained = train_als(&data, &params, "h".into(), |_| {}).unwrap();
        let model = ItemFactors::from_bytes(&trained.item_factors.to_bytes()).unwrap();
        let pool = ModelPool::new(
            "online",
            1,
            8,
            ModelHandle::new(Some(model)),
            InjectedFaults::default(),
        );
        let _workers = pool.start_all();
        let ask = |exclude_history: bool| {
            let mut score = Score::new(
                MemberId(0),
                Vec::new(),
                8,
                Vec::new(),
                Instant::now() + Duration::from_secs(5),
            );
            score.exclude_history = exclude_history;
            pool.try_score(score).map_err(|_| ()).unwrap()
        };
        // No recent event: the member's history alone ranks, and none of it
        // is recommended back.
        let ScoreOutcome::Scored { items, .. } = ask(true).await.unwrap() else {
            panic!("a trained member is not cold");
        };
        assert_eq!(items.len(), 8);
        assert!(items.iter().all(|s| s.item.0 >= 5), "{items:?}");
        assert!(
            items[..3].iter().all(|s| (5..8).contains(&s.item.0)),
            "{items:?}"
        );
        // Asked to keep seen items, the history may come back.
        let ScoreOutcome::Scored { items, .. } = ask(false).await.unwrap() else {
            panic!("scored");
        };
        assert!(items.iter().any(|s| s.item.0 < 5), "{items:?}");
    }

    #[actix_rt::test]
    async fn a_delay_limited_to_a_cohort_holds_back_only_its_answers() {
        // Gates, not clocks: the outcomes and their order say what was
        // delayed. The delay is far longer than a pass takes, so a held-back
        // answer is still pending when a spared one arrives.
        let delay = Duration::from_secs(2);
        let faults = InjectedFaults::new(delay.as_millis() as u64);
        faults.set_model_cohort(Some(FaultCohort {
            modulus: 2,
            remainder: 0,
        }));
        let pool = pool(faults.clone());
        let _workers = pool.start_all();
        let hit = pool.try_score(score(2, 1)).map_err(|_| ()).unwrap();
        let spared = pool.try_score(score(3, 1)).map_err(|_| ()).unwrap();
        let mut hit = std::pin::pin!(hit);
        // The spared member is answered while the cohort's answer is held.
        let spared_outcome = spared.await.unwrap();
        assert!(matches!(spared_outcome, ScoreOutcome::Scored { .. }));
        assert!(
            hit.as_mut().now_or_never().is_none(),
            "the cohort's answer was not held back"
        );
        // Held back, not lost: scored when it was taken, sent when due.
        let hit_outcome = hit.await.unwrap();
        assert!(matches!(hit_outcome, ScoreOutcome::Scored { .. }));
        // Without a cohort, the delay hits every member: the worker sleeps
        // before the pass, so a request whose deadline is shorter than the
        // delay is found expired.
        faults.set_model_cohort(None);
        assert!(faults.hits(MemberId(3)));
        let mut short = score(3, 1);
        short.deadline = Instant::now() + Duration::from_millis(50);
        let outcome = pool.try_score(short).map_err(|_| ()).unwrap().await;
        assert_eq!(outcome, Ok(ScoreOutcome::Expired));
    }
}
