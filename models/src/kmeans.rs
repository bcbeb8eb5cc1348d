//! k-means over the item factors: the offline half of cluster-pruned
//! scoring.
//!
//! `reco train` groups the items into clusters of similar factor vectors
//! ([`kmeans`]); the model artifact stores each item's cluster
//! ([`crate::ItemFactors::with_clusters`]), and a serving node that scans
//! `pruned` scores the cluster centres first and then only the items of the
//! best `probes` clusters ([`crate::Scan`]). The clustering is plain,
//! deterministic code: the same factors, parameters and seed give the same
//! clusters on every machine.
//!
//! Lloyd's algorithm on a sample of the items (`sample_per_cluster` items
//! per cluster at most), seeded by k-means++ on that sample, then one pass
//! that assigns every item to its nearest centre. The nearest centre is the
//! best inner product `x·c - |c|²/2`, so assignment runs on the scan kernel
//! of serving (one extra dimension holds `-|c|²/2`). A cluster left empty by
//! an iteration is re-seeded with the sample point farthest from its centre.

use crate::factors::top_k::{self, Layout, ScanQuery};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Parameters of [`kmeans`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KMeansParams {
    /// Number of clusters; 0 chooses [`auto_clusters`] of the catalogue.
    pub clusters: usize,
    /// Lloyd iterations on the sample.
    pub iterations: usize,
    /// Sample size per cluster the centres are fitted on (the final
    /// assignment covers every item).
    pub sample_per_cluster: usize,
    /// Seed of the sample and of k-means++.
    pub seed: u64,
    /// Threads of the assignment passes (>= 1).
    pub threads: usize,
}

impl Default for KMeansParams {
    fn default() -> Self {
        KMeansParams {
            clusters: 0,
            iterations: 10,
            sample_per_cluster: 64,
            seed: 42,
            threads: 2,
        }
    }
}

/// The probe count a pruned scan uses unless configured otherwise (the
/// node's `[model] probes`): the smallest count whose recall@10 against
/// the exact scan was at least 0.98 on both catalogues of
/// `benches/pruned.rs` (see the README's figures).
pub const DEFAULT_PROBES: usize = 64;

/// Largest number of clusters [`auto_clusters`] picks.
pub const MAX_AUTO_CLUSTERS: usize = 4096;

/// The default number of clusters of `items` items: about `sqrt(items)`
/// (at most [`MAX_AUTO_CLUSTERS`]), which balances the two halves of a
/// pruned scan (the centres and the probed clusters' items).
pub fn auto_clusters(items: usize) -> usize {
    ((items as f64).sqrt().round() as usize)
        .clamp(1, MAX_AUTO_CLUSTERS)
        .min(items)
}

/// Clusters the `factors.len() / dim` rows of a row-major matrix: the
/// cluster (`0..clusters`) of each row. Empty input gives an empty answer.
pub fn kmeans(factors: &[f32], dim: usize, params: &KMeansParams) -> Vec<u32> {
    if dim == 0 {
        return Vec::new();
    }
    let n = factors.len() / dim;
    if n == 0 {
        return Vec::new();
    }
    let clusters = match params.clusters {
        0 => auto_clusters(n),
        c => c.min(n),
    }
    .min(u32::MAX as usize);
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let sample_len = clusters
        .saturating_mul(params.sample_per_cluster.max(1))
        .min(n);
    let sample: Vec<f32> = if sample_len == n {
        factors.to_vec()
    } else {
        let mut picked = rand::seq::index::sample(&mut rng, n, sample_len).into_vec();
        picked.sort_unstable();
        picked
            .iter()
            .flat_map(|&i| &factors[i * dim..(i + 1) * dim])
            .copied()
            .collect()
    };
    let mut centres = plus_plus(&sample, dim, clusters, &mut rng);
    let threads = params.threads.max(1);
    for _ in 0..params.iterations {
        let (assigned, distance) = nearest(&sample, dim, &centres, threads);
        let counts = update(&sample, dim, &assigned, &mut centres);
        let empty: Vec<usize> = (0..clusters).filter(|&c| counts[c] == 0).collect();
        if empty.is_empty() {
            continue;
        }
        // Re-seed each empty cluster with one of the farthest points.
        let mut far: Vec<usize> = (0..distance.len()).collect();
        far.sort_by(|&a, &b| distance[b].total_cmp(&distance[a]).then(a.cmp(&b)));
        for (c, p) in empty.into_iter().zip(far) {
            centres[c * dim..(c + 1) * dim].copy_from_slice(&sample[p * dim..(p + 1) * dim]);
        }
    }
    nearest(factors, dim, &centres, threads).0
}

/// k-means++: the first centre uniformly, each next one with probability
/// proportional to the squared distance to the nearest centre so far.
fn plus_plus(points: &[f32], dim: usize, clusters: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = points.len() / dim;
    let row = |i: usize| &points[i * dim..(i + 1) * dim];
    let mut centres = Vec::with_capacity(clusters * dim);
    let first = rng.gen_range(0..n);
    centres.extend_from_slice(row(first));
    let mut d2: Vec<f64> = (0..n).map(|i| distance2(row(i), row(first))).collect();
    while centres.len() < clusters * dim {
        let total: f64 = d2.iter().sum();
        let next = if total > 0.0 {
            let mut target = rng.gen::<f64>() * total;
            let mut chosen = n - 1;
            for (i, &d) in d2.iter().enumerate() {
                if target < d {
                    chosen = i;
                    break;
                }
                target -= d;
            }
            chosen
        } else {
            // Every point sits on a centre: any point will do.
            rng.gen_range(0..n)
        };
        centres.extend_from_slice(row(next));
        for (i, d) in d2.iter_mut().enumerate() {
            *d = d.min(distance2(row(i), row(next)));
        }
    }
    centres
}

fn distance2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = x - y;
            d * d
        })
        .sum::<f32>() as f64
}

/// Each centre becomes the mean of its points; the count per cluster.
/// A cluster without points keeps its centre (the caller re-seeds it).
fn update(points: &[f32], dim: usize, assigned: &[u32], centres: &mut [f32]) -> Vec<usize> {
    let clusters = centres.len() / dim;
    let mut sums = vec![0.0f64; clusters * dim];
    let mut counts = vec![0usize; clusters];
    for (p, &c) in points.chunks_exact(dim).zip(assigned) {
        let c = c as usize;
        counts[c] += 1;
        for (s, &v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(p) {
            *s += f64::from(v);
        }
    }
    for c in (0..clusters).filter(|&c| counts[c] > 0) {
        for (v, s) in centres[c * dim..(c + 1) * dim]
            .iter_mut()
            .zip(&sums[c * dim..(c + 1) * dim])
        {
            *v = (s / counts[c] as f64) as f32;
        }
    }
    counts
}

/// Points per batch of the assignment scan: the centres are read once per
/// batch.
const BATCH: usize = 16;

/// The nearest centre of every point, and its squared distance, with the
/// scan kernel: `argmax x·c - |c|²/2` over centres extended by one
/// dimension, on `threads` threads.
pub(crate) fn nearest(
    points: &[f32],
    dim: usize,
    centres: &[f32],
    threads: usize,
) -> (Vec<u32>, Vec<f32>) {
    let n = points.len() / dim;
    let clusters = centres.len() / dim;
    let wide = dim + 1;
    let extended: Vec<f32> = centres
        .chunks_exact(dim)
        .flat_map(|c| {
            let half = -0.5 * c.iter().map(|v| v * v).sum::<f32>();
            c.iter().copied().chain(std::iter::once(half))
        })
        .collect();
    let blocked = top_k::blocked(&extended, wide);
    let layout = Layout {
        blocked: &blocked,
        dim: wide,
        rows: clusters,
        slots: None,
    };
    let mut assigned = vec![0u32; n];
    let mut distance = vec![0.0f32; n];
    let per_thread = n.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for ((points, assigned), distance) in points
            .chunks(per_thread * dim)
            .zip(assigned.chunks_mut(per_thread))
            .zip(distance.chunks_mut(per_thread))
        {
            scope.spawn(move || {
                let mut users = vec![0.0f32; BATCH * wide];
                for ((points, assigned), distance) in points
                    .chunks(BATCH * dim)
                    .zip(assigned.chunks_mut(BATCH))
                    .zip(distance.chunks_mut(BATCH))
                {
                    for (p, u) in points.chunks_exact(dim).zip(users.chunks_exact_mut(wide)) {
                        u[..dim].copy_from_slice(p);
                        u[dim] = 1.0;
                    }
                    let queries: Vec<ScanQuery<'_>> = users
                        .chunks_exact(wide)
                        .take(assigned.len())
                        .map(|u| (u, 1, &[][..]))
                        .collect();
                    let found = top_k::scan_batch(layout, &queries);
                    for (((best, a), d), p) in found
                        .iter()
                        .zip(assigned.iter_mut())
                        .zip(distance.iter_mut())
                        .zip(points.chunks_exact(dim))
                    {
                        let (c, score) = best.first().copied().unwrap_or((0, 0.0));
                        *a = c as u32;
                        let norm: f32 = p.iter().map(|v| v * v).sum();
                        *d = (norm - 2.0 * score).max(0.0);
                    }
                }
            });
        }
    });
    (assigned, distance)
}

/// A synthetic catalogue with the shape of trained item factors, for the
/// pruned scan's recall test and benchmark at sizes no data set here has:
/// `items` rows of `dim` factors around `topics` random taste directions
/// (each item one topic, Gaussian spread of half the topic's scale), with
/// log-normal norms (σ 0.4, the popularity spread of ALS factors), and
/// `members` query vectors that each mix two topics plus noise.
/// Deterministic in `seed`. Returns (row-major factors, member vectors).
#[doc(hidden)]
pub fn synthetic_catalogue(
    items: usize,
    members: usize,
    dim: usize,
    topics: usize,
    seed: u64,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scale = 1.0 / (dim as f32).sqrt();
    let topics = topics.max(1);
    let directions: Vec<f32> = (0..topics * dim)
        .map(|_| normal(&mut rng) * scale)
        .collect();
    let topic = |t: usize| &directions[t * dim..(t + 1) * dim];
    let mut factors = Vec::with_capacity(items * dim);
    for _ in 0..items {
        let t = rng.gen_range(0..topics);
        let norm = (0.4 * normal(&mut rng)).exp();
        for &v in topic(t) {
            factors.push(norm * (v + 0.5 * scale * normal(&mut rng)));
        }
    }
    let users = (0..members)
        .map(|_| {
            let (a, b) = (rng.gen_range(0..topics), rng.gen_range(0..topics));
            let w = rng.gen_range(0.5f32..1.0);
            topic(a)
                .iter()
                .zip(topic(b))
                .map(|(&x, &y)| w * x + (1.0 - w) * y + 0.3 * scale * normal(&mut rng))
                .collect()
        })
        .collect();
    (factors, users)
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points around `groups` well-separated centres.
    fn blobs(groups: usize, per: usize, dim: usize) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut out = Vec::new();
        for p in 0..groups * per {
            let g = p % groups;
            for d in 0..dim {
                let centre = if d == g % dim {
                    10.0 * (1 + g / dim) as f32
                } else {
                    0.0
                };
                out.push(centre + rng.gen_range(-0.5f32..0.5));
            }
        }
        out
    }

    #[test]
    fn separated_blobs_are_found_and_the_result_is_deterministic() {
        let dim = 6;
        let points = blobs(6, 50, dim);
        let params = KMeansParams {
            clusters: 6,
            threads: 2,
            ..KMeansParams::default()
        };
        let a = kmeans(&points, dim, &params);
        assert_eq!(a.len(), 300);
        // Points of one blob share a cluster, and blobs do not share.
        for g in 0..6 {
            let c = a[g];
            assert!((0..50).all(|i| a[i * 6 + g] == c), "blob {g} split");
        }
        let mut distinct: Vec<u32> = a[..6].to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 6);
        // Same input, same seed: same clusters, whatever the threads.
        let one = KMeansParams {
            threads: 1,
            ..params
        };
        assert_eq!(kmeans(&points, dim, &one), a);
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        assert!(kmeans(&[], 4, &KMeansParams::default()).is_empty());
        assert!(kmeans(&[1.0], 0, &KMeansParams::default()).is_empty());
        // More clusters than points, and identical points.
        let same = vec![1.0f32; 4 * 3];
        let params = KMeansParams {
            clusters: 10,
            ..KMeansParams::default()
        };
        let a = kmeans(&same, 3, &params);
        assert_eq!(a.len(), 4);
        assert!(a.iter().all(|&c| c < 4));
        assert_eq!(auto_clusters(9_000), 95);
        assert_eq!(auto_clusters(1_000_000), 1000);
        assert_eq!(auto_clusters(3), 2);
    }
}
