//! Process signals that stop a node: the first SIGINT or SIGTERM starts the
//! drain. (SIGHUP, which reloads supervision settings, is served with the
//! rest of the reload in `admin.rs`.)

use std::future::Future;

/// Installs the SIGINT and SIGTERM handlers at once and returns a future
/// that resolves on the first of them. Call it inside the runtime before
/// start-up: a handler installed only when the future is first polled (after
/// "Node ready.") let a SIGTERM sent during start-up kill the process with
/// the default action instead of draining it.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = int.recv() => tracing::info!(signal = "SIGINT", "Shutdown requested."),
                _ = term.recv() => tracing::info!(signal = "SIGTERM", "Shutdown requested."),
            },
            (Ok(mut only), Err(error)) | (Err(error), Ok(mut only)) => {
                tracing::warn!(%error, "Cannot listen for one of SIGINT and SIGTERM; the other stops the node.");
                only.recv().await;
                tracing::info!("Shutdown requested.");
            }
            (Err(error), Err(_)) => {
                tracing::error!(%error, "Cannot listen for SIGINT or SIGTERM: stop the node with SIGKILL.");
                std::future::pending::<()>().await;
            }
        }
    }
}
