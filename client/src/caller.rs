//! A caller: asks a node for one member's recommendations over
//! `<prefix>.recommend.<member>` and decodes the reply.

use anyhow::Context as _;
use reco_messages::{decode, encode, MemberId, RecommendReply, RecommendRequest, Subjects};
use std::time::Duration;

/// Sends `request` for `member` and waits at most `timeout` for the reply.
///
/// # Errors
/// When no node answers in time or the reply does not decode. A node's
/// [`RecommendReply::Error`] is a reply, not an error here.
pub async fn recommend(
    client: &async_nats::Client,
    subjects: &Subjects,
    member: MemberId,
    request: &RecommendRequest,
    timeout: Duration,
) -> anyhow::Result<RecommendReply> {
    let reply = tokio::time::timeout(
        timeout,
        client.request(subjects.recommend(member), encode(request).into()),
    )
    .await
    .with_context(|| format!("no reply within {} s", timeout.as_secs()))?
    .context("request failed: is a reco node serving this prefix?")?;
    Ok(decode(&reply.payload, usize::MAX)?)
}
