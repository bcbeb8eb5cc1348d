//! The request's `device` reaches the fold-in: in a world where tastes
//! depend on the device, a member who played titles on two devices gets
//! different lists from the two when `sessions.same_device_weight` is on,
//! and the same list when it is off (1). Fails if the node ignores the
//! device (or reuses an answer across devices).
//!
//! A private nats-server and a debug `reco serve` per weight
//! (`reco_sim::device`), a tiny world.

use reco_sim::device::{run, DeviceConfig};
use reco_sim::world::WorldConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_differ_by_device_only_when_the_weighting_is_on() {
    let report = run(
        DeviceConfig {
            world: WorldConfig {
                items: 400,
                dim: 8,
                members: 300,
                taste_strength: 10.0,
                device_taste: 0.8,
                ..WorldConfig::default()
            },
            visited: 40,
            plays: 4,
            weights: vec![1.0, 3.0],
            k: 10,
            deadline_ms: 2_000,
        },
        |line| eprintln!("{line}"),
    )
    .await
    .expect("the device scenario runs");
    eprint!("{}", report.table());
    let (off, on) = (&report.weights[0], &report.weights[1]);
    assert_eq!(off.judged, 80);
    assert!(
        off.model_share > 0.9 && on.model_share > 0.9,
        "the model answers"
    );
    // Off: one list per member whatever the device (a nearline refresh
    // between the two requests may reorder a rare one).
    assert!(
        off.differ < 0.1,
        "weighting off, lists differ: {}",
        off.differ
    );
    assert_eq!(off.hit_rate, off.placebo_hit_rate);
    // On: the device changes the fold-in, so the list.
    assert!(on.differ > 0.5, "weighting on, lists differ: {}", on.differ);
}
