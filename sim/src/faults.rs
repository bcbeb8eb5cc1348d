//! Fault injection: what can go wrong, when (from the seed), and how the
//! simulator makes it happen using only public surfaces.
//!
//! Model slowdowns go through `<prefix>.admin.faults` (nodes started with
//! `[node] fault_injection = true`); malformed payloads are published like any
//! buggy producer would; a spike raises the simulator's own request rate; a
//! NATS restart needs the server the simulator started. A fault the node
//! cannot perform (e.g. `model_crash` before supervision lands) is recorded
//! as `unsupported` rather than silently skipped, so the report never claims
//! a fault that did not happen.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reco_messages::admin::{FaultCohort, SetFaults};
use reco_messages::{encode, MemberId, Subjects};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What goes wrong.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum FaultKind {
    /// Model workers take `delay_ms` per request (past the deadline).
    ModelSlow {
        /// Added delay per scoring.
        delay_ms: u64,
    },
    /// Model workers crash for the window (needs supervision in the node).
    ModelCrash,
    /// A burst of `count` malformed event payloads.
    Malformed {
        /// Payloads.
        count: u64,
    },
    /// The request rate (or concurrency) times `factor`.
    Spike {
        /// Multiplier, 2 = twice the load.
        factor: u32,
    },
    /// The NATS server is killed (SIGKILL) and started again on its port.
    NatsRestart,
    /// The node serving the most partitions is killed (SIGKILL), and
    /// started again at the end of the window (`--nodes`).
    NodeKill,
    /// The node serving the most partitions hangs (SIGSTOP) for the
    /// window, then resumes (SIGCONT).
    NodeHang,
    /// The node serving the most partitions stops gracefully (SIGTERM),
    /// and is started again at the end of the window.
    NodeStop,
    /// One more node joins.
    NodeJoin,
    /// `count` events of just under the server's payload limit.
    BigPayloads {
        /// Payloads.
        count: u64,
    },
    /// Requests for up to `members` distinct member ids never seen before,
    /// as fast as the node answers them.
    MemberFlood {
        /// Distinct ids.
        members: u64,
    },
}

impl FaultKind {
    /// Whether it is done to the nodes of a `--nodes` run
    /// ([`crate::cluster`]).
    pub fn is_node_fault(&self) -> bool {
        matches!(
            self,
            FaultKind::NodeKill | FaultKind::NodeHang | FaultKind::NodeStop | FaultKind::NodeJoin
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::ModelSlow { delay_ms } => write!(f, "model_slow(delay_ms={delay_ms})"),
            FaultKind::ModelCrash => f.write_str("model_crash"),
            FaultKind::Malformed { count } => write!(f, "malformed(count={count})"),
            FaultKind::Spike { factor } => write!(f, "spike(x{factor})"),
            FaultKind::NatsRestart => f.write_str("nats_restart"),
            FaultKind::NodeKill => f.write_str("node_kill"),
            FaultKind::NodeHang => f.write_str("node_hang"),
            FaultKind::NodeStop => f.write_str("node_stop"),
            FaultKind::NodeJoin => f.write_str("node_join"),
            FaultKind::BigPayloads { count } => write!(f, "big_payloads(count={count})"),
            FaultKind::MemberFlood { members } => write!(f, "member_flood(members={members})"),
        }
    }
}

/// A fault's kind by name, as given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultName {
    /// `model_slow`
    ModelSlow,
    /// `model_crash`
    ModelCrash,
    /// `malformed`
    Malformed,
    /// `spike`
    Spike,
    /// `nats_restart`
    NatsRestart,
    /// `node_kill`
    NodeKill,
    /// `node_hang`
    NodeHang,
    /// `node_stop`
    NodeStop,
    /// `node_join`
    NodeJoin,
    /// `big_payloads`
    BigPayloads,
    /// `member_flood`
    MemberFlood,
}

impl FromStr for FaultName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "model_slow" => FaultName::ModelSlow,
            "model_crash" => FaultName::ModelCrash,
            "malformed" => FaultName::Malformed,
            "spike" => FaultName::Spike,
            "nats_restart" => FaultName::NatsRestart,
            "node_kill" => FaultName::NodeKill,
            "node_hang" => FaultName::NodeHang,
            "node_stop" => FaultName::NodeStop,
            "node_join" => FaultName::NodeJoin,
            "big_payloads" => FaultName::BigPayloads,
            "member_flood" => FaultName::MemberFlood,
            other => {
                return Err(format!(
                    "unknown fault {other:?}: use model_slow, model_crash, malformed, spike, \
                     nats_restart, big_payloads, member_flood, node_kill, node_hang, \
                     node_stop or node_join"
                ))
            }
        })
    }
}

/// A fault with its window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fault {
    /// What.
    pub kind: FaultKind,
    /// Start, from the start of the run.
    pub start: Duration,
    /// How long it lasts.
    pub length: Duration,
}

/// Places `names` in the run from `seed`: in order, one per equal slot of
/// the middle 60 % of the run, each lasting a fifth of the run at most, so
/// that windows never overlap and there is a baseline before and after.
pub fn schedule(seed: u64, run: Duration, names: &[FaultName], deadline_ms: u64) -> Vec<Fault> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xFA17);
    let span = run.as_secs_f64() * 0.6;
    let slot = span / names.len().max(1) as f64;
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let length = (slot * 0.6).min(run.as_secs_f64() / 5.0);
            let start = run.as_secs_f64() * 0.2
                + slot * i as f64
                + rng.gen_range(0.0..=slot - length).max(0.0);
            let kind = match name {
                FaultName::ModelSlow => FaultKind::ModelSlow {
                    delay_ms: deadline_ms * 2 + rng.gen_range(0..deadline_ms.max(1)),
                },
                FaultName::ModelCrash => FaultKind::ModelCrash,
                FaultName::Malformed => FaultKind::Malformed {
                    count: rng.gen_range(500..2_000),
                },
                FaultName::Spike => FaultKind::Spike { factor: 2 },
                FaultName::NatsRestart => FaultKind::NatsRestart,
                FaultName::NodeKill => FaultKind::NodeKill,
                FaultName::NodeHang => FaultKind::NodeHang,
                FaultName::NodeStop => FaultKind::NodeStop,
                FaultName::NodeJoin => FaultKind::NodeJoin,
                FaultName::BigPayloads => FaultKind::BigPayloads {
                    count: rng.gen_range(20..60),
                },
                FaultName::MemberFlood => FaultKind::MemberFlood { members: 1_000_000 },
            };
            Fault {
                kind,
                start: Duration::from_secs_f64(start),
                length: Duration::from_secs_f64(length),
            }
        })
        .collect()
}

/// The cohort the simulator's experiment is: members with even ids (the
/// control cohort is the odd ones).
pub const EXPERIMENT: FaultCohort = FaultCohort {
    modulus: 2,
    remainder: 0,
};

/// What a node made of a model fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// In force, for the cohort asked (or every member).
    Yes,
    /// In force, but for every member: the node cannot limit model faults
    /// to a cohort.
    EveryMember,
    /// The node does not accept faults (fault injection off).
    Refused,
}

/// Asks the node to delay model work for `cohort` (`None`: every member;
/// setting a delay of 0 also makes later faults hit every member again).
pub async fn set_model_delay(
    client: &async_nats::Client,
    subjects: &Subjects,
    delay_ms: u64,
    cohort: Option<FaultCohort>,
) -> Result<Applied, String> {
    let request = SetFaults {
        model_delay_ms: Some(delay_ms),
        model_cohort: Some(cohort),
        ..Default::default()
    };
    let reply = admin_faults(client, subjects, encode(&request)).await?;
    Ok(applied(reply.as_ref(), cohort))
}

/// Makes every `every`th scoring request of `cohort`'s members (`None`:
/// every member) crash its model worker (0 ends it): the workers panic, are
/// restarted by their supervisor, and requests fall back with
/// `model_unavailable` meanwhile. An error when the node does not know this
/// fault (its reply does not echo `model_panic_every`).
pub async fn set_model_crash(
    client: &async_nats::Client,
    subjects: &Subjects,
    every: u64,
    cohort: Option<FaultCohort>,
) -> Result<Applied, String> {
    let request = SetFaults {
        model_panic_every: Some(every),
        model_cohort: Some(cohort),
        ..Default::default()
    };
    match admin_faults(client, subjects, encode(&request)).await? {
        Some(reply) if !reply.contains_key("model_panic_every") => {
            Err("unsupported: the node does not implement model crashes".into())
        }
        reply => Ok(applied(reply.as_ref(), cohort)),
    }
}

fn applied(
    reply: Option<&BTreeMap<String, rmpv_free::Value>>,
    cohort: Option<FaultCohort>,
) -> Applied {
    match reply {
        None => Applied::Refused,
        // A node that knows cohorts echoes the field.
        Some(r) if cohort.is_some() && !r.contains_key("model_cohort") => Applied::EveryMember,
        Some(_) => Applied::Yes,
    }
}

async fn admin_faults(
    client: &async_nats::Client,
    subjects: &Subjects,
    payload: Vec<u8>,
) -> Result<Option<BTreeMap<String, rmpv_free::Value>>, String> {
    let reply = tokio::time::timeout(
        Duration::from_secs(2),
        client.request(subjects.admin_faults(), payload.into()),
    )
    .await;
    match reply {
        Err(_) => Err("failed: admin.faults did not answer within 2 s".into()),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(None),
        Ok(Err(e)) => Err(format!("failed: {e}")),
        Ok(Ok(message)) => rmp_serde::from_slice(&message.payload)
            .map(Some)
            .map_err(|e| format!("failed: admin.faults replied with something else: {e}")),
    }
}

/// A value of any MessagePack shape, enough to see which keys a reply has.
mod rmpv_free {
    use serde::de::{Deserialize, Deserializer, IgnoredAny};

    /// Any value, ignored.
    #[derive(Debug)]
    pub(crate) struct Value;

    impl<'de> Deserialize<'de> for Value {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            IgnoredAny::deserialize(d).map(|_| Value)
        }
    }
}

/// Publishes `count` events of just under the server's payload limit
/// (`max_payload` of its INFO, less room for the subject and headers) on
/// member subjects: what a buggy or hostile producer can send. Returns how
/// many the server took (a publish the server refuses closes nothing on the
/// node's side, which is the point).
pub async fn big_payloads(
    client: &async_nats::Client,
    subjects: &Subjects,
    count: u64,
    members: u64,
) -> Result<u64, String> {
    let limit = client.server_info().max_payload;
    let size = limit.saturating_sub(1024).max(1);
    let payload = bytes::Bytes::from(vec![0xc1_u8; size]);
    let mut sent = 0;
    for i in 0..count {
        let member = MemberId(1 + i % members.max(1));
        match client
            .publish(subjects.events(member), payload.clone())
            .await
        {
            Ok(()) => sent += 1,
            Err(e) => return Err(format!("failed after {sent}: {e}")),
        }
    }
    client.flush().await.map_err(|e| e.to_string())?;
    Ok(sent)
}

/// What a member flood did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flood {
    /// Requests sent, each for a new member id.
    pub sent: u64,
    /// Replies received.
    pub answered: u64,
}

/// Floods the node with requests for distinct member ids from `first` on,
/// never seen with an event, until `members` were sent or `until`, at most
/// 512 unanswered at a time; replies go to one inbox and are only counted.
pub async fn member_flood(
    client: &async_nats::Client,
    subjects: &Subjects,
    first: u64,
    members: u64,
    until: std::time::Instant,
) -> Result<Flood, String> {
    use futures::StreamExt as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(format!("{inbox}.*"))
        .await
        .map_err(|e| e.to_string())?;
    let answered = Arc::new(AtomicU64::new(0));
    let counter = {
        let answered = answered.clone();
        tokio::spawn(async move {
            while replies.next().await.is_some() {
                answered.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let request = encode(&reco_messages::RecommendRequest {
        deadline_ms: Some(200),
        ..Default::default()
    });
    let mut sent = 0;
    while sent < members && std::time::Instant::now() < until {
        if sent - answered.load(Ordering::Relaxed) >= 512 {
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        client
            .publish_with_reply(
                subjects.recommend(MemberId(first + sent)),
                format!("{inbox}.{sent}"),
                request.clone().into(),
            )
            .await
            .map_err(|e| format!("failed after {sent}: {e}"))?;
        sent += 1;
    }
    // The stragglers: a node answers within its deadline.
    let wait = std::time::Instant::now() + Duration::from_secs(2);
    while answered.load(Ordering::Relaxed) < sent && std::time::Instant::now() < wait {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    counter.abort();
    Ok(Flood {
        sent,
        answered: answered.load(Ordering::Relaxed),
    })
}

/// `count` malformed event payloads of several kinds (garbage bytes, wrong
/// types, unknown kind, member mismatch, out-of-range stars), each with its
/// subject, drawn from `seed`; with `experiment_only`, only to members of
/// the experiment cohort (even ids).
pub fn malformed_payloads(
    seed: u64,
    count: u64,
    members: u64,
    subjects: &Subjects,
    experiment_only: bool,
) -> Vec<(String, Vec<u8>)> {
    #[derive(Serialize)]
    struct Raw<'a> {
        member: u64,
        item: u64,
        kind: &'a str,
        value: f32,
    }
    #[derive(Serialize)]
    struct WrongType<'a> {
        member: &'a str,
        item: u64,
        kind: &'a str,
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xBAD);
    (0..count)
        .map(|i| {
            let mut member = rng.gen_range(1..=members.max(1));
            if experiment_only {
                member = (member & !1).max(2);
            }
            let subject = subjects.events(MemberId(member));
            let raw = |m, kind, value| {
                rmp_serde::to_vec_named(&Raw {
                    member: m,
                    item: 1,
                    kind,
                    value,
                })
                .unwrap_or_default()
            };
            let payload = match i % 5 {
                0 => (0..rng.gen_range(1..64)).map(|_| rng.gen()).collect(),
                1 => rmp_serde::to_vec_named(&WrongType {
                    member: "one",
                    item: 2,
                    kind: "play",
                })
                .unwrap_or_default(),
                2 => raw(member, "teleport", 0.0),
                3 => raw(member.wrapping_add(1), "play", 10.0),
                _ => raw(member, "rate", 9.0),
            };
            (subject, payload)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_seeded_and_windows_do_not_overlap() {
        let names = [FaultName::ModelSlow, FaultName::Malformed, FaultName::Spike];
        let run = Duration::from_secs(60);
        let a = schedule(7, run, &names, 50);
        assert_eq!(a, schedule(7, run, &names, 50));
        for pair in a.windows(2) {
            assert!(pair[0].start + pair[0].length <= pair[1].start, "{pair:?}");
        }
        assert!(a[0].start >= Duration::from_secs(12));
        let last = a.last().unwrap();
        assert!(last.start + last.length <= Duration::from_secs(48));
        assert!(matches!(a[0].kind, FaultKind::ModelSlow { delay_ms } if delay_ms > 50));
    }

    #[test]
    fn malformed_payloads_are_all_rejected_by_the_codec() {
        let subjects = Subjects::default();
        for (subject, payload) in malformed_payloads(1, 50, 100, &subjects, false) {
            let member = subjects.member_of_event(&subject).unwrap();
            assert!(reco_messages::decode_event(&payload, member, 65_536).is_err());
        }
    }
}
