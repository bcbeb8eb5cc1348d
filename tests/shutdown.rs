//! Stopping a node: SIGTERM drains in the time the work needs.

use reco_e2e::{NatsServer, Node};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_node_stops_on_sigterm_without_waiting_out_the_drain_timeout() {
    let nats = NatsServer::start();
    let mut node = Node::start(&nats.url(), None, "[node]\ndrain_timeout_ms = 10000\n");
    // The connection must have gone quiet: an idle async-nats connection
    // task only runs again at its next ping, and it is what ends drained
    // subscriptions. (Setting up the condition, not waiting for a result.)
    std::thread::sleep(Duration::from_secs(2));
    let asked = Instant::now();
    node.terminate();
    let status = node.wait_exit(Duration::from_secs(30));
    let took = asked.elapsed();
    let log = node.log();
    assert!(status.success(), "exit status {status}\n{log}");
    // Had the drain waited for the timeout, these would be in the log.
    assert!(
        !log.contains("did not end the subscriptions in time")
            && !log.contains("did not finish draining in time"),
        "the drain waited out its timeout ({took:?}):\n{log}"
    );
    assert!(log.contains("Ingress stopped."), "{log}");
    eprintln!("idle node stopped {took:?} after SIGTERM");
}
