//! `reco-sim launch`: new titles launched mid-run, and the billboard that
//! should find them (issue 15).
//!
//! The stack: a private nats-server (or `--nats`), a model trained on the
//! world's past **without** the titles to launch (they do not exist yet
//! when it is trained), a `reco serve` node and a `reco nearline` job
//! publishing aggregate snapshots every second.
//!
//! Each visit of a member (uniform over the members, one after the other):
//! 1. **Slates**: the member is shown `slate` titles drawn by the world's
//!    popularity (launched titles only from `launch_at`, plus one of them
//!    in a "new releases" slot half of the time once launched). Each is an
//!    `impression` event, and a `play` with the member's true take
//!    probability. This is the traffic the aggregates count besides the
//!    billboard.
//! 2. **reco's billboard**: `row: billboard`, k = 1. The featured title is
//!    shown (impression) and taken with the true probability (play): the
//!    bandit learns from its own impressions through the event stream.
//! 3. **Baselines, in the same visit** (not shown, so they do not feed the
//!    aggregates): the **pure-model** billboard is the node's `row: top`
//!    k = 1 (the model's best title for the member, new titles unknown to
//!    it); the **static popular** billboard is the first title of the
//!    training run's popular list the member has not watched.
//! 4. **Oracle**: the title with the highest true take probability for the
//!    member among every title available at that moment (launched ones
//!    included once launched) it has not watched.
//!
//! Regret of a billboard = the oracle's take probability − the take
//! probability of the title it featured, averaged over visits. Take rate =
//! the mean true take probability of what it featured (for reco also the
//! realised takes).
//!
//! # The members' truth
//! Take probability p(m, i) = σ(taste_strength · affinity(m, i) − 4 +
//! appeal(i)), affinity the world's dot product of unit vectors in [−1, 1];
//! appeal(i) = `launch_appeal` for a launched title (a launch the service
//! features is a title it expects to do well: default 1) and 0 otherwise.
//!
//! # Early reads
//! Every second the simulator reads the newest snapshot and, for each
//! launched title, the day window's impressions and plays: its take rate is
//! **known within ±20 %** once the 95 % Wilson interval lies within ±20 %
//! of the estimate. The time since launch and the impressions then are
//! reported, with the true mean take probability of the impressions it got.

use crate::demo::nats_or_private;
use crate::process::{Nearline, Node};
use crate::setup::{train_world_model, TrainPlan};
use crate::world::{World, WorldConfig};
use anyhow::{Context, Result};
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reco_messages::AggregatesPublished;
use reco_messages::{
    decode, encode, Event, EventKind, ItemId, MemberId, RecommendReply, RecommendRequest, Subjects,
};
use reco_models::aggregates::{wilson_interval, AggregateSnapshot};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The snapshot bucket of the run.
const BUCKET: &str = "reco_sim_launch";

/// What to run.
#[derive(Clone, Debug)]
pub struct LaunchConfig {
    /// The world (members, items, tastes).
    pub world: WorldConfig,
    /// Titles launched mid-run (the catalogue's last ids).
    pub launched: usize,
    /// When they launch, from the start of the run.
    pub launch_at: Duration,
    /// Length of the run.
    pub duration: Duration,
    /// Extra appeal of a launched title (see the module docs).
    pub launch_appeal: f64,
    /// Titles per slate.
    pub slate: usize,
    /// Deadline of each request, ms.
    pub deadline_ms: u64,
    /// Extra TOML for the node (e.g. `[aggregates]` tuning).
    pub node_toml: String,
    /// Use this NATS server instead of a private one.
    pub nats: Option<String>,
}

/// One billboard's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Billboard {
    /// Its name.
    pub name: String,
    /// Visits it featured a title in.
    pub shown: u64,
    /// Mean true take probability of what it featured.
    pub take_rate: f64,
    /// Mean regret against the oracle.
    pub regret: f64,
    /// The same two after the launch only.
    pub take_rate_after_launch: f64,
    /// Mean regret after the launch.
    pub regret_after_launch: f64,
    /// Share of its features after the launch that were launched titles.
    pub launched_share: f64,
    /// Realised takes / shown (only reco's billboard is shown).
    pub realised_take_rate: Option<f64>,
    /// Replies that were degraded (reco's billboard and the model row).
    pub degraded: u64,
}

/// An early read on one launched title.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TitleRead {
    /// The title.
    pub item: u64,
    /// Its impressions at the end (all sources).
    pub impressions: u64,
    /// Its plays at the end.
    pub plays: u64,
    /// Mean true take probability of its impressions (the truth to know).
    pub true_take_rate: f64,
    /// Seconds from launch until the take rate was known within ±20 %
    /// (`None`: not within the run).
    pub known_after_s: Option<f64>,
    /// Impressions at that moment.
    pub known_at_impressions: Option<u64>,
    /// The estimate at that moment.
    pub estimate: Option<f64>,
    /// Whether the truth was within ±20 % of that estimate.
    pub truth_within_20pct: Option<bool>,
}

/// What a run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LaunchReport {
    /// Visits made.
    pub visits: u64,
    /// Visits after the launch.
    pub visits_after_launch: u64,
    /// Oracle's mean take probability.
    pub oracle_take_rate: f64,
    /// reco's billboard, pure model, static popular.
    pub billboards: Vec<Billboard>,
    /// The launched titles.
    pub titles: Vec<TitleRead>,
    /// The run's settings, for the record.
    pub settings: String,
}

impl LaunchReport {
    /// The report as a table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} visits ({} after the launch); oracle take rate {:.3}",
            self.visits, self.visits_after_launch, self.oracle_take_rate
        );
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>8} {:>11} {:>12} {:>9} {:>9}",
            "billboard",
            "take rate",
            "regret",
            "take (post)",
            "regret (post)",
            "launched",
            "degraded"
        );
        for b in &self.billboards {
            let _ = writeln!(
                out,
                "{:<16} {:>9.4} {:>8.4} {:>11.4} {:>12.4} {:>8.1}% {:>9}",
                b.name,
                b.take_rate,
                b.regret,
                b.take_rate_after_launch,
                b.regret_after_launch,
                100.0 * b.launched_share,
                b.degraded
            );
        }
        let _ = writeln!(
            out,
            "{:<8} {:>11} {:>6} {:>10} {:>14} {:>13} {:>9} {:>7}",
            "launched",
            "impressions",
            "plays",
            "true rate",
            "known after s",
            "at impressions",
            "estimate",
            "truth in"
        );
        for t in &self.titles {
            let _ = writeln!(
                out,
                "{:<8} {:>11} {:>6} {:>10.4} {:>14} {:>13} {:>9} {:>7}",
                t.item,
                t.impressions,
                t.plays,
                t.true_take_rate,
                t.known_after_s.map_or("-".into(), |s| format!("{s:.1}")),
                t.known_at_impressions.map_or("-".into(), |n| n.to_string()),
                t.estimate.map_or("-".into(), |e| format!("{e:.4}")),
                t.truth_within_20pct
                    .map_or("-", |b| if b { "yes" } else { "no" }),
            );
        }
        out
    }
}

#[derive(Default)]
struct Tally {
    shown: u64,
    p: f64,
    regret: f64,
    shown_post: u64,
    p_post: f64,
    regret_post: f64,
    launched_post: u64,
    takes: u64,
    degraded: u64,
}

impl Tally {
    fn add(&mut self, p: f64, oracle: f64, post: bool, launched: bool) {
        self.shown += 1;
        self.p += p;
        self.regret += oracle - p;
        if post {
            self.shown_post += 1;
            self.p_post += p;
            self.regret_post += oracle - p;
            self.launched_post += u64::from(launched);
        }
    }

    fn figures(&self, name: &str, realised: bool) -> Billboard {
        let per = |x: f64, n: u64| if n > 0 { x / n as f64 } else { 0.0 };
        Billboard {
            name: name.to_owned(),
            shown: self.shown,
            take_rate: per(self.p, self.shown),
            regret: per(self.regret, self.shown),
            take_rate_after_launch: per(self.p_post, self.shown_post),
            regret_after_launch: per(self.regret_post, self.shown_post),
            launched_share: per(self.launched_post as f64, self.shown_post),
            realised_take_rate: realised.then(|| per(self.takes as f64, self.shown)),
            degraded: self.degraded,
        }
    }
}

/// The members' truth (module docs).
struct Truth {
    world: World,
    launched: HashSet<ItemId>,
    index: HashMap<ItemId, usize>,
    appeal: f64,
}

impl Truth {
    fn p(&self, taste: &[f32], item: ItemId) -> f64 {
        let Some(&index) = self.index.get(&item) else {
            return 0.0;
        };
        let appeal = if self.launched.contains(&item) {
            self.appeal
        } else {
            0.0
        };
        let x = self.world.config().taste_strength * f64::from(self.world.affinity(taste, index))
            - 4.0
            + appeal;
        1.0 / (1.0 + (-x).exp())
    }
}

/// Runs the launch scenario and returns its figures.
pub async fn run(config: LaunchConfig, log: impl Fn(&str)) -> Result<LaunchReport> {
    let world = World::synthetic(config.world.clone());
    let ids = world.catalogue().ids().to_vec();
    let launched: Vec<ItemId> = ids[ids.len().saturating_sub(config.launched)..].to_vec();
    let model = tempfile::tempdir()?;
    let members = world.config().members;
    let plan = TrainPlan {
        history_members: members,
        history_plays: 20,
        list_members: 0,
        list_plays: 0,
        factors: world.catalogue().dim().clamp(4, 64),
        iterations: 8,
        version: format!("launch-{}", world.config().seed),
        held_out: launched.clone(),
    };
    log("Training the model on the past (launched titles held out)…");
    train_world_model(&world, model.path(), &plan)?;
    let (_, lists) = reco_offline::artifacts::load(model.path())?;
    let popular: Vec<ItemId> = lists.popular.iter().map(|s| s.item).collect();
    let mut watched: HashMap<MemberId, HashSet<ItemId>> = HashMap::new();
    for (member, item, _) in world.history(members, plan.history_plays) {
        if !launched.contains(&item) {
            watched.entry(member).or_default().insert(item);
        }
    }

    let (_server, url) = nats_or_private(config.nats.as_deref())?;
    let node_toml = format!(
        "[recommend]\ndefault_deadline_ms = {}\n[streaming]\nsnapshot_bucket = \"{BUCKET}\"\n{}",
        config.deadline_ms, config.node_toml
    );
    let node = Node::start(&url, Some(model.path()), &node_toml)?;
    let job = Nearline::start(
        &url,
        &format!(
            "[streaming]\nsnapshot_bucket = \"{BUCKET}\"\ncheckpoint_bucket = \"reco_sim_launch_state\"\n\
             snapshot_interval_ms = 1000\nmetrics_addr = \"\"\n"
        ),
    )?;
    log(&format!(
        "Node and aggregation job up at {url}; {} titles launch at {:?}",
        launched.len(),
        config.launch_at
    ));
    let client = async_nats::connect(&url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let subjects = Subjects::default();

    let truth = Truth {
        index: ids.iter().enumerate().map(|(i, &id)| (id, i)).collect(),
        launched: launched.iter().copied().collect(),
        world: world.clone(),
        appeal: config.launch_appeal,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(world.config().seed ^ 0x1A0C);
    let (mut reco, mut model_bb, mut popular_bb) =
        (Tally::default(), Tally::default(), Tally::default());
    let mut oracle_sum = 0.0;
    let (mut visits, mut visits_post) = (0u64, 0u64);
    // Per launched title: (impressions, sum of true p) over every source.
    let mut given: HashMap<ItemId, (u64, f64)> = HashMap::new();
    let mut reads: HashMap<ItemId, TitleRead> = launched
        .iter()
        .map(|&i| {
            (
                i,
                TitleRead {
                    item: i.0,
                    ..TitleRead::default()
                },
            )
        })
        .collect();
    let started = Instant::now();
    let mut next_progress = started;
    let mut snapshots = follow_snapshots(client.clone(), subjects.clone()).await?;
    let publish = |event: Event| {
        let (client, subject) = (client.clone(), subjects.events(event.member));
        async move {
            client
                .publish(subject, encode(&event).into())
                .await
                .context("cannot publish an event")
        }
    };
    let ask = |member: MemberId, row: &'static str| {
        let client = client.clone();
        let subject = subjects.recommend(member);
        let request = RecommendRequest {
            k: Some(1),
            row: Some(row.to_owned()),
            deadline_ms: Some(config.deadline_ms),
            ..Default::default()
        };
        async move {
            let reply = client
                .request(subject, encode(&request).into())
                .await
                .context("a recommend request failed")?;
            match decode::<RecommendReply>(&reply.payload, 1 << 20)? {
                RecommendReply::Ok(r) => anyhow::Ok(r),
                RecommendReply::Error(e) => anyhow::bail!("error reply: {}", e.error.message),
            }
        }
    };
    while started.elapsed() < config.duration {
        let now = started.elapsed();
        let post = now >= config.launch_at;
        let member = MemberId(rng.gen_range(1..=members));
        let taste = world.member(member).taste;
        let seen = watched.entry(member).or_default().clone();
        let available = |item: &ItemId| post || !truth.launched.contains(item);
        let take = |rng: &mut ChaCha8Rng, item: ItemId| rng.gen_bool(truth.p(&taste, item));
        // 1. Slates.
        let mut slate: Vec<ItemId> = Vec::with_capacity(config.slate + 1);
        while slate.len() < config.slate {
            let item = ids[world.catalogue().draw(&mut rng)];
            if available(&item) && !slate.contains(&item) {
                slate.push(item);
            }
        }
        if post && rng.gen_bool(0.5) && !launched.is_empty() {
            slate.push(launched[rng.gen_range(0..launched.len())]);
        }
        for &item in &slate {
            publish(event(member, item, EventKind::Impression)).await?;
            if truth.launched.contains(&item) {
                let g = given.entry(item).or_default();
                g.0 += 1;
                g.1 += truth.p(&taste, item);
            }
            if take(&mut rng, item) {
                publish(event(member, item, EventKind::Play)).await?;
                watched.entry(member).or_default().insert(item);
            }
        }
        // 4. The oracle (before the billboard's play changes what is seen).
        let oracle = ids
            .iter()
            .filter(|i| available(i) && !seen.contains(i))
            .map(|&i| truth.p(&taste, i))
            .fold(0.0, f64::max);
        oracle_sum += oracle;
        // 3. Baselines.
        let top = ask(member, "top").await?;
        if let Some(s) = top.items.first() {
            model_bb.add(truth.p(&taste, s.item), oracle, post, false);
            model_bb.degraded += u64::from(top.degraded);
        }
        if let Some(&item) = popular.iter().find(|i| !seen.contains(i)) {
            popular_bb.add(truth.p(&taste, item), oracle, post, false);
        }
        // 2. reco's billboard, shown.
        let billboard = ask(member, "billboard").await?;
        reco.degraded += u64::from(billboard.degraded);
        if let Some(s) = billboard.items.first() {
            let item = s.item;
            let p = truth.p(&taste, item);
            let is_launched = truth.launched.contains(&item);
            reco.add(p, oracle, post, is_launched);
            publish(event(member, item, EventKind::Impression)).await?;
            if is_launched {
                let g = given.entry(item).or_default();
                g.0 += 1;
                g.1 += p;
            }
            if take(&mut rng, item) {
                reco.takes += 1;
                publish(event(member, item, EventKind::Play)).await?;
                watched.entry(member).or_default().insert(item);
            }
        }
        visits += 1;
        visits_post += u64::from(post);
        if snapshots.has_changed().unwrap_or(false) {
            let snapshot = snapshots.borrow_and_update().clone();
            if let (true, Some(snapshot)) = (post, snapshot) {
                read_titles(&snapshot, &mut reads, &given, now - config.launch_at);
            }
        }
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(10);
            log(&format!(
                "{:>4}s {visits} visits; regret reco {:.3}, model {:.3}, popular {:.3}",
                now.as_secs(),
                reco.regret / reco.shown.max(1) as f64,
                model_bb.regret / model_bb.shown.max(1) as f64,
                popular_bb.regret / popular_bb.shown.max(1) as f64,
            ));
        }
    }
    client.flush().await?;
    // Final counts: the snapshot that follows the last events.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let last = snapshots.borrow().clone();
    if let Some(snapshot) = last {
        for read in reads.values_mut() {
            if let Some(t) = snapshot.title(ItemId(read.item)) {
                read.impressions = t.day.impressions;
                read.plays = t.day.plays;
            }
        }
    }
    for (item, read) in reads.iter_mut() {
        if let Some(&(n, sum)) = given.get(item) {
            read.true_take_rate = if n > 0 { sum / n as f64 } else { 0.0 };
        }
    }
    drop(job);
    drop(node);
    let mut titles: Vec<TitleRead> = reads.into_values().collect();
    titles.sort_by_key(|t| t.item);
    let per = |x: f64, n: u64| if n > 0 { x / n as f64 } else { 0.0 };
    Ok(LaunchReport {
        visits,
        visits_after_launch: visits_post,
        oracle_take_rate: per(oracle_sum, visits),
        billboards: vec![
            reco.figures("reco billboard", true),
            model_bb.figures("pure model", false),
            popular_bb.figures("static popular", false),
        ],
        titles,
        settings: format!(
            "members {} items {} launched {} at {:?} of {:?}, appeal {}, slate {}, node: {:?}",
            members,
            ids.len(),
            launched.len(),
            config.launch_at,
            config.duration,
            config.launch_appeal,
            config.slate,
            config.node_toml
        ),
    })
}

/// Follows the published snapshots the way a node does (notice, then
/// fetch), off the visit loop: the newest one is in the returned channel.
async fn follow_snapshots(
    client: async_nats::Client,
    subjects: Subjects,
) -> Result<tokio::sync::watch::Receiver<Option<Arc<AggregateSnapshot>>>> {
    let mut notices = client
        .subscribe(subjects.published_aggregates())
        .await
        .context("cannot subscribe to the aggregates notices")?;
    let (tx, rx) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        let js = async_nats::jetstream::new(client);
        while let Some(message) = notices.next().await {
            let Ok(notice) = decode::<AggregatesPublished>(&message.payload, 1 << 16) else {
                continue;
            };
            let fetch = reco_streaming::snapshot::fetch(&js, BUCKET, &notice.version);
            if let Ok(Ok(snapshot)) = tokio::time::timeout(Duration::from_secs(10), fetch).await {
                if tx.send(Some(Arc::new(snapshot))).is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// Marks the launched titles whose take rate `snapshot` knows within ±20 %.
fn read_titles(
    snapshot: &AggregateSnapshot,
    reads: &mut HashMap<ItemId, TitleRead>,
    given: &HashMap<ItemId, (u64, f64)>,
    since_launch: Duration,
) {
    for (item, read) in reads.iter_mut() {
        if read.known_after_s.is_some() {
            continue;
        }
        let Some(title) = snapshot.title(*item) else {
            continue;
        };
        let day = title.day;
        let (Some(rate), Some((lo, hi))) =
            (day.take_rate(), wilson_interval(day.plays, day.impressions))
        else {
            continue;
        };
        if rate > 0.0 && lo >= 0.8 * rate && hi <= 1.2 * rate {
            read.known_after_s = Some(since_launch.as_secs_f64());
            read.known_at_impressions = Some(day.impressions);
            read.estimate = Some(rate);
            let truth = given
                .get(item)
                .map_or(0.0, |&(n, sum)| if n > 0 { sum / n as f64 } else { 0.0 });
            read.truth_within_20pct = Some((truth - rate).abs() <= 0.2 * rate);
        }
    }
}

fn event(member: MemberId, item: ItemId, kind: EventKind) -> Event {
    Event {
        member,
        item,
        kind,
        value: if kind == EventKind::Play { 600.0 } else { 0.0 },
        at_ms: None,
        device: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_models::aggregates::{AggregateParams, AggregateState, Observed};

    fn snapshot(impressions: u64, plays: u64) -> AggregateSnapshot {
        let mut events = Vec::new();
        let t = 1_700_000_000_000;
        for i in 0..impressions + plays {
            let kind = if i < impressions {
                EventKind::Impression
            } else {
                EventKind::Play
            };
            events.push(Observed {
                sequence: i + 1,
                event: event(MemberId(i), ItemId(9), kind),
                time_ms: t,
            });
        }
        AggregateState::batch(AggregateParams::default(), &events).snapshot(t, 10)
    }

    fn reads() -> HashMap<ItemId, TitleRead> {
        HashMap::from([(
            ItemId(9),
            TitleRead {
                item: 9,
                ..TitleRead::default()
            },
        )])
    }

    #[test]
    fn a_take_rate_is_known_once_its_interval_is_within_20_percent() {
        let given = HashMap::from([(ItemId(9), (400, 400.0 * 0.31))]);
        // 30 % of 100: the 95 % interval is about ±9 points, not ±6.
        let mut r = reads();
        read_titles(&snapshot(100, 30), &mut r, &given, Duration::from_secs(5));
        assert_eq!(r[&ItemId(9)].known_after_s, None);
        // 30 % of 400: about ±4.5 points, within ±6.
        read_titles(&snapshot(400, 120), &mut r, &given, Duration::from_secs(9));
        let read = &r[&ItemId(9)];
        assert_eq!(read.known_after_s, Some(9.0));
        assert_eq!(read.known_at_impressions, Some(400));
        assert_eq!(read.estimate, Some(0.3));
        assert_eq!(read.truth_within_20pct, Some(true));
    }

    #[test]
    fn regret_is_the_oracles_probability_minus_the_featured_ones() {
        let mut tally = Tally::default();
        tally.add(0.2, 0.5, false, false);
        tally.add(0.4, 0.5, true, true);
        let f = tally.figures("x", false);
        assert!((f.regret - 0.2).abs() < 1e-12);
        assert!((f.take_rate - 0.3).abs() < 1e-12);
        assert!((f.regret_after_launch - 0.1).abs() < 1e-12);
        assert_eq!(f.launched_share, 1.0);
        assert_eq!(f.realised_take_rate, None);
    }
}
