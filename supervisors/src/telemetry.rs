//! Logs and metrics for the `reco` binary.

use crate::config::ENV_LOG;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use reco_messages::metrics::{Kind, ALL};
use std::net::SocketAddr;
use tracing_subscriber::EnvFilter;

/// Latency buckets (seconds): fine below 10 ms, where the request path lives.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
    0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Starts structured logging to stderr, filtered by `RECO_LOG` (default
/// `info`), as text or JSON.
pub fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_env(ENV_LOG).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if result.is_err() {
        // A subscriber is already set (an embedding program chose its own).
    }
}

/// Installs the Prometheus recorder, describes every metric, and serves
/// `/metrics` and the operator page on `addr` ([`crate::operator`]).
/// Returns the bound address.
pub fn init_metrics(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    let bound = crate::operator::serve(addr, handle)?;
    describe();
    Ok(bound)
}

/// Registers the `# HELP` text of every metric in
/// [`reco_messages::metrics::ALL`], so the exporter shows them even before a
/// metric first moves.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    for metric in ALL {
        match metric.kind {
            Kind::Counter => describe_counter!(metric.name, metric.help),
            Kind::Gauge => describe_gauge!(metric.name, metric.help),
            Kind::Histogram if metric.name.ends_with("_seconds") => {
                describe_histogram!(metric.name, Unit::Seconds, metric.help)
            }
            Kind::Histogram => describe_histogram!(metric.name, Unit::Count, metric.help),
        }
    }
}
