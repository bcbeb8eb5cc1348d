//! `reco-sim device`: does weighing the signals of the request's device
//! help, in a world where tastes depend on the device?
//!
//! The world's members have a taste per device
//! ([`crate::world::WorldConfig::device_taste`]). A model is trained on
//! their past (plays on all their devices). Then, for each same-device
//! weight to compare, on a fresh private nats-server and `reco serve` node
//! (so no weight sees another's sessions), the same visits, drawn once from
//! the seed:
//! 1. each sampled member plays `plays` titles on its home device and
//!    `plays` on another device (chosen with its taste on that device), in
//!    that order, events naming the device;
//! 2. it then asks for top picks (`k`, `exclude_seen`) once from each of
//!    the two devices;
//! 3. each list is judged (hit rate, NDCG at `k`, the one judge of
//!    [`crate::driver::judge`]) against the `2k` titles the member's taste
//!    **on the device that asked** likes most, leaving out what it watched.
//!
//! Also reported: a placebo (each device's truth judging the list asked
//! from the member's other device: the same reweighing on the wrong
//! device, so what the right device gains over it is the device's worth,
//! not a side effect of reweighing), and the share of members whose two
//! lists differ (0 when the node ignores the device).

use crate::driver::judge;
use crate::process::{NatsServer, Node};
use crate::setup::{train_world_model, TrainPlan};
use crate::world::{World, WorldConfig, DEVICES};
use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reco_messages::{
    decode, encode, Event, EventKind, ItemId, MemberId, RecommendReply, RecommendRequest,
    Recommendations, Subjects,
};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// The world (members, items, tastes per device).
    pub world: WorldConfig,
    /// Members visited (ids `1..=visited`, at most the world's members).
    pub visited: u64,
    /// Plays per device in a visit.
    pub plays: usize,
    /// The `sessions.same_device_weight` values to compare (1 = off).
    pub weights: Vec<f32>,
    /// Items per list.
    pub k: u32,
    /// Deadline of each request, ms.
    pub deadline_ms: u64,
}

/// One visit: who, on which two devices, what it played on each.
#[derive(Clone, Debug)]
struct Visit {
    member: MemberId,
    devices: [&'static str; 2],
    plays: [Vec<ItemId>; 2],
}

/// One weight's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WeightFigures {
    /// `sessions.same_device_weight`.
    pub weight: f32,
    /// Lists judged (two per member).
    pub judged: u64,
    /// Share of lists with at least one of the device taste's top `2k`.
    pub hit_rate: f64,
    /// Mean NDCG at `k` against the device taste's top `2k`.
    pub ndcg: f64,
    /// Placebo: the hit rate of the list asked from the member's *other*
    /// device, judged against this device's taste. The same reweighing of
    /// the same signals, on the wrong device: what `hit_rate` gains over it
    /// is what knowing the device is worth (at weight 1 both are equal).
    pub placebo_hit_rate: f64,
    /// Placebo NDCG (see `placebo_hit_rate`).
    pub placebo_ndcg: f64,
    /// Share of lists the model answered (the rest are fallbacks).
    pub model_share: f64,
    /// Share of members whose two devices got different lists.
    pub differ: f64,
}

/// The figures of a run.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceReport {
    /// Seed of the world and of the visits.
    pub seed: u64,
    /// [`WorldConfig::device_taste`].
    pub device_taste: f64,
    /// Members visited.
    pub visited: u64,
    /// Plays per device per visit.
    pub plays: usize,
    /// Items per list.
    pub k: u32,
    /// One row per weight, in the order asked.
    pub weights: Vec<WeightFigures>,
}

impl DeviceReport {
    /// The figures as a text table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "Device context: seed {}, device_taste {}, {} members x 2 devices x {} plays, k = {}\n\
             {:>20} {:>7} {:>9} {:>8} {:>14} {:>14} {:>12} {:>13}\n",
            self.seed,
            self.device_taste,
            self.visited,
            self.plays,
            self.k,
            "same_device_weight",
            "lists",
            "hit rate",
            "NDCG",
            "placebo hit",
            "placebo NDCG",
            "model share",
            "lists differ"
        );
        for w in &self.weights {
            let _ = writeln!(
                out,
                "{:>20} {:>7} {:>9.3} {:>8.4} {:>14.3} {:>14.4} {:>11.1}% {:>12.1}%",
                w.weight,
                w.judged,
                w.hit_rate,
                w.ndcg,
                w.placebo_hit_rate,
                w.placebo_ndcg,
                100.0 * w.model_share,
                100.0 * w.differ
            );
        }
        out
    }
}

/// Runs the scenario (a private nats-server and node per weight).
pub async fn run(config: DeviceConfig, log: impl Fn(&str)) -> Result<DeviceReport> {
    anyhow::ensure!(!config.weights.is_empty(), "no weights to compare");
    let world = World::synthetic(config.world.clone());
    let members = world.config().members;
    let model = tempfile::tempdir()?;
    let plan = TrainPlan {
        history_members: members,
        history_plays: 20,
        list_members: 0,
        list_plays: 0,
        factors: world.catalogue().dim().clamp(4, 64),
        iterations: 8,
        version: format!("device-{}", world.config().seed),
        held_out: Vec::new(),
    };
    log("Training the model on the past (plays on every device)…");
    train_world_model(&world, model.path(), &plan)?;
    let mut watched: HashMap<MemberId, HashSet<ItemId>> = HashMap::new();
    for (member, item, _) in world.history(members, plan.history_plays) {
        watched.entry(member).or_default().insert(item);
    }
    let visits = draw_visits(&world, &config);
    let mut rows = Vec::with_capacity(config.weights.len());
    for &weight in &config.weights {
        log(&format!(
            "same_device_weight = {weight}: a fresh server and node…"
        ));
        let row = run_weight(&world, &config, model.path(), &visits, &watched, weight).await?;
        rows.push(row);
    }
    Ok(DeviceReport {
        seed: world.config().seed,
        device_taste: world.config().device_taste,
        visited: visits.len() as u64,
        plays: config.plays,
        k: config.k,
        weights: rows,
    })
}

/// The visits, a pure function of the seed and the config.
fn draw_visits(world: &World, config: &DeviceConfig) -> Vec<Visit> {
    let mut rng = ChaCha8Rng::seed_from_u64(world.config().seed ^ 0xDE71_CE00);
    (1..=config.visited.min(world.config().members))
        .map(|id| {
            let member = world.member(MemberId(id));
            let others: Vec<&'static str> = DEVICES
                .iter()
                .copied()
                .filter(|d| *d != member.device)
                .collect();
            let devices = [member.device, others[rng.gen_range(0..others.len())]];
            let plays = devices.map(|device| {
                (0..config.plays)
                    .map(|_| {
                        world.catalogue().ids()[world.choose(member.taste_on(device), &mut rng)]
                    })
                    .collect()
            });
            Visit {
                member: member.id,
                devices,
                plays,
            }
        })
        .collect()
}

async fn run_weight(
    world: &World,
    config: &DeviceConfig,
    model: &std::path::Path,
    visits: &[Visit],
    watched: &HashMap<MemberId, HashSet<ItemId>>,
    weight: f32,
) -> Result<WeightFigures> {
    let server = NatsServer::start()?;
    let url = server.url();
    let node = Node::start(
        &url,
        Some(model),
        &format!(
            "[recommend]\ndefault_deadline_ms = {}\n[sessions]\nsame_device_weight = {weight}\n",
            config.deadline_ms
        ),
    )?;
    let client = async_nats::connect(&url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let subjects = Subjects::default();
    let k = config.k as usize;
    let mut figures = WeightFigures {
        weight,
        ..WeightFigures::default()
    };
    let (mut hits, mut ndcg, mut model_lists, mut differ) = (0.0, 0.0, 0u64, 0u64);
    let (mut placebo_hits, mut placebo_ndcg) = (0.0, 0.0);
    for batch in visits.chunks(50) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for visit in batch {
            for (device, plays) in visit.devices.iter().zip(&visit.plays) {
                for &item in plays {
                    let event = Event {
                        member: visit.member,
                        item,
                        kind: EventKind::Play,
                        value: 1_800.0,
                        at_ms: Some(now),
                        device: Some((*device).to_owned()),
                    };
                    client
                        .publish(subjects.events(visit.member), encode(&event).into())
                        .await
                        .context("cannot publish an event")?;
                }
            }
        }
        client.flush().await.context("cannot flush the events")?;
        for visit in batch {
            let expected = visit.plays.iter().map(Vec::len).sum::<usize>();
            let mut lists = Vec::with_capacity(2);
            for device in visit.devices {
                let reply = ask(&client, &subjects, visit.member, device, config, expected).await?;
                model_lists += u64::from(reply.source == reco_messages::Source::Model);
                lists.push(reply.items.iter().map(|s| s.item).collect::<Vec<ItemId>>());
            }
            let mut seen: Vec<ItemId> = watched
                .get(&visit.member)
                .map(|w| w.iter().copied().collect())
                .unwrap_or_default();
            seen.extend(visit.plays.iter().flatten());
            let member = world.member(visit.member);
            for (i, device) in visit.devices.iter().enumerate() {
                let relevant = world.true_top_for(member.taste_on(device), 2 * k, &seen);
                let (hit, n) = judge(&lists[i], &relevant, k);
                hits += hit;
                ndcg += n;
                let (hit, n) = judge(&lists[1 - i], &relevant, k);
                placebo_hits += hit;
                placebo_ndcg += n;
                figures.judged += 1;
            }
            differ += u64::from(lists[0] != lists[1]);
        }
    }
    drop(node);
    drop(server);
    let judged = figures.judged.max(1) as f64;
    figures.hit_rate = hits / judged;
    figures.ndcg = ndcg / judged;
    figures.placebo_hit_rate = placebo_hits / judged;
    figures.placebo_ndcg = placebo_ndcg / judged;
    figures.model_share = model_lists as f64 / judged;
    figures.differ = differ as f64 / visits.len().max(1) as f64;
    Ok(figures)
}

/// Top picks for `member` from `device`, once its session has applied
/// `expected` events (asked again until then, for up to 5 s).
async fn ask(
    client: &async_nats::Client,
    subjects: &Subjects,
    member: MemberId,
    device: &str,
    config: &DeviceConfig,
    expected: usize,
) -> Result<Recommendations> {
    let request = encode(&RecommendRequest {
        k: Some(config.k),
        device: Some(device.to_owned()),
        deadline_ms: Some(config.deadline_ms),
        exclude_seen: Some(true),
        ..Default::default()
    });
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = client
            .request(subjects.recommend(member), request.clone().into())
            .await
            .context("a recommend request failed")?;
        let reply = match decode::<RecommendReply>(&reply.payload, 1 << 20)? {
            RecommendReply::Ok(r) => r,
            RecommendReply::Error(e) => anyhow::bail!("error reply: {}", e.error.message),
        };
        let applied = reply.signals.unwrap_or(0) as usize;
        if applied >= expected || Instant::now() > until {
            return Ok(reply);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
