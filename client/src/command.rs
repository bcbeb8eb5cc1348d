//! `reco recommend`, `reco event`, `reco tree` and `reco model`: a caller,
//! a producer and the admin client on the command line, speaking only the
//! public wire contract. For trying a node by hand and for scripts.

use crate::connect::{ConnectOptions, SecurityArgs, DEFAULT_NATS_URL, ENV_NATS_URL};
use crate::Admin;
use clap::Args;
use reco_messages::admin::TreeNode;
use reco_messages::{
    Event, EventKind, ItemId, MemberId, RecommendReply, RecommendRequest, Subjects,
};
use std::time::Duration;

/// Where to reach the node.
#[derive(Debug, Args)]
pub struct Target {
    /// NATS server URL.
    #[arg(long, env = ENV_NATS_URL, default_value = DEFAULT_NATS_URL)]
    nats: String,
    /// Subject prefix of the deployment.
    #[arg(long, default_value = reco_messages::subjects::DEFAULT_PREFIX)]
    prefix: String,
    /// Credentials and TLS.
    #[command(flatten)]
    security: SecurityArgs,
}

/// Arguments of `reco recommend`.
#[derive(Debug, Args)]
pub struct RecommendArgs {
    #[command(flatten)]
    target: Target,
    /// The member to recommend for.
    #[arg(long)]
    member: u64,
    /// How many items.
    #[arg(long)]
    k: Option<u32>,
    /// Reply deadline in milliseconds (default: the node's).
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Keep items the member has already watched.
    #[arg(long)]
    include_seen: bool,
    /// How long one try may take before the fallback subject is asked (the
    /// caller rule), in milliseconds.
    #[arg(long, default_value_t = 2000)]
    try_timeout_ms: u64,
    /// The row (gallery): top (default), genre:<name>, because:<item id>,
    /// continue, popular, new, trending, billboard.
    #[arg(long)]
    row: Option<String>,
    /// The device asking (context).
    #[arg(long)]
    device: Option<String>,
    /// Leave out the items' titles and genres (ids and scores only).
    #[arg(long)]
    ids_only: bool,
    /// Print one line per item (rank, id, score, title, genres) instead
    /// of the reply's JSON.
    #[arg(long)]
    brief: bool,
}

/// Arguments of `reco event`.
#[derive(Debug, Args)]
pub struct EventArgs {
    #[command(flatten)]
    target: Target,
    /// The member.
    #[arg(long)]
    member: u64,
    /// The item.
    #[arg(long)]
    item: u64,
    /// What happened: play, stop, click, impression, rate or list_add.
    #[arg(long, default_value = "play")]
    kind: EventKind,
    /// Seconds watched (play/stop) or stars (rate).
    #[arg(long, default_value_t = 0.0)]
    value: f32,
    /// The device the event came from.
    #[arg(long, default_value = "cli")]
    device: String,
}

pub(crate) async fn connect(target: &Target) -> anyhow::Result<(async_nats::Client, Subjects)> {
    let subjects = Subjects::new(&target.prefix)?;
    let client = ConnectOptions::new(&target.nats)
        .name("reco-cli")
        .security(target.security.security())
        .connect()
        .await?;
    Ok((client, subjects))
}

impl Target {
    /// The NATS URL.
    pub(crate) fn nats(&self) -> &str {
        &self.nats
    }
}

/// Which node(s) an admin request goes to.
#[derive(Debug, Args)]
pub struct NodeChoice {
    /// Address the request to this node alone (its `--node-id`, listed by
    /// `reco cluster`); `all`: ask every node of the prefix and print each
    /// answer. Default: whichever node answers first.
    #[arg(long)]
    node: Option<String>,
}

impl NodeChoice {
    /// The nodes to ask: `[None]` for whichever answers first.
    async fn resolve(
        &self,
        client: &async_nats::Client,
        subjects: &Subjects,
    ) -> anyhow::Result<Vec<Option<String>>> {
        match self.node.as_deref() {
            None => Ok(vec![None]),
            Some("all") => {
                let nodes = crate::cluster::nodes(client, subjects, Duration::from_secs(1)).await?;
                anyhow::ensure!(
                    !nodes.is_empty(),
                    "no reco node of prefix {:?} answers $SRV.STATS.reco",
                    subjects.prefix()
                );
                Ok(nodes.into_iter().map(|n| Some(n.node)).collect())
            }
            Some(node) => Ok(vec![Some(node.to_owned())]),
        }
    }
}

/// Sends one recommend request and prints the reply as JSON.
pub async fn recommend(args: RecommendArgs) -> anyhow::Result<()> {
    let (client, subjects) = connect(&args.target).await?;
    let request = RecommendRequest {
        k: args.k,
        deadline_ms: args.deadline_ms,
        exclude_seen: Some(!args.include_seen),
        row: args.row.clone(),
        device: args.device.clone(),
        details: Some(!args.ids_only),
    };
    let reply = crate::caller::recommend(
        &client,
        &subjects,
        MemberId(args.member),
        &request,
        Duration::from_millis(args.try_timeout_ms),
    )
    .await?;
    match &reply {
        RecommendReply::Ok(list) if args.brief => print!("{}", brief(list)),
        _ => println!("{}", serde_json::to_string_pretty(&reply)?),
    }
    if let RecommendReply::Error(e) = reply {
        anyhow::bail!("the node refused the request: {}", e.error.message);
    }
    Ok(())
}

/// A reply as one line per item: rank, id, score, title and genres (when
/// the reply has them), after a line saying the row and the source.
fn brief(list: &reco_messages::Recommendations) -> String {
    let mut text = format!(
        "row {} from {}{}\n",
        list.row.as_deref().unwrap_or("top"),
        list.source.as_str(),
        match list.reason {
            Some(reason) => format!(" (fallback: {})", reason.as_str()),
            None => String::new(),
        }
    );
    for (rank, scored) in list.items.iter().enumerate() {
        let details = list
            .details
            .iter()
            .flatten()
            .find(|d| d.item == scored.item);
        let (title, genres) = details.map_or((String::new(), String::new()), |d| {
            (d.title.clone(), d.genres.join("|"))
        });
        text.push_str(&format!(
            "{:>3}. {:>7} {:>8.4}  {title}  {genres}\n",
            rank + 1,
            scored.item.0,
            scored.score
        ));
    }
    text
}

/// Publishes one event and waits until the server has it.
pub async fn event(args: EventArgs) -> anyhow::Result<()> {
    let (client, subjects) = connect(&args.target).await?;
    let kind = args.kind;
    let event = Event {
        member: MemberId(args.member),
        item: ItemId(args.item),
        kind,
        value: args.value,
        at_ms: None,
        device: Some(args.device.clone()),
    };
    crate::producer::publish_event(&client, &subjects, &event).await?;
    println!(
        "published {kind} of item {} for member {}",
        args.item, args.member
    );
    // A publish cannot tell whether anyone listens: ask whether a node
    // answers on this prefix at all, and warn when none does.
    let admin = Admin::new(client, subjects.clone()).with_timeout(Duration::from_millis(500));
    match admin.health().await {
        Ok(_) => {}
        Err(e) if e.is_no_responders() => eprintln!(
            "reco: warning: no reco node answers on prefix {:?} at {}: the event reached the \
server but no node may be listening (events are only recorded while a node or the event \
stream is there)",
            subjects.prefix(),
            args.target.nats
        ),
        Err(e) => eprintln!("reco: warning: cannot tell whether a node is listening: {e}"),
    }
    Ok(())
}

/// Arguments of `reco health` and `reco reload`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    node: NodeChoice,
    /// Print the reply as JSON.
    #[arg(long)]
    json: bool,
}

fn no_node(e: crate::AdminError, target: &Target) -> anyhow::Error {
    if e.is_no_responders() {
        anyhow::anyhow!(
            "no reco node answers on prefix {:?} at {}: is `reco serve` running there?",
            target.prefix,
            target.nats
        )
    } else {
        e.into()
    }
}

/// Asks a node (or each node) whether it serves, and with what
/// (`admin.health`).
pub async fn health(args: AdminArgs) -> anyhow::Result<()> {
    let (client, subjects) = connect(&args.target).await?;
    let nodes = args.node.resolve(&client, &subjects).await?;
    let many = nodes.len() > 1;
    for node in nodes {
        let health = Admin::new(client.clone(), subjects.clone())
            .with_node(node.clone())
            .health()
            .await
            .map_err(|e| no_node(e, &args.target))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&health)?);
            continue;
        }
        if many {
            println!("== node {}", node.as_deref().unwrap_or("?"));
        }
        if let Some(cluster) = &health.cluster {
            println!("node              {} ({})", cluster.node, cluster.mode);
        }
        println!("status            {}", health.status);
        println!(
            "model version     {}",
            health.model_version.as_deref().unwrap_or("none")
        );
        println!("lists version     {}", health.lists_version);
        println!(
            "model breaker     {}",
            health.model_breaker.as_deref().unwrap_or("unknown")
        );
        match (&health.aggregates_version, health.aggregates_age_ms) {
            (Some(version), Some(age_ms)) => println!(
                "aggregates        {version} ({:.1} s old)",
                age_ms as f64 / 1000.0
            ),
            _ => println!("aggregates        none"),
        }
        println!("requests in flight {}", health.in_flight);
        println!("resident members  {}", health.resident_members);
        println!(
            "memory (RSS)      {:.1} MiB",
            health.rss_bytes as f64 / 1_048_576.0
        );
    }
    Ok(())
}

/// Has a node re-read its config file's supervision settings
/// (`admin.reload`, like SIGHUP).
pub async fn reload(args: AdminArgs) -> anyhow::Result<()> {
    let (client, subjects) = connect(&args.target).await?;
    let node = match args.node.resolve(&client, &subjects).await?.as_slice() {
        [node] => node.clone(),
        _ => anyhow::bail!("reload one node at a time (--node ID)"),
    };
    let reloaded = Admin::new(client, subjects)
        .with_node(node)
        .reload()
        .await
        .map_err(|e| no_node(e, &args.target))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reloaded)?);
    }
    if let Some(error) = reloaded.error {
        anyhow::bail!("the node refused its config file (the settings in force stay): {error}");
    }
    if !args.json {
        println!(
            "reloaded: supervision settings applied to {}",
            if reloaded.applied.is_empty() {
                "no supervisor".to_owned()
            } else {
                reloaded.applied.join(", ")
            }
        );
    }
    Ok(())
}

/// Arguments of `reco tree`.
#[derive(Debug, Args)]
pub struct TreeArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    node: NodeChoice,
    /// Print the tree as JSON instead of indented text.
    #[arg(long)]
    json: bool,
}

/// Asks a node (or each node) for its live supervision tree and prints it.
pub async fn tree(args: TreeArgs) -> anyhow::Result<()> {
    let (client, subjects) = connect(&args.target).await?;
    let nodes = args.node.resolve(&client, &subjects).await?;
    let many = nodes.len() > 1;
    for node in nodes {
        let tree = Admin::new(client.clone(), subjects.clone())
            .with_node(node.clone())
            .tree()
            .await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&tree)?);
        } else {
            if many {
                println!("== node {}", node.as_deref().unwrap_or("?"));
            }
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            print!("{}", render_tree(&tree, now_ms));
        }
    }
    Ok(())
}

/// Renders a tree as indented text, one node a line.
pub fn render_tree(tree: &TreeNode, now_ms: u64) -> String {
    fn line(node: &TreeNode, now_ms: u64) -> String {
        let mut text = match &node.strategy {
            Some(strategy) => format!("{} [supervisor {strategy}, {}]", node.name, node.restart),
            None => format!("{} [{}]", node.name, node.restart),
        };
        text.push_str(&format!(" {} restarts={}", node.state, node.restarts));
        if let Some(why) = &node.last_failure {
            let ago = node
                .last_failure_at_ms
                .map(|at| format!(" {:.1}s ago", now_ms.saturating_sub(at) as f64 / 1000.0))
                .unwrap_or_default();
            text.push_str(&format!(" last_failure=\"{why}\"{ago}"));
        }
        if let Some(detail) = &node.detail {
            text.push_str(&format!(" ({detail})"));
        }
        text
    }
    fn walk(node: &TreeNode, prefix: &str, now_ms: u64, out: &mut String) {
        for (i, child) in node.children.iter().enumerate() {
            let last = i + 1 == node.children.len();
            out.push_str(&format!(
                "{prefix}{}{}\n",
                if last { "└── " } else { "├── " },
                line(child, now_ms)
            ));
            let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
            walk(child, &deeper, now_ms, out);
        }
    }
    let mut out = format!("{}\n", line(tree, now_ms));
    walk(tree, "", now_ms, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_render_indented_with_restart_counts_and_failures() {
        let leaf = |name: &str, restarts| TreeNode {
            name: name.into(),
            kind: "worker".into(),
            restart: "permanent".into(),
            state: "running".into(),
            restarts,
            ..Default::default()
        };
        let mut failed = leaf("worker-1", 2);
        failed.last_failure = Some("panicked: boom".into());
        failed.last_failure_at_ms = Some(8_000);
        let tree = TreeNode {
            name: "root".into(),
            kind: "supervisor".into(),
            strategy: Some("one_for_one".into()),
            restart: "permanent".into(),
            state: "running".into(),
            children: vec![
                TreeNode {
                    name: "model".into(),
                    kind: "supervisor".into(),
                    strategy: Some("one_for_all".into()),
                    restart: "permanent".into(),
                    state: "running".into(),
                    children: vec![leaf("worker-0", 0), failed],
                    ..Default::default()
                },
                leaf("lists", 0),
            ],
            ..Default::default()
        };
        let text = render_tree(&tree, 10_000);
        assert_eq!(
            text,
            "root [supervisor one_for_one, permanent] running restarts=0\n\
             ├── model [supervisor one_for_all, permanent] running restarts=0\n\
             │   ├── worker-0 [permanent] running restarts=0\n\
             │   └── worker-1 [permanent] running restarts=2 last_failure=\"panicked: boom\" 2.0s ago\n\
             └── lists [permanent] running restarts=0\n"
        );
    }
}

/// Arguments of `reco model`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(flatten)]
    target: Target,
    /// Serve this published version and ignore new ones (to roll back, pin
    /// the previous version).
    #[arg(long, conflicts_with = "unpin")]
    pin: Option<String>,
    /// Follow new publications again.
    #[arg(long)]
    unpin: bool,
    /// Operator token a node with `admin.operator_token` requires to pin
    /// or unpin (prefer the environment variable).
    #[arg(long, env = "RECO_OPERATOR_TOKEN", hide_env_values = true)]
    operator_token: Option<crate::Secret>,
}

/// Pins, rolls back or unpins a node's model version, or shows it, and
/// prints the node's model status as JSON.
pub async fn model(args: ModelArgs) -> anyhow::Result<()> {
    let (client, subjects) = connect(&args.target).await?;
    let command = reco_messages::admin::ModelCommand {
        pin: args.pin,
        unpin: args.unpin,
    };
    let status = Admin::new(client, subjects)
        .with_timeout(Duration::from_secs(30))
        .with_operator_token(args.operator_token)
        .model(&command)
        .await?;
    println!("{}", serde_json::to_string_pretty(&status)?);
    if let Some(error) = status.error {
        anyhow::bail!("the node refused: {error}");
    }
    Ok(())
}
