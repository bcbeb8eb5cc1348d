//! Several nodes on one NATS server (`reco-sim run --nodes N`), and the
//! node faults the simulator performs on them: `node_kill` (SIGKILL),
//! `node_hang` (SIGSTOP, then SIGCONT at the end of the window),
//! `node_stop` (SIGTERM) and `node_join` (one more node).
//!
//! ```text
//!  private nats-server with the partition mapping (reco nats-config --fragment)
//!    ├─ sim-1 … sim-N: reco serve --node-id sim-i, [cluster] partitions, lease_ms
//!    └─ the driver: events on <prefix>.events.<m>, requests with the caller
//!       rule (no responders / per-try timeout → <prefix>.fallback.recommend.<m>)
//! ```
//!
//! Which node a fault hits is read from the nodes themselves (their NATS
//! micro-service, as `reco cluster` does): the one serving the most
//! partitions. Each fault's record says how long the partitions took to be
//! served again (polled every 50 ms), so a run measures failover.

use crate::process::Node;
use anyhow::{Context, Result};
use reco_messages::Subjects;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lease length of the simulator's nodes: failover takes about this long.
pub const SIM_LEASE_MS: u64 = 2000;

/// The server configuration (mapping block only; address, port and
/// JetStream come from the harness's flags) that splits `subjects`' members
/// into `partitions` partitions.
pub fn mapping_config(subjects: &Subjects, partitions: u32) -> String {
    let mut text = String::from("mappings {\n");
    for mapping in subjects.mappings(partitions) {
        text.push_str(&format!("  \"{}\": \"{}\"\n", mapping.from, mapping.to));
    }
    text.push_str("}\n");
    text
}

/// The nodes of a run, by index (`sim-<index+1>`); a killed or stopped one
/// stays in its slot until it is started again.
pub struct NodeSet {
    url: String,
    model: PathBuf,
    base_toml: String,
    partitions: u32,
    subjects: Subjects,
    nodes: Mutex<Vec<Option<Node>>>,
}

impl std::fmt::Debug for NodeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSet")
            .field("url", &reco_client::redact_url(&self.url))
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

fn node_name(index: usize) -> String {
    format!("sim-{}", index + 1)
}

impl NodeSet {
    /// Starts `count` nodes on `url` (a server with the mapping) serving
    /// `model`, each with `base_toml` plus its `[cluster]` table.
    ///
    /// # Errors
    /// When a node does not start.
    pub fn start(
        url: &str,
        model: PathBuf,
        base_toml: &str,
        count: usize,
        partitions: u32,
        subjects: Subjects,
    ) -> Result<Self> {
        let set = NodeSet {
            url: url.to_owned(),
            model,
            base_toml: base_toml.to_owned(),
            partitions,
            subjects,
            nodes: Mutex::new(Vec::new()),
        };
        for _ in 0..count {
            set.join()?;
        }
        Ok(set)
    }

    fn toml(&self, index: usize) -> String {
        format!(
            "{}[cluster]\nnode_id = \"{}\"\npartitions = {}\nlease_ms = {SIM_LEASE_MS}\n",
            self.base_toml,
            node_name(index),
            self.partitions
        )
    }

    fn start_node(&self, index: usize) -> Result<Node> {
        Node::start(&self.url, Some(&self.model), &self.toml(index))
            .with_context(|| format!("cannot start node {}", node_name(index)))
    }

    /// Starts one more node; returns its name.
    ///
    /// # Errors
    /// When it does not start.
    pub fn join(&self) -> Result<String> {
        let index = self.lock().len();
        let node = self.start_node(index)?;
        self.lock().push(Some(node));
        Ok(node_name(index))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Node>>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The metrics address of the first running node.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.lock().iter().flatten().next().map(Node::metrics_addr)
    }

    /// Number of partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        (0..self.lock().len()).find(|&i| node_name(i) == name)
    }

    /// Sends `signal` (`-KILL`, `-TERM`, `-STOP`, `-CONT`) to node `name`.
    ///
    /// # Errors
    /// When the node is unknown or not running.
    pub fn signal(&self, name: &str, signal: &str) -> Result<()> {
        let index = self.index_of(name).context("no such node")?;
        let nodes = self.lock();
        let node = nodes[index].as_ref().context("node not running")?;
        node.signal(signal)
    }

    /// Forgets node `name`'s process (after it was killed or stopped) and
    /// starts it again under the same name.
    ///
    /// # Errors
    /// When it does not start.
    pub fn restart(&self, name: &str) -> Result<()> {
        let index = self.index_of(name).context("no such node")?;
        let old = self.lock()[index].take();
        if let Some(mut old) = old {
            let deadline = Instant::now() + Duration::from_secs(30);
            while old.try_wait()?.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let node = self.start_node(index)?;
        self.lock()[index] = Some(node);
        Ok(())
    }
}

/// Runs `work` (process start-up: it waits) off the runtime's threads.
async fn blocking<T: Send + 'static>(
    set: &Arc<NodeSet>,
    work: impl FnOnce(&NodeSet) -> Result<T> + Send + 'static,
) -> Result<T> {
    let set = set.clone();
    tokio::task::spawn_blocking(move || work(&set))
        .await
        .context("node start-up task failed")?
}

/// The node serving the most partitions now (from the nodes' micro-service).
async fn busiest(client: &async_nats::Client, subjects: &Subjects) -> Result<String> {
    reco_client::cluster::nodes(client, subjects, Duration::from_millis(500))
        .await?
        .into_iter()
        .max_by_key(|n| n.serving.len())
        .map(|n| n.node)
        .context("no node answers $SRV.STATS.reco")
}

/// Polls until every partition is served by the nodes other than
/// `without`, and `joined` (a node that just started) serves its share (at
/// most `limit`); how long that took.
async fn all_served(
    client: &async_nats::Client,
    subjects: &Subjects,
    partitions: u32,
    without: Option<&str>,
    joined: Option<&str>,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(nodes) =
            reco_client::cluster::nodes(client, subjects, Duration::from_millis(150)).await
        {
            let served: BTreeSet<u32> = nodes
                .iter()
                .filter(|n| Some(n.node.as_str()) != without)
                .flat_map(|n| n.serving.iter().copied())
                .collect();
            let joined_serves = joined.is_none_or(|name| {
                nodes
                    .iter()
                    .any(|n| n.node == name && !n.serving.is_empty())
            });
            if served.len() == partitions as usize && joined_serves {
                return Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn served_note(took: Option<Duration>) -> String {
    match took {
        Some(took) => format!("every partition served again {} ms after", took.as_millis()),
        None => "partitions NOT all served again within 30 s".into(),
    }
}

/// A node fault at the start of its window; returns (outcome: `applied`
/// or why not, what happened: the node hit and how long until every
/// partition was served again, the node hit).
pub async fn start_node_fault(
    set: &Arc<NodeSet>,
    client: &async_nats::Client,
    kind: &crate::faults::FaultKind,
) -> (String, String, Option<String>) {
    use crate::faults::FaultKind;
    let subjects = &set.subjects;
    let limit = Duration::from_secs(30);
    match kind {
        FaultKind::NodeJoin => match blocking(set, |set| set.join()).await {
            Ok(name) => {
                let took =
                    all_served(client, subjects, set.partitions, None, Some(&name), limit).await;
                (
                    "applied".into(),
                    format!(
                        "{name} joined; {}",
                        match took {
                            Some(took) => format!(
                                "it served its share {} ms after it was ready",
                                took.as_millis()
                            ),
                            None => "it served nothing within 30 s".into(),
                        }
                    ),
                    None,
                )
            }
            Err(e) => (format!("failed: {e:#}"), String::new(), None),
        },
        FaultKind::NodeKill | FaultKind::NodeStop | FaultKind::NodeHang => {
            let victim = match busiest(client, subjects).await {
                Ok(victim) => victim,
                Err(e) => return (format!("failed: {e:#}"), String::new(), None),
            };
            let signal = match kind {
                FaultKind::NodeKill => "-KILL",
                FaultKind::NodeStop => "-TERM",
                _ => "-STOP",
            };
            if let Err(e) = set.signal(&victim, signal) {
                return (format!("failed: {e:#}"), String::new(), None);
            }
            let took =
                all_served(client, subjects, set.partitions, Some(&victim), None, limit).await;
            (
                "applied".into(),
                format!("kill {signal} {victim}; {}", served_note(took)),
                Some(victim),
            )
        }
        _ => ("not a node fault".into(), String::new(), None),
    }
}

/// The end of a node fault's window: a killed or stopped node is started
/// again, a hung one resumed (it finds its leases gone and rejoins).
pub async fn end_node_fault(
    set: &Arc<NodeSet>,
    kind: &crate::faults::FaultKind,
    victim: Option<&str>,
) -> String {
    use crate::faults::FaultKind;
    let Some(victim) = victim else {
        return String::new();
    };
    let result = match kind {
        FaultKind::NodeHang => set.signal(victim, "-CONT"),
        FaultKind::NodeKill | FaultKind::NodeStop => {
            let victim = victim.to_owned();
            blocking(set, move |set| set.restart(&victim)).await
        }
        _ => Ok(()),
    };
    match result {
        Ok(()) if matches!(kind, FaultKind::NodeHang) => format!("{victim} resumed"),
        Ok(()) => format!("{victim} started again"),
        Err(e) => format!("{victim} not brought back: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::{FaultKind, FaultName};

    #[test]
    fn the_mapping_splits_events_and_requests_into_the_partitions() {
        let text = mapping_config(&Subjects::default(), 16);
        assert!(text
            .contains("\"reco.events.*\": \"reco.p.events.{{partition(16,1)}}.{{wildcard(1)}}\""));
        assert!(text.contains(
            "\"reco.recommend.*\": \"reco.p.recommend.{{partition(16,1)}}.{{wildcard(1)}}\""
        ));
    }

    #[test]
    fn node_faults_parse_and_are_told_apart() {
        for (name, kind) in [
            ("node_kill", FaultKind::NodeKill),
            ("node_hang", FaultKind::NodeHang),
            ("node_stop", FaultKind::NodeStop),
            ("node_join", FaultKind::NodeJoin),
        ] {
            assert!(name.parse::<FaultName>().is_ok());
            assert!(kind.is_node_fault());
            assert_eq!(kind.to_string(), name);
        }
        assert!(!FaultKind::NatsRestart.is_node_fault());
    }
}
