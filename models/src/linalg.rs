//! The numeric kernels: dot products, Gram matrices, and the one regularised
//! least-squares solve shared by ALS training and online fold-in.
//!
//! Training and fold-in call the very same [`Solver::solve`] with the same
//! Gram matrix, so a member folded in against frozen item factors gets exactly
//! the vector ALS gave it. The k x k system is accumulated and factored in
//! f64: it costs little next to the sparse accumulation and keeps the
//! Cholesky factorisation stable for small regularisation.

/// Lanes of independent accumulators in [`dot`]: four SSE registers (two AVX
/// ones), enough to hide the add latency, and it divides the usual factor
/// counts.
const LANES: usize = 16;

/// Dot product of two equally long f32 slices, written so it auto-vectorises:
/// `LANES` independent accumulators over exact chunks, then the tail.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    let mut acc = [0.0f32; LANES];
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    // Pairwise reduction, fixed order: deterministic for a given length.
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            acc[l] += acc[l + width];
        }
        width /= 2;
    }
    acc[0] + tail
}

/// f64 dot product with independent accumulators (for the Cholesky kernels).
#[inline]
fn dot64(a: &[f64], b: &[f64]) -> f64 {
    let ca = a.chunks_exact(4);
    let cb = b.chunks_exact(4);
    let mut tail = 0.0f64;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    let mut acc = [0.0f64; 4];
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail
}

/// The full symmetric `dim x dim` Gram matrix `F^T F` of row-major factors.
pub(crate) fn gram(factors: &[f32], dim: usize) -> Vec<f64> {
    let mut g = vec![0.0f64; dim * dim];
    let mut row64 = vec![0.0f64; dim];
    for row in factors.chunks_exact(dim) {
        for (d, &s) in row64.iter_mut().zip(row) {
            *d = f64::from(s);
        }
        for r in 0..dim {
            let s = row64[r];
            for (q, &y) in g[r * dim..r * dim + r + 1].iter_mut().zip(&row64[..=r]) {
                *q += s * y;
            }
        }
    }
    for r in 0..dim {
        for c in r + 1..dim {
            g[r * dim + c] = g[c * dim + r];
        }
    }
    g
}

/// The L2 penalty of one row solve: `reg * n^exponent` for a row with `n`
/// interactions (at least 1). Exponent 0 is the classic constant `reg`;
/// a positive exponent (frequency-scaled regularisation, as in ALS-WR)
/// shrinks heavy rows more and light rows less.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Penalty {
    /// Base regularisation (> 0).
    pub(crate) reg: f32,
    /// Exponent of the row's interaction count (>= 0).
    pub(crate) exponent: f32,
}

impl Penalty {
    /// The penalty of a row with `n` interactions.
    pub(crate) fn for_row(self, n: usize) -> f64 {
        let reg = f64::from(self.reg);
        if self.exponent == 0.0 {
            reg
        } else {
            reg * (n.max(1) as f64).powf(f64::from(self.exponent))
        }
    }
}

/// Scratch space for one thread's solves (no allocation per row).
pub(crate) struct Solver {
    dim: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    y: Vec<f64>,
}

impl Solver {
    pub(crate) fn new(dim: usize) -> Self {
        Self {
            dim,
            a: vec![0.0; dim * dim],
            b: vec![0.0; dim],
            y: vec![0.0; dim],
        }
    }

    /// Solves the implicit-ALS normal equations for one row:
    /// `x = (G + Yu^T (Cu - I) Yu + reg I)^-1 Yu^T Cu p` with `c = 1 + alpha w`
    /// and `p = 1` for every entry, where `G = Y^T Y` of the `other` factors
    /// and `reg = penalty.for_row(entries)`.
    ///
    /// `entries` are (row of `other`, weight). Writes `out` and returns
    /// `false` (leaving `out` zeroed) when the system is not positive
    /// definite, which only non-finite inputs can cause when `reg > 0`.
    pub(crate) fn solve(
        &mut self,
        gram: &[f64],
        penalty: Penalty,
        alpha: f32,
        other: &[f32],
        entries: impl Iterator<Item = (usize, f32)>,
        out: &mut [f32],
    ) -> bool {
        let dim = self.dim;
        let alpha = f64::from(alpha);
        self.a.copy_from_slice(gram);
        self.b.fill(0.0);
        let mut n = 0usize;
        for (row, w) in entries {
            n += 1;
            let extra = alpha * f64::from(w); // c - 1
            let confidence = 1.0 + extra;
            for (d, &s) in self.y.iter_mut().zip(&other[row * dim..(row + 1) * dim]) {
                *d = f64::from(s);
            }
            // Lower triangle only: the Cholesky kernel reads nothing else.
            for r in 0..dim {
                let s = extra * self.y[r];
                let a_row = &mut self.a[r * dim..r * dim + r + 1];
                for (q, &y) in a_row.iter_mut().zip(&self.y[..=r]) {
                    *q += s * y;
                }
                self.b[r] += confidence * self.y[r];
            }
        }
        let reg = penalty.for_row(n);
        for r in 0..dim {
            self.a[r * dim + r] += reg;
        }
        if !self.cholesky_solve() {
            out.fill(0.0);
            return false;
        }
        for (o, &x) in out.iter_mut().zip(&self.b) {
            *o = x as f32;
        }
        true
    }

    /// In-place Cholesky `A = L L^T` on the lower triangle, then forward and
    /// back substitution; the solution replaces `b`.
    fn cholesky_solve(&mut self) -> bool {
        let n = self.dim;
        let a = &mut self.a;
        for j in 0..n {
            // Rows up to j hold finished L entries left of the diagonal.
            let (upto, below) = a.split_at_mut((j + 1) * n);
            let row_j = &mut upto[j * n..];
            let s = row_j[j] - dot64(&row_j[..j], &row_j[..j]);
            if !(s > 0.0 && s.is_finite()) {
                return false;
            }
            let ljj = s.sqrt();
            row_j[j] = ljj;
            let lj = &row_j[..j];
            for row_i in below.chunks_exact_mut(n) {
                row_i[j] = (row_i[j] - dot64(&row_i[..j], lj)) / ljj;
            }
        }
        let b = &mut self.b;
        for i in 0..n {
            let row = &a[i * n..i * n + i];
            b[i] = (b[i] - dot64(row, &b[..i])) / a[i * n + i];
        }
        for i in (0..n).rev() {
            let mut s = b[i];
            for k in i + 1..n {
                s -= a[k * n + i] * b[k];
            }
            b[i] = s / a[i * n + i];
        }
        b.iter().all(|x| x.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_for_all_tail_lengths() {
        for len in 0..50 {
            let a: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..len).map(|i| 1.0 / (i as f32 + 1.0)).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-4, "len {len}");
        }
    }

    #[test]
    fn solve_matches_the_normal_equations() {
        // Two "other" rows in 2-D, one entry each; check A x = b by hand.
        let other = [1.0f32, 2.0, 3.0, -1.0];
        let g = gram(&other, 2);
        assert_eq!(g, vec![10.0, -1.0, -1.0, 5.0]);
        let mut solver = Solver::new(2);
        let mut x = [0.0f32; 2];
        assert!(solver.solve(
            &g,
            Penalty {
                reg: 0.5,
                exponent: 0.0
            },
            2.0,
            &other,
            [(0, 1.0), (1, 0.5)].into_iter(),
            &mut x
        ));
        // A = G + 0.5 I + 2*1*y0y0^T + 2*0.5*y1y1^T; b = 3*y0 + 2*y1
        let a = [
            [10.0 + 0.5 + 2.0 + 9.0, -1.0 + 4.0 - 3.0],
            [-1.0 + 4.0 - 3.0, 5.0 + 0.5 + 8.0 + 1.0],
        ];
        let b = [3.0 + 6.0, 6.0 - 2.0];
        for r in 0..2 {
            let lhs = a[r][0] * f64::from(x[0]) + a[r][1] * f64::from(x[1]);
            assert!((lhs - b[r]).abs() < 1e-5, "row {r}: {lhs} vs {}", b[r]);
        }
    }

    #[test]
    fn non_finite_input_is_reported_not_returned() {
        let other = [f32::NAN, 1.0];
        let g = gram(&other, 2);
        let mut x = [1.0f32; 2];
        let penalty = Penalty {
            reg: 1.0,
            exponent: 0.0,
        };
        assert!(!Solver::new(2).solve(&g, penalty, 1.0, &other, [(0, 1.0)].into_iter(), &mut x));
        assert_eq!(x, [0.0, 0.0]);
    }
}
