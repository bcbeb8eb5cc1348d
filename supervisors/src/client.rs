//! `reco recommend` and `reco event`: a caller and a producer on the command
//! line, speaking only the public wire contract. For trying a node by hand
//! and for scripts.

use crate::config::ENV_NATS_URL;
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use reco_messages::{
    decode, encode, Event, EventKind, ItemId, MemberId, RecommendReply, RecommendRequest, Subjects,
};
use std::time::Duration;

/// Where to reach the node.
#[derive(Debug, Args)]
pub struct Target {
    /// NATS server URL.
    #[arg(long, env = ENV_NATS_URL, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Subject prefix of the deployment.
    #[arg(long, default_value = reco_messages::subjects::DEFAULT_PREFIX)]
    prefix: String,
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
}

/// Event kinds as command-line values.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    Play,
    Stop,
    Click,
    Impression,
    Rate,
    ListAdd,
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
    /// What happened.
    #[arg(long, value_enum, default_value = "play")]
    kind: Kind,
    /// Seconds watched (play/stop) or stars (rate).
    #[arg(long, default_value_t = 0.0)]
    value: f32,
}

async fn connect(target: &Target) -> anyhow::Result<(async_nats::Client, Subjects)> {
    let subjects = Subjects::new(&target.prefix)?;
    let client = async_nats::connect(target.nats.as_str())
        .await
        .with_context(|| format!("cannot connect to NATS at {}", target.nats))?;
    Ok((client, subjects))
}

/// Sends one recommend request and prints the reply as JSON.
pub async fn recommend(args: RecommendArgs) -> anyhow::Result<()> {
    let (client, subjects) = connect(&args.target).await?;
    let request = RecommendRequest {
        k: args.k,
        deadline_ms: args.deadline_ms,
        exclude_seen: Some(!args.include_seen),
        ..Default::default()
    };
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(
            subjects.recommend(MemberId(args.member)),
            encode(&request).into(),
        ),
    )
    .await
    .context("no reply within 10 s")?
    .context("request failed: is a reco node serving this prefix?")?;
    let reply: RecommendReply = decode(&reply.payload, usize::MAX)?;
    println!("{}", serde_json::to_string_pretty(&reply)?);
    if let RecommendReply::Error(e) = reply {
        anyhow::bail!("the node refused the request: {}", e.error.message);
    }
    Ok(())
}

/// Publishes one event and waits until the server has it.
pub async fn event(args: EventArgs) -> anyhow::Result<()> {
    let (client, subjects) = connect(&args.target).await?;
    let kind = match args.kind {
        Kind::Play => EventKind::Play,
        Kind::Stop => EventKind::Stop,
        Kind::Click => EventKind::Click,
        Kind::Impression => EventKind::Impression,
        Kind::Rate => EventKind::Rate,
        Kind::ListAdd => EventKind::ListAdd,
    };
    let event = Event {
        member: MemberId(args.member),
        item: ItemId(args.item),
        kind,
        value: args.value,
        at_ms: None,
        device: Some("cli".into()),
    };
    reco_messages::codec::validate_event(&event, event.member)?;
    client
        .publish(subjects.events(event.member), encode(&event).into())
        .await?;
    crate::node::round_trip(&client).await?;
    println!(
        "published {kind} of item {} for member {}",
        args.item, args.member
    );
    Ok(())
}
