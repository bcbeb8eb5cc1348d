//! Process signals that stop a node: the first SIGINT or SIGTERM starts the
//! drain. (SIGHUP, which reloads supervision settings, is served with the
//! rest of the reload in `admin.rs`.)

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "Cannot listen for SIGTERM; only Ctrl-C stops the node.");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "Shutdown requested."),
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "Shutdown requested."),
    }
}
