//! What kind of server a node starts on: with the partition mapping (a
//! cluster) or without (a node alone, as before).
//!
//! [`probe_mapping`] asks the server itself: it subscribes both the public
//! and the partitioned recommend subject of a few probe tokens, publishes
//! on the public one (without a reply subject, so no node answers), and
//! sees where the messages land and in which partition.
//!
//! On a plain server only one node may run per prefix, or every request
//! would be answered twice. [`hold_single`] takes the `single` lease (in
//! the same lease bucket); a second node finds it held and refuses to
//! start with [`SingleModeError::AnotherNode`], whose message says how to
//! turn the mapping on. A node that restarts after a crash waits up to one
//! lease length for its former self's lease to expire.

use crate::lease::{Lease, LeaseError, Leases};
use async_nats::Client;
use futures::StreamExt;
use reco_messages::partition::{partition_of_token, Partition};
use reco_messages::Subjects;
use std::time::{Duration, Instant};
use thiserror::Error;

/// The key of the single-mode lease.
pub const SINGLE_LEASE_KEY: &str = "single";

/// How many probe tokens are sent (a wrong partition count is caught unless
/// every probe agrees by chance).
const PROBES: usize = 8;

/// What the server does with `<prefix>.recommend.<member>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingProbe {
    /// Delivered unchanged: no mapping, a node runs alone.
    Absent,
    /// Mapped onto partitioned subjects.
    Partitioned {
        /// Whether every probe landed in the partition this node computes
        /// with its own partition count.
        partitions_agree: bool,
    },
}

/// The probe could not run.
#[derive(Debug, Error)]
pub enum ProbeError {
    /// Subscribing or publishing failed.
    #[error("cannot probe the server's subject mapping: {0}")]
    Nats(#[source] async_nats::Error),
    /// Nothing came back (no permission to subscribe, or the server is
    /// gone).
    #[error(
        "the subject-mapping probe got nothing back within {0:?}: can this user subscribe to {1}?"
    )]
    Silent(Duration, String),
}

/// Finds out whether the server maps the recommend subjects of `subjects`
/// into partitions, and whether into `partitions` of them.
///
/// # Errors
/// [`ProbeError`] when the probe cannot run or hears nothing.
pub async fn probe_mapping(
    client: &Client,
    subjects: &Subjects,
    partitions: u32,
) -> Result<MappingProbe, ProbeError> {
    let nats = |e: async_nats::Error| ProbeError::Nats(e);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tokens: Vec<String> = (0..PROBES)
        .map(|i| format!("probe-{}-{seed}-{i}", std::process::id()))
        .collect();
    let mut subscriptions = Vec::new();
    for token in &tokens {
        let prefix = subjects.prefix();
        subscriptions.push(
            client
                .subscribe(format!("{prefix}.p.recommend.*.{token}"))
                .await
                .map_err(|e| nats(e.into()))?,
        );
        subscriptions.push(
            client
                .subscribe(format!("{prefix}.recommend.{token}"))
                .await
                .map_err(|e| nats(e.into()))?,
        );
    }
    crate::host::round_trip(client).await.map_err(nats)?;
    for token in &tokens {
        client
            .publish(
                format!("{}.recommend.{token}", subjects.prefix()),
                "".into(),
            )
            .await
            .map_err(|e| nats(e.into()))?;
    }
    let mut merged = futures::stream::select_all(subscriptions);
    let limit = Duration::from_secs(2);
    let deadline = tokio::time::Instant::now() + limit;
    let (mut mapped, mut plain, mut agree) = (0, 0, true);
    while mapped + plain < PROBES {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline, merged.next()).await else {
            break;
        };
        let subject = message.subject.as_str();
        let partitioned = format!("{}.p.recommend.", subjects.prefix());
        match subject.strip_prefix(&partitioned) {
            Some(rest) => {
                mapped += 1;
                let (k, token) = rest.split_once('.').unwrap_or(("", rest));
                let expected = partition_of_token(token, partitions);
                if k.parse::<u32>().map(Partition).ok() != Some(expected) {
                    agree = false;
                }
            }
            None => plain += 1,
        }
    }
    match (mapped, plain) {
        (0, 0) => Err(ProbeError::Silent(
            limit,
            format!("{}.recommend.*", subjects.prefix()),
        )),
        (0, _) => Ok(MappingProbe::Absent),
        _ => Ok(MappingProbe::Partitioned {
            partitions_agree: agree && plain == 0,
        }),
    }
}

/// A node may not run alone on this prefix.
#[derive(Debug, Error)]
pub enum SingleModeError {
    /// Another node already runs alone on this prefix.
    #[error(
        "another reco node ({holder}) already serves prefix {prefix:?} on this NATS server, which has no \
         partition mapping: two nodes would both answer every request. To run several nodes, add the \
         mapping to the server configuration (`reco nats-config --partitions 64 --prefix {prefix} --fragment` \
         prints it), restart nats-server, then start the nodes; or stop the other node"
    )]
    AnotherNode {
        /// The node holding the single-mode lease.
        holder: String,
        /// The prefix.
        prefix: String,
    },
    /// The lease bucket could not be used.
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

/// Takes the single-mode lease, waiting up to one lease length (and a
/// second) for a crashed predecessor's lease to expire.
///
/// # Errors
/// [`SingleModeError::AnotherNode`] when another node keeps it.
pub async fn hold_single(leases: &Leases, subjects: &Subjects) -> Result<Lease, SingleModeError> {
    let deadline = Instant::now() + leases.length() + Duration::from_secs(1);
    let mut announced = false;
    loop {
        match leases.acquire(SINGLE_LEASE_KEY).await {
            Ok(lease) => return Ok(lease),
            Err(LeaseError::Held { .. }) => {
                let holder = leases
                    .holder(SINGLE_LEASE_KEY)
                    .await
                    .ok()
                    .flatten()
                    .map(|h| h.node)
                    .unwrap_or_else(|| "unknown".into());
                if Instant::now() >= deadline {
                    return Err(SingleModeError::AnotherNode {
                        holder,
                        prefix: subjects.prefix().to_owned(),
                    });
                }
                if !announced {
                    announced = true;
                    tracing::warn!(%holder, "Another node holds the single-mode lease; waiting for it to expire (a crashed predecessor?).");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Renews the single-mode lease until `shutdown`, then releases it. Returns
/// early with the error if the lease is lost (another node took over: the
/// caller must stop serving).
///
/// # Errors
/// The [`LeaseError`] that lost the lease.
pub async fn keep_single(
    leases: Leases,
    mut lease: Lease,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), LeaseError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let every = leases.length() / 3;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(every) => {}
        }
        match leases.renew(&mut lease).await {
            Ok(()) => {}
            Err(error) if error.is_lost() => return Err(error),
            Err(error) => tracing::warn!(%error, "Single-mode lease not renewed; retrying."),
        }
    }
    let _ = leases.release(lease).await;
    Ok(())
}
