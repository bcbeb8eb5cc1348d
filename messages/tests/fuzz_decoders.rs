//! Fuzzing of every decoder of inbound bytes: events, requests and the
//! member token of a subject.
//!
//! Inputs are valid encodings (named-map and compact-array forms) mutated
//! the ways hostile or broken producers mutate them — bit flips, truncation,
//! splices of two messages, random type markers, runs of random bytes — plus
//! pure noise. The property is that no input panics a decoder and that any
//! event a decoder accepts satisfies the contract's checks.
//!
//! The default test run does 20,000 inputs. The long run is kept out of it:
//! `RECO_FUZZ_CASES=1000000 cargo test --release -p reco-messages --test
//! fuzz_decoders -- --ignored --nocapture` (the README quotes its figure).

use reco_messages::codec::validate_event;
use reco_messages::{decode_event, decode_request, encode, Event, EventKind, ItemId, MemberId};
use reco_messages::{RecommendRequest, Subjects};

const LIMIT: usize = 64 * 1024;

/// splitmix64: a tiny, seeded, reproducible generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seed_inputs(rng: &mut Rng) -> Vec<u8> {
    let member = if rng.below(4) == 0 {
        rng.next() % 1000
    } else {
        7
    };
    match rng.below(6) {
        0 => encode(&Event {
            member: MemberId(member),
            item: ItemId(rng.next()),
            kind: EventKind::ALL[rng.below(6)],
            value: (rng.next() % 10_000) as f32 / 3.0,
            at_ms: Some(rng.next()),
            device: Some("tv".into()),
        }),
        1 => rmp_serde::to_vec(&(member, rng.next() % 50, "play", 30.0f32)).unwrap(),
        2 => encode(&RecommendRequest {
            k: Some((rng.next() % 600) as u32),
            row: Some("popular".into()),
            device: None,
            deadline_ms: Some(rng.next() % 70_000),
            details: None,
            exclude_seen: Some(rng.next().is_multiple_of(2)),
        }),
        3 => rmp_serde::to_vec(&(Some(10u32), None::<String>, Some("web"))).unwrap(),
        4 => Vec::new(),
        _ => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
    }
}

fn mutate(rng: &mut Rng, mut bytes: Vec<u8>, other: &[u8]) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes.truncate(at);
            }
            2 => {
                let at = rng.below(bytes.len() + 1);
                let cut = rng.below(other.len() + 1);
                bytes.splice(at..at, other[..cut].iter().copied());
            }
            3 if !bytes.is_empty() => {
                // A random MessagePack type marker: map/array/str/bin/ext sizes.
                const MARKERS: [u8; 14] = [
                    0xc0, 0xc4, 0xc5, 0xc6, 0xc7, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xcf,
                    0xcb,
                ];
                let at = rng.below(bytes.len());
                bytes[at] = MARKERS[rng.below(MARKERS.len())];
            }
            4 => {
                let at = rng.below(bytes.len() + 1);
                let run: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, run);
            }
            _ => {
                if !bytes.is_empty() {
                    let at = rng.below(bytes.len());
                    bytes[at] = 0xff;
                }
            }
        }
    }
    bytes
}

fn subject_of(rng: &mut Rng) -> String {
    const PIECES: [&str; 10] = [
        "reco",
        ".",
        "events",
        "recommend",
        "0",
        "7",
        "00",
        "+",
        "18446744073709551616",
        "*",
    ];
    (0..rng.below(8))
        .map(|_| PIECES[rng.below(PIECES.len())])
        .collect()
}

fn run(cases: u64, seed: u64) {
    let mut rng = Rng(seed);
    let subjects = Subjects::default();
    let mut accepted_events = 0u64;
    let mut accepted_requests = 0u64;
    for _ in 0..cases {
        let base = seed_inputs(&mut rng);
        let other = seed_inputs(&mut rng);
        let input = mutate(&mut rng, base, &other);
        for member in [MemberId(0), MemberId(7)] {
            if let Ok(event) = decode_event(&input, member, LIMIT) {
                validate_event(&event, member).expect("an accepted event is valid");
                accepted_events += 1;
            }
        }
        if decode_request(&input, LIMIT).is_ok() {
            accepted_requests += 1;
        }
        let subject = subject_of(&mut rng);
        if let Ok(member) = subjects.member_of_event(&subject) {
            assert_eq!(subject, subjects.events(member), "one spelling per member");
        }
    }
    println!(
        "fuzzed {cases} inputs (seed {seed}): 0 panics, {accepted_events} events and \
         {accepted_requests} requests accepted and valid"
    );
}

#[test]
fn mutated_and_random_inputs_never_panic_the_decoders() {
    run(20_000, 1);
}

#[test]
#[ignore = "long fuzz run: RECO_FUZZ_CASES=1000000 cargo test --release -p reco-messages --test fuzz_decoders -- --ignored"]
fn a_million_inputs_never_panic_the_decoders() {
    let cases = std::env::var("RECO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    run(cases, 42);
}
