//! The request-reply room: a recommend request, the handle that answers it,
//! the count of requests in flight, and the one step every refusal takes
//! (fallback → reply).
//!
//! A [`Recommend`] carries its [`Responder`] through the actors (ingress →
//! shard → session) and is consumed by whoever answers. The responder
//! guarantees that every request gets exactly one reply: one dropped
//! unanswered (an actor stopped, a worker died) sends an `internal` error
//! from its `Drop`. Replies are encoded on the thread that answers and
//! published from the NATS runtime, so no actor waits on I/O.
//!
//! Whoever cannot serve a request from the model answers it with a
//! [`Fallback`] through [`Responder::fall_back`] (or, when a mailbox refused
//! the request, [`Recommend::refused`]): the fallback reply is built in one
//! place, degraded and with the reason said.
//!
//! [`InFlight`] counts the requests received and not yet answered; a node
//! that drains for shutdown waits on it.
//!
//! Emits: `reco_recommend_latency_seconds{source}`,
//! `reco_replies_total{source,reason}`, `reco_row_replies_total{row,source,reason}`, `reco_request_errors_total{code}`,
//! `reco_requests_in_flight`. Logs: ERROR "A recommend request was dropped
//! inside reco…" when a responder is dropped unanswered (a bug or a dead
//! worker); WARN when a reply cannot be published.
//!
//! Fails: a reply that cannot be published is logged and lost (the caller
//! times out); nothing here panics.

use crate::lists::{Fallback, ListsReader};
use crate::metrics as m;
use crate::seen::SeenIndex;
use actix::Message;
use async_nats::{Client, Subject};
use reco_messages::{
    encode, ErrorCode, ErrorReply, ItemDetails, MemberId, Reason, Recommendations, Row,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// The number of requests received and not yet answered.
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    inner: Arc<InFlightInner>,
}

#[derive(Debug, Default)]
struct InFlightInner {
    count: AtomicUsize,
    idle: Notify,
}

/// Held while a request is in flight; dropping it marks the request answered.
#[derive(Debug)]
struct FlightGuard {
    inner: Arc<InFlightInner>,
}

impl InFlight {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests currently in flight.
    pub fn count(&self) -> usize {
        self.inner.count.load(Ordering::Acquire)
    }

    fn enter(&self) -> FlightGuard {
        self.inner.count.fetch_add(1, Ordering::AcqRel);
        metrics::gauge!(m::REQUESTS_IN_FLIGHT).increment(1.0);
        FlightGuard {
            inner: self.inner.clone(),
        }
    }

    /// Waits until no request is in flight, or `limit` has passed. Returns
    /// the number still in flight (0 when drained).
    pub async fn wait_idle(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.inner.idle.notified();
            let count = self.count();
            if count == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count();
            }
        }
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        metrics::gauge!(m::REQUESTS_IN_FLIGHT).decrement(1.0);
        if self.inner.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

/// Answer a recommend request of a member (sent to its shard, then its
/// session).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Recommend {
    /// The member (the shard routes on it).
    pub member: MemberId,
    /// The request's id in this node (its trace span's `request_id`).
    pub request_id: u64,
    /// How many items.
    pub k: usize,
    /// Leave out seen items.
    pub exclude_seen: bool,
    /// The row (gallery) asked for ([`crate::rows`]).
    pub row: Row,
    /// The device asking, if the request named one: signals seen on it
    /// weigh more in the fold-in ([`crate::signals`]).
    pub device: Option<String>,
    /// When the caller stops waiting.
    pub deadline: Instant,
    /// Where the reply goes.
    pub responder: Responder,
    /// The request's span, so that the work inside the actors is traced
    /// under it.
    pub span: tracing::Span,
}

impl Recommend {
    /// Answers a request that a mailbox refused (full, or its actor gone)
    /// with the row's offline fallback (the member's precomputed or popular
    /// list for top picks), `reason: overloaded`, leaving out what the
    /// member has seen (as its session would, from the shared
    /// [`SeenIndex`]) when the request asks so.
    pub fn refused(self, lists: &ListsReader, seen: &SeenIndex) {
        let seen = if self.exclude_seen {
            seen.get(self.member)
        } else {
            std::sync::Arc::from([])
        };
        match crate::rows::offline_fallback(&self.row, self.member, self.k, &seen, lists, None) {
            Ok(fallback) => self
                .responder
                .fall_back(self.member, fallback, Reason::Overloaded),
            Err(message) => self.responder.error(ErrorCode::BadRequest, message),
        }
    }
}

/// Builds the reply for a fallback answer: degraded, with its reason.
pub fn fallback_reply(member: MemberId, fallback: Fallback, reason: Reason) -> Recommendations {
    Recommendations {
        member,
        items: fallback.items,
        source: fallback.source,
        model_version: fallback.version,
        degraded: true,
        reason: Some(reason),
        served_us: 0,
        lists_version: fallback.lists_version,
        list_age_ms: fallback.age_ms,
        signals: None,
        newest_signal_age_ms: None,
        aggregates_version: None,
        row: None,
        details: None,
        reused: false,
    }
}

/// Where a reply goes.
#[derive(Debug)]
enum Sink {
    /// Publish on the request's reply subject, from the NATS runtime.
    Nats {
        client: Client,
        subject: Subject,
        runtime: tokio::runtime::Handle,
    },
    /// Hand the encoded reply to an in-process caller (tests, embedding).
    Channel(oneshot::Sender<Vec<u8>>),
}

/// The one-shot reply handle of a recommend request.
#[derive(Debug)]
pub struct Responder {
    sink: Option<Sink>,
    received: Instant,
    guard: Option<FlightGuard>,
    /// The row the request asked for: said in the reply and counted.
    row: Option<Row>,
    /// Where titles and genres come from, when the request asked for them.
    details: Option<ListsReader>,
}

impl Responder {
    /// A responder that publishes on `subject` with `client`. Publishing is
    /// spawned on `runtime` (the one that owns the NATS connection).
    pub fn nats(
        client: Client,
        subject: Subject,
        runtime: tokio::runtime::Handle,
        received: Instant,
        in_flight: &InFlight,
    ) -> Self {
        Responder {
            sink: Some(Sink::Nats {
                client,
                subject,
                runtime,
            }),
            received,
            guard: Some(in_flight.enter()),
            row: None,
            details: None,
        }
    }

    /// A responder that hands the encoded reply to the returned receiver.
    pub fn channel(received: Instant, in_flight: &InFlight) -> (Self, oneshot::Receiver<Vec<u8>>) {
        let (tx, rx) = oneshot::channel();
        let responder = Responder {
            sink: Some(Sink::Channel(tx)),
            received,
            guard: Some(in_flight.enter()),
            row: None,
            details: None,
        };
        (responder, rx)
    }

    /// The same responder answering for `row`: the reply says which row
    /// it answers and is counted by the row's kind; with `details`, the
    /// reply carries the items' titles and genres from those lists.
    pub fn for_row(mut self, row: Row, details: Option<ListsReader>) -> Self {
        self.row = Some(row);
        self.details = details;
        self
    }

    /// When the request was received: the start of its deadline.
    pub fn received(&self) -> Instant {
        self.received
    }

    /// Sends the list, filling in `served_us` and counting it.
    pub fn reply(mut self, mut recommendations: Recommendations) {
        let elapsed = self.received.elapsed();
        recommendations.served_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let source = recommendations.source.as_str();
        let reason = recommendations.reason.map_or("none", |r| r.as_str());
        metrics::histogram!(m::RECOMMEND_LATENCY_SECONDS, "source" => source)
            .record(elapsed.as_secs_f64());
        metrics::counter!(m::REPLIES_TOTAL, "source" => source, "reason" => reason).increment(1);
        let row = self.row.take().unwrap_or_default();
        metrics::counter!(m::ROW_REPLIES_TOTAL, "row" => row.kind(), "source" => source, "reason" => reason)
            .increment(1);
        recommendations.row = Some(row.to_string());
        if let Some(lists) = self.details.take() {
            let lists = lists.load();
            let details: Vec<ItemDetails> = recommendations
                .items
                .iter()
                .filter_map(|s| {
                    lists.catalogue.get(s.item).map(|info| ItemDetails {
                        item: s.item,
                        title: info.title.clone(),
                        genres: info.genres.clone(),
                    })
                })
                .collect();
            recommendations.details = Some(details);
        }
        self.send(encode(&recommendations));
    }

    /// Answers with `fallback` (degraded, saying `reason`): the one way a
    /// request that the model did not serve is answered.
    pub fn fall_back(self, member: MemberId, fallback: Fallback, reason: Reason) {
        self.reply(fallback_reply(member, fallback, reason));
    }

    /// Sends an error reply, counting it by code.
    pub fn error(mut self, code: ErrorCode, message: impl Into<String>) {
        metrics::counter!(m::REQUEST_ERRORS_TOTAL, "code" => code.as_str()).increment(1);
        self.send(encode(&ErrorReply::new(code, message)));
    }

    fn send(&mut self, bytes: Vec<u8>) {
        let guard = self.guard.take();
        match self.sink.take() {
            Some(Sink::Nats {
                client,
                subject,
                runtime,
            }) => {
                runtime.spawn(async move {
                    if let Err(error) = client.publish(subject, bytes.into()).await {
                        tracing::warn!(%error, "Reply could not be published.");
                    }
                    drop(guard);
                });
            }
            Some(Sink::Channel(tx)) => {
                let _ = tx.send(bytes);
                drop(guard);
            }
            None => drop(guard),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if self.sink.is_some() {
            metrics::counter!(m::REQUEST_ERRORS_TOTAL, "code" => ErrorCode::Internal.as_str())
                .increment(1);
            tracing::error!(
                "A recommend request was dropped inside reco; answering with an internal error."
            );
            self.send(encode(&ErrorReply::new(
                ErrorCode::Internal,
                "the request was lost inside reco before it could be answered; retry it",
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_messages::{decode, MemberId, RecommendReply, Source};

    #[tokio::test]
    async fn a_dropped_responder_still_answers_with_an_internal_error() {
        let in_flight = InFlight::new();
        let (responder, rx) = Responder::channel(Instant::now(), &in_flight);
        assert_eq!(in_flight.count(), 1);
        drop(responder);
        let reply: RecommendReply = decode(&rx.await.unwrap(), 1 << 20).unwrap();
        assert!(matches!(reply, RecommendReply::Error(e) if e.error.code == ErrorCode::Internal));
        assert_eq!(in_flight.wait_idle(Duration::from_secs(1)).await, 0);
    }

    #[tokio::test]
    async fn reply_fills_served_time_and_releases_the_flight() {
        let in_flight = InFlight::new();
        let (responder, rx) = Responder::channel(Instant::now(), &in_flight);
        let waiter = {
            let in_flight = in_flight.clone();
            tokio::spawn(async move { in_flight.wait_idle(Duration::from_secs(5)).await })
        };
        responder.reply(Recommendations {
            member: MemberId(3),
            items: vec![],
            source: Source::Popular,
            model_version: None,
            degraded: true,
            reason: None,
            served_us: 0,
            lists_version: None,
            list_age_ms: None,
            signals: None,
            newest_signal_age_ms: None,
            aggregates_version: None,
            row: None,
            details: None,
            reused: false,
        });
        let reply: RecommendReply = decode(&rx.await.unwrap(), 1 << 20).unwrap();
        assert!(matches!(reply, RecommendReply::Ok(r) if r.member == MemberId(3)));
        assert_eq!(waiter.await.unwrap(), 0);
    }
}
