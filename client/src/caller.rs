//! A caller: asks a node for one member's recommendations over
//! `<prefix>.recommend.<member>` and decodes the reply, following the caller
//! rule of the wire contract ([`ask_with_fallback`]).

use anyhow::Context as _;
use reco_messages::{decode, encode, MemberId, RecommendReply, RecommendRequest, Subjects};
use std::time::Duration;

/// Sends `request` for `member`, each try waiting at most `timeout` (the
/// fallback subject is asked after a try that got no answer).
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
    let (reply, _) = ask_with_fallback(client, subjects, member, encode(request).into(), timeout)
        .await
        .context(
            "request failed, on the fallback subject too: is a reco node serving this prefix?",
        )?;
    Ok(decode(&reply.payload, usize::MAX)?)
}

/// The caller rule of the wire contract: ask `<prefix>.recommend.<member>`;
/// on "no responders" (the member's partition has no owner right now) or
/// when the try outlasts `try_timeout`, ask
/// `<prefix>.fallback.recommend.<member>`, which every node answers from its
/// precomputed lists. Returns the reply and whether it came from the
/// fallback subject.
///
/// # Errors
/// When the fallback subject does not answer either.
pub async fn ask_with_fallback(
    client: &async_nats::Client,
    subjects: &Subjects,
    member: MemberId,
    payload: bytes::Bytes,
    try_timeout: Duration,
) -> Result<(async_nats::Message, bool), async_nats::RequestError> {
    let first = client
        .send_request(
            subjects.recommend(member),
            async_nats::Request::new()
                .payload(payload.clone())
                .timeout(Some(try_timeout)),
        )
        .await;
    match first {
        Ok(reply) => Ok((reply, false)),
        Err(error)
            if matches!(
                error.kind(),
                async_nats::RequestErrorKind::NoResponders | async_nats::RequestErrorKind::TimedOut
            ) =>
        {
            let reply = client
                .send_request(
                    subjects.fallback_recommend(member),
                    async_nats::Request::new()
                        .payload(payload)
                        .timeout(Some(try_timeout)),
                )
                .await?;
            Ok((reply, true))
        }
        Err(error) => Err(error),
    }
}
