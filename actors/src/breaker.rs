//! `ModelBreaker`: a circuit breaker in front of the online model pool.
//!
//! Why: a model that keeps missing its deadline makes every request wait
//! almost the whole deadline before the fallback answers. When the share of
//! misses (deadline passed, worker failed) in a rolling window passes a
//! threshold, the breaker opens: requests skip the model and are answered
//! from the fallback at once (`reason: model_skipped`). After `open_for` it
//! lets a few probe requests through (half-open); if they all succeed it
//! closes, if one fails it opens again.
//!
//! State: a rolling window of per-slot (ok, missed) counts and the state,
//! behind one mutex shared by every session (a few integer updates per
//! request). Emits `reco_model_breaker_state` (0 closed, 1 open, 2
//! half-open) and `reco_model_breaker_transitions_total{to}`.

use crate::metrics as m;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Slots of the rolling window.
const SLOTS: usize = 10;

/// Settings of the breaker, from the node's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerSettings {
    /// Off: every request goes to the model.
    pub enabled: bool,
    /// Length of the rolling window.
    pub window: Duration,
    /// Outcomes the window must hold before it may open the breaker.
    pub min_requests: u32,
    /// Share of misses in the window that opens it (0 to 1).
    pub threshold: f64,
    /// How long it stays open before probing.
    pub open_for: Duration,
    /// Probe requests let through when half-open; all must succeed to close.
    pub probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(10),
            min_requests: 20,
            threshold: 0.5,
            open_for: Duration::from_millis(500),
            probes: 5,
        }
    }
}

/// The breaker's state, as metrics, health and the tree show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests go to the model.
    Closed,
    /// Requests skip the model.
    Open,
    /// A few probes go to the model.
    HalfOpen,
}

impl BreakerState {
    /// Its name (`closed`, `open`, `half_open`).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }
}

/// What to do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Ask the model; report the outcome with [`ModelBreaker::record`].
    Ask,
    /// Ask the model as a probe; report with [`ModelBreaker::record_probe`].
    Probe,
    /// Answer from the fallback at once.
    Skip,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    /// (slot start, ok, missed), oldest first.
    slots: Vec<(Instant, u32, u32)>,
    opened_at: Instant,
    probes_sent: u32,
    probes_ok: u32,
}

/// The breaker, cheap to clone into every session.
#[derive(Clone, Debug)]
pub struct ModelBreaker {
    settings: Arc<BreakerSettings>,
    inner: Arc<Mutex<Inner>>,
}

impl ModelBreaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        metrics::gauge!(m::MODEL_BREAKER_STATE).set(0.0);
        Self {
            settings: Arc::new(settings),
            inner: Arc::new(Mutex::new(Inner {
                state: BreakerState::Closed,
                slots: Vec::with_capacity(SLOTS),
                opened_at: Instant::now(),
                probes_sent: 0,
                probes_ok: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state now.
    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Whether to ask the model for one request, at `now`.
    pub fn admit(&self, now: Instant) -> Admission {
        if !self.settings.enabled {
            return Admission::Ask;
        }
        let mut inner = self.lock();
        if inner.state == BreakerState::Open
            && now.duration_since(inner.opened_at) >= self.settings.open_for
        {
            inner.probes_sent = 0;
            inner.probes_ok = 0;
            self.enter(&mut inner, BreakerState::HalfOpen);
        }
        match inner.state {
            BreakerState::Closed => Admission::Ask,
            BreakerState::Open => Admission::Skip,
            BreakerState::HalfOpen if inner.probes_sent < self.settings.probes.max(1) => {
                inner.probes_sent += 1;
                Admission::Probe
            }
            BreakerState::HalfOpen => Admission::Skip,
        }
    }

    /// Reports an [`Admission::Ask`] outcome: `ok` when the model answered
    /// in time (a cold member counts as ok: the model was not at fault).
    pub fn record(&self, now: Instant, ok: bool) {
        if !self.settings.enabled {
            return;
        }
        let mut inner = self.lock();
        let slot_len = self.settings.window / SLOTS as u32;
        let window = self.settings.window;
        inner
            .slots
            .retain(|&(start, _, _)| now.duration_since(start) < window);
        match inner.slots.last_mut() {
            Some(last) if now.duration_since(last.0) < slot_len => {
                if ok {
                    last.1 += 1
                } else {
                    last.2 += 1
                }
            }
            _ => inner.slots.push((now, u32::from(ok), u32::from(!ok))),
        }
        if inner.state != BreakerState::Closed {
            return;
        }
        let (good, bad) = inner
            .slots
            .iter()
            .fold((0u32, 0u32), |(g, b), s| (g + s.1, b + s.2));
        let total = good + bad;
        if total >= self.settings.min_requests.max(1)
            && f64::from(bad) >= self.settings.threshold * f64::from(total)
        {
            inner.opened_at = now;
            self.enter(&mut inner, BreakerState::Open);
        }
    }

    /// Reports an [`Admission::Probe`] outcome: every probe must succeed to
    /// close the breaker; one failure opens it again.
    pub fn record_probe(&self, now: Instant, ok: bool) {
        let mut inner = self.lock();
        if inner.state != BreakerState::HalfOpen {
            return;
        }
        if !ok {
            inner.opened_at = now;
            self.enter(&mut inner, BreakerState::Open);
            return;
        }
        inner.probes_ok += 1;
        if inner.probes_ok >= self.settings.probes.max(1) {
            inner.slots.clear();
            self.enter(&mut inner, BreakerState::Closed);
        }
    }

    fn enter(&self, inner: &mut Inner, state: BreakerState) {
        if inner.state == state {
            return;
        }
        tracing::warn!(
            from = inner.state.as_str(),
            to = state.as_str(),
            "Model breaker changed state."
        );
        inner.state = state;
        metrics::gauge!(m::MODEL_BREAKER_STATE).set(state.gauge());
        metrics::counter!(m::MODEL_BREAKER_TRANSITIONS_TOTAL, "to" => state.as_str()).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> ModelBreaker {
        ModelBreaker::new(BreakerSettings {
            enabled: true,
            window: Duration::from_secs(10),
            min_requests: 4,
            threshold: 0.5,
            open_for: Duration::from_secs(1),
            probes: 2,
        })
    }

    #[test]
    fn misses_past_the_threshold_open_it_and_probes_close_it() {
        let b = breaker();
        let t0 = Instant::now();
        for ok in [true, true, false] {
            assert_eq!(b.admit(t0), Admission::Ask);
            b.record(t0, ok);
        }
        assert_eq!(b.state(), BreakerState::Closed, "below min_requests");
        b.record(t0, false);
        assert_eq!(b.state(), BreakerState::Open, "2 of 4 missed");
        assert_eq!(b.admit(t0 + Duration::from_millis(500)), Admission::Skip);
        // After open_for: two probes, then skips while they run.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.admit(t1), Admission::Probe);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.admit(t1), Admission::Probe);
        assert_eq!(b.admit(t1), Admission::Skip);
        b.record_probe(t1, true);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record_probe(t1, true);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(t1), Admission::Ask);
    }

    #[test]
    fn a_failed_probe_opens_it_again_and_old_misses_age_out() {
        let b = breaker();
        let t0 = Instant::now();
        for _ in 0..4 {
            b.record(t0, false);
        }
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.admit(t1), Admission::Probe);
        b.record_probe(t1, false);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(t1), Admission::Skip);

        // Misses older than the window do not count.
        let b = breaker();
        for _ in 0..3 {
            b.record(t0, false);
        }
        let later = t0 + Duration::from_secs(11);
        for _ in 0..3 {
            b.record(later, true);
        }
        b.record(later, false);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_disabled_breaker_always_asks() {
        let b = ModelBreaker::new(BreakerSettings {
            enabled: false,
            ..BreakerSettings::default()
        });
        let t0 = Instant::now();
        for _ in 0..100 {
            b.record(t0, false);
        }
        assert_eq!(b.admit(t0), Admission::Ask);
    }
}
