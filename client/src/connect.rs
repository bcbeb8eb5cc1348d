//! The one way reco code connects to NATS: the node, the command line, the
//! offline job, the simulator and the tests all build their connection here,
//! so that a new connection concern (credentials, TLS, a counter) is one more
//! option on [`ConnectOptions`] rather than a fifth copy of the connect call.
//!
//! Emits (only with [`ConnectOptions::count_events`]):
//! `reco_nats_slow_consumer_total` and `reco_nats_events_total{event}`
//! (names in [`reco_messages::metrics`]), and a log line per connection event.
//!
//! Security: every way a NATS user authenticates ([`NatsSecurity`]: user and
//! password, token, NKey seed file, `.creds` file, TLS with a CA, a client
//! certificate, `tls_required` and `tls_first`), and credentials written in
//! the URL (`nats://user:pass@host`, `nats://token@host`), which async-nats
//! 0.40 parses but never sends: they are taken out of the URL here and sent
//! as options. Secrets ([`Secret`]) stay out of `Debug` output, logs, error
//! messages and printed configuration: they show as `<redacted>`, and a URL
//! is only ever printed through [`redact_url`].

use reco_messages::metrics as m;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Environment variable naming the NATS server (read by the command line).
pub const ENV_NATS_URL: &str = "RECO_NATS_URL";
/// The NATS URL used when none is given.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// What a secret looks like wherever it would be printed.
pub const REDACTED: &str = "<redacted>";

/// A password, token or similar: printed (`Debug`, `Display`, serialized
/// configuration) only as [`REDACTED`]; the value is read with
/// [`Secret::expose`] by the one function that sends it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself (only to send it to the server).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// How to authenticate to NATS and protect the connection: the `[nats]`
/// keys of a node's config, the `--nats-*` flags and `RECO_NATS_*`
/// variables of every command (see [`SecurityArgs`]). Everything is
/// optional; what is set is sent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NatsSecurity {
    /// User name (with [`password`](Self::password)).
    pub user: Option<String>,
    /// Password of [`user`](Self::user).
    pub password: Option<Secret>,
    /// Authentication token.
    pub token: Option<Secret>,
    /// File holding an NKey seed (`SU…`): the client signs the server's
    /// nonce with it.
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (user JWT and NKey seed, decentralized auth).
    pub creds_file: Option<PathBuf>,
    /// PEM file of the CA(s) that signed the server's certificate (instead
    /// of the system's roots).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate (with [`tls_key_file`](Self::tls_key_file)),
    /// for servers that verify clients.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub tls_key_file: Option<PathBuf>,
    /// Refuse to talk to the server without TLS.
    pub tls_required: bool,
    /// Start TLS before the server's INFO (servers configured with
    /// `handshake_first`).
    pub tls_first: bool,
    /// Prefix of this client's reply inboxes (`_INBOX` when unset). With
    /// one prefix per user (`_INBOX.reco-caller`, as `reco nats-config
    /// --roles` expects), the server's permissions keep a user from reading
    /// another's replies.
    pub inbox_prefix: Option<String>,
}

impl NatsSecurity {
    /// `self` with every option set in `over` replacing it (flags and
    /// environment over the config file).
    pub fn overridden_by(mut self, over: &NatsSecurity) -> Self {
        fn pick<T: Clone>(mine: &mut Option<T>, theirs: &Option<T>) {
            if theirs.is_some() {
                mine.clone_from(theirs);
            }
        }
        pick(&mut self.user, &over.user);
        pick(&mut self.password, &over.password);
        pick(&mut self.token, &over.token);
        pick(&mut self.nkey_seed_file, &over.nkey_seed_file);
        pick(&mut self.creds_file, &over.creds_file);
        pick(&mut self.tls_ca_file, &over.tls_ca_file);
        pick(&mut self.tls_cert_file, &over.tls_cert_file);
        pick(&mut self.tls_key_file, &over.tls_key_file);
        pick(&mut self.inbox_prefix, &over.inbox_prefix);
        self.tls_required |= over.tls_required;
        self.tls_first |= over.tls_first;
        self
    }

    /// The ways of authenticating set, by name (for error messages).
    fn methods(&self) -> Vec<&'static str> {
        let mut methods = Vec::new();
        if self.user.is_some() || self.password.is_some() {
            methods.push("user/password");
        }
        if self.token.is_some() {
            methods.push("token");
        }
        if self.nkey_seed_file.is_some() {
            methods.push("nkey seed file");
        }
        if self.creds_file.is_some() {
            methods.push("creds file");
        }
        methods
    }

    /// Checks that options which go together are given together.
    ///
    /// # Errors
    /// A sentence naming the missing or conflicting key.
    pub fn validate(&self) -> Result<(), String> {
        if self.password.is_some() && self.user.is_none() {
            return Err("nats.password needs nats.user".into());
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err("nats.tls_cert_file and nats.tls_key_file go together".into());
        }
        if let Some(prefix) = &self.inbox_prefix {
            let valid = !prefix.is_empty()
                && prefix.split('.').all(|token| {
                    !token.is_empty()
                        && token
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            if !valid {
                return Err(format!(
                    "nats.inbox_prefix {prefix:?} is not a subject prefix: dot-separated tokens \
                     of letters, digits, '-' or '_' (e.g. \"_INBOX.reco-caller\")"
                ));
            }
        }
        if self.methods().len() > 1 {
            return Err(format!(
                "choose one way to authenticate to NATS, not {}",
                self.methods().join(" and ")
            ));
        }
        Ok(())
    }
}

/// Environment variable: NATS user name.
pub const ENV_NATS_USER: &str = "RECO_NATS_USER";
/// Environment variable: NATS password.
pub const ENV_NATS_PASSWORD: &str = "RECO_NATS_PASSWORD";
/// Environment variable: NATS token.
pub const ENV_NATS_TOKEN: &str = "RECO_NATS_TOKEN";
/// Environment variable: NKey seed file.
pub const ENV_NATS_NKEY_SEED_FILE: &str = "RECO_NATS_NKEY_SEED_FILE";
/// Environment variable: `.creds` file.
pub const ENV_NATS_CREDS_FILE: &str = "RECO_NATS_CREDS_FILE";
/// Environment variable: CA file.
pub const ENV_NATS_TLS_CA_FILE: &str = "RECO_NATS_TLS_CA_FILE";
/// Environment variable: client certificate file.
pub const ENV_NATS_TLS_CERT_FILE: &str = "RECO_NATS_TLS_CERT_FILE";
/// Environment variable: client key file.
pub const ENV_NATS_TLS_KEY_FILE: &str = "RECO_NATS_TLS_KEY_FILE";
/// Environment variable: require TLS (`true`).
pub const ENV_NATS_TLS_REQUIRED: &str = "RECO_NATS_TLS_REQUIRED";
/// Environment variable: TLS before INFO (`true`).
pub const ENV_NATS_TLS_FIRST: &str = "RECO_NATS_TLS_FIRST";
/// Environment variable: prefix of the client's reply inboxes.
pub const ENV_NATS_INBOX_PREFIX: &str = "RECO_NATS_INBOX_PREFIX";

/// The `--nats-*` flags (and `RECO_NATS_*` variables) of every command
/// that connects: `reco serve`, `reco train`, the client commands and
/// `reco-sim`. Secrets are better passed in the environment than as flags
/// (flags show in `ps`); their values never show in `--help`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SecurityArgs {
    /// NATS user name.
    #[arg(long = "nats-user", env = ENV_NATS_USER)]
    pub user: Option<String>,
    /// NATS password (prefer the environment variable).
    #[arg(long = "nats-password", env = ENV_NATS_PASSWORD, hide_env_values = true)]
    pub password: Option<Secret>,
    /// NATS authentication token (prefer the environment variable).
    #[arg(long = "nats-token", env = ENV_NATS_TOKEN, hide_env_values = true)]
    pub token: Option<Secret>,
    /// File holding an NKey seed.
    #[arg(long = "nats-nkey-seed-file", env = ENV_NATS_NKEY_SEED_FILE)]
    pub nkey_seed_file: Option<PathBuf>,
    /// NATS `.creds` file (JWT and seed).
    #[arg(long = "nats-creds-file", env = ENV_NATS_CREDS_FILE)]
    pub creds_file: Option<PathBuf>,
    /// PEM CA file that signed the server's certificate.
    #[arg(long = "nats-tls-ca-file", env = ENV_NATS_TLS_CA_FILE)]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate.
    #[arg(long = "nats-tls-cert-file", env = ENV_NATS_TLS_CERT_FILE)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM client key.
    #[arg(long = "nats-tls-key-file", env = ENV_NATS_TLS_KEY_FILE)]
    pub tls_key_file: Option<PathBuf>,
    /// Refuse a connection without TLS.
    #[arg(long = "nats-tls-required", env = ENV_NATS_TLS_REQUIRED)]
    pub tls_required: bool,
    /// TLS handshake before the server's INFO.
    #[arg(long = "nats-tls-first", env = ENV_NATS_TLS_FIRST)]
    pub tls_first: bool,
    /// Prefix of this client's reply inboxes (e.g. `_INBOX.reco-caller`
    /// for the caller role of `reco nats-config --roles`).
    #[arg(long = "nats-inbox-prefix", env = ENV_NATS_INBOX_PREFIX)]
    pub inbox_prefix: Option<String>,
}

impl SecurityArgs {
    /// The options given.
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
}

/// `url` (one or several, comma-separated) with any password or token
/// replaced by [`REDACTED`]: the only form in which a URL is printed.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| match split_url_credentials(one) {
            (bare, Some((user, Some(_)))) => insert_userinfo(&bare, &format!("{user}:{REDACTED}")),
            (bare, Some((_, None))) => insert_userinfo(&bare, REDACTED),
            (bare, None) => bare,
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn insert_userinfo(bare: &str, userinfo: &str) -> String {
    match bare.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{userinfo}@{rest}"),
        None => format!("{userinfo}@{bare}"),
    }
}

/// Splits `nats://user:pass@host:port` into the URL without its userinfo
/// and the (percent-decoded) user and password; `nats://token@host` gives a
/// user and no password (the token).
fn split_url_credentials(url: &str) -> (String, Option<(String, Option<String>)>) {
    let url = url.trim();
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    let credentials = match userinfo.split_once(':') {
        Some((user, password)) => (decode(user), Some(decode(password))),
        None => (decode(userinfo), None),
    };
    let bare = match scheme {
        Some(scheme) => format!("{scheme}://{host}{path}"),
        None => format!("{host}{path}"),
    };
    (bare, Some(credentials))
}

/// A connection could not be made. Its message names the URL with any
/// credentials redacted, and never a secret.
#[derive(Debug, Error)]
#[error("cannot connect to NATS at {url}: {hint}")]
pub struct ConnectError {
    /// The server URL tried (credentials redacted).
    pub url: String,
    /// What to check.
    pub hint: String,
    /// What the client said.
    #[source]
    pub source: Option<async_nats::ConnectError>,
}

impl ConnectError {
    fn new(url: &str, methods: &[&str], source: async_nats::ConnectError) -> Self {
        use async_nats::ConnectErrorKind as K;
        let given = if methods.is_empty() {
            "no credentials were given".to_owned()
        } else {
            format!("{} given", methods.join(", "))
        };
        let hint = match source.kind() {
            K::AuthorizationViolation => format!(
                "the server refused the credentials (authorization violation; {given}): \
                 check user/password, token, nkey or creds ({ENV_NATS_USER}, {ENV_NATS_PASSWORD}, \
                 {ENV_NATS_TOKEN}, … or the [nats] keys)"
            ),
            K::Authentication => format!(
                "authentication failed on our side ({given}): the NKey seed or creds file \
                 could not sign the server's nonce"
            ),
            K::Tls => format!(
                "TLS failed ({}): check the CA, client certificate and key files and \
                 tls_required/tls_first against the server's tls block",
                source
            ),
            K::TimedOut => {
                "no answer in time: is nats-server running? (set --nats or RECO_NATS_URL)".into()
            }
            _ => format!("{source}: is nats-server running? (set --nats or {ENV_NATS_URL})"),
        };
        ConnectError {
            url: redact_url(url),
            hint,
            source: Some(source),
        }
    }

    fn setup(url: &str, hint: String) -> Self {
        ConnectError {
            url: redact_url(url),
            hint,
            source: None,
        }
    }
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
#[derive(Clone)]
pub struct ConnectOptions {
    url: String,
    security: NatsSecurity,
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
            security: NatsSecurity::default(),
            name: None,
            subscription_capacity: None,
            connect_timeout: None,
            count_events: false,
            slow_consumers: None,
            no_request_timeout: false,
            retry_initial: false,
        }
    }

    /// The server URL, credentials redacted.
    pub fn url(&self) -> String {
        redact_url(&self.url)
    }

    /// Authenticate and protect the connection with `security` (replacing
    /// any set before). Credentials in the URL are used only when
    /// `security` names no way of authenticating.
    pub fn security(mut self, security: NatsSecurity) -> Self {
        self.security = security;
        self
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
    /// server that is still starting); refused credentials or TLS still
    /// fail at once.
    pub fn retry_on_initial_connect(mut self) -> Self {
        self.retry_initial = true;
        self
    }

    /// Connects.
    ///
    /// With [`retry_on_initial_connect`](Self::retry_on_initial_connect), an
    /// unreachable server is tried again (100 ms, doubling up to 2 s) until
    /// it answers, but a server that refuses the credentials or the TLS
    /// handshake fails at once: retrying cannot fix either, and the client
    /// library would otherwise retry forever in the background.
    ///
    /// # Errors
    /// [`ConnectError`] naming the URL when the server cannot be reached in
    /// time, or refuses the credentials or TLS (never with the secret).
    pub async fn connect(self) -> Result<async_nats::Client, ConnectError> {
        use async_nats::ConnectErrorKind as K;
        let mut delay = Duration::from_millis(100);
        loop {
            match self.connect_once().await {
                Ok(client) => return Ok(client),
                Err(error) if !self.retry_initial => return Err(error),
                Err(error)
                    if error.source.as_ref().is_none_or(|source| {
                        matches!(
                            source.kind(),
                            K::AuthorizationViolation | K::Authentication | K::Tls
                        )
                    }) =>
                {
                    return Err(error)
                }
                Err(error) => {
                    tracing::debug!(%error, retry_in_ms = delay.as_millis() as u64, "NATS not reachable yet; retrying.");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    async fn connect_once(&self) -> Result<async_nats::Client, ConnectError> {
        let mut options = async_nats::ConnectOptions::new();
        let (urls, from_url) = self.server_urls();
        let security = &self.security;
        if let Err(why) = security.validate() {
            return Err(ConnectError::setup(&self.url, why));
        }
        let mut methods = security.methods();
        if let (Some(user), Some(password)) = (&security.user, &security.password) {
            options = options.user_and_password(user.clone(), password.expose().to_owned());
        } else if let Some(user) = &security.user {
            return Err(ConnectError::setup(
                &self.url,
                format!("user {user:?} has no password (set nats.password or {ENV_NATS_PASSWORD})"),
            ));
        }
        if let Some(token) = &security.token {
            options = options.token(token.expose().to_owned());
        }
        if let Some(path) = &security.nkey_seed_file {
            let seed = std::fs::read_to_string(path).map_err(|e| {
                ConnectError::setup(
                    &self.url,
                    format!("cannot read the NKey seed file {}: {e}", path.display()),
                )
            })?;
            options = options.nkey(seed.trim().to_owned());
        }
        if let Some(path) = &security.creds_file {
            options = options.credentials_file(path).await.map_err(|e| {
                ConnectError::setup(
                    &self.url,
                    format!("cannot read the creds file {}: {e}", path.display()),
                )
            })?;
        }
        if methods.is_empty() {
            match from_url {
                Some((user, Some(password))) => {
                    options = options.user_and_password(user, password);
                    methods.push("user/password in the URL");
                }
                Some((token, None)) => {
                    options = options.token(token);
                    methods.push("token in the URL");
                }
                None => {}
            }
        }
        if let Some(path) = &security.tls_ca_file {
            options = options.add_root_certificates(path.clone());
        }
        if let (Some(cert), Some(key)) = (&security.tls_cert_file, &security.tls_key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if security.tls_required {
            options = options.require_tls(true);
        }
        if security.tls_first {
            options = options.tls_first();
        }
        if let Some(prefix) = &security.inbox_prefix {
            options = options.custom_inbox_prefix(prefix);
        }
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
        if self.count_events || self.slow_consumers.is_some() {
            let (count, counter) = (self.count_events, self.slow_consumers.clone());
            options = options.event_callback(move |event| {
                let counter = counter.clone();
                async move { on_event(event, count, counter.as_deref()) }
            });
        }
        options
            .connect(urls.as_slice())
            .await
            .map_err(|source| ConnectError::new(&self.url, &methods, source))
    }

    /// The server URLs without credentials, and the credentials of the
    /// first URL that has some.
    #[allow(clippy::type_complexity)]
    fn server_urls(&self) -> (Vec<String>, Option<(String, Option<String>)>) {
        let mut credentials = None;
        let urls = self
            .url
            .split(',')
            .filter(|one| !one.trim().is_empty())
            .map(|one| {
                let (bare, found) = split_url_credentials(one);
                if credentials.is_none() {
                    credentials = found;
                }
                bare
            })
            .collect();
        (urls, credentials)
    }
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &redact_url(&self.url))
            .field("security", &self.security)
            .field("name", &self.name)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("connect_timeout", &self.connect_timeout)
            .field("count_events", &self.count_events)
            .field("no_request_timeout", &self.no_request_timeout)
            .field("retry_initial", &self.retry_initial)
            .finish_non_exhaustive()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_split_out_decoded_and_redacted() {
        let (bare, creds) = split_url_credentials("nats://al%40ice:p%3Ass@host:4222");
        assert_eq!(bare, "nats://host:4222");
        assert_eq!(creds, Some(("al@ice".into(), Some("p:ss".into()))));
        let (bare, creds) = split_url_credentials("tls://s3cret@host:4222/x");
        assert_eq!(bare, "tls://host:4222/x");
        assert_eq!(creds, Some(("s3cret".into(), None)));
        assert_eq!(
            split_url_credentials("host:4222"),
            ("host:4222".into(), None)
        );
        let shown = redact_url("nats://alice:hunter2@a:1,nats://tok@b:2,nats://c:3");
        assert_eq!(
            shown,
            "nats://alice:<redacted>@a:1,nats://<redacted>@b:2,nats://c:3"
        );
    }

    #[test]
    fn secrets_never_show_in_debug_or_serialized_output() {
        let options =
            ConnectOptions::new("nats://alice:hunter2@host:4222").security(NatsSecurity {
                user: Some("bob".into()),
                password: Some(Secret::new("swordfish")),
                token: Some(Secret::new("tok3n")),
                ..Default::default()
            });
        let text = format!("{options:?} {}", options.url());
        for secret in ["hunter2", "swordfish", "tok3n"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains(REDACTED), "{text}");
        let json = serde_json::to_string(&Secret::new("swordfish")).unwrap();
        assert_eq!(json, "\"<redacted>\"");
    }

    #[test]
    fn options_that_go_together_are_checked() {
        let only_password = NatsSecurity {
            password: Some(Secret::new("x")),
            ..Default::default()
        };
        assert!(only_password.validate().unwrap_err().contains("nats.user"));
        let two = NatsSecurity {
            token: Some(Secret::new("x")),
            creds_file: Some("a.creds".into()),
            ..Default::default()
        };
        assert!(two.validate().unwrap_err().contains("token and creds file"));
        let half_tls = NatsSecurity {
            tls_cert_file: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(half_tls.validate().unwrap_err().contains("tls_key_file"));
        let inbox = |prefix: &str| NatsSecurity {
            inbox_prefix: Some(prefix.into()),
            ..Default::default()
        };
        assert_eq!(inbox("_INBOX.reco-caller").validate(), Ok(()));
        for bad in ["", "_INBOX.>", "a..b", "a b", "x.*"] {
            assert!(
                inbox(bad).validate().unwrap_err().contains("inbox_prefix"),
                "{bad:?}"
            );
        }
    }
}
