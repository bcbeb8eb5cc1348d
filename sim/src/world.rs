//! The synthetic world: a catalogue, members with true tastes, and the
//! deterministic stream of what they do.
//!
//! Why a world of its own rather than replayed logs: the simulator must know
//! each member's *true* taste to judge what a node serves (quality per
//! source), and it must be able to make any number of members on demand (1 M
//! residents) without storing them. So a member is a pure function of
//! `(seed, member id)`: its taste vector, device and cluster are re-derived
//! whenever needed and cost no memory.
//!
//! A member's taste depends partly on the device it uses
//! ([`WorldConfig::device_taste`]): on each device it is its base taste plus
//! a device offset of its own (say, films with the family on the tv, short
//! ones on the phone). Events name the device of their session and so does
//! the session's request; the judge scores a list against the taste on the
//! device that asked.
//!
//! The event stream ([`World::actions`]) is a pure function of the seed and
//! the [`WorldConfig`]: sessions arrive as a Poisson process (in simulated
//! time, for `at_ms`), a session lasts a geometric number of choices, and at
//! each choice the member is shown a slate of items drawn by popularity and
//! plays what it likes among them (a softmax over true affinity), sometimes
//! ignoring the slate and searching the catalogue, sometimes rating. What the
//! node serves does not feed back into this stream — that would make the load
//! depend on the node's timing; the driver's reactions to served lists
//! (freshness probes) are extra events outside the digest.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reco_messages::{encode, Event, EventKind, ItemId, MemberId};
use serde::Serialize;
use std::collections::VecDeque;

/// Devices members use; a member has a home device and sometimes another.
pub const DEVICES: [&str; 3] = ["tv", "mobile", "web"];

/// Shape of a synthetic world. Same config (seed included) → same world and
/// the same event stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorldConfig {
    /// Seed of everything random in the world.
    pub seed: u64,
    /// Number of catalogue items (synthetic catalogues only).
    pub items: usize,
    /// Dimension of the latent space (synthetic catalogues only).
    pub dim: usize,
    /// Number of members; ids are `1..=members`.
    pub members: u64,
    /// Zipf exponent of item popularity (1.0 is classic Zipf).
    pub zipf: f64,
    /// How sharply members prefer what they like: the softmax temperature
    /// inverse over affinities in [-1, 1]. 0 = random, 10 = strong tastes.
    pub taste_strength: f64,
    /// Number of taste clusters members are drawn around.
    pub clusters: usize,
    /// Chance that a member ignores the slate it is shown and searches.
    pub ignore_rate: f64,
    /// Chance that a play is followed by a rating.
    pub rate_rate: f64,
    /// Mean number of choices in a session.
    pub session_choices: f64,
    /// Items shown in a slate.
    pub slate: usize,
    /// Session arrivals per second of simulated time (only sets `at_ms`).
    pub sessions_per_sec: f64,
    /// How much a member's taste depends on the device: its taste on a
    /// device is `normalise(base + device_taste · offset)`, `offset` a unit
    /// random vector per (member, device). 0 = the same taste everywhere;
    /// 0.6 (default): the tastes on two devices have a cosine of about 0.74.
    pub device_taste: f64,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            seed: 42,
            items: 10_000,
            dim: 16,
            members: 10_000,
            zipf: 1.0,
            taste_strength: 8.0,
            clusters: 32,
            ignore_rate: 0.2,
            rate_rate: 0.1,
            session_choices: 6.0,
            slate: 40,
            sessions_per_sec: 200.0,
            device_taste: 0.6,
        }
    }
}

/// The items of a world: ids, unit latent vectors and a popularity
/// distribution to draw slates from.
#[derive(Clone, Debug)]
pub struct Catalogue {
    ids: Vec<ItemId>,
    dim: usize,
    vectors: Vec<f32>,
    /// Cumulative popularity weights, normalised to end at 1.
    cdf: Vec<f64>,
}

impl Catalogue {
    /// A synthetic catalogue: ids `1..=items`, Gaussian latent vectors, and
    /// popularity `1 / rank^zipf` over a random rank order.
    pub fn synthetic(config: &WorldConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0xCA7A_1060);
        let items = config.items.max(1);
        let dim = config.dim.max(1);
        let ids = (1..=items as u64).map(ItemId).collect();
        let vectors = (0..items * dim).map(|_| gaussian(&mut rng)).collect();
        let mut ranks: Vec<usize> = (0..items).collect();
        for i in (1..items).rev() {
            ranks.swap(i, rng.gen_range(0..=i));
        }
        let weights = ranks
            .iter()
            .map(|&r| 1.0 / ((r + 1) as f64).powf(config.zipf))
            .collect();
        Catalogue::new(ids, dim, vectors, weights)
    }

    /// A catalogue over existing items (e.g. a trained model's): `vectors`
    /// is `ids.len() * dim` values, `weights` the items' popularity.
    pub fn new(ids: Vec<ItemId>, dim: usize, mut vectors: Vec<f32>, weights: Vec<f64>) -> Self {
        for row in vectors.chunks_mut(dim) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|x| *x /= norm);
            }
        }
        let mut cdf = Vec::with_capacity(weights.len());
        let mut total = 0.0;
        for w in weights {
            total += w.max(0.0);
            cdf.push(total);
        }
        if total > 0.0 {
            cdf.iter_mut().for_each(|c| *c /= total);
        }
        Catalogue {
            ids,
            dim,
            vectors,
            cdf,
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the catalogue has no items.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Dimension of the latent vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Item ids, in index order.
    pub fn ids(&self) -> &[ItemId] {
        &self.ids
    }

    /// The unit latent vector of the item at `index`.
    pub fn vector(&self, index: usize) -> &[f32] {
        &self.vectors[index * self.dim..(index + 1) * self.dim]
    }

    /// The raw latent vectors (`len() * dim()` values).
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    /// Share of draws that pick the item at `index`.
    pub fn popularity(&self, index: usize) -> f64 {
        self.cdf[index] - if index == 0 { 0.0 } else { self.cdf[index - 1] }
    }

    /// An item index drawn by popularity.
    pub fn draw(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.gen();
        self.cdf.partition_point(|&c| c < u).min(self.ids.len() - 1)
    }
}

/// One step of the world's stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// A member opens the app: the moment a caller would ask for its home row.
    Session {
        /// Who.
        member: MemberId,
        /// On what.
        device: &'static str,
    },
    /// Something a member did, to publish as is.
    Event(Event),
}

/// A member's hidden truth.
#[derive(Clone, Debug)]
pub struct Member {
    /// The member.
    pub id: MemberId,
    /// Unit base taste vector in the catalogue's latent space.
    pub taste: Vec<f32>,
    /// The device it mostly uses.
    pub device: &'static str,
    /// Unit taste vector on each of [`DEVICES`], in that order.
    pub device_tastes: Vec<Vec<f32>>,
}

impl Member {
    /// The member's taste on `device` (its base taste on a device not in
    /// [`DEVICES`]).
    pub fn taste_on(&self, device: &str) -> &[f32] {
        DEVICES
            .iter()
            .position(|d| *d == device)
            .and_then(|i| self.device_tastes.get(i))
            .map_or(&self.taste, |t| t)
    }

    /// The device of one visit: the home device nine times in ten.
    pub fn visit_device(&self, rng: &mut impl Rng) -> &'static str {
        if rng.gen_bool(0.9) {
            self.device
        } else {
            DEVICES[rng.gen_range(0..DEVICES.len())]
        }
    }
}

/// A seeded world: catalogue plus the recipe of its members.
#[derive(Clone, Debug)]
pub struct World {
    config: WorldConfig,
    catalogue: Catalogue,
    /// Cluster centres, `clusters * dim`, unit vectors.
    centres: Vec<f32>,
}

impl World {
    /// A synthetic world.
    pub fn synthetic(config: WorldConfig) -> Self {
        let catalogue = Catalogue::synthetic(&config);
        World::with_catalogue(config, catalogue)
    }

    /// A world over a given catalogue (e.g. a trained model's items). Taste
    /// clusters are centred on the mean of a few popular items each, so
    /// tastes live where the items are.
    pub fn with_catalogue(config: WorldConfig, catalogue: Catalogue) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0xC105_7E25);
        let dim = catalogue.dim();
        let clusters = config.clusters.max(1);
        let mut centres = vec![0.0f32; clusters * dim];
        for centre in centres.chunks_mut(dim) {
            for _ in 0..3 {
                let item = if catalogue.is_empty() {
                    None
                } else {
                    Some(catalogue.draw(&mut rng))
                };
                match item {
                    Some(i) => centre
                        .iter_mut()
                        .zip(catalogue.vector(i))
                        .for_each(|(c, v)| *c += v),
                    None => centre.iter_mut().for_each(|c| *c += gaussian(&mut rng)),
                }
            }
            normalise(centre);
        }
        World {
            config,
            catalogue,
            centres,
        }
    }

    /// The world's configuration.
    pub fn config(&self) -> &WorldConfig {
        &self.config
    }

    /// The catalogue.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Member `id`, re-derived from the seed (no storage).
    pub fn member(&self, id: MemberId) -> Member {
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.config.seed ^ id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let dim = self.catalogue.dim();
        let cluster = rng.gen_range(0..self.config.clusters.max(1));
        let centre = &self.centres[cluster * dim..(cluster + 1) * dim];
        let mut taste: Vec<f32> = centre
            .iter()
            .map(|c| c + 0.35 * gaussian(&mut rng) / (dim as f32).sqrt())
            .collect();
        normalise(&mut taste);
        let device = DEVICES[rng.gen_range(0..DEVICES.len())];
        let mix = self.config.device_taste as f32;
        let device_tastes = DEVICES
            .iter()
            .map(|_| {
                let mut offset: Vec<f32> = (0..dim).map(|_| gaussian(&mut rng)).collect();
                normalise(&mut offset);
                let mut t: Vec<f32> = taste
                    .iter()
                    .zip(&offset)
                    .map(|(b, o)| b + mix * o)
                    .collect();
                normalise(&mut t);
                t
            })
            .collect();
        Member {
            id,
            taste,
            device,
            device_tastes,
        }
    }

    /// Affinity of `taste` for the item at `index`, in [-1, 1].
    pub fn affinity(&self, taste: &[f32], index: usize) -> f32 {
        dot(taste, self.catalogue.vector(index))
    }

    /// The `n` items the member truly likes most, best first, skipping
    /// `exclude`.
    pub fn true_top(&self, member: &Member, n: usize, exclude: &[ItemId]) -> Vec<ItemId> {
        self.true_top_for(&member.taste, n, exclude)
    }

    /// The `n` items `taste` (e.g. [`Member::taste_on`] a device) likes
    /// most, best first, skipping `exclude`.
    pub fn true_top_for(&self, taste: &[f32], n: usize, exclude: &[ItemId]) -> Vec<ItemId> {
        let mut scored: Vec<(f32, usize)> = (0..self.catalogue.len())
            .filter(|&i| !exclude.contains(&self.catalogue.ids[i]))
            .map(|i| (self.affinity(taste, i), i))
            .collect();
        let n = n.min(scored.len());
        if n == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable_by(n - 1, |a, b| b.0.total_cmp(&a.0));
        scored.truncate(n);
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored
            .into_iter()
            .map(|(_, i)| self.catalogue.ids[i])
            .collect()
    }

    /// The world's live stream of actions, endless; take what you need. It
    /// holds its own copy of the world, so it can move into a task.
    pub fn actions(&self) -> Actions {
        Actions {
            world: std::sync::Arc::new(self.clone()),
            rng: ChaCha8Rng::seed_from_u64(self.config.seed),
            pending: VecDeque::new(),
            clock_ms: 0.0,
        }
    }

    /// A past: `plays` plays for each of members `1..=members`, as
    /// `(member, item, weight)` triples to train a model on. Drawn from
    /// another stream than [`World::actions`], so the live stream is not a
    /// replay of the training data.
    pub fn history(&self, members: u64, plays: usize) -> Vec<(MemberId, ItemId, f32)> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ 0x4157_0121);
        let mut out = Vec::with_capacity(members as usize * plays);
        for id in 1..=members.min(self.config.members) {
            let member = self.member(MemberId(id));
            // Devices from a stream of their own: with one taste everywhere
            // (`device_taste` 0) the past is what it was before devices.
            let mut devices = ChaCha8Rng::seed_from_u64(
                self.config.seed ^ 0xDE71_CE5E ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            for _ in 0..plays {
                let device = member.visit_device(&mut devices);
                let item = self.choose(member.taste_on(device), &mut rng);
                out.push((member.id, self.catalogue.ids[item], 1.0));
            }
        }
        out
    }

    /// One choice of a member whose taste (on the device it uses) is
    /// `taste`: a slate by popularity (or a wider search when the member
    /// ignores the slate), then a softmax over true affinity.
    pub fn choose(&self, taste: &[f32], rng: &mut ChaCha8Rng) -> usize {
        let shown = if rng.gen_bool(self.config.ignore_rate.clamp(0.0, 1.0)) {
            self.config.slate * 4
        } else {
            self.config.slate
        }
        .max(1);
        let mut best = 0usize;
        // Gumbel-max: argmax(strength * affinity + Gumbel) samples the softmax.
        let mut best_key = f64::NEG_INFINITY;
        for _ in 0..shown {
            let item = self.catalogue.draw(rng);
            let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            let key =
                self.config.taste_strength * self.affinity(taste, item) as f64 - (-u.ln()).ln();
            if key > best_key {
                best_key = key;
                best = item;
            }
        }
        best
    }
}

/// The endless action stream of a world; see [`World::actions`].
pub struct Actions {
    world: std::sync::Arc<World>,
    rng: ChaCha8Rng,
    pending: VecDeque<Action>,
    clock_ms: f64,
}

impl Actions {
    fn session(&mut self) {
        let world = &*self.world;
        let config = &world.config;
        let rng = &mut self.rng;
        let gap: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
        self.clock_ms += -gap.ln() * 1000.0 / config.sessions_per_sec.max(1e-9);
        let member = world.member(MemberId(rng.gen_range(1..=config.members.max(1))));
        let device = member.visit_device(rng);
        let taste = member.taste_on(device);
        self.pending.push_back(Action::Session {
            member: member.id,
            device,
        });
        let stop = 1.0 / config.session_choices.max(1.0);
        let mut at = self.clock_ms;
        loop {
            let item_index = world.choose(taste, rng);
            let item = world.catalogue.ids[item_index];
            let affinity = world.affinity(taste, item_index) as f64;
            let event = |kind, value: f32, at: f64| {
                Action::Event(Event {
                    member: member.id,
                    item,
                    kind,
                    value,
                    at_ms: Some(at as u64),
                    device: Some(device.to_owned()),
                })
            };
            if rng.gen_bool(0.3) {
                self.pending
                    .push_back(event(EventKind::Impression, 0.0, at));
            }
            if rng.gen_bool(0.5) {
                self.pending.push_back(event(EventKind::Click, 0.0, at));
            }
            // Watch longer what you like more: 1 to 90 minutes.
            let liked = 1.0 / (1.0 + (-config.taste_strength * affinity).exp());
            let watched = (60.0 + 5_340.0 * liked * rng.gen::<f64>()) as f32;
            at += 1_000.0;
            self.pending
                .push_back(event(EventKind::Play, watched.round(), at));
            at += watched as f64 * 1_000.0;
            if rng.gen_bool(0.2) {
                self.pending
                    .push_back(event(EventKind::Stop, watched.round(), at));
            }
            if rng.gen_bool(config.rate_rate.clamp(0.0, 1.0)) {
                let stars = (3.0 + 2.5 * affinity).clamp(0.5, 5.0);
                self.pending.push_back(event(
                    EventKind::Rate,
                    ((stars * 2.0).round() / 2.0) as f32,
                    at,
                ));
            }
            if rng.gen_bool(0.05) {
                self.pending.push_back(event(EventKind::ListAdd, 0.0, at));
            }
            if rng.gen_bool(stop) {
                break;
            }
        }
    }
}

impl Iterator for Actions {
    type Item = Action;

    fn next(&mut self) -> Option<Action> {
        if self.pending.is_empty() {
            self.session();
        }
        self.pending.pop_front()
    }
}

/// A stable 64-bit digest (FNV-1a) of a stream of actions: the MessagePack of
/// each event and each session marker, in order. Same digest, same stream.
pub fn digest<'a>(actions: impl IntoIterator<Item = &'a Action>) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= b as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for action in actions {
        match action {
            Action::Session { member, device } => {
                feed(b"S");
                feed(&member.0.to_le_bytes());
                feed(device.as_bytes());
            }
            Action::Event(event) => {
                feed(b"E");
                feed(&encode(event));
            }
        }
    }
    hash
}

/// MovieLens ratings as events in time order (`rate` events with stars as
/// value), each member's first rating preceded by a session marker.
pub fn movielens_actions(path: &std::path::Path) -> anyhow::Result<Vec<Action>> {
    use anyhow::Context;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open MovieLens ratings {}", path.display()))?;
    let mut ratings = reco_models::parse_ratings(std::io::BufReader::new(file))
        .with_context(|| format!("cannot parse {}", path.display()))?;
    ratings.sort_by_key(|r| (r.at_ms, r.member, r.item));
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(ratings.len() * 2);
    for r in ratings {
        if seen.insert(r.member) {
            out.push(Action::Session {
                member: r.member,
                device: DEVICES[0],
            });
        }
        out.push(Action::Event(Event {
            member: r.member,
            item: r.item,
            kind: EventKind::Rate,
            value: r.value,
            at_ms: Some(r.at_ms),
            device: None,
        }));
    }
    Ok(out)
}

fn gaussian(rng: &mut impl Rng) -> f32 {
    // Box-Muller; one value per call is plenty here.
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> WorldConfig {
        WorldConfig {
            items: 500,
            members: 200,
            ..WorldConfig::default()
        }
    }

    #[test]
    fn same_seed_same_stream_and_another_seed_another() {
        let a: Vec<Action> = World::synthetic(small()).actions().take(5_000).collect();
        let b: Vec<Action> = World::synthetic(small()).actions().take(5_000).collect();
        assert_eq!(digest(&a), digest(&b));
        assert_eq!(a, b);
        let other = World::synthetic(WorldConfig {
            seed: 43,
            ..small()
        });
        let c: Vec<Action> = other.actions().take(5_000).collect();
        assert_ne!(digest(&a), digest(&c));
    }

    #[test]
    fn members_choose_what_they_like_more_than_chance() {
        let world = World::synthetic(small());
        let (mut chosen, mut chance, mut n) = (0.0, 0.0, 0.0);
        for action in world.actions().take(3_000) {
            if let Action::Event(e) = action {
                if e.kind == EventKind::Play {
                    let member = world.member(e.member);
                    let taste = member.taste_on(e.device.as_deref().unwrap_or(""));
                    let index = (e.item.0 - 1) as usize;
                    chosen += world.affinity(taste, index);
                    chance += (0..world.catalogue().len())
                        .map(|i| world.affinity(taste, i))
                        .sum::<f32>()
                        / world.catalogue().len() as f32;
                    n += 1.0;
                }
            }
        }
        assert!(n > 100.0);
        assert!(
            chosen / n > chance / n + 0.2,
            "{} vs {}",
            chosen / n,
            chance / n
        );
    }

    #[test]
    fn tastes_differ_by_device_as_configured() {
        let cos = |a: &[f32], b: &[f32]| dot(a, b);
        let world = World::synthetic(small());
        let m = world.member(MemberId(7));
        let (tv, mobile) = (m.taste_on("tv"), m.taste_on("mobile"));
        assert!(cos(tv, mobile) < 0.95, "{}", cos(tv, mobile));
        assert!(cos(tv, &m.taste) > 0.5, "{}", cos(tv, &m.taste));
        assert_eq!(m.taste_on("watch"), &m.taste[..]);
        let same = World::synthetic(WorldConfig {
            device_taste: 0.0,
            ..small()
        });
        let m = same.member(MemberId(7));
        assert!((cos(m.taste_on("tv"), m.taste_on("mobile")) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn popularity_is_skewed() {
        let world = World::synthetic(small());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = vec![0usize; 500];
        for _ in 0..20_000 {
            counts[world.catalogue().draw(&mut rng)] += 1;
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top_10: usize = counts[..10].iter().sum();
        assert!(top_10 > 20_000 / 4, "top 10 of 500 items drew {top_10}");
    }
}
