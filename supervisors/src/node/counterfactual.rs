//! The node's counterfactual log: its publisher (an actor-side handle,
//! `actors/src/counterfactual.rs`) wired with the node's configuration, and
//! the JetStream stream that records `<prefix>.counterfactual`, created at
//! start-up like the event log's (server-side recording, bounded by age
//! and bytes; nothing on the request path).

use crate::config::CounterfactualConfig;
use async_nats::jetstream::{self, stream};
use reco_actors::counterfactual::{CounterfactualLog, CounterfactualSettings};
use reco_messages::metrics as nm;
use reco_messages::Subjects;
use std::time::Duration;

/// The stream configuration that records the counterfactual subject.
pub fn stream_config(config: &CounterfactualConfig, subjects: &Subjects) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        description: Some(
            "reco counterfactual log: late model answers beside what was served".into(),
        ),
        subjects: vec![subjects.counterfactual()],
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(config.max_age_secs),
        max_bytes: i64::try_from(config.max_bytes).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

/// At node start-up: the counterfactual log of this node, and its stream
/// when `counterfactual.record` (a failure to create it is logged and
/// counted, and the node serves anyway: records are still published).
pub(super) async fn start(
    client: &async_nats::Client,
    config: &CounterfactualConfig,
    subjects: &Subjects,
    node: String,
) -> CounterfactualLog {
    if config.sample_rate <= 0.0 {
        tracing::info!("Counterfactual log disabled (counterfactual.sample_rate = 0).");
        return CounterfactualLog::disabled();
    }
    if config.record {
        let js = jetstream::new(client.clone());
        let wanted = stream_config(config, subjects);
        match reco_offline::event_log::ensure_recording_stream(&js, wanted, "counterfactual.stream")
            .await
        {
            Ok(info) => tracing::info!(
                stream = %config.stream,
                stored = info.state.messages,
                sample_rate = config.sample_rate,
                "Recording the counterfactual log in JetStream."
            ),
            Err(error) => {
                metrics::counter!(nm::COUNTERFACTUAL_SETUP_FAILED_TOTAL).increment(1);
                tracing::error!(%error, "The counterfactual log is published but not recorded.");
            }
        }
    }
    CounterfactualLog::start(
        client.clone(),
        subjects.counterfactual(),
        node,
        CounterfactualSettings {
            sample_rate: config.sample_rate,
            queue: config.queue,
            max_late: Duration::from_millis(config.max_late_ms),
        },
        &tokio::runtime::Handle::current(),
    )
}
