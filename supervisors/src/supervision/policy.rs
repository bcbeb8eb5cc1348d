//! The arithmetic of supervision: strategies, restart types, restart
//! intensity and backoff. Pure functions of their inputs (time and the
//! jitter draw are passed in), so property tests can pin them.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Which siblings restart when one child fails (OTP's strategies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the failed child restarts.
    #[default]
    OneForOne,
    /// Every child restarts (they depend on each other).
    OneForAll,
    /// The failed child and every child started after it restart.
    RestForOne,
}

/// When a child that exited is restarted (OTP's restart types).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// Always.
    #[default]
    Permanent,
    /// Only after an abnormal exit (a panic or failure, not a normal stop).
    Transient,
    /// Never.
    Temporary,
}

impl Restart {
    /// Whether a child of this type is restarted after an exit.
    pub fn restarts_after(self, abnormal: bool) -> bool {
        match self {
            Restart::Permanent => true,
            Restart::Transient => abnormal,
            Restart::Temporary => false,
        }
    }
}

/// What a supervisor does once its children fail faster than restarts help
/// (its restart intensity is exceeded).
///
/// OTP has one answer, escalate; reco adds a second for subtrees whose loss
/// the node can serve through. The model and nearline workers are such
/// subtrees: every request has a fallback that needs no model, so a model
/// that keeps crashing must not take the node (and the fallback) down with
/// it. The session shards and the root escalate: without them the node
/// cannot serve, and a clean exit lets an orchestrator (or, in a cluster,
/// another node) take over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exhausted {
    /// Stop the children and itself and report to the parent (OTP).
    #[default]
    Escalate,
    /// Stop the children, stay up, and start them all again after
    /// `retry_after` with a fresh intensity window; meanwhile the subtree
    /// shows as `down` in the tree and its work is answered by fallbacks.
    StayDown,
}

/// Restart intensity: at most `max_restarts` within `period`; one more
/// means the subtree is failing faster than restarts help, and the
/// supervisor gives up and escalates to its parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed within the period.
    pub max_restarts: u32,
    /// The sliding window.
    pub period: Duration,
}

/// What the intensity window says about one more restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Restart.
    Restart,
    /// Too many restarts within the period: escalate.
    Escalate,
}

/// The restarts a supervisor made within the sliding period.
#[derive(Clone, Debug, Default)]
pub struct RestartWindow {
    restarts: VecDeque<Instant>,
}

impl RestartWindow {
    /// Records a restart request at `now` under `intensity`. A refused
    /// restart is not recorded.
    pub fn record(&mut self, intensity: &Intensity, now: Instant) -> Verdict {
        while let Some(&oldest) = self.restarts.front() {
            if now.saturating_duration_since(oldest) >= intensity.period {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        if self.restarts.len() >= intensity.max_restarts as usize {
            return Verdict::Escalate;
        }
        self.restarts.push_back(now);
        Verdict::Restart
    }

    /// Restarts within the window (as of the last record).
    pub fn len(&self) -> usize {
        self.restarts.len()
    }

    /// True when no restart is in the window.
    pub fn is_empty(&self) -> bool {
        self.restarts.is_empty()
    }
}

/// Exponential backoff with jitter between restarts of a child.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    /// Delay before the first restart.
    pub min: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Growth per consecutive failure (≥ 1).
    pub factor: f64,
    /// Fraction of the delay added at random (0 to 1): spreads restarts of
    /// many children that failed together.
    pub jitter: f64,
    /// A child that ran this long without failing starts again from `min`.
    pub reset_after: Duration,
}

impl Backoff {
    /// The delay before restart number `attempt` (0 for the first), before
    /// jitter: `min · factor^attempt`, capped at `max`. Non-decreasing in
    /// `attempt`.
    pub fn base(&self, attempt: u32) -> Duration {
        let factor = self.factor.max(1.0);
        let scaled = self.min.as_secs_f64() * factor.powi(attempt.min(1_000) as i32);
        let capped = scaled.min(self.max.as_secs_f64());
        Duration::from_secs_f64(capped.max(0.0))
    }

    /// The delay with jitter, for a draw `unit` in [0, 1): within
    /// `[base, base · (1 + jitter)]`, and never above `max` unless `min`
    /// itself is.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base(attempt);
        let unit = unit.clamp(0.0, 1.0);
        let jittered = base.as_secs_f64() * (1.0 + self.jitter.clamp(0.0, 1.0) * unit);
        let ceiling = self.max.max(self.min).as_secs_f64();
        Duration::from_secs_f64(jittered.min(ceiling.max(base.as_secs_f64())))
    }
}

/// Consecutive failures of one child, reset after a quiet period.
#[derive(Clone, Debug, Default)]
pub struct BackoffState {
    attempt: u32,
    last_failure: Option<Instant>,
}

impl BackoffState {
    /// Records a failure at `now` and returns the attempt number to use for
    /// the delay: 0 after a quiet period of `reset_after`, else one more
    /// than last time.
    pub fn fail(&mut self, backoff: &Backoff, now: Instant) -> u32 {
        let quiet = self
            .last_failure
            .is_none_or(|last| now.saturating_duration_since(last) >= backoff.reset_after);
        self.attempt = if quiet {
            0
        } else {
            self.attempt.saturating_add(1)
        };
        self.last_failure = Some(now);
        self.attempt
    }
}

/// A cheap, seedable source of jitter draws (xorshift64*); supervision
/// needs spread, not cryptographic randomness.
#[derive(Clone, Debug)]
pub struct Jitter(u64);

impl Jitter {
    /// A source seeded from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Jitter(seed | 1)
    }

    /// The next draw in [0, 1).
    pub fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn backoff(min_ms: u64, max_ms: u64, factor: f64, jitter: f64) -> Backoff {
        Backoff {
            min: Duration::from_millis(min_ms),
            max: Duration::from_millis(max_ms),
            factor,
            jitter,
            reset_after: Duration::from_secs(10),
        }
    }

    proptest! {
        #[test]
        fn backoff_grows_monotonically_up_to_max(
            min in 1u64..1_000, extra in 0u64..100_000, factor in 1.0f64..4.0, attempt in 0u32..200,
        ) {
            let b = backoff(min, min + extra, factor, 0.0);
            let (now, next) = (b.base(attempt), b.base(attempt + 1));
            prop_assert!(next >= now);
            prop_assert!(now >= b.min.min(b.max));
            prop_assert!(now <= b.max);
        }

        #[test]
        fn jitter_stays_within_its_range(
            min in 1u64..1_000, extra in 0u64..100_000, factor in 1.0f64..4.0,
            jitter in 0.0f64..1.0, attempt in 0u32..64, unit in 0.0f64..1.0,
        ) {
            let b = backoff(min, min + extra, factor, jitter);
            let base = b.base(attempt);
            let d = b.delay(attempt, unit);
            prop_assert!(d >= base, "{d:?} < {base:?}");
            prop_assert!(d.as_secs_f64() <= base.as_secs_f64() * (1.0 + jitter) + 1e-9);
            prop_assert!(d <= b.max);
        }

        #[test]
        fn backoff_resets_after_the_quiet_period(gaps in proptest::collection::vec(0u64..20_000, 1..30)) {
            let b = backoff(10, 10_000, 2.0, 0.0);
            let mut state = BackoffState::default();
            let mut now = Instant::now();
            let mut expected = 0u32;
            state.fail(&b, now);
            for gap in gaps {
                now += Duration::from_millis(gap);
                let attempt = state.fail(&b, now);
                expected = if Duration::from_millis(gap) >= b.reset_after { 0 } else { expected + 1 };
                prop_assert_eq!(attempt, expected);
            }
        }

        #[test]
        fn intensity_allows_exactly_max_restarts_per_period(
            max in 0u32..10, period_ms in 1u64..10_000, gaps in proptest::collection::vec(0u64..5_000, 1..60),
        ) {
            let intensity = Intensity { max_restarts: max, period: Duration::from_millis(period_ms) };
            let mut window = RestartWindow::default();
            let start = Instant::now();
            let mut now = start;
            let mut accepted: Vec<Instant> = Vec::new();
            for gap in gaps {
                now += Duration::from_millis(gap);
                let recent = accepted.iter().filter(|t| now.duration_since(**t) < intensity.period).count();
                let verdict = window.record(&intensity, now);
                if recent < max as usize {
                    prop_assert_eq!(verdict, Verdict::Restart);
                    accepted.push(now);
                } else {
                    prop_assert_eq!(verdict, Verdict::Escalate);
                }
                prop_assert!(window.len() <= max as usize);
            }
        }

        #[test]
        fn jitter_draws_are_units(seed in any::<u64>()) {
            let mut j = Jitter::new(seed);
            for _ in 0..100 {
                let u = j.next_unit();
                prop_assert!((0.0..1.0).contains(&u));
            }
        }
    }

    #[test]
    fn restart_types_follow_otp() {
        assert!(Restart::Permanent.restarts_after(false));
        assert!(Restart::Transient.restarts_after(true));
        assert!(!Restart::Transient.restarts_after(false));
        assert!(!Restart::Temporary.restarts_after(true));
    }
}
