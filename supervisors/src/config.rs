//! The configuration of a node: every knob an operator can set, with the
//! default a production operator would accept.
//!
//! Sources, later ones winning: built-in defaults, the TOML file given with
//! `--config`, the environment (`RECO_NATS_URL`, `RECO_NATS_USER`,
//! `RECO_NATS_PASSWORD`, … see [`reco_client::SecurityArgs`]), command-line
//! flags. Secrets (passwords, tokens, credentials in the URL) print as
//! `<redacted>`.
//! `reco serve --print-config` prints the effective result. Unknown keys in
//! the file are an error (a typo must not silently keep a default), and
//! every value is range-checked by [`Config::validate`].

use crate::supervision::{Backoff, Exhausted, Intensity, Strategy, SupervisorSettings};
pub use reco_client::ENV_NATS_URL;
use reco_client::{NatsSecurity, Secret};
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
    /// The operator surface.
    pub admin: AdminConfig,
    /// Many nodes on one NATS (used when the server maps the subjects into
    /// partitions; see `reco nats-config`).
    pub cluster: ClusterConfig,
    /// The near-real-time aggregation job (`reco nearline`).
    pub streaming: StreamingConfig,
    /// The counterfactual log: sampled late model answers beside what was
    /// served.
    pub counterfactual: CounterfactualConfig,
    /// How a node uses the job's snapshots (rows `trending`, `billboard`).
    pub aggregates: AggregatesConfig,
}

/// The counterfactual log: for a sampled share of the requests the model
/// answers after the fallback already replied, the late list and the served
/// one are published on `<prefix>.counterfactual` and recorded in a
/// JetStream stream (see `actors/src/counterfactual.rs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CounterfactualConfig {
    /// Share of model-bound requests whose late answer is kept and
    /// published (0 to 1; 0 disables the log).
    pub sample_rate: f64,
    /// Records waiting to be published; beyond it they are dropped (counted).
    pub queue: usize,
    /// How long after the fallback replied a sampled request still waits
    /// for the model, in ms.
    pub max_late_ms: u64,
    /// Record the published records in a JetStream stream.
    pub record: bool,
    /// Name of that stream.
    pub stream: String,
    /// Records older than this are dropped by the server, in seconds.
    pub max_age_secs: u64,
    /// The stream's size cap in bytes; beyond it the oldest records go.
    pub max_bytes: u64,
}

impl Default for CounterfactualConfig {
    fn default() -> Self {
        CounterfactualConfig {
            sample_rate: 0.1,
            queue: 1024,
            max_late_ms: 5_000,
            record: true,
            stream: "RECO_COUNTERFACTUAL".into(),
            max_age_secs: 7 * 24 * 3600,
            max_bytes: 256 << 20,
        }
    }
}

/// How a node uses the near-real-time aggregate snapshots published by
/// `reco nearline` (in the bucket `streaming.snapshot_bucket`): rows
/// `trending` and `billboard`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregatesConfig {
    /// Load and hot-swap the snapshots (false: the rows answer from the
    /// popular list, reason `aggregates_unavailable`).
    pub enabled: bool,
    /// A snapshot older than this (ms since the job read its windows) is
    /// not used. The job republishes at least every minute.
    pub max_age_ms: u64,
    /// The member's top items under the model that become billboard arms.
    pub billboard_pool: usize,
    /// Titles the model does not know (launched after its training) that
    /// become billboard arms.
    pub billboard_new_titles: usize,
    /// Pseudo-impressions of the billboard bandit's prior.
    pub billboard_prior_strength: f64,
    /// How far one standard deviation of model score moves the prior mean.
    pub billboard_score_spread: f64,
    /// How far one standard deviation of model score tilts each draw after
    /// the evidence (keeps the billboard personal).
    pub billboard_score_lift: f64,
}

impl Default for AggregatesConfig {
    fn default() -> Self {
        let d = reco_actors::aggregates::AggregatesSettings::default();
        AggregatesConfig {
            enabled: true,
            max_age_ms: d.max_age.as_millis() as u64,
            billboard_pool: d.billboard.pool,
            billboard_new_titles: d.billboard.new_titles,
            billboard_prior_strength: d.billboard.bandit.prior_strength,
            billboard_score_spread: d.billboard.bandit.score_spread,
            billboard_score_lift: d.billboard.bandit.score_lift,
        }
    }
}

impl AggregatesConfig {
    /// The actors' typed settings.
    pub fn settings(&self) -> reco_actors::aggregates::AggregatesSettings {
        reco_actors::aggregates::AggregatesSettings {
            max_age: Duration::from_millis(self.max_age_ms),
            billboard: reco_actors::aggregates::BillboardSettings {
                pool: self.billboard_pool,
                new_titles: self.billboard_new_titles,
                bandit: reco_models::bandit::BanditParams {
                    prior_strength: self.billboard_prior_strength,
                    score_spread: self.billboard_score_spread,
                    score_lift: self.billboard_score_lift,
                    ..reco_models::bandit::BanditParams::default()
                },
            },
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, value: String, expected: &'static str| {
            Err(ConfigError::Range {
                key,
                value,
                expected,
            })
        };
        if !(1_000..=7 * 24 * 3_600_000).contains(&self.max_age_ms) {
            let v = self.max_age_ms.to_string();
            return bad("aggregates.max_age_ms", v, "1000 to 604800000 (a week)");
        }
        if !(1..=500).contains(&self.billboard_pool) {
            let v = self.billboard_pool.to_string();
            return bad("aggregates.billboard_pool", v, "1 to 500");
        }
        if self.billboard_new_titles > 500 {
            let v = self.billboard_new_titles.to_string();
            return bad("aggregates.billboard_new_titles", v, "0 to 500");
        }
        for (key, value, lo, hi, expected) in [
            (
                "aggregates.billboard_prior_strength",
                self.billboard_prior_strength,
                0.01,
                1e6,
                "0.01 to 1000000",
            ),
            (
                "aggregates.billboard_score_spread",
                self.billboard_score_spread,
                0.0,
                5.0,
                "0 to 5",
            ),
            (
                "aggregates.billboard_score_lift",
                self.billboard_score_lift,
                0.0,
                5.0,
                "0 to 5",
            ),
        ] {
            if !(value.is_finite() && (lo..=hi).contains(&value)) {
                return bad(key, value.to_string(), expected);
            }
        }
        Ok(())
    }
}

/// The operator surface: who may change a node's state over NATS.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// When set, state-changing admin requests (faults, model pin/unpin,
    /// reload) must carry it in the `Reco-Operator-Token` header; others
    /// are refused and counted (`reco_admin_refused_total`). Printed
    /// redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_token: Option<Secret>,
}

/// Many nodes on one NATS: partitions, leases and replay. A node detects at
/// start-up whether the server maps `<prefix>.events.*` and
/// `<prefix>.recommend.*` into partitions; without the mapping it runs
/// alone and these keys only size its single-mode lease.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name (letters, digits, '-', '_'); empty: host name and
    /// process id. `reco serve --node-id` overrides it.
    pub node_id: String,
    /// Number of partitions; must match the server's mapping (changing it
    /// is a migration: stop every node, change the server and the nodes).
    pub partitions: u32,
    /// Lease length in milliseconds: a crashed node's partitions are served
    /// again about this long after it died. Every node must use the same
    /// (the lease bucket's, once it exists).
    pub lease_ms: u64,
    /// How far back a new owner replays a partition's events to rebuild its
    /// members' recent signals, in seconds.
    pub replay_window_secs: u64,
    /// Events buffered between the partition intakes and the ingress.
    pub events_buffer: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: String::new(),
            partitions: 64,
            lease_ms: 5000,
            replay_window_secs: 600,
            events_buffer: 4096,
        }
    }
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
    /// User name (with `password`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password of `user` (prefer `RECO_NATS_PASSWORD`); printed redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Authentication token (prefer `RECO_NATS_TOKEN`); printed redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// File holding an NKey seed (`SU…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (user JWT and seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creds_file: Option<PathBuf>,
    /// PEM CA file that signed the server's certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate (servers that verify clients).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM key of the client certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// Refuse a connection without TLS.
    pub tls_required: bool,
    /// TLS handshake before the server's INFO (`handshake_first` servers).
    pub tls_first: bool,
    /// Prefix of the node's reply inboxes (`_INBOX` when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbox_prefix: Option<String>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            prefix: reco_messages::subjects::DEFAULT_PREFIX.into(),
            subscription_capacity: 65_536,
            connect_timeout_ms: 5_000,
            user: None,
            password: None,
            token: None,
            nkey_seed_file: None,
            creds_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_required: false,
            tls_first: false,
            inbox_prefix: None,
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
    /// Most members with events resident at once (over all shards); the
    /// least recently used is passivated beyond it.
    pub max_resident: u64,
    /// Most members seen only through requests ("visitors": no event yet)
    /// resident at once (over all shards); passivated first, so a flood of
    /// requests for new member ids cannot push out members with events.
    pub max_visitors: u64,
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
    /// Recent signals older than this (ms) are not folded in.
    pub signal_horizon_ms: u64,
    /// A producer's `at_ms` up to this far (ms) in the future is believed;
    /// beyond it (or older than the horizon) receipt time is used.
    pub signal_max_skew_ms: u64,
    /// A fresh event weighs this many times its training weight in the
    /// online fold-in (measured by the replay evaluation, see README).
    pub recent_boost: f32,
    /// The recent boost halves every this many ms (0: no decay).
    pub recent_half_life_ms: u64,
    /// Scale of the member's training history in the online fold-in (0
    /// ignores it).
    pub history_weight: f32,
    /// A recent event seen on the device a request names weighs this many
    /// times more in that request's fold-in (1: the device is ignored;
    /// measured by `reco-sim device`, see README).
    pub same_device_weight: f32,
    /// A member's last model answer is served again, without a scan, for
    /// up to this long (ms) while the member applies no event, the model
    /// is not swapped and the request has the same shape (0: never).
    pub reuse_max_age_ms: u64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            max_resident: 1_000_000,
            max_visitors: 100_000,
            idle_timeout_ms: 30 * 60 * 1000,
            recent_events: 50,
            mailbox: 64,
            shard_mailbox: 8_192,
            quarantine_after: 3,
            signal_horizon_ms: 30 * 24 * 3_600_000,
            signal_max_skew_ms: 60_000,
            recent_boost: 32.0,
            recent_half_life_ms: 3_600_000,
            history_weight: 1.0,
            same_device_weight: reco_models::SAME_DEVICE_WEIGHT,
            reuse_max_age_ms: 60_000,
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
    /// The breaker in front of the model pool: off, every request asks the
    /// model.
    pub breaker_enabled: bool,
    /// Its rolling window, in ms.
    pub breaker_window_ms: u64,
    /// Outcomes the window must hold before the breaker may open.
    pub breaker_min_requests: u32,
    /// Share of missed deadlines / failures in the window that opens it.
    pub breaker_threshold: f64,
    /// How long it stays open before half-open probes, in ms.
    pub breaker_open_ms: u64,
    /// Probes let through half-open; all must succeed to close it.
    pub breaker_probes: u32,
    /// How a request's items are scored: `exact` reads every item;
    /// `pruned` scores the model's item clusters (made by `reco train`)
    /// and then only the items of the best `probes` of them. A model
    /// without clusters is always scanned exactly.
    pub scan: ScanMode,
    /// Clusters whose items a pruned scan reads (1 to 65536): more probes,
    /// higher recall against the exact scan and more time. The default
    /// (64) kept recall@10 >= 0.98 on ml-latest-small and on a synthetic
    /// 1 M-item catalogue (README, "Cluster-pruned scoring").
    pub probes: usize,
}

/// The `[model] scan` setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanMode {
    /// Score every item.
    Exact,
    /// Score the best `probes` clusters' items.
    #[default]
    Pruned,
}

impl ModelConfig {
    /// The scan the model workers run.
    pub fn scan(&self) -> reco_models::Scan {
        match self.scan {
            ScanMode::Exact => reco_models::Scan::Exact,
            ScanMode::Pruned => reco_models::Scan::Pruned {
                probes: self.probes,
            },
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            dir: None,
            workers: 2,
            max_in_flight: 256,
            test_delay_ms: 0,
            breaker_enabled: true,
            breaker_window_ms: 10_000,
            breaker_min_requests: 20,
            breaker_threshold: 0.5,
            breaker_open_ms: 500,
            breaker_probes: 5,
            scan: ScanMode::default(),
            probes: reco_models::kmeans::DEFAULT_PROBES,
        }
    }
}

/// The near-real-time aggregation job, `reco nearline` (see the
/// `reco_streaming` crate): it consumes the event stream `events_log.stream`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// JetStream KV bucket of the checkpoint (state + last sequence).
    pub checkpoint_bucket: String,
    /// How often the state is checkpointed, in ms: at most this much of the
    /// stream is re-read after a crash.
    pub checkpoint_interval_ms: u64,
    /// Object-store bucket of the published snapshots.
    pub snapshot_bucket: String,
    /// How often a snapshot (take rates, trending) is published, in ms.
    pub snapshot_interval_ms: u64,
    /// Snapshot versions kept in the bucket.
    pub keep_snapshots: usize,
    /// Titles in a snapshot's trending list.
    pub trending_n: usize,
    /// A stop with at least this many seconds watched is a completed play.
    pub completed_seconds: f32,
    /// Titles tracked at most (bounded memory whatever ids producers send).
    pub max_titles: usize,
    /// Distinct devices kept as segments; later ones pool under "other".
    pub max_segments: usize,
    /// Plays in the last hour a title needs to be trending.
    pub trending_min_plays: u64,
    /// Where the job's Prometheus exporter listens; empty disables it (a
    /// port of its own: it may run beside a node).
    pub metrics_addr: String,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            checkpoint_bucket: "reco_aggregates_state".into(),
            checkpoint_interval_ms: 2_000,
            snapshot_bucket: "reco_aggregates".into(),
            snapshot_interval_ms: 5_000,
            keep_snapshots: 5,
            trending_n: 100,
            completed_seconds: 1200.0,
            max_titles: 1_000_000,
            max_segments: 32,
            trending_min_plays: 3,
            metrics_addr: "127.0.0.1:9465".into(),
        }
    }
}

impl StreamingConfig {
    /// The job's typed settings under `config` (stream, payload limit).
    pub fn settings(&self, config: &Config) -> reco_streaming::StreamingSettings {
        reco_streaming::StreamingSettings {
            stream: config.events_log.stream.clone(),
            checkpoint_bucket: self.checkpoint_bucket.clone(),
            checkpoint_interval: Duration::from_millis(self.checkpoint_interval_ms),
            snapshot_bucket: self.snapshot_bucket.clone(),
            snapshot_interval: Duration::from_millis(self.snapshot_interval_ms),
            keep_snapshots: self.keep_snapshots,
            trending_n: self.trending_n,
            max_payload: config.limits.max_payload_bytes,
            params: reco_models::aggregates::AggregateParams {
                completed_seconds: self.completed_seconds,
                max_titles: self.max_titles,
                max_segments: self.max_segments,
                trending_min_plays: self.trending_min_plays,
            },
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, value: String, expected: &'static str| {
            Err(ConfigError::Range {
                key,
                value,
                expected,
            })
        };
        for (key, name) in [
            ("streaming.checkpoint_bucket", &self.checkpoint_bucket),
            ("streaming.snapshot_bucket", &self.snapshot_bucket),
        ] {
            if !reco_offline::settings::is_valid_jetstream_name(name) {
                return bad(
                    key,
                    format!("{name:?}"),
                    "1 to 64 letters, digits, '-' or '_'",
                );
            }
        }
        if !(100..=3_600_000).contains(&self.checkpoint_interval_ms) {
            let v = self.checkpoint_interval_ms.to_string();
            return bad("streaming.checkpoint_interval_ms", v, "100 to 3600000");
        }
        if !(100..=3_600_000).contains(&self.snapshot_interval_ms) {
            let v = self.snapshot_interval_ms.to_string();
            return bad("streaming.snapshot_interval_ms", v, "100 to 3600000");
        }
        if !(1..=1000).contains(&self.keep_snapshots) {
            let v = self.keep_snapshots.to_string();
            return bad("streaming.keep_snapshots", v, "1 to 1000");
        }
        if !(1..=10_000).contains(&self.trending_n) {
            return bad(
                "streaming.trending_n",
                self.trending_n.to_string(),
                "1 to 10000",
            );
        }
        if !(self.completed_seconds.is_finite()
            && (0.0..=604_800.0).contains(&self.completed_seconds))
        {
            let v = self.completed_seconds.to_string();
            return bad("streaming.completed_seconds", v, "0 to 604800 (a week)");
        }
        if !(1..=100_000_000).contains(&self.max_titles) {
            let v = self.max_titles.to_string();
            return bad("streaming.max_titles", v, "1 to 100000000");
        }
        if self.max_segments > 1024 {
            let v = self.max_segments.to_string();
            return bad("streaming.max_segments", v, "0 to 1024");
        }
        if !self.metrics_addr.is_empty()
            && self.metrics_addr.parse::<std::net::SocketAddr>().is_err()
        {
            return bad(
                "streaming.metrics_addr",
                format!("{:?}", self.metrics_addr),
                "an address like \"127.0.0.1:9465\", or \"\" to disable the exporter",
            );
        }
        Ok(())
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
    /// NATS credentials or TLS options that do not fit together.
    #[error("config [nats]: {0}")]
    Security(String),
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
    /// The credentials and TLS options of these keys.
    pub fn security(&self) -> NatsSecurity {
        NatsSecurity {
            user: self.user.clone(),
            password: self.password.clone(),
            token: self.token.clone(),
            nkey_seed_file: self.nkey_seed_file.clone(),
            creds_file: self.creds_file.clone(),
            tls_ca_file: self.tls_ca_file.clone(),
            tls_cert_file: self.tls_cert_file.clone(),
            tls_key_file: self.tls_key_file.clone(),
            tls_required: self.tls_required,
            tls_first: self.tls_first,
            inbox_prefix: self.inbox_prefix.clone(),
        }
    }

    /// Replaces the security keys with `security` (after the flags and
    /// environment were merged over them).
    pub fn set_security(&mut self, security: NatsSecurity) {
        self.user = security.user;
        self.password = security.password;
        self.token = security.token;
        self.nkey_seed_file = security.nkey_seed_file;
        self.creds_file = security.creds_file;
        self.tls_ca_file = security.tls_ca_file;
        self.tls_cert_file = security.tls_cert_file;
        self.tls_key_file = security.tls_key_file;
        self.tls_required = security.tls_required;
        self.tls_first = security.tls_first;
        self.inbox_prefix = security.inbox_prefix;
    }

    /// How a node connects: named `reco-serve`, bounded subscription
    /// buffers, slow consumers and connection events counted.
    pub fn connect_options(&self) -> reco_client::ConnectOptions {
        reco_client::ConnectOptions::new(&self.url)
            .security(self.security())
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

    /// The configuration as TOML, every key present, secrets (passwords,
    /// tokens, credentials in the URL) shown as `<redacted>`.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.nats.url = reco_client::redact_url(&self.nats.url);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
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
            "sessions.max_visitors",
            self.sessions.max_visitors,
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
            "sessions.signal_horizon_ms",
            self.sessions.signal_horizon_ms,
            1,
            365 * 24 * 3_600_000,
            "1 ms to 365 days",
        )?;
        range(
            "sessions.signal_max_skew_ms",
            self.sessions.signal_max_skew_ms,
            0,
            24 * 3_600_000,
            "0 to 1 day",
        )?;
        for (key, value) in [
            ("sessions.recent_boost", self.sessions.recent_boost),
            ("sessions.history_weight", self.sessions.history_weight),
            (
                "sessions.same_device_weight",
                self.sessions.same_device_weight,
            ),
        ] {
            if !value.is_finite() {
                return Err(ConfigError::Range {
                    key,
                    value: value.to_string(),
                    expected: "a finite number",
                });
            }
        }
        range(
            "sessions.recent_boost",
            self.sessions.recent_boost,
            1.0,
            1000.0,
            "1 to 1000",
        )?;
        range(
            "sessions.recent_half_life_ms",
            self.sessions.recent_half_life_ms,
            0,
            365 * 24 * 3_600_000,
            "0 (no decay) to 365 days",
        )?;
        range(
            "sessions.history_weight",
            self.sessions.history_weight,
            0.0,
            100.0,
            "0 to 100",
        )?;
        range(
            "sessions.same_device_weight",
            self.sessions.same_device_weight,
            1.0,
            100.0,
            "1 (off) to 100",
        )?;
        range(
            "sessions.reuse_max_age_ms",
            self.sessions.reuse_max_age_ms,
            0,
            86_400_000,
            "0 (never) to 1 day",
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
            "model.breaker_window_ms",
            self.model.breaker_window_ms,
            10,
            3_600_000,
            "10 ms to 1 hour",
        )?;
        range(
            "model.breaker_min_requests",
            self.model.breaker_min_requests,
            1,
            1_000_000,
            "1 to 1000000",
        )?;
        if !(self.model.breaker_threshold > 0.0 && self.model.breaker_threshold <= 1.0) {
            return Err(ConfigError::Range {
                key: "model.breaker_threshold",
                value: self.model.breaker_threshold.to_string(),
                expected: "above 0, at most 1",
            });
        }
        range(
            "model.breaker_open_ms",
            self.model.breaker_open_ms,
            1,
            3_600_000,
            "1 ms to 1 hour",
        )?;
        range(
            "model.breaker_probes",
            self.model.breaker_probes,
            1,
            10_000,
            "1 to 10000",
        )?;
        range("model.probes", self.model.probes, 1, 65_536, "1 to 65536")?;
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
        let cf = &self.counterfactual;
        if !(0.0..=1.0).contains(&cf.sample_rate) {
            return Err(ConfigError::Range {
                key: "counterfactual.sample_rate",
                value: cf.sample_rate.to_string(),
                expected: "0 to 1",
            });
        }
        range("counterfactual.queue", cf.queue, 1, 1 << 20, "1 to 1048576")?;
        range(
            "counterfactual.max_late_ms",
            cf.max_late_ms,
            1,
            600_000,
            "1 ms to 10 minutes",
        )?;
        reco_offline::settings::check_name("counterfactual.stream", &cf.stream)?;
        range(
            "counterfactual.max_age_secs",
            cf.max_age_secs,
            60,
            10 * 365 * 24 * 3600,
            "60 s to 10 years",
        )?;
        range(
            "counterfactual.max_bytes",
            cf.max_bytes,
            1 << 20,
            1 << 50,
            "1 MiB to 1 PiB",
        )?;
        self.events_log.validate()?;
        self.publish.validate()?;
        self.nats
            .security()
            .validate()
            .map_err(ConfigError::Security)?;
        if !self.cluster.node_id.is_empty()
            && reco_cluster::NodeId::new(&self.cluster.node_id).is_err()
        {
            return Err(ConfigError::Range {
                key: "cluster.node_id",
                value: format!("{:?}", self.cluster.node_id),
                expected: "1 to 64 letters, digits, '-' or '_' (or empty: host name and pid)",
            });
        }
        range(
            "cluster.partitions",
            self.cluster.partitions,
            1,
            reco_messages::partition::MAX_PARTITIONS,
            "1 to 4096",
        )?;
        range(
            "cluster.lease_ms",
            self.cluster.lease_ms,
            500,
            600_000,
            "500 to 600000",
        )?;
        range(
            "cluster.replay_window_secs",
            self.cluster.replay_window_secs,
            0,
            7 * 24 * 3600,
            "0 to 604800 (a week)",
        )?;
        range(
            "cluster.events_buffer",
            self.cluster.events_buffer,
            16,
            10_000_000,
            "16 to 10000000",
        )?;
        self.streaming.validate()?;
        self.aggregates.validate()?;
        Ok(())
    }

    /// What `reco train` needs of this configuration: where NATS is, the
    /// subject prefix, the event log and the publish bucket.
    pub fn train_target(&self) -> reco_offline::command::TrainTarget {
        reco_offline::command::TrainTarget {
            nats_url: self.nats.url.clone(),
            security: self.nats.security(),
            connect_timeout: Duration::from_millis(self.nats.connect_timeout_ms),
            prefix: self.nats.prefix.clone(),
            events_log: self.events_log.clone(),
            publish: self.publish.clone(),
            max_payload_bytes: self.limits.max_payload_bytes,
            aggregate_params: self.streaming.settings(self).params,
            trending_n: self.streaming.trending_n,
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
    fn nats_secrets_are_read_from_the_file_and_printed_redacted() {
        let config = Config::from_toml(
            "[nats]\nurl = \"nats://alice:hunter2@h:4222\"\nuser = \"bob\"\n\
             password = \"swordfish\"\ntls_ca_file = \"/ca.pem\"\ntls_required = true\n",
        )
        .unwrap();
        config.validate().unwrap();
        let security = config.nats.security();
        assert_eq!(
            security.password.as_ref().map(Secret::expose),
            Some("swordfish")
        );
        assert!(security.tls_required);
        let text = config.to_toml();
        assert!(
            !text.contains("hunter2") && !text.contains("swordfish"),
            "{text}"
        );
        assert!(text.contains("password = \"<redacted>\""), "{text}");
        assert!(text.contains("nats://alice:<redacted>@h:4222"), "{text}");
        assert!(!format!("{config:?}").contains("swordfish"));
        let config = Config::from_toml("[nats]\npassword = \"x\"\n").unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("nats.user"), "{err}");
    }

    #[test]
    fn unknown_keys_and_hostile_values_are_refused_with_the_key_named() {
        let err = Config::from_toml("[model]\nworkerz = 4\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("workerz"), "{err}");
        let config = Config::from_toml("[model]\nscan = \"exact\"\nprobes = 8\n").unwrap();
        assert_eq!(config.model.scan(), reco_models::Scan::Exact);
        let config = Config::from_toml("[model]\nprobes = 8\n").unwrap();
        assert_eq!(config.model.scan(), reco_models::Scan::Pruned { probes: 8 });
        let err = Config::from_toml("[model]\nscan = \"fast\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("scan") || err.contains("fast"), "{err}");
        let err = Config::from_toml("[model]\nworkers = -1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("workers"), "{err}");
        for text in [
            "[model]\nworkers = 0",
            "[model]\nprobes = 0",
            "[sessions]\nidle_timeout_ms = 1",
            "[sessions]\nsame_device_weight = 0.5",
            "[sessions]\nsame_device_weight = nan",
            "[nats]\nprefix = \"a.*\"",
            "[recommend]\ndefault_deadline_ms = 0",
            "[node]\nmetrics_addr = \"nowhere\"",
            "[limits]\nmax_payload_bytes = 18446744073709551615",
            "[events_log]\nstream = \"a.b\"",
            "[events_log]\nmax_age_secs = 1",
            "[publish]\nbucket = \"\"",
            "[publish]\nkeep_versions = 0",
            "[streaming]\nsnapshot_interval_ms = 0",
            "[streaming]\ncheckpoint_bucket = \"a.b\"",
        ] {
            let config = Config::from_toml(text).unwrap();
            let err = config.validate().unwrap_err().to_string();
            let key = text.lines().next().unwrap().trim_matches(['[', ']']);
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
