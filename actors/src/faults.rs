//! Faults injected on purpose, in a room of their own: the handle that
//! sessions and model workers consult, and the thread that holds back a
//! cohort's answers.
//!
//! Purpose: tests and the simulator make a node misbehave at run time — a
//! slow model (`model.test_delay_ms` at start, `<prefix>.admin.faults` while
//! it runs), workers that panic every nth request, an item whose events
//! crash their session — to prove that the fallbacks, supervision and
//! quarantine work. Nothing here runs unless a fault is set: every check is
//! one relaxed atomic load.
//!
//! [`InjectedFaults`] is the handle: cheap to clone, shared by the node's
//! sessions (poisoned events), its online model workers (delay, panics) and
//! the admin surface (which changes them). The nearline pool gets a handle of
//! its own that stays off.
//!
//! State: the fault settings (atomics) and, once a cohort's delay is first
//! used, the delay-line thread `reco-fault-delay` with the answers it holds
//! back, earliest due first. The thread ends when the last handle is dropped
//! and what it holds is sent.
//!
//! Emits: no metric of its own (the effects are counted where they land:
//! `reco_actor_panics_total`, `reco_events_quarantined_total`,
//! `reco_model_requests_total`). Logs: WARN "No thread for held-back
//! answers; answering now." when the delay line cannot start. The admin
//! surface logs every fault set, as a WARN.
//!
//! Fails: an injected panic is the point (it is raised inside the caller's
//! `isolate`); if the delay-line thread cannot be started, held-back answers
//! are sent at once instead of late.

use reco_messages::admin::FaultCohort;
use reco_messages::{ItemId, MemberId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Faults injected into the model workers on purpose, for tests and the
/// simulator; shared by every worker and changeable while the node runs.
/// All off by default.
///
/// A delay hits every member by default: each scoring pass sleeps, so the
/// workers are busy and the pool's capacity drops as behind a slow model.
/// Limited to a cohort ([`InjectedFaults::set_model_cohort`]), only the
/// cohort's answers are held back for the delay (by a thread of their own)
/// and the workers go on serving everyone else, so an experiment cohort can
/// be compared with an untouched control; injected panics then count only
/// the cohort's requests.
#[derive(Clone, Debug, Default)]
pub struct InjectedFaults {
    model_delay_ms: Arc<AtomicU64>,
    model_panic_every: Arc<AtomicU64>,
    scored: Arc<AtomicU64>,
    poison_item_plus_one: Arc<AtomicU64>,
    /// Model faults hit only members with `id % modulus == remainder`
    /// (modulus 0: every member).
    cohort_modulus: Arc<AtomicU64>,
    cohort_remainder: Arc<AtomicU64>,
    /// Answers held back for a cohort's delay, started on first use.
    delay_line: Arc<Mutex<Option<std::sync::mpsc::Sender<Held>>>>,
}

/// Work to run once `due` has passed (sending held-back answers).
struct Held {
    due: Instant,
    release: Box<dyn FnOnce() + Send>,
}

/// The thread that sends held-back answers when they are due, earliest
/// first; it ends when its faults are dropped.
fn delay_line(held: std::sync::mpsc::Receiver<Held>) {
    let mut waiting: Vec<Held> = Vec::new();
    loop {
        let now = Instant::now();
        let (due, later): (Vec<Held>, Vec<Held>) = waiting.into_iter().partition(|h| h.due <= now);
        waiting = later;
        for h in due {
            (h.release)();
        }
        let next = waiting.iter().map(|h| h.due).min();
        let received = match next {
            Some(due) => held.recv_timeout(due.saturating_duration_since(Instant::now())),
            None => held
                .recv()
                .map_err(|_| std::sync::mpsc::RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(h) => waiting.push(h),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if waiting.is_empty() {
                    return;
                }
                if let Some(due) = waiting.iter().map(|h| h.due).min() {
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
            }
        }
    }
}

impl InjectedFaults {
    /// Faults with every scoring pass delayed by `model_delay_ms`.
    pub fn new(model_delay_ms: u64) -> Self {
        let faults = InjectedFaults::default();
        faults.set_model_delay_ms(model_delay_ms);
        faults
    }

    /// How long each scoring pass (one request, or a batch) sleeps first.
    pub fn model_delay(&self) -> Duration {
        Duration::from_millis(self.model_delay_ms.load(Ordering::Relaxed))
    }

    /// Changes the delay of every later scoring request.
    pub fn set_model_delay_ms(&self, ms: u64) {
        self.model_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Every how many scoring requests a worker panics (0 = never).
    pub fn model_panic_every(&self) -> u64 {
        self.model_panic_every.load(Ordering::Relaxed)
    }

    /// Makes every `n`th scoring request (over all workers) panic; 0 stops it.
    pub fn set_model_panic_every(&self, n: u64) {
        self.model_panic_every.store(n, Ordering::Relaxed);
    }

    /// Makes every session that applies an event for `item` panic (the
    /// "poisoned event" fault); `None` stops it.
    pub fn set_poison_item(&self, item: Option<ItemId>) {
        self.poison_item_plus_one
            .store(item.map_or(0, |i| i.0.saturating_add(1)), Ordering::Relaxed);
    }

    /// The poisoned item, if any.
    pub fn poison_item(&self) -> Option<ItemId> {
        match self.poison_item_plus_one.load(Ordering::Relaxed) {
            0 => None,
            n => Some(ItemId(n - 1)),
        }
    }

    /// Panics if `item` is the poisoned one.
    pub fn check_poison(&self, item: ItemId) {
        if self.poison_item() == Some(item) {
            panic!("injected fault: poisoned event for item {item}");
        }
    }

    /// Limits the model faults (delay, panics) to the members of `cohort`;
    /// `None` makes them hit every member. A cohort with modulus 0 is
    /// treated as `None`; the remainder is taken modulo the modulus.
    pub fn set_model_cohort(&self, cohort: Option<FaultCohort>) {
        let (modulus, remainder) = match cohort {
            Some(c) if c.modulus > 0 => (c.modulus, c.remainder % c.modulus),
            _ => (0, 0),
        };
        self.cohort_modulus.store(0, Ordering::Relaxed);
        self.cohort_remainder.store(remainder, Ordering::Relaxed);
        self.cohort_modulus.store(modulus, Ordering::Relaxed);
    }

    /// The cohort the model faults are limited to, if any.
    pub fn model_cohort(&self) -> Option<FaultCohort> {
        match self.cohort_modulus.load(Ordering::Relaxed) {
            0 => None,
            modulus => Some(FaultCohort {
                modulus,
                remainder: self.cohort_remainder.load(Ordering::Relaxed),
            }),
        }
    }

    /// Runs `release` (which sends held-back answers) once `due` has
    /// passed, from a thread of its own (started on first use).
    pub fn hold_back(&self, due: Instant, release: impl FnOnce() + Send + 'static) {
        let mut line = self.delay_line.lock().unwrap_or_else(|e| e.into_inner());
        let held = Held {
            due,
            release: Box::new(release),
        };
        let held = match line.as_ref() {
            Some(tx) => match tx.send(held) {
                Ok(()) => return,
                Err(refused) => refused.0, // the thread is gone: start another
            },
            None => held,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let started = std::thread::Builder::new()
            .name("reco-fault-delay".into())
            .spawn(move || delay_line(rx));
        match started {
            Ok(_) => {
                let _ = tx.send(held);
                *line = Some(tx);
            }
            Err(error) => {
                tracing::warn!(%error, "No thread for held-back answers; answering now.");
                (held.release)();
            }
        }
    }

    /// Whether the model faults hit `member`.
    pub fn hits(&self, member: MemberId) -> bool {
        self.model_cohort().is_none_or(|c| c.contains(member.0))
    }

    /// Panics if this request is one the fault says must (called by a
    /// model worker for each request of a member the faults hit).
    pub fn maybe_panic(&self) {
        let every = self.model_panic_every();
        if every > 0 {
            let n = self.scored.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(every) {
                panic!("injected fault: model worker panics on scoring request {n}");
            }
        }
    }
}
