//! Partitions: how members are split between the nodes of a cluster.
//!
//! The NATS server does the splitting. Its configuration maps every publish
//! on `<prefix>.events.<member>` and `<prefix>.recommend.<member>` onto a
//! partitioned subject with `{{partition(N,1)}}` (see [`Subjects::mappings`]):
//!
//! ```text
//! <prefix>.events.<m>     ──►  <prefix>.p.events.<k>.<m>
//! <prefix>.recommend.<m>  ──►  <prefix>.p.recommend.<k>.<m>
//!                               k = fnv1a32(bytes of the token <m>) mod N
//! ```
//!
//! Producers and callers keep using the public subjects; the owner of
//! partition `k` subscribes `<prefix>.p.recommend.<k>.*` and consumes
//! `<prefix>.p.events.<k>.*` from the event stream. reco computes the same
//! `k` itself ([`partition_of`]): nats-server hashes the bytes of the
//! mapped token with Go's `hash/fnv` `New32a` and takes the remainder by N
//! (`getHashPartition` in `server/accounts.go` of 2.9,
//! `server/subject_transform.go` since 2.10), and a test against a real
//! server pins that they agree.
//!
//! The hash is over the token *as published*: `007` and `7` name the same
//! member but may land in different partitions. The wire contract spells
//! member ids without leading zeros; [`is_canonical_member_token`] tells a
//! node which tokens it must refuse in a cluster.
//!
//! Every node also answers `<prefix>.fallback.recommend.<m>` in one queue
//! group from precomputed lists: the caller's rule is to ask it when the
//! partitioned subject has no responders or a try times out.

use crate::ids::MemberId;
use crate::subjects::{BadSubject, Subjects};
use std::fmt;

/// The number of partitions a deployment uses when the operator sets none.
pub const DEFAULT_PARTITIONS: u32 = 64;

/// Most partitions accepted: one lease, one consumer and one subscription
/// each per owner, so thousands would cost more than they spread.
pub const MAX_PARTITIONS: u32 = 4096;

/// The queue group of every node on the fallback subject: any one node
/// answers a fallback request.
pub const FALLBACK_QUEUE_GROUP: &str = "reco-fallback";

/// One partition of the member space, `0..N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition(pub u32);

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// FNV-1a, 32 bits (Go's `hash/fnv.New32a`): the hash nats-server's
/// `{{partition(N,…)}}` mapping function uses.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(PRIME)
    })
}

/// The partition nats-server maps a subject whose member token is `token`
/// to, out of `partitions` (0 partitions is treated as 1, as the server
/// does: everything lands in partition 0).
pub fn partition_of_token(token: &str, partitions: u32) -> Partition {
    if partitions == 0 {
        return Partition(0);
    }
    Partition(fnv1a32(token.as_bytes()) % partitions)
}

/// The partition of `member` as its canonical subject token (decimal, no
/// leading zeros) is mapped.
pub fn partition_of(member: MemberId, partitions: u32) -> Partition {
    partition_of_token(&member.to_string(), partitions)
}

/// Whether `token` spells a member id the way the wire contract does
/// (decimal digits, no leading zero unless it is `0`): only then does the
/// partition the server chose match [`partition_of`] for the member.
pub fn is_canonical_member_token(token: &str) -> bool {
    !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'))
}

/// A subject mapping for the server configuration: publishes on `from` are
/// delivered (and stored) as `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The public subject producers and callers use (one `*` wildcard).
    pub from: String,
    /// The partitioned subject, with the server's mapping functions.
    pub to: String,
}

impl Subjects {
    /// Where the server delivers `member`'s events in partition `k`.
    pub fn p_events(&self, k: Partition, member: MemberId) -> String {
        format!("{}.p.events.{k}.{member}", self.prefix())
    }

    /// The events of every member of partition `k` (an owner's consumer
    /// filter).
    pub fn p_events_partition(&self, k: Partition) -> String {
        format!("{}.p.events.{k}.*", self.prefix())
    }

    /// The events of every partition (what the event stream captures when
    /// the mapping is on).
    pub fn p_events_wildcard(&self) -> String {
        format!("{}.p.events.*.*", self.prefix())
    }

    /// Where the server delivers `member`'s recommend requests in
    /// partition `k`.
    pub fn p_recommend(&self, k: Partition, member: MemberId) -> String {
        format!("{}.p.recommend.{k}.{member}", self.prefix())
    }

    /// The recommend requests of every member of partition `k` (what its
    /// owner subscribes, without a queue group).
    pub fn p_recommend_partition(&self, k: Partition) -> String {
        format!("{}.p.recommend.{k}.*", self.prefix())
    }

    /// The recommend requests of every partition.
    pub fn p_recommend_wildcard(&self) -> String {
        format!("{}.p.recommend.*.*", self.prefix())
    }

    /// Where a caller asks for `member`'s fallback list when the
    /// partitioned subject has no responders or timed out.
    pub fn fallback_recommend(&self, member: MemberId) -> String {
        format!("{}.fallback.recommend.{member}", self.prefix())
    }

    /// What every node subscribes in [`FALLBACK_QUEUE_GROUP`].
    pub fn fallback_recommend_wildcard(&self) -> String {
        format!("{}.fallback.recommend.*", self.prefix())
    }

    /// The mark a node's partition host puts in its own events channel
    /// before partition `k`'s replay, when it takes the partition (one of
    /// `partitions`): the sessions the node still holds for its members
    /// are stale (another node applied their events meanwhile) and are
    /// forgotten before the replay rebuilds them. Never published: no
    /// subscription of a node matches it.
    pub fn p_acquired(&self, k: Partition, partitions: u32) -> String {
        format!("{}.p.acquired.{partitions}.{k}", self.prefix())
    }

    /// The partition (and count) of a [`Subjects::p_acquired`] mark.
    pub fn partition_of_p_acquired(&self, subject: &str) -> Option<(Partition, u32)> {
        let rest = subject
            .strip_prefix(self.prefix())?
            .strip_prefix(".p.acquired.")?;
        let (partitions, k) = rest.split_once('.')?;
        let (partitions, k) = (partitions.parse::<u32>().ok()?, k.parse::<u32>().ok()?);
        (k < partitions).then_some((Partition(k), partitions))
    }

    /// The two mappings of a server configuration that splits this
    /// deployment's members into `partitions` partitions.
    pub fn mappings(&self, partitions: u32) -> [Mapping; 2] {
        let map = |verb: &str| Mapping {
            from: format!("{}.{verb}.*", self.prefix()),
            to: format!(
                "{}.p.{verb}.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}",
                self.prefix()
            ),
        };
        [map("events"), map("recommend")]
    }

    /// The partition and member of a partitioned events subject.
    pub fn member_of_p_event(&self, subject: &str) -> Result<(Partition, MemberId), BadSubject> {
        partitioned_member(subject, &format!("{}.p.events", self.prefix()))
    }

    /// The partition and member of a partitioned recommend subject.
    pub fn member_of_p_recommend(
        &self,
        subject: &str,
    ) -> Result<(Partition, MemberId), BadSubject> {
        partitioned_member(subject, &format!("{}.p.recommend", self.prefix()))
    }

    /// The member of a fallback recommend subject.
    pub fn member_of_fallback(&self, subject: &str) -> Result<MemberId, BadSubject> {
        let stem = format!("{}.fallback.recommend", self.prefix());
        let bad = || BadSubject {
            subject: subject.chars().take(256).collect(),
            expected: stem.clone(),
        };
        let token = subject
            .strip_prefix(stem.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .ok_or_else(bad)?;
        member_token(token).ok_or_else(bad)
    }
}

/// `<stem>.<k>.<member>` → (k, member); the member token must be canonical
/// (see [`is_canonical_member_token`]).
fn partitioned_member(subject: &str, stem: &str) -> Result<(Partition, MemberId), BadSubject> {
    let bad = || BadSubject {
        subject: subject.chars().take(256).collect(),
        expected: format!("{stem}.<partition>"),
    };
    let rest = subject
        .strip_prefix(stem)
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or_else(bad)?;
    let (k, member) = rest.split_once('.').ok_or_else(bad)?;
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) || k.len() > 10 {
        return Err(bad());
    }
    let k = k.parse::<u32>().map_err(|_| bad())?;
    let member = member_token(member).ok_or_else(bad)?;
    Ok((Partition(k), member))
}

fn member_token(token: &str) -> Option<MemberId> {
    if !is_canonical_member_token(token) {
        return None;
    }
    token.parse().ok().map(MemberId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acquired_mark_names_its_partition_and_nothing_else_parses_as_one() {
        let subjects = Subjects::default();
        let mark = subjects.p_acquired(Partition(7), 16);
        assert_eq!(
            subjects.partition_of_p_acquired(&mark),
            Some((Partition(7), 16))
        );
        for other in [
            "reco.events.7",
            "reco.p.events.7.1",
            "reco.p.acquired.16.16",
            "reco.p.acquired.16",
            "reco.p.acquired.x.1",
            "other.p.acquired.16.7",
        ] {
            assert_eq!(subjects.partition_of_p_acquired(other), None, "{other}");
        }
    }

    #[test]
    fn fnv1a32_matches_the_reference_vectors() {
        // From the FNV reference (http://www.isthe.com/chongo/tech/comp/fnv/).
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn partition_is_the_hash_of_the_decimal_token_modulo_n() {
        for member in [0u64, 1, 7, 42, 1_000_003, u64::MAX] {
            let token = member.to_string();
            assert_eq!(
                partition_of(MemberId(member), 64),
                Partition(fnv1a32(token.as_bytes()) % 64)
            );
            assert!(partition_of(MemberId(member), 64).0 < 64);
        }
        assert_eq!(partition_of(MemberId(5), 1), Partition(0));
        assert_eq!(partition_of(MemberId(5), 0), Partition(0));
    }

    #[test]
    fn partitions_spread_sequential_members_evenly() {
        let mut counts = [0u32; 16];
        for member in 0..16_000u64 {
            counts[partition_of(MemberId(member), 16).0 as usize] += 1;
        }
        for (k, count) in counts.iter().enumerate() {
            assert!(
                (700..1300).contains(count),
                "partition {k} got {count} of 16000 members"
            );
        }
    }

    #[test]
    fn only_canonical_member_tokens_are_accepted() {
        for good in ["0", "7", "18446744073709551615"] {
            assert!(is_canonical_member_token(good), "{good}");
        }
        for bad in ["", "007", "00", "+7", "-7", "7a", " 7"] {
            assert!(!is_canonical_member_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn partitioned_subjects_are_built_from_the_prefix() {
        let s = Subjects::new("prod.reco").unwrap();
        let (k, m) = (Partition(3), MemberId(42));
        assert_eq!(s.p_events(k, m), "prod.reco.p.events.3.42");
        assert_eq!(s.p_events_partition(k), "prod.reco.p.events.3.*");
        assert_eq!(s.p_events_wildcard(), "prod.reco.p.events.*.*");
        assert_eq!(s.p_recommend(k, m), "prod.reco.p.recommend.3.42");
        assert_eq!(s.p_recommend_partition(k), "prod.reco.p.recommend.3.*");
        assert_eq!(s.p_recommend_wildcard(), "prod.reco.p.recommend.*.*");
        assert_eq!(s.fallback_recommend(m), "prod.reco.fallback.recommend.42");
        assert_eq!(
            s.fallback_recommend_wildcard(),
            "prod.reco.fallback.recommend.*"
        );
    }

    #[test]
    fn mappings_name_the_partition_and_keep_the_member_token() {
        let [events, recommend] = Subjects::default().mappings(64);
        assert_eq!(events.from, "reco.events.*");
        assert_eq!(
            events.to,
            "reco.p.events.{{partition(64,1)}}.{{wildcard(1)}}"
        );
        assert_eq!(recommend.from, "reco.recommend.*");
        assert_eq!(
            recommend.to,
            "reco.p.recommend.{{partition(64,1)}}.{{wildcard(1)}}"
        );
    }

    #[test]
    fn partition_and_member_are_parsed_from_partitioned_subjects() {
        let s = Subjects::default();
        assert_eq!(
            s.member_of_p_event("reco.p.events.3.42"),
            Ok((Partition(3), MemberId(42)))
        );
        assert_eq!(
            s.member_of_p_recommend("reco.p.recommend.0.18446744073709551615"),
            Ok((Partition(0), MemberId(u64::MAX)))
        );
        assert_eq!(
            s.member_of_fallback("reco.fallback.recommend.9"),
            Ok(MemberId(9))
        );
        for bad in [
            "reco.p.events.3",
            "reco.p.events.3.",
            "reco.p.events..42",
            "reco.p.events.x.42",
            "reco.p.events.3.007",
            "reco.p.events.3.4.5",
            "reco.p.events.99999999999.4",
            "reco.events.42",
            "reco.p.recommend.3.42",
        ] {
            assert!(
                s.member_of_p_event(bad).is_err(),
                "{bad} should be rejected"
            );
        }
        assert!(s.member_of_fallback("reco.fallback.recommend.07").is_err());
        assert!(s.member_of_fallback("reco.fallback.recommend").is_err());
    }
}
