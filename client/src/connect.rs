//! The one way reco code connects to NATS: the node, the command line, the
//! offline job, the simulator and the tests all build their connection here,
//! so that a new connection concern (credentials, TLS, a counter) is one more
//! option on [`ConnectOptions`] rather than a fifth copy of the connect call.
//!
//! Emits (only with [`ConnectOptions::count_events`]):
//! `reco_nats_slow_consumer_total` and `reco_nats_events_total{event}`
//! (names in [`reco_messages::metrics`]), and a log line per connection event.
//!
//! Secrets: when authentication options are added, they must stay out of
//! `Debug` output and error messages (only the URL and the client name are
//! ever printed).

use reco_messages::metrics as m;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Environment variable naming the NATS server (read by the command line).
pub const ENV_NATS_URL: &str = "RECO_NATS_URL";
/// The NATS URL used when none is given.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// A connection could not be made.
#[derive(Debug, Error)]
#[error("cannot connect to NATS at {url}: is nats-server running? (set --nats or {ENV_NATS_URL})")]
pub struct ConnectError {
    /// The server URL tried.
    pub url: String,
    /// What the client said.
    #[source]
    pub source: async_nats::ConnectError,
}

/// How to connect: built with chained options, then [`connect`](Self::connect).
///
/// ```no_run
/// # async fn demo() -> Result<(), reco_client::ConnectError> {
/// let client = reco_client::ConnectOptions::new("nats://127.0.0.1:4222")
///     .name("reco-example")
///     .connect_timeout(std::time::Duration::from_secs(2))
///     .connect()
///     .await?;
/// # drop(client); Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    url: String,
    name: Option<String>,
    subscription_capacity: Option<usize>,
    connect_timeout: Option<Duration>,
    count_events: bool,
    slow_consumers: Option<Arc<AtomicU64>>,
    no_request_timeout: bool,
    retry_initial: bool,
}

impl ConnectOptions {
    /// Options for the server at `url`, every other option at the client
    /// library's default.
    pub fn new(url: impl Into<String>) -> Self {
        ConnectOptions {
            url: url.into(),
            name: None,
            subscription_capacity: None,
            connect_timeout: None,
            count_events: false,
            slow_consumers: None,
            no_request_timeout: false,
            retry_initial: false,
        }
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client name the server shows (`nats-server` monitoring, logs).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Messages a subscription buffers before the client drops them (and
    /// reports a slow consumer).
    pub fn subscription_capacity(mut self, capacity: usize) -> Self {
        self.subscription_capacity = Some(capacity);
        self
    }

    /// How long to try to connect before giving up.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Count slow consumers and connection events as metrics and log them
    /// (what a serving node wants).
    pub fn count_events(mut self) -> Self {
        self.count_events = true;
        self
    }

    /// Also add every slow-consumer event to `counter` (what a load
    /// generator reading its own losses wants).
    pub fn slow_consumers(mut self, counter: Arc<AtomicU64>) -> Self {
        self.slow_consumers = Some(counter);
        self
    }

    /// No client-side request timeout: the caller bounds every request
    /// itself (the simulator measures each one).
    pub fn no_request_timeout(mut self) -> Self {
        self.no_request_timeout = true;
        self
    }

    /// Keep retrying the first connection instead of failing at once (for a
    /// server that is still starting).
    pub fn retry_on_initial_connect(mut self) -> Self {
        self.retry_initial = true;
        self
    }

    /// Connects.
    ///
    /// # Errors
    /// [`ConnectError`] naming the URL when the server cannot be reached in
    /// time.
    pub async fn connect(self) -> Result<async_nats::Client, ConnectError> {
        let mut options = async_nats::ConnectOptions::new();
        if let Some(name) = &self.name {
            options = options.name(name);
        }
        if let Some(capacity) = self.subscription_capacity {
            options = options.subscription_capacity(capacity);
        }
        if let Some(timeout) = self.connect_timeout {
            options = options.connection_timeout(timeout);
        }
        if self.no_request_timeout {
            options = options.request_timeout(None);
        }
        if self.retry_initial {
            options = options.retry_on_initial_connect();
        }
        if self.count_events || self.slow_consumers.is_some() {
            let (count, counter) = (self.count_events, self.slow_consumers.clone());
            options = options.event_callback(move |event| {
                let counter = counter.clone();
                async move { on_event(event, count, counter.as_deref()) }
            });
        }
        options
            .connect(self.url.as_str())
            .await
            .map_err(|source| ConnectError {
                url: self.url.clone(),
                source,
            })
    }
}

fn on_event(event: async_nats::Event, count: bool, counter: Option<&AtomicU64>) {
    if let async_nats::Event::SlowConsumer(sid) = event {
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if count {
            metrics::counter!(m::NATS_SLOW_CONSUMER_TOTAL).increment(1);
            tracing::warn!(
                sid,
                "NATS subscription is a slow consumer: messages were dropped."
            );
        }
        return;
    }
    if !count {
        return;
    }
    let name = match event {
        async_nats::Event::Connected => "connected",
        async_nats::Event::Disconnected => "disconnected",
        async_nats::Event::LameDuckMode => "lame_duck",
        async_nats::Event::Draining => "draining",
        async_nats::Event::Closed => "closed",
        _ => "other",
    };
    metrics::counter!(m::NATS_EVENTS_TOTAL, "event" => name).increment(1);
    tracing::info!(event = %event, "NATS connection event.");
}

/// A round trip to the server did not complete.
#[derive(Debug, Error)]
pub enum RoundTripError {
    /// The probe subscription could not be made.
    #[error("cannot subscribe for a NATS round trip")]
    Subscribe(#[source] async_nats::SubscribeError),
    /// The probe could not be published.
    #[error("cannot publish a NATS round trip probe")]
    Publish(#[source] async_nats::PublishError),
    /// The server did not answer in time.
    #[error("NATS server did not answer a round trip within {0:?}")]
    Timeout(Duration),
    /// The connection closed first.
    #[error("the NATS connection closed during a round trip")]
    Closed,
}

/// Waits until the server has processed everything this client sent so far
/// (`Client::flush` only writes to the socket): a message to our own inbox
/// comes back only after earlier subscriptions and publications are in.
/// Gives up after 10 s.
///
/// # Errors
/// [`RoundTripError`].
pub async fn round_trip(client: &async_nats::Client) -> Result<(), RoundTripError> {
    round_trip_within(client, Duration::from_secs(10)).await
}

/// [`round_trip`], giving up after `timeout`.
///
/// # Errors
/// [`RoundTripError`].
pub async fn round_trip_within(
    client: &async_nats::Client,
    timeout: Duration,
) -> Result<(), RoundTripError> {
    use futures::StreamExt as _;
    let inbox = client.new_inbox();
    let mut sub = client
        .subscribe(inbox.clone())
        .await
        .map_err(RoundTripError::Subscribe)?;
    client
        .publish(inbox, bytes::Bytes::new())
        .await
        .map_err(RoundTripError::Publish)?;
    match tokio::time::timeout(timeout, sub.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(RoundTripError::Closed),
        Err(_) => Err(RoundTripError::Timeout(timeout)),
    }
}
