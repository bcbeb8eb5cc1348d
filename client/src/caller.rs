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

/// Tries on the fallback subject before the caller gives up: its one
/// queue group picks a node at random, and a hung node (SIGSTOP, a long
/// pause) stays in the group until the server drops its connection, so one
/// try in N may go to it (all five with one of three nodes hung: 0.4 %).
pub const FALLBACK_TRIES: usize = 5;

/// Longest a fallback try waits: every node answers it at once from its
/// lists, so a try unanswered this long went to a node that is hung.
pub const FALLBACK_TRY_TIMEOUT: Duration = Duration::from_millis(250);

/// The caller rule of the wire contract: ask `<prefix>.recommend.<member>`;
/// on "no responders" (the member's partition has no owner right now) or
/// when the try outlasts `try_timeout`, ask
/// `<prefix>.fallback.recommend.<member>`, which every node answers from its
/// precomputed lists — again (up to [`FALLBACK_TRIES`] tries of at most
/// [`FALLBACK_TRY_TIMEOUT`]) when that try times out too. Returns the reply and whether it came from the fallback
/// subject.
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
    let ask = |subject: String, timeout: Duration| {
        client.send_request(
            subject,
            async_nats::Request::new()
                .payload(payload.clone())
                .timeout(Some(timeout)),
        )
    };
    let retry = |error: &async_nats::RequestError| {
        matches!(
            error.kind(),
            async_nats::RequestErrorKind::NoResponders | async_nats::RequestErrorKind::TimedOut
        )
    };
    match ask(subjects.recommend(member), try_timeout).await {
        Ok(reply) => return Ok((reply, false)),
        Err(error) if retry(&error) => {}
        Err(error) => return Err(error),
    }
    let mut tries = 1;
    loop {
        let timeout = try_timeout.min(FALLBACK_TRY_TIMEOUT);
        match ask(subjects.fallback_recommend(member), timeout).await {
            Ok(reply) => return Ok((reply, true)),
            Err(error) if tries < FALLBACK_TRIES && retry(&error) => tries += 1,
            Err(error) => return Err(error),
        }
    }
}
