//! Conjugate-gradient row solves for implicit ALS (Takács, Pilászy, Tikk
//! 2011; the solver `implicit` uses by default): a few CG steps per row,
//! warm-started from the row's previous value, instead of building and
//! factoring the k x k system.
//!
//! A step costs `O(k^2 + n_u k)` (one product with the dense `YtY + reg I`
//! and one pass over the row's entries) where the exact solve costs
//! `O(n_u k^2 + k^3)`. The matrix `A = YtY + reg I + Yu^T (Cu - I) Yu` is
//! never formed: `A p` is computed as `(YtY + reg I) p + sum (c - 1)(y.p) y`.
//!
//! Everything is f32 and in a fixed order, so training stays deterministic.

use crate::linalg::{dot, Penalty};

/// Scratch space for one thread's CG solves (no allocation per row).
pub(crate) struct CgSolver {
    dim: usize,
    r: Vec<f32>,
    p: Vec<f32>,
    ap: Vec<f32>,
}

/// `YtY` in f32, row-major, shared by every row of a half-iteration.
pub(crate) fn gram_f32(gram: &[f64]) -> Vec<f32> {
    gram.iter().map(|&g| g as f32).collect()
}

impl CgSolver {
    pub(crate) fn new(dim: usize) -> Self {
        Self {
            dim,
            r: vec![0.0; dim],
            p: vec![0.0; dim],
            ap: vec![0.0; dim],
        }
    }

    /// `out = (G + reg I) v + sum (c - 1)(y.v) y` over `entries`.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        dim: usize,
        g: &[f32],
        reg: f32,
        alpha: f32,
        other: &[f32],
        entries: &[(usize, f32)],
        v: &[f32],
        out: &mut [f32],
    ) {
        // G is symmetric: G v = sum_j v_j G[j, :], a chain of axpys that
        // vectorises without horizontal reductions.
        for (o, &vj) in out.iter_mut().zip(v) {
            *o = reg * vj;
        }
        for (&vj, row) in v.iter().zip(g.chunks_exact(dim)) {
            for (o, &gv) in out.iter_mut().zip(row) {
                *o += vj * gv;
            }
        }
        for &(row, w) in entries {
            let y = &other[row * dim..(row + 1) * dim];
            let s = alpha * w * dot(y, v);
            for (o, &yv) in out.iter_mut().zip(y) {
                *o += s * yv;
            }
        }
    }

    /// Improves `x` (the row's current value, used as the starting point)
    /// towards the solution of the implicit-ALS normal equations with
    /// `steps` CG iterations; `g` is [`gram_f32`], the row's penalty is
    /// `penalty.for_row(entries.len())`. Returns `false` (leaving `x` zeroed)
    /// if the result is not finite.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn solve(
        &mut self,
        g: &[f32],
        penalty: Penalty,
        alpha: f32,
        other: &[f32],
        entries: &[(usize, f32)],
        steps: usize,
        x: &mut [f32],
    ) -> bool {
        let dim = self.dim;
        let reg = penalty.for_row(entries.len()) as f32;
        // r = b - A x with b = sum c y (p = 1), in one pass over the
        // entries: r = sum (c - (c - 1) y.x) y - (G + reg I) x.
        for (r, &xj) in self.r.iter_mut().zip(x.iter()) {
            *r = -reg * xj;
        }
        for (&xj, row) in x.iter().zip(g.chunks_exact(dim)) {
            for (r, &gv) in self.r.iter_mut().zip(row) {
                *r -= xj * gv;
            }
        }
        for &(row, w) in entries {
            let y = &other[row * dim..(row + 1) * dim];
            let extra = alpha * w;
            let s = 1.0 + extra - extra * dot(y, x);
            for (r, &yv) in self.r.iter_mut().zip(y) {
                *r += s * yv;
            }
        }
        self.p.copy_from_slice(&self.r);
        let mut rs_old = dot(&self.r, &self.r);
        for _ in 0..steps {
            if rs_old < 1e-20 {
                break;
            }
            Self::apply(dim, g, reg, alpha, other, entries, &self.p, &mut self.ap);
            let p_ap = dot(&self.p, &self.ap);
            if p_ap <= 0.0 || !p_ap.is_finite() {
                break;
            }
            let step = rs_old / p_ap;
            for ((xv, &pv), (rv, &apv)) in x
                .iter_mut()
                .zip(&self.p)
                .zip(self.r.iter_mut().zip(&self.ap))
            {
                *xv += step * pv;
                *rv -= step * apv;
            }
            let rs_new = dot(&self.r, &self.r);
            let beta = rs_new / rs_old;
            for (pv, &rv) in self.p.iter_mut().zip(&self.r) {
                *pv = rv + beta * *pv;
            }
            rs_old = rs_new;
        }
        if x.iter().all(|v| v.is_finite()) {
            true
        } else {
            x.fill(0.0);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::{gram, Solver};

    #[test]
    fn enough_steps_reach_the_exact_solution() {
        for exponent in [0.0, 0.5] {
            enough_steps_reach_the_exact_solution_with(Penalty { reg: 0.3, exponent });
        }
    }

    fn enough_steps_reach_the_exact_solution_with(penalty: Penalty) {
        let dim = 4;
        let other: Vec<f32> = (0..6 * dim)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 7.0)
            .collect();
        let entries = [(0usize, 1.0f32), (2, 2.0), (5, 0.5)];
        let g = gram(&other, dim);
        let mut exact = vec![0.0f32; dim];
        assert!(Solver::new(dim).solve(&g, penalty, 3.0, &other, entries.into_iter(), &mut exact));
        let mut x = vec![0.0f32; dim];
        let g32 = gram_f32(&g);
        assert!(CgSolver::new(dim).solve(&g32, penalty, 3.0, &other, &entries, dim, &mut x));
        for (a, b) in x.iter().zip(&exact) {
            assert!((a - b).abs() < 1e-3, "{x:?} vs {exact:?}");
        }
    }
}
