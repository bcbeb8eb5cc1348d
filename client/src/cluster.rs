//! Seeing the nodes of a deployment: every node registers as the NATS
//! micro-service `reco` (`$SRV.PING/INFO/STATS`), and its `STATS` carry its
//! live [`NodeStatus`]. `reco cluster` asks `$SRV.STATS.reco` once, gathers
//! every node's answer for a moment, keeps those of the prefix, and prints
//! them: partitions per node, lease ages, replay lag, traffic — and the
//! partitions nobody serves.

use crate::command::{connect, Target};
use clap::Args;
use futures::StreamExt;
use reco_messages::admin::{NodeStatus, SERVICE_NAME};
use reco_messages::Subjects;
use std::collections::BTreeSet;
use std::time::Duration;

/// The live status of every node of `subjects`' prefix that answers
/// `$SRV.STATS.reco` within `wait`, sorted by node name.
///
/// # Errors
/// When the request cannot be sent.
pub async fn nodes(
    client: &async_nats::Client,
    subjects: &Subjects,
    wait: Duration,
) -> anyhow::Result<Vec<NodeStatus>> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await?;
    client
        .publish_with_reply(format!("$SRV.STATS.{SERVICE_NAME}"), inbox, "".into())
        .await?;
    client.flush().await?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut nodes = Vec::new();
    while let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await {
        nodes.extend(status_of(&reply.payload).filter(|s| s.prefix == subjects.prefix()));
    }
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    nodes.dedup_by(|a, b| a.node == b.node);
    Ok(nodes)
}

/// The [`NodeStatus`] in a `$SRV.STATS` reply (the `data` of its endpoint).
fn status_of(payload: &[u8]) -> Option<NodeStatus> {
    let stats: serde_json::Value = serde_json::from_slice(payload).ok()?;
    stats
        .get("endpoints")?
        .as_array()?
        .iter()
        .find_map(|e| serde_json::from_value(e.get("data")?.clone()).ok())
}

/// Arguments of `reco cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    target: Target,
    /// How long to gather the nodes' answers, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    wait_ms: u64,
    /// Print the statuses as JSON.
    #[arg(long)]
    json: bool,
}

/// Prints the nodes of the prefix.
pub async fn cluster(args: ClusterArgs) -> anyhow::Result<()> {
    let (client, subjects) = connect(&args.target).await?;
    let nodes = nodes(&client, &subjects, Duration::from_millis(args.wait_ms)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(());
    }
    if nodes.is_empty() {
        anyhow::bail!(
            "no reco node of prefix {:?} answers $SRV.STATS.{SERVICE_NAME} at {}: is `reco serve` running there?",
            subjects.prefix(),
            args.target.nats()
        );
    }
    print!("{}", render(&nodes));
    Ok(())
}

fn ranges(partitions: &[u32]) -> String {
    if partitions.is_empty() {
        return "-".into();
    }
    let mut out: Vec<String> = Vec::new();
    let mut iter = partitions.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

/// The table `reco cluster` prints.
pub fn render(nodes: &[NodeStatus]) -> String {
    let mut out = format!(
        "{:<20} {:<8} {:>6}  {:<24} {:<10} {:>13} {:>6} {:>9} {:>9} {:>9}\n",
        "node",
        "mode",
        "owned",
        "serving",
        "replaying",
        "lease age ms",
        "lag",
        "events",
        "requests",
        "fallback"
    );
    for n in nodes {
        let ages: Vec<u64> = n.lease_ages_ms.iter().map(|&(_, age)| age).collect();
        let age = match (ages.iter().min(), ages.iter().max()) {
            (Some(lo), Some(hi)) if lo == hi => lo.to_string(),
            (Some(lo), Some(hi)) => format!("{lo}-{hi}"),
            _ => "-".into(),
        };
        let owned = if n.mode == "single" {
            "all".to_owned()
        } else {
            format!("{}/{}", n.serving.len() + n.replaying.len(), n.partitions)
        };
        out.push_str(&format!(
            "{:<20} {:<8} {:>6}  {:<24} {:<10} {:>13} {:>6} {:>9} {:>9} {:>9}\n",
            n.node,
            n.mode,
            owned,
            ranges(&n.serving),
            ranges(&n.replaying),
            age,
            n.lag_events,
            n.events,
            n.requests,
            n.fallback_requests
        ));
    }
    if let Some(total) = nodes.iter().map(|n| n.partitions).max().filter(|&p| p > 0) {
        let served: BTreeSet<u32> = nodes
            .iter()
            .flat_map(|n| n.serving.iter().copied())
            .collect();
        let unserved: Vec<u32> = (0..total).filter(|k| !served.contains(k)).collect();
        if unserved.is_empty() {
            out.push_str(&format!("every partition of {total} is served\n"));
        } else {
            out.push_str(&format!(
                "partitions served by no node now (callers use the fallback subject): {}\n",
                ranges(&unserved)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_ranges_ages_and_unserved_partitions() {
        let node = |name: &str, serving: Vec<u32>| NodeStatus {
            node: name.into(),
            mode: "cluster".into(),
            prefix: "reco".into(),
            partitions: 8,
            lease_ms: 2000,
            lease_ages_ms: serving.iter().map(|&k| (k, 100 + u64::from(k))).collect(),
            serving,
            ..NodeStatus::default()
        };
        let text = render(&[node("a", vec![0, 1, 2, 5]), node("b", vec![3, 4])]);
        assert!(text.contains("0-2,5"), "{text}");
        assert!(text.contains("100-105"), "{text}");
        assert!(text.contains("4/8"), "{text}");
        assert!(
            text.contains("served by no node now (callers use the fallback subject): 6-7"),
            "{text}"
        );
    }

    #[test]
    fn a_stats_reply_yields_the_status_in_its_endpoint_data() {
        let status = NodeStatus {
            node: "a".into(),
            ..NodeStatus::default()
        };
        let reply = serde_json::json!({
            "type": "io.nats.micro.v1.stats_response",
            "name": "reco",
            "endpoints": [{"name": "status", "data": status}],
        });
        assert_eq!(status_of(reply.to_string().as_bytes()), Some(status));
        assert_eq!(status_of(b"{}"), None);
    }
}
