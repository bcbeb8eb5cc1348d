//! The quality judge: served lists scored against what members choose next
//! (hit rate and NDCG, the one NDCG of `reco_models::eval`), per source.

use super::*;

/// Judges served lists against members' true tastes on a thread of its own
/// (a scan of the catalogue per list: no place for it on the I/O runtime).
pub(super) fn spawn_judge(
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Served>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let k = shared.config.k as usize;
        for (member_id, device, source, served) in rx {
            let seen = shared
                .played
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&member_id)
                .cloned()
                .unwrap_or_default();
            let member = shared.world.member(member_id);
            // Judged against the taste on the device that asked.
            let relevant = shared
                .world
                .true_top_for(member.taste_on(device), 2 * k, &seen);
            let (hit, ndcg) = judge(&served, &relevant, k);
            let mut stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            let entry = stats.quality.entry(source).or_insert((0, 0.0, 0.0));
            entry.0 += 1;
            entry.1 += hit;
            entry.2 += ndcg;
        }
    })
}

/// Hit (0 or 1) and NDCG at `k` of `served` against the set `relevant`.
pub fn judge(served: &[ItemId], relevant: &[ItemId], k: usize) -> (f64, f64) {
    let (hits, ndcg) =
        reco_models::eval::ndcg_at_k(served.iter().copied(), k, relevant.len(), |item| {
            relevant.contains(item)
        });
    (if hits > 0 { 1.0 } else { 0.0 }, ndcg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndcg_is_one_for_the_ideal_list_and_zero_without_hits() {
        let ids = |v: &[u64]| v.iter().map(|&i| ItemId(i)).collect::<Vec<_>>();
        assert_eq!(judge(&ids(&[1, 2, 3]), &ids(&[1, 2, 3, 4]), 3), (1.0, 1.0));
        assert_eq!(judge(&ids(&[7, 8, 9]), &ids(&[1, 2, 3]), 3), (0.0, 0.0));
        let (hit, ndcg) = judge(&ids(&[7, 1, 9]), &ids(&[1, 2, 3]), 3);
        assert_eq!(hit, 1.0);
        assert!(ndcg > 0.0 && ndcg < 1.0);
    }
}
