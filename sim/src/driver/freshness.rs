//! The freshness probe: after a play, how soon the member's next
//! recommendations reflect it.

use super::*;

/// The member plays the top item it was shown; how long until a reply no
/// longer shows it (the play was taken into account)?
pub(super) async fn probe_freshness(
    shared: &Shared,
    member: MemberId,
    device: &'static str,
    item: ItemId,
) {
    let config = &shared.config;
    let event = Event {
        member,
        item,
        kind: EventKind::Play,
        value: 600.0,
        at_ms: None,
        device: Some(device.to_owned()),
    };
    let payload = encode(&RecommendRequest {
        k: Some(config.k),
        device: Some(device.to_owned()),
        deadline_ms: Some(config.deadline_ms),
        ..Default::default()
    });
    let played = Instant::now();
    if shared
        .client
        .publish(shared.subjects.events(member), encode(&event).into())
        .await
        .is_err()
    {
        return;
    }
    shared.probe_events.fetch_add(1, Ordering::Relaxed);
    for _ in 0..50 {
        let wait = Duration::from_millis(config.deadline_ms) + config.no_reply_after;
        let Ok(Ok(message)) = tokio::time::timeout(
            wait,
            shared
                .client
                .request(shared.subjects.recommend(member), payload.clone().into()),
        )
        .await
        else {
            return;
        };
        if let Ok(RecommendReply::Ok(reply)) = decode::<RecommendReply>(&message.payload, 1 << 20) {
            if reply.items.iter().all(|s| s.item != item) {
                let us = played.elapsed().as_micros().max(1) as u64;
                let _ = shared
                    .stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .freshness
                    .record(us);
                return;
            }
        }
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
