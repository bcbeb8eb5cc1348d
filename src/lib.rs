//! Test harness of reco's end-to-end tests: a real `nats-server` on a free
//! port, a real `reco serve` process, a model fixture, and small helpers to
//! read a node's metrics.
//!
//! Everything here is for `tests/`; nothing of it ships in `reco`. The
//! processes themselves are the simulator's ([`reco_sim::process`]): a test
//! and a simulation stand up the same server and node.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reco_messages::{ItemId, MemberId};
use reco_models::{ItemFactors, PrecomputedLists, Scored};
use reco_offline::artifacts;
use reco_sim::process;
pub use reco_sim::process::metric_sum;

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    process::free_port().expect("cannot bind a free port on 127.0.0.1")
}

/// A private `nats-server` with JetStream, on a free port, its data in a
/// temporary directory; killed on drop (the simulator's, panicking instead
/// of returning errors).
pub struct NatsServer(process::NatsServer);

impl NatsServer {
    /// Starts the server and waits until it accepts clients. Fails with an
    /// install hint when `nats-server` is not on the PATH.
    pub fn start() -> Self {
        NatsServer(
            process::NatsServer::start().unwrap_or_else(|e| {
                panic!("reco's end-to-end tests need a real nats-server: {e:#}")
            }),
        )
    }

    /// Starts a server with `config` as its configuration file (written in
    /// its temporary directory): authentication, TLS, accounts.
    pub fn start_with_config(config: &str) -> Self {
        NatsServer(
            process::NatsServer::start_with_config(config).unwrap_or_else(|e| {
                panic!("reco's end-to-end tests need a real nats-server: {e:#}")
            }),
        )
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// A client connected with `security` (credentials, TLS).
    pub async fn client_with(&self, security: reco_client::NatsSecurity) -> async_nats::Client {
        reco_client::ConnectOptions::new(self.url())
            .name("reco-e2e")
            .security(security)
            .connect()
            .await
            .expect("cannot connect to the test nats-server")
    }

    /// A connected client.
    pub async fn client(&self) -> async_nats::Client {
        reco_client::ConnectOptions::new(self.url())
            .name("reco-e2e")
            .connect()
            .await
            .expect("cannot connect to the test nats-server")
    }

    /// The admin client of the node(s) serving the default prefix through
    /// `client`.
    pub fn admin(client: &async_nats::Client) -> reco_client::Admin {
        reco_client::Admin::new(client.clone(), reco_messages::Subjects::default())
    }
}

/// The `reco` binary the tests drive (or `RECO_BIN`).
///
/// `cargo test` builds a package's binaries only for that package's own
/// integration tests, and `reco` is the `reco` package (cli/): so the first
/// call builds it (`cargo build --workspace --bins --tests`: after `cargo
/// test --workspace` only the binary is linked) into the target directory
/// the tests run from, with the tests' profile. A stale binary is therefore
/// never tested.
pub fn reco_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    if std::env::var_os("RECO_BIN").is_none() {
        if let Err(why) = BUILT.get_or_init(build_reco) {
            panic!("{why}");
        }
    }
    let bin = process::reco_binary();
    assert!(bin.is_file(), "{} does not exist", bin.display());
    bin
}

fn build_reco() -> Result<(), String> {
    // Test executables live in <target>/<profile>/deps.
    let exe = std::env::current_exe().map_err(|e| format!("no current executable: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("unexpected test executable location")?;
    let target_dir = profile_dir
        .parent()
        .ok_or("unexpected test executable location")?;
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // The test process carries its own crate's CARGO_MANIFEST_DIR, CARGO_PKG_*
    // and so on; build scripts that watch such variables would rerun and the
    // workspace would recompile, so none of them goes through.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CARGO_") && name != "CARGO_HOME" {
            command.env_remove(&name);
        }
    }
    command
        .args(["build", "--quiet", "--workspace", "--bins", "--tests"])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        command.arg("--release");
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run cargo to build the reco binary: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the reco binary failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// A running `reco serve` process; killed on drop unless it already exited.
pub struct Node(process::Node);

impl Node {
    /// Starts `reco serve` against `nats_url` with the model directory
    /// `model` and extra TOML configuration, and waits for "Node ready.".
    pub fn start(nats_url: &str, model: Option<&Path>, config_toml: &str) -> Self {
        reco_binary();
        Node(process::Node::start(nats_url, model, config_toml).unwrap_or_else(|e| panic!("{e:#}")))
    }

    /// Everything the node logged so far (its last 200 lines).
    pub fn log(&self) -> String {
        self.0.log()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.0.terminate().expect("kill -TERM failed");
    }

    /// Sends SIGKILL (a crash: no drain, no hand-over).
    pub fn kill(&self) {
        self.0.signal("-KILL").expect("kill -KILL failed");
    }

    /// Sends SIGSTOP (a hang: the process keeps its connections).
    pub fn pause(&self) {
        self.0.signal("-STOP").expect("kill -STOP failed");
    }

    /// Sends SIGCONT (the hang ends).
    pub fn resume(&self) {
        self.0.signal("-CONT").expect("kill -CONT failed");
    }

    /// Sends SIGHUP (reload the config file).
    pub fn hangup(&self) {
        self.0.signal("-HUP").expect("kill -HUP failed");
    }

    /// The node's config file (rewrite it, then [`Node::hangup`]).
    pub fn config_path(&self) -> &Path {
        self.0.config_path()
    }

    /// Threads of the node process now (from `/proc`).
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.0.pid()))
            .map(|tasks| tasks.count())
            .unwrap_or(0)
    }

    /// Polls the node's log until a line contains `text`, at most `limit`.
    pub async fn wait_log(&self, limit: Duration, text: &str) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {text:?} in the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("cannot wait for reco serve") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "reco serve did not exit within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where the node serves `/metrics` and its operator page.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.0.metrics_addr()
    }

    /// The node's Prometheus metrics, as text.
    pub fn metrics(&self) -> String {
        process::scrape(self.0.metrics_addr()).expect("cannot reach the metrics endpoint")
    }

    /// The sum of every series of metric `name` whose labels contain all of
    /// `labels` (e.g. `["code=\"bad_request\""]`); 0 when there is none.
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    /// Polls the metrics until `check` holds, at most `limit`.
    pub async fn wait_metric(&self, limit: Duration, what: &str, check: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.metrics();
            if check(&text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; metrics:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A small deterministic model for serving tests: `items` items with ids
/// `1000 + 7 i`, random factors of dimension `dim`, a popular list of the
/// first 500 items and a precomputed list for members `0..members_with_lists`.
pub struct Fixture {
    /// Directory holding `model.bin` and `lists.bin`.
    pub dir: tempfile::TempDir,
    /// Every item id of the model.
    pub items: Vec<ItemId>,
    /// The model's version.
    pub version: String,
}

impl Fixture {
    /// Writes the fixture model directory.
    pub fn write(items: usize, dim: usize, members_with_lists: u64, version: &str) -> Self {
        let ids: Vec<ItemId> = (0..items as u64).map(|i| ItemId(1000 + 7 * i)).collect();
        // A small LCG: deterministic, no dependency, good enough for factors.
        let mut state = 0x853c_49e6_748f_ea9b_u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let factors: Vec<f32> = (0..items * dim).map(|_| next()).collect();
        let model = ItemFactors::new(version.to_owned(), dim, ids.clone(), factors, 0.1, 1.0)
            .expect("fixture model is valid");
        let popular: Vec<Scored> = ids
            .iter()
            .take(500)
            .enumerate()
            .map(|(rank, &item)| Scored {
                item,
                score: 500.0 - rank as f32,
            })
            .collect();
        let members = (0..members_with_lists)
            .map(|m| {
                let list = (0..100)
                    .map(|j| Scored {
                        item: ids[((m as usize) * 13 + j * 3) % ids.len()],
                        score: 100.0 - j as f32,
                    })
                    .collect();
                (MemberId(m), list)
            })
            .collect();
        let lists = PrecomputedLists {
            version: version.to_owned(),
            popular,
            members,
            computed_at_ms: None,
            ..PrecomputedLists::default()
        }
        .computed_now();
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        artifacts::save(dir.path(), &model, &lists).expect("cannot write the fixture");
        Fixture {
            dir,
            items: ids,
            version: version.to_owned(),
        }
    }

    /// The model directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Publishes a play of `item` by `member` (600 s watched) on the default
/// prefix.
pub async fn play(client: &async_nats::Client, member: u64, item: ItemId) {
    let event = reco_messages::Event {
        member: MemberId(member),
        item,
        kind: reco_messages::EventKind::Play,
        value: 600.0,
        at_ms: None,
        device: None,
    };
    let subject = reco_messages::Subjects::default().events(MemberId(member));
    client
        .publish(subject, reco_messages::encode(&event).into())
        .await
        .expect("cannot publish an event");
}

/// Asks for `member`'s recommendations with `deadline_ms` on the default
/// prefix and decodes the reply.
pub async fn ask(
    client: &async_nats::Client,
    member: u64,
    deadline_ms: u64,
) -> reco_messages::RecommendReply {
    let request = reco_messages::RecommendRequest {
        deadline_ms: Some(deadline_ms),
        ..Default::default()
    };
    let subject = reco_messages::Subjects::default().recommend(MemberId(member));
    let reply = client
        .request(subject, reco_messages::encode(&request).into())
        .await
        .expect("every request gets a reply");
    reco_messages::decode(&reply.payload, 1 << 20).expect("replies decode")
}

/// Longest wait for a `reco nearline` log line or exit.
const NEARLINE_WAIT: Duration = Duration::from_secs(60);

/// A `reco nearline` process with its log; killed on drop.
pub struct NearlineProcess {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl NearlineProcess {
    /// Starts `reco nearline` against `nats_url` with `config_toml` as its
    /// config file.
    pub fn start(nats_url: &str, config_toml: &str) -> Self {
        let (mut child, dir) = reco_sim::process::Nearline::spawn(nats_url, config_toml)
            .expect("reco nearline starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("RECO_TEST_VERBOSE").is_some() {
                    eprintln!("{line}");
                }
                kept.lock().unwrap().push(line);
            }
        });
        NearlineProcess {
            child,
            log,
            _dir: dir,
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits for a log line containing `text` and returns it.
    pub async fn wait_log(&mut self, text: &str) -> String {
        let deadline = Instant::now() + NEARLINE_WAIT;
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("reco nearline exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (`-KILL`, `-TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + NEARLINE_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "reco nearline did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NearlineProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Asks for `member`'s `row` (`trending`, `billboard`, …) with `k` items
/// and a 2 s deadline on the default prefix, and decodes the reply.
pub async fn ask_row(
    client: &async_nats::Client,
    member: u64,
    row: &str,
    k: u32,
) -> reco_messages::RecommendReply {
    let request = reco_messages::RecommendRequest {
        k: Some(k),
        row: Some(row.to_owned()),
        deadline_ms: Some(2_000),
        ..Default::default()
    };
    let subject = reco_messages::Subjects::default().recommend(MemberId(member));
    let reply = client
        .request(subject, reco_messages::encode(&request).into())
        .await
        .expect("every request gets a reply");
    reco_messages::decode(&reply.payload, 1 << 20).expect("replies decode")
}
