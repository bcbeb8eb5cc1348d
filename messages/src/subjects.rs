//! NATS subjects, all built from one configurable prefix.
//!
//! The prefix lets several reco deployments share a NATS cluster. Every
//! subject reco uses is built here so that no subject string is spelled out
//! anywhere else.

use crate::ids::MemberId;
use thiserror::Error;

/// The prefix used when the operator sets none.
pub const DEFAULT_PREFIX: &str = "reco";

/// Longest prefix accepted, in bytes: subjects must stay well below NATS's
/// control-line limit.
pub const MAX_PREFIX_LEN: usize = 128;

/// A prefix that cannot start a NATS subject.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("subject prefix {prefix:?} is invalid: {why}; use dot-separated tokens of letters, digits, '-' or '_' (e.g. \"reco\" or \"prod.reco\")")]
pub struct InvalidPrefix {
    /// The prefix as given.
    pub prefix: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// A subject on which reco expected `<prefix>.<verb>.<member>` but the member
/// token is missing or not an unsigned 64-bit integer.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("subject {subject:?} does not name a member: expected {expected}.<member> with <member> an unsigned 64-bit integer")]
pub struct BadSubject {
    /// The subject as received.
    pub subject: String,
    /// The pattern that was expected, without the member token.
    pub expected: String,
}

/// The subjects of one reco deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
    events: String,
    recommend: String,
}

impl Subjects {
    /// Builds the subjects under `prefix`, refusing one that NATS would
    /// misread (empty tokens, wildcards, white space).
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        let bad = |why| InvalidPrefix {
            prefix: prefix.to_owned(),
            why,
        };
        if prefix.is_empty() {
            return Err(bad("it is empty"));
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(bad("it is longer than 128 bytes"));
        }
        for token in prefix.split('.') {
            if token.is_empty() {
                return Err(bad("it has an empty token"));
            }
            if !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(bad(
                    "it has a character other than letters, digits, '-' and '_'",
                ));
            }
        }
        Ok(Subjects {
            prefix: prefix.to_owned(),
            events: format!("{prefix}.events"),
            recommend: format!("{prefix}.recommend"),
        })
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where producers publish `member`'s events.
    pub fn events(&self, member: MemberId) -> String {
        format!("{}.{}", self.events, member)
    }

    /// What a node subscribes to for events of every member.
    pub fn events_wildcard(&self) -> String {
        format!("{}.*", self.events)
    }

    /// Where callers request recommendations for `member`.
    pub fn recommend(&self, member: MemberId) -> String {
        format!("{}.{}", self.recommend, member)
    }

    /// What a node subscribes to for recommendation requests of every member.
    pub fn recommend_wildcard(&self) -> String {
        format!("{}.*", self.recommend)
    }

    /// Where rejected events are copied, with the reason in a header.
    pub fn dlq_events(&self) -> String {
        format!("{}.dlq.events", self.prefix)
    }

    /// Where a node answers health requests (admin surface).
    pub fn admin_health(&self) -> String {
        format!("{}.admin.health", self.prefix)
    }

    /// Where a node with fault injection enabled takes [`crate::admin::SetFaults`].
    pub fn admin_faults(&self) -> String {
        format!("{}.admin.faults", self.prefix)
    }

    /// Where a node re-reads its config file and applies new supervision
    /// settings (like SIGHUP).
    pub fn admin_reload(&self) -> String {
        format!("{}.admin.reload", self.prefix)
    }

    /// Where an operator pins, rolls back or unpins the model version.
    pub fn admin_model(&self) -> String {
        format!("{}.admin.model", self.prefix)
    }

    /// Where a node answers with its live supervision tree.
    pub fn admin_tree(&self) -> String {
        format!("{}.admin.tree", self.prefix)
    }

    /// Where `reco train --publish` announces a new model version
    /// ([`crate::ModelPublished`]).
    pub fn published_model(&self) -> String {
        format!("{}.published.model", self.prefix)
    }

    /// Where the aggregation job (`reco nearline`) announces a new snapshot
    /// of the near-real-time aggregates ([`crate::AggregatesPublished`]).
    pub fn published_aggregates(&self) -> String {
        format!("{}.published.aggregates", self.prefix)
    }

    /// Where a node publishes sampled late model answers beside what was
    /// served instead ([`crate::Counterfactual`]).
    pub fn counterfactual(&self) -> String {
        format!("{}.counterfactual", self.prefix)
    }

    /// Whether `subject` is one of reco's own (it starts with the prefix):
    /// a request naming such a subject as its reply subject is forged or
    /// broken, and answering it would publish into reco's own traffic.
    pub fn is_own(&self, subject: &str) -> bool {
        subject
            .strip_prefix(self.prefix())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    }

    /// The member named by an events subject.
    pub fn member_of_event(&self, subject: &str) -> Result<MemberId, BadSubject> {
        member_after(subject, &self.events)
    }

    /// The member named by a recommend subject.
    pub fn member_of_recommend(&self, subject: &str) -> Result<MemberId, BadSubject> {
        member_after(subject, &self.recommend)
    }
}

impl Default for Subjects {
    fn default() -> Self {
        Subjects::new(DEFAULT_PREFIX).expect("the default prefix is valid")
    }
}

/// Header carrying why a message was dead-lettered.
pub const HEADER_DLQ_REASON: &str = "Reco-Dlq-Reason";
/// Header carrying the subject a dead-lettered message was published on.
pub const HEADER_DLQ_SUBJECT: &str = "Reco-Dlq-Subject";
/// Header carrying the size of the rejected payload, in bytes (the
/// dead-letter copy carries at most [`DLQ_EXCERPT_BYTES`] of it).
pub const HEADER_DLQ_BYTES: &str = "Reco-Dlq-Bytes";
/// Most bytes of a rejected payload copied to the dead-letter subject: enough
/// to see what a producer sent, and a copy never larger than what the server
/// accepts whatever the rejected message's size.
pub const DLQ_EXCERPT_BYTES: usize = 1024;

fn member_after(subject: &str, stem: &str) -> Result<MemberId, BadSubject> {
    let bad = || BadSubject {
        subject: subject.chars().take(256).collect(),
        expected: stem.to_owned(),
    };
    let rest = subject
        .strip_prefix(stem)
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or_else(bad)?;
    // u64::from_str accepts a leading '+'; the wire contract says digits only.
    // One spelling per member: `0001` would otherwise be member 1 under a
    // second subject (and a second partition once subjects are partitioned).
    if rest.is_empty()
        || !rest.bytes().all(|b| b.is_ascii_digit())
        || (rest.len() > 1 && rest.starts_with('0'))
    {
        return Err(bad());
    }
    rest.parse().map(MemberId).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_built_from_the_prefix() {
        let s = Subjects::new("prod.reco").unwrap();
        assert_eq!(s.events(MemberId(7)), "prod.reco.events.7");
        assert_eq!(s.recommend(MemberId(7)), "prod.reco.recommend.7");
        assert_eq!(s.events_wildcard(), "prod.reco.events.*");
        assert_eq!(s.dlq_events(), "prod.reco.dlq.events");
        assert_eq!(s.published_model(), "prod.reco.published.model");
        assert_eq!(s.counterfactual(), "prod.reco.counterfactual");
    }

    #[test]
    fn member_is_parsed_from_the_subject() {
        let s = Subjects::default();
        assert_eq!(s.member_of_event("reco.events.42"), Ok(MemberId(42)));
        assert_eq!(s.member_of_event("reco.events.0"), Ok(MemberId(0)));
        assert_eq!(
            s.member_of_recommend("reco.recommend.18446744073709551615"),
            Ok(MemberId(u64::MAX))
        );
        for bad in [
            "reco.events.",
            "reco.events.x",
            "reco.events.+4",
            "reco.events.-4",
            "reco.events.18446744073709551616",
            "reco.eventsx.4",
            "other.events.4",
            "reco.events.4.5",
            "reco.events.0001",
            "reco.events.00",
        ] {
            assert!(s.member_of_event(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn own_subjects_are_recognised() {
        let s = Subjects::new("prod.reco").unwrap();
        for own in ["prod.reco", "prod.reco.events.4", "prod.reco.admin.reload"] {
            assert!(s.is_own(own), "{own}");
        }
        for other in [
            "_INBOX.abc.1",
            "prod.recox.events.4",
            "prod",
            "reco.events.4",
        ] {
            assert!(!s.is_own(other), "{other}");
        }
    }

    #[test]
    fn hostile_prefixes_are_refused() {
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a", "a."] {
            assert!(Subjects::new(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Subjects::new(&"a".repeat(129)).is_err());
    }
}
