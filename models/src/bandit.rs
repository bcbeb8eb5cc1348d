//! Multi-armed bandits over take rates: which title(s) to feature on a
//! member's billboard.
//!
//! Each candidate title is an arm whose reward is a take (a play after an
//! impression). Its take rate is unknown; the aggregates give its
//! impressions and plays so far. Two policies:
//!
//! - **Thompson sampling** ([`thompson`]): each arm's take rate has a Beta
//!   posterior; draw one rate from each and feature the highest draws.
//!   Arms with little evidence have wide posteriors and win draws often
//!   enough to be explored; arms with much evidence win only if they are
//!   good. Deterministic given the seed (ChaCha8).
//! - **UCB** ([`ucb`]): feature the highest upper confidence bound on the
//!   take rate (posterior mean + an exploration bonus that shrinks with
//!   impressions). Deterministic without a seed; kept as the cheap
//!   alternative.
//!
//! # The prior: the member's model scores
//! Every arm starts from Beta(α₀, β₀) with mean `m` and strength `n₀`
//! pseudo-impressions ([`BanditParams::prior_strength`]): α₀ = m·n₀,
//! β₀ = (1 − m)·n₀. The mean is the pooled take rate of the candidates,
//! (Σ plays + 1) / (Σ impressions + 2), scaled by the member's model score:
//! m = pooled · exp(s · z), z the arm's score standardised over the
//! candidates that have one (clipped to ±2), s = [`BanditParams::score_spread`].
//! So for this member a title the model ranks high starts ahead, a new
//! title with no impressions starts at the pool's rate with a wide
//! posterior (explored early), and after ~n₀ impressions the title's own
//! takes dominate its prior. Plays beyond impressions (plays from search)
//! count as at most one take per impression.
//!
//! # The lift: the member's taste after the evidence arrives
//! Take rates are counted over every member shown a title, so once a title
//! has evidence its posterior says how well it does *on average*. To keep
//! the billboard personal, each draw (or bound) is multiplied by the
//! member's lift for the arm, exp(l · z), l = [`BanditParams::score_lift`]:
//! the title's average take rate, tilted by how much more (or less) than
//! its other candidates this member's model likes it. An arm without a
//! score (a title launched after the model was trained) gets z = 0: its
//! average, which the bandit learns from its own impressions.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reco_messages::ItemId;

/// One candidate title.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arm {
    /// The title.
    pub item: ItemId,
    /// Times it was shown.
    pub impressions: u64,
    /// Times it was played.
    pub plays: u64,
    /// The member's model score for it, when the model knows it.
    pub score: Option<f32>,
}

/// Tuning of both policies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BanditParams {
    /// Pseudo-impressions of the prior: how much evidence it takes for a
    /// title's own takes to outweigh the model's opinion.
    pub prior_strength: f64,
    /// How far one standard deviation of model score moves the prior mean
    /// (multiplicatively: `exp(score_spread)`).
    pub score_spread: f64,
    /// Width of UCB's bonus, in posterior standard deviations.
    pub ucb_width: f64,
    /// How far one standard deviation of model score tilts an arm's draw
    /// after the evidence (multiplicatively: `exp(score_lift)`); 0 makes the
    /// choice depend on the scores through the prior only.
    pub score_lift: f64,
}

impl Default for BanditParams {
    fn default() -> Self {
        BanditParams {
            prior_strength: 10.0,
            score_spread: 0.35,
            ucb_width: 2.0,
            score_lift: 0.0,
        }
    }
}

/// A Beta distribution over a take rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Beta {
    /// Takes plus the prior's pseudo-takes.
    pub alpha: f64,
    /// Non-takes plus the prior's pseudo-non-takes.
    pub beta: f64,
}

impl Beta {
    /// The mean take rate.
    pub fn mean(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    /// The variance of the take rate.
    pub fn variance(&self) -> f64 {
        let n = self.alpha + self.beta;
        self.alpha * self.beta / (n * n * (n + 1.0))
    }

    /// One draw.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let x = gamma(self.alpha, rng);
        let y = gamma(self.beta, rng);
        if x + y > 0.0 {
            x / (x + y)
        } else {
            self.mean()
        }
    }
}

/// A featured title and the value that ranked it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice {
    /// The title.
    pub item: ItemId,
    /// Its Thompson draw or UCB bound.
    pub value: f64,
}

/// Each arm's model score standardised over the arms that have one,
/// clipped to ±2; 0 for arms without one.
pub fn standardised_scores(arms: &[Arm]) -> Vec<f64> {
    let scores: Vec<f64> = arms
        .iter()
        .filter_map(|a| a.score)
        .map(f64::from)
        .filter(|s| s.is_finite())
        .collect();
    let (mean, sd) = if scores.is_empty() {
        (0.0, 1.0)
    } else {
        let mean = scores.iter().sum::<f64>() / scores.len() as f64;
        let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / scores.len() as f64;
        (mean, var.sqrt().max(1e-9))
    };
    arms.iter()
        .map(|a| {
            let z = a
                .score
                .map_or(0.0, |s| ((f64::from(s) - mean) / sd).clamp(-2.0, 2.0));
            if z.is_finite() {
                z
            } else {
                0.0
            }
        })
        .collect()
}

/// Each arm's posterior under the score-seeded prior (see the module docs).
pub fn posteriors(arms: &[Arm], params: &BanditParams) -> Vec<Beta> {
    let takes = |a: &Arm| a.plays.min(a.impressions) as f64;
    let pooled = (arms.iter().map(takes).sum::<f64>() + 1.0)
        / (arms.iter().map(|a| a.impressions as f64).sum::<f64>() + 2.0);
    let n0 = params.prior_strength.max(1e-3);
    arms.iter()
        .zip(standardised_scores(arms))
        .map(|(a, z)| {
            let m = (pooled * (params.score_spread * z).exp()).clamp(0.001, 0.999);
            let t = takes(a);
            Beta {
                alpha: m * n0 + t,
                beta: (1.0 - m) * n0 + (a.impressions as f64 - t),
            }
        })
        .collect()
}

/// Thompson sampling: the `k` arms with the highest posterior draws, best
/// first; the same `seed` gives the same choice.
pub fn thompson(arms: &[Arm], params: &BanditParams, k: usize, seed: u64) -> Vec<Choice> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f64> = posteriors(arms, params)
        .iter()
        .zip(lifts(arms, params))
        .map(|(p, lift)| p.sample(&mut rng) * lift)
        .collect();
    top(arms, &values, k)
}

/// UCB: the `k` arms with the highest upper bounds on their take rate,
/// best first.
pub fn ucb(arms: &[Arm], params: &BanditParams, k: usize) -> Vec<Choice> {
    let total: f64 = arms.iter().map(|a| a.impressions as f64).sum::<f64>() + 1.0;
    let values: Vec<f64> = posteriors(arms, params)
        .iter()
        .zip(lifts(arms, params))
        .map(|(p, lift)| {
            let n = p.alpha + p.beta;
            let m = p.mean();
            lift * (m + params.ucb_width * (m * (1.0 - m) * total.ln().max(1.0) / n).sqrt())
        })
        .collect();
    top(arms, &values, k)
}

/// Each arm's lift for the member, exp(score_lift · z) (module docs).
fn lifts(arms: &[Arm], params: &BanditParams) -> Vec<f64> {
    standardised_scores(arms)
        .into_iter()
        .map(|z| (params.score_lift * z).exp())
        .collect()
}

fn top(arms: &[Arm], values: &[f64], k: usize) -> Vec<Choice> {
    let mut out: Vec<Choice> = arms
        .iter()
        .zip(values)
        .map(|(a, &value)| Choice {
            item: a.item,
            value,
        })
        .collect();
    out.sort_by(|a, b| b.value.total_cmp(&a.value).then(a.item.cmp(&b.item)));
    out.truncate(k);
    out
}

/// A Gamma(shape, 1) draw (Marsaglia and Tsang; shape < 1 by the boost
/// Gamma(a) = Gamma(a + 1) · U^(1/a)).
fn gamma<R: Rng + ?Sized>(shape: f64, rng: &mut R) -> f64 {
    if shape.is_nan() || shape <= 0.0 || !shape.is_finite() {
        return 0.0;
    }
    if shape < 1.0 {
        let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
        return gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A standard normal draw (Box–Muller).
fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(item: u64, impressions: u64, plays: u64, score: Option<f32>) -> Arm {
        Arm {
            item: ItemId(item),
            impressions,
            plays,
            score,
        }
    }

    /// Runs `rounds` impressions of one featured arm each against the true
    /// rates; returns how often each arm was featured in the last quarter.
    fn simulate(
        rates: &[f64],
        rounds: u64,
        mut choose: impl FnMut(&[Arm], u64) -> ItemId,
    ) -> Vec<u64> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut arms: Vec<Arm> = (0..rates.len() as u64)
            .map(|i| arm(i, 0, 0, None))
            .collect();
        let mut late = vec![0u64; rates.len()];
        for round in 0..rounds {
            let chosen = choose(&arms, round).0 as usize;
            arms[chosen].impressions += 1;
            if rng.gen::<f64>() < rates[chosen] {
                arms[chosen].plays += 1;
            }
            if round >= rounds * 3 / 4 {
                late[chosen] += 1;
            }
        }
        late
    }

    #[test]
    fn thompson_converges_on_the_best_arm() {
        let rates = [0.05, 0.10, 0.20, 0.08];
        let p = BanditParams::default();
        let late = simulate(&rates, 4000, |arms, round| {
            thompson(arms, &p, 1, round)[0].item
        });
        let share = late[2] as f64 / late.iter().sum::<u64>() as f64;
        assert!(
            share > 0.8,
            "best arm featured {share:.2} of the last rounds: {late:?}"
        );
    }

    #[test]
    fn ucb_converges_on_the_best_arm() {
        let rates = [0.05, 0.10, 0.20, 0.08];
        let p = BanditParams::default();
        let late = simulate(&rates, 4000, |arms, _| ucb(arms, &p, 1)[0].item);
        let share = late[2] as f64 / late.iter().sum::<u64>() as f64;
        assert!(
            share > 0.7,
            "best arm featured {share:.2} of the last rounds: {late:?}"
        );
    }

    #[test]
    fn a_new_arm_with_no_impressions_gets_explored() {
        // Five titles with a settled 10 % take rate, one launched now.
        let mut arms: Vec<Arm> = (0..5).map(|i| arm(i, 2000, 200, Some(1.0))).collect();
        arms.push(arm(99, 0, 0, Some(1.0)));
        let p = BanditParams::default();
        let featured = (0..200)
            .filter(|&seed| thompson(&arms, &p, 1, seed)[0].item == ItemId(99))
            .count();
        assert!(featured >= 10, "new title featured {featured} times of 200");
        assert_eq!(ucb(&arms, &p, 1)[0].item, ItemId(99));
    }

    #[test]
    fn the_model_score_seeds_the_prior_until_evidence_arrives() {
        let arms = [arm(1, 0, 0, Some(3.0)), arm(2, 0, 0, Some(-1.0))];
        let p = BanditParams::default();
        let post = posteriors(&arms, &p);
        assert!(post[0].mean() > post[1].mean(), "{post:?}");
        let first = (0..400)
            .filter(|&seed| thompson(&arms, &p, 1, seed)[0].item == ItemId(1))
            .count();
        assert!(first > 240, "higher-scored title featured {first} of 400");
        // With evidence, the low-scored title that members take wins.
        let arms = [arm(1, 500, 10, Some(3.0)), arm(2, 500, 100, Some(-1.0))];
        let post = posteriors(&arms, &p);
        assert!(post[1].mean() > post[0].mean(), "{post:?}");
    }

    #[test]
    fn the_lift_keeps_the_choice_personal_after_the_evidence() {
        // Two titles with the same settled take rate: without the lift the
        // choice is a coin toss; with it, the member's favourite wins.
        let arms = [arm(1, 5000, 500, Some(2.0)), arm(2, 5000, 500, Some(-2.0))];
        let flat = BanditParams::default();
        let lifted = BanditParams {
            score_lift: 0.5,
            ..flat
        };
        let wins = |p: &BanditParams| {
            (0..400)
                .filter(|&seed| thompson(&arms, p, 1, seed)[0].item == ItemId(1))
                .count()
        };
        assert!((150..250).contains(&wins(&flat)), "{}", wins(&flat));
        assert!(wins(&lifted) > 390, "{}", wins(&lifted));
        assert_eq!(ucb(&arms, &lifted, 1)[0].item, ItemId(1));
        // An arm without a score is neither lifted nor pushed down.
        let z = standardised_scores(&[arm(1, 0, 0, Some(1.0)), arm(2, 0, 0, None)]);
        assert_eq!(z[1], 0.0);
    }

    #[test]
    fn the_same_seed_gives_the_same_choice() {
        let arms: Vec<Arm> = (0..20).map(|i| arm(i, i * 10, i, None)).collect();
        let p = BanditParams::default();
        assert_eq!(thompson(&arms, &p, 3, 42), thompson(&arms, &p, 3, 42));
        assert_eq!(thompson(&arms, &p, 3, 42).len(), 3);
        assert!(thompson(&[], &p, 3, 1).is_empty());
    }

    #[test]
    fn beta_draws_have_the_right_mean() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (a, b) in [(0.3, 0.7), (2.0, 8.0), (50.0, 450.0)] {
            let beta = Beta { alpha: a, beta: b };
            let n = 20_000;
            let mean = (0..n).map(|_| beta.sample(&mut rng)).sum::<f64>() / n as f64;
            assert!((mean - beta.mean()).abs() < 0.01, "Beta({a},{b}): {mean}");
        }
    }
}
