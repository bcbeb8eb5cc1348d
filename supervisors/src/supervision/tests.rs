//! Behaviour of the supervisor with probe children that record their
//! starts and stops and can be made to fail from the test.

use super::policy::{Backoff, Exhausted, Intensity, Restart, Strategy};
use super::supervisor::*;
use actix::{Actor, Addr};
use reco_actors::lifecycle::{ExitHook, ExitReason};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

type Hooks = Arc<Mutex<HashMap<String, ExitHook>>>;

struct Probe {
    name: String,
    log: mpsc::UnboundedSender<String>,
}

impl RunningChild for Probe {
    fn stop(&mut self) {
        let _ = self.log.send(format!("stop {}", self.name));
    }
}

fn probe(
    name: &str,
    restart: Restart,
    log: &mpsc::UnboundedSender<String>,
    hooks: &Hooks,
) -> ChildSpec {
    let (name, log, hooks) = (name.to_owned(), log.clone(), hooks.clone());
    ChildSpec {
        name: name.clone(),
        restart,
        start: Box::new(move |hook| {
            hooks.lock().unwrap().insert(name.clone(), hook);
            let _ = log.send(format!("start {name}"));
            Box::new(Probe {
                name: name.clone(),
                log: log.clone(),
            })
        }),
    }
}

fn settings(strategy: Strategy, max_restarts: u32) -> SupervisorSettings {
    SupervisorSettings {
        strategy,
        intensity: Intensity {
            max_restarts,
            period: Duration::from_secs(60),
        },
        backoff: Backoff {
            min: Duration::from_millis(1),
            max: Duration::from_millis(5),
            factor: 2.0,
            jitter: 0.5,
            reset_after: Duration::from_secs(60),
        },
        on_exhausted: Exhausted::Escalate,
        retry_after: Duration::from_millis(20),
    }
}

struct Harness {
    log: mpsc::UnboundedReceiver<String>,
    hooks: Hooks,
    escalations: mpsc::UnboundedReceiver<ExitReason>,
    supervisor: Addr<Supervisor>,
}

impl Harness {
    fn start(strategy: Strategy, max_restarts: u32, children: &[(&str, Restart)]) -> Self {
        Self::start_with(settings(strategy, max_restarts), children)
    }

    fn start_with(settings: SupervisorSettings, children: &[(&str, Restart)]) -> Self {
        let (tx, log) = mpsc::unbounded_channel();
        let hooks: Hooks = Arc::default();
        let specs = children
            .iter()
            .map(|(name, restart)| probe(name, *restart, &tx, &hooks))
            .collect();
        let (esc_tx, escalations) = mpsc::unbounded_channel();
        let escalate: ExitHook = Arc::new(move |reason| {
            let _ = esc_tx.send(reason);
        });
        let supervisor = Supervisor::new("test", settings, specs, escalate).start();
        Harness {
            log,
            hooks,
            escalations,
            supervisor,
        }
    }

    async fn expect(&mut self, lines: &[&str]) {
        for line in lines {
            let got = tokio::time::timeout(Duration::from_secs(5), self.log.recv())
                .await
                .expect("the supervisor acted within 5 s")
                .unwrap();
            assert_eq!(got, *line);
        }
    }

    fn fail(&self, name: &str) {
        let hook = self.hooks.lock().unwrap()[name].clone();
        hook(ExitReason::Panicked("boom".into()));
    }

    fn exit_normally(&self, name: &str) {
        let hook = self.hooks.lock().unwrap()[name].clone();
        hook(ExitReason::Normal);
    }

    async fn tree(&self) -> reco_messages::admin::TreeNode {
        self.supervisor
            .send(GetTree {
                restart: Restart::Permanent,
            })
            .await
            .unwrap()
    }
}

const ABC: [(&str, Restart); 3] = [
    ("a", Restart::Permanent),
    ("b", Restart::Permanent),
    ("c", Restart::Permanent),
];

#[actix_rt::test]
async fn one_for_one_restarts_only_the_failed_child() {
    let mut h = Harness::start(Strategy::OneForOne, 5, &ABC);
    h.expect(&["start a", "start b", "start c"]).await;
    h.fail("b");
    h.expect(&["start b"]).await;
    let tree = h.tree().await;
    let restarts: Vec<u64> = tree.children.iter().map(|c| c.restarts).collect();
    assert_eq!(restarts, vec![0, 1, 0]);
    assert_eq!(
        tree.children[1].last_failure.as_deref(),
        Some("panicked: boom")
    );
}

#[actix_rt::test]
async fn one_for_all_restarts_every_sibling_in_start_order() {
    let mut h = Harness::start(Strategy::OneForAll, 5, &ABC);
    h.expect(&["start a", "start b", "start c"]).await;
    h.fail("b");
    h.expect(&["stop c", "stop a", "start a", "start b", "start c"])
        .await;
}

#[actix_rt::test]
async fn rest_for_one_restarts_the_failed_child_and_those_started_after_it() {
    let mut h = Harness::start(Strategy::RestForOne, 5, &ABC);
    h.expect(&["start a", "start b", "start c"]).await;
    h.fail("b");
    h.expect(&["stop c", "start b", "start c"]).await;
    h.fail("c");
    h.expect(&["start c"]).await;
    assert!(h.log.try_recv().is_err(), "a was never touched");
}

#[actix_rt::test]
async fn transient_children_restart_only_after_abnormal_exits_and_temporary_never() {
    let mut h = Harness::start(
        Strategy::OneForOne,
        5,
        &[("t", Restart::Transient), ("tmp", Restart::Temporary)],
    );
    h.expect(&["start t", "start tmp"]).await;
    h.fail("tmp");
    h.exit_normally("t");
    // A second report from a child that already exited is ignored.
    h.fail("t");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), h.log.recv())
            .await
            .is_err()
    );
    let tree = h.tree().await;
    assert_eq!(tree.children[0].state, "stopped");
    assert_eq!(tree.children[1].state, "stopped");
}

#[actix_rt::test]
async fn a_stay_down_subtree_past_its_intensity_stays_up_and_retries_without_escalating() {
    let mut settings = settings(Strategy::OneForOne, 2);
    settings.on_exhausted = Exhausted::StayDown;
    settings.retry_after = Duration::from_millis(30);
    let mut h = Harness::start_with(settings, &ABC);
    h.expect(&["start a", "start b", "start c"]).await;
    for _ in 0..2 {
        h.fail("a");
        h.expect(&["start a"]).await;
    }
    h.fail("a");
    // Past the intensity: every child stops and the tree says so…
    h.expect(&["stop c", "stop b"]).await;
    let tree = h.tree().await;
    let states: Vec<&str> = tree.children.iter().map(|c| c.state.as_str()).collect();
    assert_eq!(states, ["down", "down", "down"]);
    // …then all of them start again, in order, with a fresh window.
    h.expect(&["start a", "start b", "start c"]).await;
    for _ in 0..2 {
        h.fail("a");
        h.expect(&["start a"]).await;
    }
    // The supervisor never escalated, and it is still serving the tree.
    assert!(h.escalations.try_recv().is_err());
    let tree = h.tree().await;
    assert_eq!(tree.children[0].restarts, 5);
    assert_eq!(tree.children[1].state, "running");
}

#[actix_rt::test]
async fn exceeding_the_intensity_stops_the_children_and_escalates() {
    let mut h = Harness::start(Strategy::OneForOne, 2, &ABC);
    h.expect(&["start a", "start b", "start c"]).await;
    h.fail("a");
    h.expect(&["start a"]).await;
    h.fail("a");
    h.expect(&["start a"]).await;
    h.fail("a");
    h.expect(&["stop c", "stop b"]).await;
    let reason = h.escalations.recv().await.unwrap();
    assert!(
        matches!(&reason, ExitReason::Failed(why) if why.contains("restart intensity")),
        "{reason:?}"
    );
    assert!(
        !h.supervisor.connected()
            || h.supervisor
                .send(GetTree {
                    restart: Restart::Permanent
                })
                .await
                .is_err()
    );
}

#[actix_rt::test]
async fn an_escalating_subtree_is_a_failed_child_of_its_parent() {
    let (tx, mut log) = mpsc::unbounded_channel();
    let hooks: Hooks = Arc::default();
    let inner_specs = {
        let (tx, hooks) = (tx.clone(), hooks.clone());
        move |hook: ExitHook| {
            Supervisor::new(
                "inner",
                settings(Strategy::OneForOne, 0),
                vec![probe("x", Restart::Permanent, &tx, &hooks)],
                hook,
            )
        }
    };
    let children = vec![
        probe("before", Restart::Permanent, &tx, &hooks),
        subtree("inner", Restart::Permanent, inner_specs),
        probe("after", Restart::Permanent, &tx, &hooks),
    ];
    let (esc_tx, _esc) = mpsc::unbounded_channel();
    let root = Supervisor::new(
        "root",
        settings(Strategy::OneForAll, 5),
        children,
        Arc::new(move |r| {
            let _ = esc_tx.send(r);
        }),
    )
    .start();
    async fn next(log: &mut mpsc::UnboundedReceiver<String>) -> String {
        tokio::time::timeout(Duration::from_secs(5), log.recv())
            .await
            .unwrap()
            .unwrap()
    }
    assert_eq!(next(&mut log).await, "start before");
    assert_eq!(next(&mut log).await, "start x");
    assert_eq!(next(&mut log).await, "start after");
    // x fails; inner allows no restart and escalates; root (one_for_all)
    // restarts all three children.
    let hook = hooks.lock().unwrap()["x"].clone();
    hook(ExitReason::Panicked("boom".into()));
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(next(&mut log).await);
    }
    assert_eq!(
        seen,
        vec![
            "stop after",
            "stop before",
            "start before",
            "start x",
            "start after"
        ]
    );
    let tree = root
        .send(GetTree {
            restart: Restart::Permanent,
        })
        .await
        .unwrap();
    assert_eq!(tree.children[1].kind, "supervisor");
    assert_eq!(tree.children[1].restarts, 1);
    assert!(tree.children[1]
        .last_failure
        .as_deref()
        .unwrap()
        .contains("inner exceeded"));
    assert_eq!(tree.children[1].children[0].name, "x");
}

#[actix_rt::test]
async fn reconfigure_changes_a_nested_supervisors_limits() {
    let h = Harness::start(Strategy::OneForOne, 5, &ABC);
    let mut new = settings(Strategy::RestForOne, 9);
    new.backoff.max = Duration::from_millis(7);
    let applied = h
        .supervisor
        .send(Reconfigure {
            name: "test".into(),
            settings: new,
        })
        .await
        .unwrap();
    assert!(applied);
    assert_eq!(h.tree().await.strategy.as_deref(), Some("rest_for_one"));
    let unknown = h
        .supervisor
        .send(Reconfigure {
            name: "nope".into(),
            settings: settings(Strategy::OneForOne, 1),
        })
        .await
        .unwrap();
    assert!(!unknown);
}
