//! Names of every metric reco emits, defined once: the actors, the node,
//! the offline job and the client use these constants, and so do the
//! simulator and the tests that read a node's `/metrics`.
//!
//! Names follow `reco_<component>_<what>_<unit>`; label values are bounded
//! sets (sources, reasons, error codes), never member or item ids. Adding a
//! metric: a constant here and a line in [`ALL`] (its kind and help text);
//! the node's exporter describes everything in [`ALL`] at start-up.

// The actors (online path).

/// Histogram: time from receipt of a recommend request to its reply, by `source`.
pub const RECOMMEND_LATENCY_SECONDS: &str = "reco_recommend_latency_seconds";
/// Counter: replies sent, by `source` and `reason` (`none` when the model answered).
pub const REPLIES_TOTAL: &str = "reco_replies_total";
/// Counter: requests answered with an `ErrorReply`, by `code`.
pub const REQUEST_ERRORS_TOTAL: &str = "reco_request_errors_total";
/// Gauge: recommend requests received and not yet answered.
pub const REQUESTS_IN_FLIGHT: &str = "reco_requests_in_flight";
/// Counter: events accepted and routed to a session, by `kind`.
pub const EVENTS_INGESTED_TOTAL: &str = "reco_events_ingested_total";
/// Counter: events refused as bad input, by `why` (`too_large`, `malformed`, `invalid`, `subject`).
pub const EVENTS_REJECTED_TOTAL: &str = "reco_events_rejected_total";
/// Counter: valid events shed because a mailbox was full, by `stage` (`shard`, `session`).
pub const EVENTS_DROPPED_TOTAL: &str = "reco_events_dropped_total";
/// Counter: rejected events copied to the dead-letter subject.
pub const DLQ_PUBLISHED_TOTAL: &str = "reco_dlq_published_total";
/// Gauge: member sessions resident in memory.
pub const SESSION_ACTIVE: &str = "reco_session_active";
/// Counter: sessions passivated, by `cause` (`idle`, `capacity`).
pub const SESSION_PASSIVATIONS_TOTAL: &str = "reco_session_passivations_total";
/// Counter: scoring requests offered to the model pool, by `outcome`.
pub const MODEL_REQUESTS_TOTAL: &str = "reco_model_requests_total";
/// Histogram: time a model worker spent folding in and scoring one request
/// (a batched pass's time divided by the requests it scored).
pub const MODEL_SCORE_SECONDS: &str = "reco_model_score_seconds";
/// Histogram: requests a model worker scored in one pass over the matrix.
pub const MODEL_BATCH_SIZE: &str = "reco_model_batch_size";
/// Gauge: scoring requests admitted to the model pool and not finished.
pub const MODEL_IN_FLIGHT: &str = "reco_model_in_flight";
/// Counter: NATS slow-consumer events (messages the client dropped).
pub const NATS_SLOW_CONSUMER_TOTAL: &str = "reco_nats_slow_consumer_total";
/// Counter: NATS connection events, by `event` (`connected`, `disconnected`, …).
pub const NATS_EVENTS_TOTAL: &str = "reco_nats_events_total";
/// Gauge: members with a precomputed list in the lists in service.
pub const LISTS_MEMBERS: &str = "reco_lists_members";
/// Gauge: items in the model in service (0 when none is loaded).
pub const MODEL_ITEMS: &str = "reco_model_items";
/// Counter: panics caught in actor handlers, by `actor`.
pub const ACTOR_PANICS_TOTAL: &str = "reco_actor_panics_total";
/// Counter: events quarantined after crashing a member's session repeatedly.
pub const EVENTS_QUARANTINED_TOTAL: &str = "reco_events_quarantined_total";
/// Counter: sessions restarted in place after a panic.
pub const SESSION_RESTARTS_TOTAL: &str = "reco_session_restarts_total";
/// Gauge: model workers up (not restarting).
pub const MODEL_WORKERS_UP: &str = "reco_model_workers_up";
/// Counter: nearline refreshes, by `outcome` (`stored`, `cold`, `shed`, `failed`).
pub const NEARLINE_REFRESHES_TOTAL: &str = "reco_nearline_refreshes_total";
/// Histogram: time to compute one nearline refresh.
pub const NEARLINE_REFRESH_SECONDS: &str = "reco_nearline_refresh_seconds";
/// Histogram: time from the first event of a batch to its refreshed list.
pub const NEARLINE_FRESHNESS_SECONDS: &str = "reco_nearline_freshness_seconds";

// The node, its supervision and the offline job.

/// Gauge: 1 while the node serves, 0 while it drains.
pub const NODE_UP: &str = "reco_node_up";
/// Gauge: resident set size of the node process, in bytes.
pub const PROCESS_RSS_BYTES: &str = "reco_process_resident_memory_bytes";
/// Counter: child restarts, by `supervisor` and `child`.
pub const SUPERVISOR_RESTARTS_TOTAL: &str = "reco_supervisor_restarts_total";
/// Counter: supervisors that exceeded their restart intensity, by `supervisor`.
pub const SUPERVISOR_ESCALATIONS_TOTAL: &str = "reco_supervisor_escalations_total";
/// Counter: subtrees that exhausted their restart intensity and stayed down
/// (`on_exhausted = "stay_down"`), by `supervisor`.
pub const SUPERVISOR_EXHAUSTED_TOTAL: &str = "reco_supervisor_exhausted_total";
/// Gauge: 1 while a `stay_down` subtree is down waiting for its retry, by
/// `supervisor`.
pub const SUPERVISOR_DOWN: &str = "reco_supervisor_down";
/// Counter: hot swaps of published model versions, by `outcome`.
pub const MODEL_SWAPS_TOTAL: &str = "reco_model_swaps_total";
/// Gauge: when the model in service was swapped in (Unix seconds).
pub const MODEL_LOADED_TIMESTAMP_SECONDS: &str = "reco_model_version_loaded_timestamp_seconds";
/// Counter: requests still in flight when a drain timed out.
pub const DRAIN_ABANDONED_TOTAL: &str = "reco_node_drain_abandoned_total";
/// Gauge: seconds the last `reco train` run spent in ALS.
pub const TRAIN_ALS_SECONDS: &str = "reco_train_als_seconds";
/// Gauge: seconds the last `reco train` run took in total (read, train,
/// lists, evaluation, write, publish).
pub const TRAIN_DURATION_SECONDS: &str = "reco_train_duration_seconds";
/// Counter: events read by `reco train --from-stream`, by `outcome` (`used`,
/// `ignored`, `bad`).
pub const TRAIN_STREAM_EVENTS_TOTAL: &str = "reco_train_stream_events_total";
/// Counter: model publications, by `outcome` (`ok`, `failed`).
pub const PUBLISH_TOTAL: &str = "reco_publish_total";
/// Counter: old model versions deleted by publication retention.
pub const PUBLISH_VERSIONS_DELETED_TOTAL: &str = "reco_publish_versions_deleted_total";
/// Counter: node start-ups where the event log could not be set up (events
/// are then not recorded).
pub const EVENTS_LOG_SETUP_FAILED_TOTAL: &str = "reco_events_log_setup_failed_total";

/// What kind of series a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution (exported as a histogram or summary).
    Histogram,
}

/// One metric: its name, kind and `# HELP` text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Described {
    /// The name.
    pub name: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// What it counts or measures, for the exporter's `# HELP` line.
    pub help: &'static str,
}

/// Every metric above, with its kind and help text.
pub const ALL: &[Described] = &[
    Described {
        name: RECOMMEND_LATENCY_SECONDS,
        kind: Kind::Histogram,
        help: "Time from receipt of a recommend request to its reply.",
    },
    Described {
        name: REPLIES_TOTAL,
        kind: Kind::Counter,
        help: "Replies sent, by source and reason.",
    },
    Described {
        name: REQUEST_ERRORS_TOTAL,
        kind: Kind::Counter,
        help: "Requests answered with an error, by code.",
    },
    Described {
        name: REQUESTS_IN_FLIGHT,
        kind: Kind::Gauge,
        help: "Recommend requests not yet answered.",
    },
    Described {
        name: EVENTS_INGESTED_TOTAL,
        kind: Kind::Counter,
        help: "Events accepted, by kind.",
    },
    Described {
        name: EVENTS_REJECTED_TOTAL,
        kind: Kind::Counter,
        help: "Events refused as bad input, by why.",
    },
    Described {
        name: EVENTS_DROPPED_TOTAL,
        kind: Kind::Counter,
        help: "Valid events shed at a full mailbox, by stage.",
    },
    Described {
        name: DLQ_PUBLISHED_TOTAL,
        kind: Kind::Counter,
        help: "Rejected events copied to the dead-letter subject.",
    },
    Described {
        name: SESSION_ACTIVE,
        kind: Kind::Gauge,
        help: "Member sessions resident in memory.",
    },
    Described {
        name: SESSION_PASSIVATIONS_TOTAL,
        kind: Kind::Counter,
        help: "Sessions passivated, by cause.",
    },
    Described {
        name: MODEL_REQUESTS_TOTAL,
        kind: Kind::Counter,
        help: "Scoring requests offered to the model pool, by outcome.",
    },
    Described {
        name: MODEL_SCORE_SECONDS,
        kind: Kind::Histogram,
        help: "Time a model worker spent on one request (a batched pass shared out).",
    },
    Described {
        name: MODEL_BATCH_SIZE,
        kind: Kind::Histogram,
        help: "Requests a model worker scored in one pass over the factor matrix.",
    },
    Described {
        name: MODEL_IN_FLIGHT,
        kind: Kind::Gauge,
        help: "Scoring requests admitted and not finished.",
    },
    Described {
        name: NATS_SLOW_CONSUMER_TOTAL,
        kind: Kind::Counter,
        help: "NATS slow-consumer events.",
    },
    Described {
        name: NATS_EVENTS_TOTAL,
        kind: Kind::Counter,
        help: "NATS connection events, by event.",
    },
    Described {
        name: LISTS_MEMBERS,
        kind: Kind::Gauge,
        help: "Members with a precomputed list in service.",
    },
    Described {
        name: MODEL_ITEMS,
        kind: Kind::Gauge,
        help: "Items in the model in service.",
    },
    Described {
        name: ACTOR_PANICS_TOTAL,
        kind: Kind::Counter,
        help: "Panics caught in actor handlers, by actor.",
    },
    Described {
        name: EVENTS_QUARANTINED_TOTAL,
        kind: Kind::Counter,
        help: "Events quarantined after crashing a session repeatedly.",
    },
    Described {
        name: SESSION_RESTARTS_TOTAL,
        kind: Kind::Counter,
        help: "Sessions restarted in place after a panic.",
    },
    Described {
        name: MODEL_WORKERS_UP,
        kind: Kind::Gauge,
        help: "Model workers up, by pool.",
    },
    Described {
        name: NEARLINE_REFRESHES_TOTAL,
        kind: Kind::Counter,
        help: "Nearline refreshes, by outcome.",
    },
    Described {
        name: NEARLINE_REFRESH_SECONDS,
        kind: Kind::Histogram,
        help: "Time to compute a nearline refresh.",
    },
    Described {
        name: NEARLINE_FRESHNESS_SECONDS,
        kind: Kind::Histogram,
        help: "Time from an important event to the member's refreshed nearline list.",
    },
    Described {
        name: NODE_UP,
        kind: Kind::Gauge,
        help: "1 while the node serves, 0 while it drains.",
    },
    Described {
        name: PROCESS_RSS_BYTES,
        kind: Kind::Gauge,
        help: "Resident set size of the node process, in bytes.",
    },
    Described {
        name: SUPERVISOR_RESTARTS_TOTAL,
        kind: Kind::Counter,
        help: "Child restarts, by `supervisor` and `child`.",
    },
    Described {
        name: SUPERVISOR_ESCALATIONS_TOTAL,
        kind: Kind::Counter,
        help: "Supervisors that exceeded their restart intensity, by `supervisor`.",
    },
    Described {
        name: SUPERVISOR_EXHAUSTED_TOTAL,
        kind: Kind::Counter,
        help: "Subtrees that exhausted their restart intensity and stayed down, by supervisor.",
    },
    Described {
        name: SUPERVISOR_DOWN,
        kind: Kind::Gauge,
        help: "1 while a stay_down subtree waits for its retry, by supervisor.",
    },
    Described {
        name: MODEL_SWAPS_TOTAL,
        kind: Kind::Counter,
        help: "Hot swaps of published model versions, by `outcome`.",
    },
    Described {
        name: MODEL_LOADED_TIMESTAMP_SECONDS,
        kind: Kind::Gauge,
        help: "When the model in service was swapped in (Unix seconds).",
    },
    Described {
        name: DRAIN_ABANDONED_TOTAL,
        kind: Kind::Counter,
        help: "Requests still in flight when a drain timed out.",
    },
    Described {
        name: TRAIN_ALS_SECONDS,
        kind: Kind::Gauge,
        help: "Seconds the last training run spent in ALS.",
    },
    Described {
        name: TRAIN_DURATION_SECONDS,
        kind: Kind::Gauge,
        help: "Seconds the last training run took in total.",
    },
    Described {
        name: TRAIN_STREAM_EVENTS_TOTAL,
        kind: Kind::Counter,
        help: "Events read from the event log for training, by outcome.",
    },
    Described {
        name: PUBLISH_TOTAL,
        kind: Kind::Counter,
        help: "Model publications, by outcome.",
    },
    Described {
        name: PUBLISH_VERSIONS_DELETED_TOTAL,
        kind: Kind::Counter,
        help: "Old model versions deleted by publication retention.",
    },
    Described {
        name: EVENTS_LOG_SETUP_FAILED_TOTAL,
        kind: Kind::Counter,
        help: "Node start-ups where the event log could not be set up.",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_named_once_with_the_reco_prefix() {
        let mut names: Vec<_> = ALL.iter().map(|d| d.name).collect();
        assert!(names.iter().all(|n| n.starts_with("reco_")));
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a metric name is listed twice");
    }
}
