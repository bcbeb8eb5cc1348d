//! The configuration of a node: every knob an operator can set, with the
//! default a production operator would accept.
//!
//! Sources, later ones winning: built-in defaults, the TOML file given with
//! `--config`, the environment (`RECO_NATS_URL`), command-line flags.
//! `reco serve --print-config` prints the effective result. Unknown keys in
//! the file are an error (a typo must not silently keep a default), and
//! every value is range-checked by [`Config::validate`].

use crate::supervision::{Backoff, Exhausted, Intensity, Strategy, SupervisorSettings};
pub use reco_client::ENV_NATS_URL;
pub use reco_offline::event_log::EventsLogConfig;
pub use reco_offline::publish::PublishConfig;
pub use reco_offline::settings::{is_valid_jetstream_name, OutOfRange};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Environment variable with the log filter (`info`, `reco=debug`, …).
pub const ENV_LOG: &str = "RECO_LOG";

/// The whole configuration of a serving node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How to reach NATS and which subjects to use.
    pub nats: NatsConfig,
    /// Process-level settings.
    pub node: NodeConfig,
    /// Bounds on input.
    pub limits: LimitsConfig,
    /// Member sessions.
    pub sessions: SessionsConfig,
    /// The request path.
    pub recommend: RecommendConfig,
    /// The model and its workers.
    pub model: ModelConfig,
    /// Nearline refreshes of members' lists.
    pub nearline: NearlineConfig,
    /// Restart strategies, limits and backoff per subtree.
    pub supervision: SupervisionConfig,
    /// Recording of ingested events in JetStream (what `reco train
    /// --from-stream` learns from).
    pub events_log: EventsLogConfig,
    /// Where `reco train --publish` puts model versions.
    pub publish: PublishConfig,
}

/// Nearline: after a play, rate or list_add, a member's list is recomputed
/// off the request path and becomes its first fallback tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NearlineConfig {
    /// Turn nearline refreshes on.
    pub enabled: bool,
    /// Refresh worker threads (separate from the online model workers).
    pub workers: usize,
    /// Niceness of the refresh threads (0 to 19): background work that
    /// uses what the online path leaves instead of competing with it.
    pub nice: i32,
    /// Refreshes admitted at once; beyond it a refresh is skipped (counted).
    pub max_in_flight: usize,
    /// Wait this long after the first important event before refreshing,
    /// in ms, so that a burst of events costs one refresh.
    pub debounce_ms: u64,
    /// Items in a nearline list.
    pub top_n: usize,
    /// A nearline list older than this is not served, in ms.
    pub max_age_ms: u64,
    /// Answer requests with the nearline list, without asking the model,
    /// while it reflects every event of the member and is not too old.
    pub answer_when_fresh: bool,
}

impl Default for NearlineConfig {
    fn default() -> Self {
        NearlineConfig {
            enabled: true,
            workers: 1,
            nice: 10,
            max_in_flight: 64,
            debounce_ms: 200,
            top_n: 100,
            max_age_ms: 10 * 60 * 1000,
            answer_when_fresh: false,
        }
    }
}

/// Supervision settings of each subtree of the node (see the `supervision`
/// module for the semantics).
///
/// Each subtree has defaults of its own (the model stays down past its
/// intensity, the root escalates, …); a `[supervision.<name>]` section that
/// sets only some keys keeps that subtree's defaults for the others.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SupervisionConfig {
    /// The root: its children are the lists, the model subtree and the
    /// sessions subtree. When it gives up, the node shuts down (exit 1).
    pub root: SubtreeConfig,
    /// The model workers (permanent; a panicking worker restarts after a
    /// backoff while the others serve).
    pub model: SubtreeConfig,
    /// The nearline refresh workers.
    pub nearline: SubtreeConfig,
    /// The session shards (permanent; a restarted shard starts with no
    /// sessions).
    pub sessions: SubtreeConfig,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            root: SubtreeConfig {
                max_restarts: 3,
                ..SubtreeConfig::default()
            },
            model: SubtreeConfig::serves_through_loss(),
            nearline: SubtreeConfig::serves_through_loss(),
            sessions: SubtreeConfig::default(),
        }
    }
}

impl<'de> Deserialize<'de> for SupervisionConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Sections {
            #[serde(default)]
            root: PartialSubtree,
            #[serde(default)]
            model: PartialSubtree,
            #[serde(default)]
            nearline: PartialSubtree,
            #[serde(default)]
            sessions: PartialSubtree,
        }
        let sections = Sections::deserialize(d)?;
        let defaults = SupervisionConfig::default();
        Ok(SupervisionConfig {
            root: sections.root.over(defaults.root),
            model: sections.model.over(defaults.model),
            nearline: sections.nearline.over(defaults.nearline),
            sessions: sections.sessions.over(defaults.sessions),
        })
    }
}

/// The keys of one `[supervision.<name>]` section that the file sets.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialSubtree {
    strategy: Option<Strategy>,
    max_restarts: Option<u32>,
    period_ms: Option<u64>,
    backoff_min_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    backoff_factor: Option<f64>,
    backoff_jitter: Option<f64>,
    backoff_reset_ms: Option<u64>,
    on_exhausted: Option<Exhausted>,
    retry_after_ms: Option<u64>,
}

impl PartialSubtree {
    /// The subtree's defaults with the keys the file set.
    fn over(self, d: SubtreeConfig) -> SubtreeConfig {
        SubtreeConfig {
            strategy: self.strategy.unwrap_or(d.strategy),
            max_restarts: self.max_restarts.unwrap_or(d.max_restarts),
            period_ms: self.period_ms.unwrap_or(d.period_ms),
            backoff_min_ms: self.backoff_min_ms.unwrap_or(d.backoff_min_ms),
            backoff_max_ms: self.backoff_max_ms.unwrap_or(d.backoff_max_ms),
            backoff_factor: self.backoff_factor.unwrap_or(d.backoff_factor),
            backoff_jitter: self.backoff_jitter.unwrap_or(d.backoff_jitter),
            backoff_reset_ms: self.backoff_reset_ms.unwrap_or(d.backoff_reset_ms),
            on_exhausted: self.on_exhausted.unwrap_or(d.on_exhausted),
            retry_after_ms: self.retry_after_ms.unwrap_or(d.retry_after_ms),
        }
    }
}

/// Strategy, restart intensity and backoff of one supervisor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubtreeConfig {
    /// `one_for_one`, `one_for_all` or `rest_for_one`.
    pub strategy: Strategy,
    /// Restarts allowed within `period_ms` before the subtree gives up and
    /// escalates to its parent.
    pub max_restarts: u32,
    /// The intensity window, in ms.
    pub period_ms: u64,
    /// Delay before the first restart, in ms.
    pub backoff_min_ms: u64,
    /// Largest delay between restarts, in ms.
    pub backoff_max_ms: u64,
    /// Growth of the delay per consecutive failure.
    pub backoff_factor: f64,
    /// Random fraction added to each delay (0 to 1).
    pub backoff_jitter: f64,
    /// A child that ran this long without failing starts over at the
    /// minimum delay, in ms.
    pub backoff_reset_ms: u64,
    /// Past `max_restarts` within `period_ms`: `escalate` (stop, and let the
    /// parent decide; the root stops the node) or `stay_down` (stop the
    /// children, answer their work from fallbacks, retry after
    /// `retry_after_ms`). Defaults: `stay_down` for model and nearline,
    /// `escalate` for sessions and root (which must escalate).
    pub on_exhausted: Exhausted,
    /// With `on_exhausted = "stay_down"`: how long the children stay down
    /// before they are started again, in ms.
    pub retry_after_ms: u64,
}

impl Default for SubtreeConfig {
    fn default() -> Self {
        SubtreeConfig {
            strategy: Strategy::OneForOne,
            max_restarts: 10,
            period_ms: 60_000,
            backoff_min_ms: 10,
            backoff_max_ms: 5_000,
            backoff_factor: 2.0,
            backoff_jitter: 0.2,
            backoff_reset_ms: 30_000,
            on_exhausted: Exhausted::Escalate,
            retry_after_ms: 1_000,
        }
    }
}

impl SubtreeConfig {
    /// Defaults of a subtree the node can serve through the loss of (the
    /// model and nearline workers): it stays down past its intensity
    /// instead of stopping the node, and comes back quickly once the fault
    /// is gone (restart delays capped at 500 ms, a retry every 500 ms).
    fn serves_through_loss() -> Self {
        SubtreeConfig {
            max_restarts: 20,
            backoff_max_ms: 500,
            on_exhausted: Exhausted::StayDown,
            retry_after_ms: 500,
            ..SubtreeConfig::default()
        }
    }

    /// The settings a supervisor runs with.
    pub fn settings(&self) -> SupervisorSettings {
        SupervisorSettings {
            strategy: self.strategy,
            intensity: Intensity {
                max_restarts: self.max_restarts,
                period: Duration::from_millis(self.period_ms),
            },
            backoff: Backoff {
                min: Duration::from_millis(self.backoff_min_ms),
                max: Duration::from_millis(self.backoff_max_ms),
                factor: self.backoff_factor,
                jitter: self.backoff_jitter,
                reset_after: Duration::from_millis(self.backoff_reset_ms),
            },
            on_exhausted: self.on_exhausted,
            retry_after: Duration::from_millis(self.retry_after_ms),
        }
    }

    fn validate(&self, name: &'static str) -> Result<(), ConfigError> {
        let bad = |key: &'static str, value: String, expected: &'static str| ConfigError::Range {
            key,
            value: format!("{value} (in [supervision.{name}])"),
            expected,
        };
        if self.max_restarts > 10_000 {
            return Err(bad(
                "max_restarts",
                self.max_restarts.to_string(),
                "0 to 10000",
            ));
        }
        if !(1..=86_400_000).contains(&self.period_ms) {
            return Err(bad(
                "period_ms",
                self.period_ms.to_string(),
                "1 ms to 1 day",
            ));
        }
        if self.backoff_max_ms > 600_000 || self.backoff_min_ms > self.backoff_max_ms {
            return Err(bad(
                "backoff_min_ms/backoff_max_ms",
                format!("{}/{}", self.backoff_min_ms, self.backoff_max_ms),
                "backoff_min_ms <= backoff_max_ms <= 600000",
            ));
        }
        if !(1.0..=10.0).contains(&self.backoff_factor) {
            return Err(bad(
                "backoff_factor",
                self.backoff_factor.to_string(),
                "1 to 10",
            ));
        }
        if !(0.0..=1.0).contains(&self.backoff_jitter) {
            return Err(bad(
                "backoff_jitter",
                self.backoff_jitter.to_string(),
                "0 to 1",
            ));
        }
        if self.backoff_reset_ms > 86_400_000 {
            return Err(bad(
                "backoff_reset_ms",
                self.backoff_reset_ms.to_string(),
                "0 to 1 day",
            ));
        }
        if !(10..=3_600_000).contains(&self.retry_after_ms) {
            return Err(bad(
                "retry_after_ms",
                self.retry_after_ms.to_string(),
                "10 ms to 1 hour",
            ));
        }
        if name == "root" && self.on_exhausted != Exhausted::Escalate {
            return Err(bad(
                "on_exhausted",
                "stay_down".into(),
                "escalate (the root has no parent: when it gives up the node stops)",
            ));
        }
        Ok(())
    }
}

/// NATS connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL.
    pub url: String,
    /// Prefix of every subject.
    pub prefix: String,
    /// Messages a subscription buffers before the client drops them (and
    /// reports a slow consumer).
    pub subscription_capacity: usize,
    /// How long to try to connect at start-up, in milliseconds.
    pub connect_timeout_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            prefix: reco_messages::subjects::DEFAULT_PREFIX.into(),
            subscription_capacity: 65_536,
            connect_timeout_ms: 5_000,
        }
    }
}

/// Process-level settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Session shards, one per arbiter thread; 0 means one per core.
    pub shards: usize,
    /// Where the Prometheus exporter listens; empty disables it.
    pub metrics_addr: String,
    /// On SIGINT/SIGTERM, how long to wait for in-flight requests, in ms.
    pub drain_timeout_ms: u64,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// TEST ONLY: accept fault injection on `<prefix>.admin.faults` (the
    /// simulator uses it). Leave off in production.
    pub fault_injection: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            shards: 0,
            metrics_addr: "127.0.0.1:9464".into(),
            drain_timeout_ms: 10_000,
            log_format: "text".into(),
            fault_injection: false,
        }
    }
}

/// Bounds on input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest event or request payload accepted, in bytes.
    pub max_payload_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_payload_bytes: 64 * 1024,
        }
    }
}

/// Member sessions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// Most members resident at once (over all shards); the least recently
    /// used is passivated beyond it.
    pub max_resident: u64,
    /// A member with no traffic for this long is passivated, in ms.
    pub idle_timeout_ms: u64,
    /// Events remembered per member.
    pub recent_events: usize,
    /// Data mailbox capacity of one session.
    pub mailbox: usize,
    /// Data mailbox capacity of one shard, in messages (a batch of events
    /// taken off NATS together, or one request).
    pub shard_mailbox: usize,
    /// Times an event may crash its member's session (each crash restarts
    /// the session) before it is quarantined: dropped and dead-lettered.
    pub quarantine_after: u32,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            max_resident: 1_000_000,
            idle_timeout_ms: 30 * 60 * 1000,
            recent_events: 50,
            mailbox: 64,
            shard_mailbox: 8_192,
            quarantine_after: 3,
        }
    }
}

/// The request path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecommendConfig {
    /// Deadline of a request that names none, in ms.
    pub default_deadline_ms: u64,
    /// The fallback answers this long before the deadline, in microseconds:
    /// it covers the reply's trip back and the 1 ms granularity of the timer
    /// (which may fire up to 1 ms late). The default, 3 ms, is the timer's
    /// 1 ms plus the tail of a NATS request/reply on a busy 2-core machine
    /// (echo p99.9 ≈ 2.4 ms in `reco-sim bench`); at 1.5 ms, 5–8 % of the
    /// slow-model scenario's replies came later than deadline + 1 ms.
    pub reply_margin_us: u64,
}

impl Default for RecommendConfig {
    fn default() -> Self {
        RecommendConfig {
            default_deadline_ms: 50,
            reply_margin_us: 3_000,
        }
    }
}

/// The model and its workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Directory written by `reco train --out` (model.bin, lists.bin).
    /// Without one the node serves the fallback only.
    pub dir: Option<PathBuf>,
    /// Scoring worker threads.
    pub workers: usize,
    /// Scoring requests admitted at once; beyond it requests are answered by
    /// the fallback with `reason: overloaded`.
    pub max_in_flight: usize,
    /// TEST ONLY: every scoring pass first sleeps this long, in ms, to
    /// make the model late on purpose. Leave at 0 in production.
    pub test_delay_ms: u64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            dir: None,
            workers: 2,
            max_in_flight: 256,
            test_delay_ms: 0,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("config file {path} is invalid: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (with line and column).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("config value {key} = {value} is out of range: {expected}")]
    Range {
        /// The key, dotted.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
}

/// Reads and validates the config file at `path` (defaults without one) for
/// `reco train`.
///
/// # Errors
/// [`ConfigError`] when the file cannot be read or a value is out of range.
pub fn train_target(
    path: Option<&Path>,
) -> Result<reco_offline::command::TrainTarget, ConfigError> {
    let config = match path {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    config.validate()?;
    Ok(config.train_target())
}

impl NatsConfig {
    /// How a node connects: named `reco-serve`, bounded subscription
    /// buffers, slow consumers and connection events counted.
    pub fn connect_options(&self) -> reco_client::ConnectOptions {
        reco_client::ConnectOptions::new(&self.url)
            .name("reco-serve")
            .subscription_capacity(self.subscription_capacity)
            .connect_timeout(Duration::from_millis(self.connect_timeout_ms))
            .count_events()
    }
}

impl From<OutOfRange> for ConfigError {
    fn from(e: OutOfRange) -> Self {
        ConfigError::Range {
            key: e.key,
            value: e.value,
            expected: e.expected,
        }
    }
}

impl Config {
    /// Reads a TOML file; missing keys keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Parses TOML text; missing keys keep their defaults.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The configuration as TOML, every key present.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Checks every value against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn range<T: PartialOrd + ToString>(
            key: &'static str,
            value: T,
            lo: T,
            hi: T,
            expected: &'static str,
        ) -> Result<(), ConfigError> {
            if value < lo || value > hi {
                return Err(ConfigError::Range {
                    key,
                    value: value.to_string(),
                    expected,
                });
            }
            Ok(())
        }
        if reco_messages::Subjects::new(&self.nats.prefix).is_err() {
            return Err(ConfigError::Range {
                key: "nats.prefix",
                value: format!("{:?}", self.nats.prefix),
                expected: "dot-separated tokens of letters, digits, '-' or '_'",
            });
        }
        range(
            "nats.subscription_capacity",
            self.nats.subscription_capacity,
            64,
            10_000_000,
            "64 to 10000000",
        )?;
        range(
            "nats.connect_timeout_ms",
            self.nats.connect_timeout_ms,
            100,
            600_000,
            "100 to 600000",
        )?;
        range(
            "node.shards",
            self.node.shards,
            0,
            1024,
            "0 (one per core) to 1024",
        )?;
        range(
            "node.drain_timeout_ms",
            self.node.drain_timeout_ms,
            0,
            3_600_000,
            "0 to 3600000",
        )?;
        if !matches!(self.node.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Range {
                key: "node.log_format",
                value: format!("{:?}", self.node.log_format),
                expected: "\"text\" or \"json\"",
            });
        }
        if !self.node.metrics_addr.is_empty()
            && self
                .node
                .metrics_addr
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return Err(ConfigError::Range {
                key: "node.metrics_addr",
                value: format!("{:?}", self.node.metrics_addr),
                expected: "an address like \"127.0.0.1:9464\", or \"\" to disable the exporter",
            });
        }
        range(
            "limits.max_payload_bytes",
            self.limits.max_payload_bytes,
            64,
            64 << 20,
            "64 to 67108864",
        )?;
        range(
            "sessions.max_resident",
            self.sessions.max_resident,
            1,
            1 << 32,
            "1 to 4294967296",
        )?;
        range(
            "sessions.idle_timeout_ms",
            self.sessions.idle_timeout_ms,
            100,
            30 * 24 * 3_600_000,
            "100 ms to 30 days",
        )?;
        range(
            "sessions.recent_events",
            self.sessions.recent_events,
            1,
            10_000,
            "1 to 10000",
        )?;
        range(
            "sessions.mailbox",
            self.sessions.mailbox,
            1,
            1 << 20,
            "1 to 1048576",
        )?;
        range(
            "sessions.shard_mailbox",
            self.sessions.shard_mailbox,
            1,
            1 << 24,
            "1 to 16777216",
        )?;
        range(
            "recommend.default_deadline_ms",
            self.recommend.default_deadline_ms,
            1,
            reco_messages::codec::MAX_DEADLINE_MS,
            "1 to 60000",
        )?;
        range(
            "recommend.reply_margin_us",
            self.recommend.reply_margin_us,
            0,
            100_000,
            "0 to 100000",
        )?;
        range(
            "sessions.quarantine_after",
            self.sessions.quarantine_after,
            1,
            1_000,
            "1 to 1000",
        )?;
        self.supervision.root.validate("root")?;
        self.supervision.model.validate("model")?;
        self.supervision.nearline.validate("nearline")?;
        range(
            "nearline.workers",
            self.nearline.workers,
            1,
            1024,
            "1 to 1024",
        )?;
        range("nearline.nice", self.nearline.nice, 0, 19, "0 to 19")?;
        range(
            "nearline.max_in_flight",
            self.nearline.max_in_flight,
            1,
            1 << 20,
            "1 to 1048576",
        )?;
        range(
            "nearline.debounce_ms",
            self.nearline.debounce_ms,
            0,
            600_000,
            "0 to 600000",
        )?;
        range(
            "nearline.top_n",
            self.nearline.top_n,
            1,
            10_000,
            "1 to 10000",
        )?;
        range(
            "nearline.max_age_ms",
            self.nearline.max_age_ms,
            1,
            30 * 86_400_000,
            "1 ms to 30 days",
        )?;
        self.supervision.sessions.validate("sessions")?;
        range("model.workers", self.model.workers, 1, 1024, "1 to 1024")?;
        range(
            "model.max_in_flight",
            self.model.max_in_flight,
            1,
            1 << 20,
            "1 to 1048576",
        )?;
        range(
            "model.test_delay_ms",
            self.model.test_delay_ms,
            0,
            60_000,
            "0 to 60000",
        )?;
        self.events_log.validate()?;
        self.publish.validate()?;
        Ok(())
    }

    /// What `reco train` needs of this configuration: where NATS is, the
    /// subject prefix, the event log and the publish bucket.
    pub fn train_target(&self) -> reco_offline::command::TrainTarget {
        reco_offline::command::TrainTarget {
            nats_url: self.nats.url.clone(),
            connect_timeout: Duration::from_millis(self.nats.connect_timeout_ms),
            prefix: self.nats.prefix.clone(),
            events_log: self.events_log.clone(),
            publish: self.publish.clone(),
            max_payload_bytes: self.limits.max_payload_bytes,
        }
    }

    /// Shards to start: the configured number, or one per core.
    pub fn shard_count(&self) -> usize {
        if self.node.shards > 0 {
            self.node.shards
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let config = Config::default();
        config.validate().unwrap();
        let text = config.to_toml();
        assert!(text.contains("default_deadline_ms = 50"), "{text}");
        assert_eq!(Config::from_toml(&text).unwrap(), config);
    }

    #[test]
    fn a_partial_file_keeps_the_other_defaults() {
        let config = Config::from_toml("[model]\nworkers = 4\n").unwrap();
        assert_eq!(config.model.workers, 4);
        assert_eq!(config.sessions, SessionsConfig::default());
    }

    #[test]
    fn a_partial_supervision_section_keeps_that_subtrees_own_defaults() {
        let config = Config::from_toml("[supervision.model]\nmax_restarts = 3\n").unwrap();
        assert_eq!(config.supervision.model.max_restarts, 3);
        assert_eq!(config.supervision.model.on_exhausted, Exhausted::StayDown);
        assert_eq!(
            config.supervision.model.backoff_max_ms,
            SupervisionConfig::default().model.backoff_max_ms
        );
        assert_eq!(config.supervision.root, SupervisionConfig::default().root);
        let err = Config::from_toml("[supervision.model]\nmax_restartz = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_restartz"), "{err}");
        let config =
            Config::from_toml("[supervision.root]\non_exhausted = \"stay_down\"\n").unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("on_exhausted"), "{err}");
    }

    #[test]
    fn unknown_keys_and_hostile_values_are_refused_with_the_key_named() {
        let err = Config::from_toml("[model]\nworkerz = 4\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("workerz"), "{err}");
        let err = Config::from_toml("[model]\nworkers = -1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("workers"), "{err}");
        for text in [
            "[model]\nworkers = 0",
            "[sessions]\nidle_timeout_ms = 1",
            "[nats]\nprefix = \"a.*\"",
            "[recommend]\ndefault_deadline_ms = 0",
            "[node]\nmetrics_addr = \"nowhere\"",
            "[limits]\nmax_payload_bytes = 18446744073709551615",
            "[events_log]\nstream = \"a.b\"",
            "[events_log]\nmax_age_secs = 1",
            "[publish]\nbucket = \"\"",
            "[publish]\nkeep_versions = 0",
        ] {
            let config = Config::from_toml(text).unwrap();
            let err = config.validate().unwrap_err().to_string();
            let key = text.lines().next().unwrap().trim_matches(['[', ']']);
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
