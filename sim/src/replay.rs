//! `reco-sim replay`: the replay evaluation of `reco_models::replay`, against
//! a live node over NATS.
//!
//! Trains on the first 80 % of each member's ratings in time order (the
//! model artifact carries every member's history), starts `reco serve` on
//! it, then replays each member's other ratings in time order: *ask* (a
//! recommend request, k = 10, seen items excluded) and *rate* (a `rate`
//! event with the stars). Reports next-item HR@10 and NDCG@10 of reco's
//! replies (overall and per reply source) beside, in the same run, the
//! static top-10 of the same trained model (the member's precomputed list,
//! fixed: what a batch-only system shows) and popularity.
//!
//! Ordering: an event and the next request travel on different subjects,
//! so the request could overtake the event inside the node. Each ask is
//! repeated (bounded) until the reply's `signals` field says the node has
//! folded in every event sent so far: a gate on the reply, not a sleep.

use crate::demo::{nats_or_private, node_toml};
use crate::process::Node;
use anyhow::{Context, Result};
use futures::stream::{self, StreamExt};
use reco_messages::{
    decode, encode, Event, EventKind, ItemId, MemberId, RecommendReply, RecommendRequest,
    Recommendations, Source, Subjects,
};
use reco_models::replay::temporal_split;
use reco_models::{AlsParams, Rating};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

/// Options of a live replay.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// NATS URL; a private server when absent.
    pub nats: Option<String>,
    /// MovieLens ratings.csv.
    pub ratings: PathBuf,
    /// Replay at most this many members (all when absent).
    pub members: Option<usize>,
    /// Members replayed at once (each member's asks stay in order).
    pub concurrency: usize,
    /// Deadline of each request, ms: generous, this measures quality.
    pub deadline_ms: u64,
}

/// Next-item quality of one recommender.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Figure {
    /// Asks counted.
    pub asks: u64,
    /// Share of asks whose list held the next item.
    pub hit_rate: f64,
    /// Mean discounted gain of the next item.
    pub ndcg: f64,
}

/// The figures of a live replay.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplayFigures {
    /// Members replayed.
    pub members: usize,
    /// reco's replies, all sources together.
    pub reco: Figure,
    /// reco's replies by source.
    pub by_source: BTreeMap<String, Figure>,
    /// The member's precomputed top-10, fixed (batch only).
    pub static_top: Figure,
    /// Popularity without the member's history and replayed items.
    pub popular: Figure,
    /// Asks repeated because the node had not applied the last event yet.
    pub retries: u64,
}

impl ReplayFigures {
    /// The figures as a table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} members, {} asks ({} asks repeated until the last event was applied)\n{:<22} {:>7} {:>8} {:>9} {:>10}\n",
            self.members, self.reco.asks, self.retries, "recommender", "asks", "HR@10", "NDCG@10", "HR/static"
        );
        let mut row = |name: &str, f: &Figure| {
            out.push_str(&format!(
                "{name:<22} {:>7} {:>8.4} {:>9.4} {:>10.2}\n",
                f.asks,
                f.hit_rate,
                f.ndcg,
                f.hit_rate / self.static_top.hit_rate.max(f64::MIN_POSITIVE)
            ));
        };
        row("reco (all replies)", &self.reco);
        for (source, f) in &self.by_source {
            row(&format!("  source {source}"), f);
        }
        row("static top-10", &self.static_top);
        row("popular", &self.popular);
        out
    }
}

/// Sums of one recommender.
#[derive(Clone, Copy, Debug, Default)]
struct Sum {
    asks: u64,
    hits: f64,
    gain: f64,
}

impl Sum {
    fn add(&mut self, list: &[ItemId], next: ItemId) {
        self.asks += 1;
        if let Some(rank) = list.iter().take(10).position(|&i| i == next) {
            self.hits += 1.0;
            self.gain += 1.0 / ((rank + 2) as f64).log2();
        }
    }

    fn merge(&mut self, other: &Sum) {
        self.asks += other.asks;
        self.hits += other.hits;
        self.gain += other.gain;
    }

    fn figure(&self) -> Figure {
        let n = self.asks.max(1) as f64;
        Figure {
            asks: self.asks,
            hit_rate: self.hits / n,
            ndcg: self.gain / n,
        }
    }
}

/// One member's tallies.
#[derive(Debug, Default)]
struct Tally {
    reco: Sum,
    by_source: HashMap<&'static str, Sum>,
    static_top: Sum,
    popular: Sum,
    retries: u64,
}

/// Runs the live replay and returns its figures.
pub async fn replay(options: ReplayOptions, log: impl Fn(&str)) -> Result<ReplayFigures> {
    let ratings = reco_offline::train::read_ratings(&options.ratings)?;
    let (train, test) = temporal_split(&ratings, 0.8, 5);
    log(&format!(
        "{} ratings: training on {}, replaying {}",
        ratings.len(),
        train.len(),
        test.len()
    ));
    let model = tempfile::tempdir()?;
    let trained = reco_offline::train::run(
        &train,
        &reco_offline::train::TrainOptions {
            params: AlsParams::default(),
            top_n: 200,
            popular_n: 1_000,
            version: Some("replay".into()),
            holdout: reco_offline::train::Holdout::None,
            k: 10,
            write_split: None,
            out: Some(model.path().to_owned()),
            clusters: Some(0),
            values: reco_offline::train::RatingValues::Stars,
            items: None,
        },
    )
    .with_context(|| format!("cannot train on {}", options.ratings.display()))?;
    let (server, url) = nats_or_private(options.nats.as_deref())?;
    let node = Node::start(&url, Some(model.path()), &node_toml(options.deadline_ms))?;
    log(&format!("Node serving the trained model at {url}"));
    let client = async_nats::connect(&url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;

    let mut by_member: BTreeMap<MemberId, Vec<Rating>> = BTreeMap::new();
    for r in test {
        by_member.entry(r.member).or_default().push(r);
    }
    let members: Vec<(MemberId, Vec<Rating>)> = by_member
        .into_iter()
        .take(options.members.unwrap_or(usize::MAX))
        .collect();
    let history: HashMap<MemberId, HashSet<ItemId>> = {
        let mut h: HashMap<MemberId, HashSet<ItemId>> = HashMap::new();
        for r in &train {
            h.entry(r.member).or_default().insert(r.item);
        }
        h
    };
    let lists = &trained.lists;
    let deadline_ms = options.deadline_ms;
    let tallies: Vec<Result<Tally>> = stream::iter(members.iter())
        .map(|(member, ratings)| {
            let client = client.clone();
            let empty = HashSet::new();
            let seen_before = history.get(member).unwrap_or(&empty).clone();
            async move {
                let static_top: Vec<ItemId> = lists
                    .member(*member)
                    .unwrap_or(&[])
                    .iter()
                    .take(10)
                    .map(|s| s.item)
                    .collect();
                replay_member(
                    &client,
                    *member,
                    ratings,
                    &static_top,
                    &lists.popular,
                    seen_before,
                    deadline_ms,
                )
                .await
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    let mut total = Tally::default();
    for tally in tallies {
        let tally = tally?;
        total.reco.merge(&tally.reco);
        total.static_top.merge(&tally.static_top);
        total.popular.merge(&tally.popular);
        total.retries += tally.retries;
        for (source, sum) in tally.by_source {
            total.by_source.entry(source).or_default().merge(&sum);
        }
    }
    drop(node);
    drop(server);
    Ok(ReplayFigures {
        members: members.len(),
        reco: total.reco.figure(),
        by_source: total
            .by_source
            .iter()
            .map(|(s, sum)| ((*s).to_owned(), sum.figure()))
            .collect(),
        static_top: total.static_top.figure(),
        popular: total.popular.figure(),
        retries: total.retries,
    })
}

/// Asks at most this many times for a reply that reflects every event.
const MAX_ASKS: u32 = 200;

async fn replay_member(
    client: &async_nats::Client,
    member: MemberId,
    ratings: &[Rating],
    static_top: &[ItemId],
    popular: &[reco_models::Scored],
    mut seen: HashSet<ItemId>,
    deadline_ms: u64,
) -> Result<Tally> {
    let subjects = Subjects::default();
    let request = RecommendRequest {
        k: Some(10),
        deadline_ms: Some(deadline_ms),
        ..Default::default()
    };
    let mut tally = Tally::default();
    for (sent, r) in ratings.iter().enumerate() {
        // The node remembers at most its ring (50 by default) of events.
        let expected = sent.min(50) as u32;
        let mut asks = 0;
        let reply = loop {
            asks += 1;
            let reply = ask(client, &subjects, member, &request).await?;
            let applied = reply.signals.unwrap_or(0);
            let answered_by_events = matches!(reply.source, Source::Model | Source::Nearline);
            if !answered_by_events || applied >= expected || asks >= MAX_ASKS {
                break reply;
            }
            tally.retries += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let list: Vec<ItemId> = reply.items.iter().map(|s| s.item).collect();
        tally.reco.add(&list, r.item);
        tally
            .by_source
            .entry(reply.source.as_str())
            .or_default()
            .add(&list, r.item);
        tally.static_top.add(static_top, r.item);
        let pop: Vec<ItemId> = popular
            .iter()
            .map(|s| s.item)
            .filter(|i| !seen.contains(i))
            .take(10)
            .collect();
        tally.popular.add(&pop, r.item);
        seen.insert(r.item);
        let event = Event {
            member,
            item: r.item,
            kind: EventKind::Rate,
            value: r.value,
            at_ms: Some(r.at_ms),
            device: None,
        };
        client
            .publish(subjects.events(member), encode(&event).into())
            .await
            .context("cannot publish an event")?;
    }
    Ok(tally)
}

async fn ask(
    client: &async_nats::Client,
    subjects: &Subjects,
    member: MemberId,
    request: &RecommendRequest,
) -> Result<Recommendations> {
    let reply = client
        .request(subjects.recommend(member), encode(request).into())
        .await
        .context("a recommend request got no reply")?;
    match decode::<RecommendReply>(&reply.payload, 1 << 20)? {
        RecommendReply::Ok(r) => Ok(r),
        RecommendReply::Error(e) => anyhow::bail!("reco answered an error: {e:?}"),
    }
}
