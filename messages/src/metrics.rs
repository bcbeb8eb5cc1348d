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
/// Counter: replies sent, by `row` (the row's kind: `top`, `genre`,
/// `because`, …), `source` and `reason`.
pub const ROW_REPLIES_TOTAL: &str = "reco_row_replies_total";
/// Counter: requests answered with an `ErrorReply`, by `code`.
pub const REQUEST_ERRORS_TOTAL: &str = "reco_request_errors_total";
/// Counter: state-changing admin requests refused for a missing or wrong
/// operator token, by `subject` (`faults`, `model`, `reload`).
pub const ADMIN_REFUSED_TOTAL: &str = "reco_admin_refused_total";
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
/// Gauge: state of the breaker in front of the model pool (0 closed, 1
/// open, 2 half-open).
pub const MODEL_BREAKER_STATE: &str = "reco_model_breaker_state";
/// Counter: breaker state changes, by `to` (`closed`, `open`, `half_open`).
pub const MODEL_BREAKER_TRANSITIONS_TOTAL: &str = "reco_model_breaker_transitions_total";
/// Counter: late model answers of the counterfactual log, by `outcome`
/// (`published`, `dropped` (queue full), `failed` (publish error), `unsampled`
/// (not in the sampled share), `expired` (later than `max_late_ms`, or the
/// model gave nothing)).
pub const COUNTERFACTUAL_TOTAL: &str = "reco_counterfactual_total";
/// Histogram: how late the model's answer came after the fallback replied.
pub const COUNTERFACTUAL_LATE_SECONDS: &str = "reco_counterfactual_late_seconds";
/// Counter: the counterfactual log's stream could not be created at start-up.
pub const COUNTERFACTUAL_SETUP_FAILED_TOTAL: &str = "reco_counterfactual_setup_failed_total";
/// Counter: NATS slow-consumer events (messages the client dropped).
pub const NATS_SLOW_CONSUMER_TOTAL: &str = "reco_nats_slow_consumer_total";
/// Counter: NATS connection events, by `event` (`connected`, `disconnected`, …).
pub const NATS_EVENTS_TOTAL: &str = "reco_nats_events_total";
/// Gauge: members with a precomputed list in the lists in service.
pub const LISTS_MEMBERS: &str = "reco_lists_members";
/// Gauge: items in the model in service (0 when none is loaded).
pub const MODEL_ITEMS: &str = "reco_model_items";
/// Counter: model answers served again without a scan (answer reuse: the
/// member's events, the model version and the request's shape unchanged).
pub const MODEL_ANSWERS_REUSED_TOTAL: &str = "reco_model_answers_reused_total";
/// Gauge: item clusters of the model in service (0: it has none, and every
/// scan is exact whatever `[model] scan` says).
pub const MODEL_CLUSTERS: &str = "reco_model_clusters";
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
/// Counter: published model versions (or notices) a node refused, by
/// `reason` (`bucket`, `unsigned`, `untrusted_key`, `bad_signature`,
/// `invalid`).
pub const MODEL_VERSIONS_REJECTED_TOTAL: &str = "reco_model_versions_rejected_total";
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

// The near-real-time aggregation job (`reco nearline`) and the nodes'
// aggregate loaders.

/// Counter: events read by the aggregation job, by `outcome`: `applied`,
/// `duplicate` (at or below the checkpoint's sequence), `bad` (not an
/// event; skipped), `late` (older than the day window: totals only),
/// `overflow` (beyond `max_titles`).
pub const AGGREGATES_EVENTS_TOTAL: &str = "reco_aggregates_events_total";
/// Gauge: events in the stream not yet aggregated (the consumer's pending count).
pub const AGGREGATES_LAG_EVENTS: &str = "reco_aggregates_lag_events";
/// Gauge: seconds since the aggregation job's last checkpoint.
pub const AGGREGATES_CHECKPOINT_AGE_SECONDS: &str = "reco_aggregates_checkpoint_age_seconds";
/// Counter: aggregate checkpoints, by `outcome` (`ok`, `failed`) and `store` (`kv`, `object`).
pub const AGGREGATES_CHECKPOINTS_TOTAL: &str = "reco_aggregates_checkpoints_total";
/// Counter: events past the checkpoint already in the stream at start-up:
/// what a restart redid or caught up on.
pub const AGGREGATES_REPROCESSED_EVENTS_TOTAL: &str = "reco_aggregates_reprocessed_events_total";
/// Counter: aggregate snapshots published, by `outcome`.
pub const AGGREGATES_SNAPSHOTS_TOTAL: &str = "reco_aggregates_snapshots_total";
/// Gauge: the last event-stream sequence aggregated.
pub const AGGREGATES_LAST_SEQUENCE: &str = "reco_aggregates_last_sequence";
/// Gauge: titles the aggregation job tracks.
pub const AGGREGATES_TITLES: &str = "reco_aggregates_titles";
/// Histogram: seconds to build, store and announce one aggregate snapshot.
pub const AGGREGATES_SNAPSHOT_SECONDS: &str = "reco_aggregates_snapshot_seconds";
/// Counter: aggregate snapshot swaps on a node, by `outcome` (`ok`, `rejected`, `stale`).
pub const AGGREGATES_SWAPS_TOTAL: &str = "reco_aggregates_swaps_total";
/// Gauge: on a node, the stream sequence of the aggregate snapshot in
/// service (its version's number; 0 before the first).
pub const AGGREGATES_SNAPSHOT_SEQUENCE: &str = "reco_aggregates_snapshot_sequence";
/// Gauge: on a node, seconds since the aggregate snapshot in service was
/// read (its `now_ms`); -1 before the first.
pub const AGGREGATES_SNAPSHOT_AGE_SECONDS: &str = "reco_aggregates_snapshot_age_seconds";
/// Counter: `trending` and `billboard` rows served, by `row` and `outcome`:
/// `served` (from the snapshot), `no_model_scores` (billboard without the
/// member's scores), `unavailable` (no usable snapshot: popular answered).
pub const AGGREGATE_ROWS_TOTAL: &str = "reco_aggregate_rows_total";
/// Counter: billboard titles featured that the model in service does not
/// know (launched after its training): the bandit's exploration.
pub const BILLBOARD_NEW_TITLES_TOTAL: &str = "reco_billboard_new_titles_total";

// The cluster layer (reco-cluster).

/// Gauge: partitions this node holds a lease for.
pub const PARTITIONS_OWNED: &str = "reco_partitions_owned";
/// Counter: ownership changes of this node, by `change` (`acquired`, `released`, `lost`).
pub const PARTITION_MOVES_TOTAL: &str = "reco_partition_moves_total";
/// Gauge: live nodes as this node sees them (itself included).
pub const CLUSTER_NODES_LIVE: &str = "reco_cluster_nodes_live";
/// Counter: lease operations, by `op` (`acquire`, `renew`, `release`) and `outcome`.
pub const LEASE_OPERATIONS_TOTAL: &str = "reco_lease_operations_total";
/// Histogram: seconds from opening a partition's intake to caught up.
pub const REPLAY_SECONDS: &str = "reco_replay_seconds";
/// Counter: events delivered during replays.
pub const REPLAY_EVENTS_TOTAL: &str = "reco_replay_events_total";
/// Gauge: partitions this node answers requests for (replay done).
pub const PARTITION_SERVING: &str = "reco_partition_serving";
/// Gauge: events of a partition stored and not yet delivered to its owner, by `partition`.
pub const PARTITION_LAG_EVENTS: &str = "reco_partition_lag_events";
/// Counter: requests not answered because the partition's lease had run out.
pub const PARTITION_REQUESTS_FENCED_TOTAL: &str = "reco_partition_requests_fenced_total";
/// Counter: partition requests shed because the ingress had no room.
pub const PARTITION_REQUESTS_SHED_TOTAL: &str = "reco_partition_requests_shed_total";
/// Counter: events delivered in a partition their member does not belong to by this node's count.
pub const PARTITION_MISMATCH_TOTAL: &str = "reco_partition_mismatch_total";
/// Counter: messages on a partition's request subject without a reply subject, dropped.
pub const PARTITION_REQUESTS_WITHOUT_REPLY_TOTAL: &str =
    "reco_partition_requests_without_reply_total";
/// Gauge: replays of recent events running on this node (start-up replay of a node alone, partitions taken over).
pub const REPLAYS_RUNNING: &str = "reco_replays_running";
/// Counter: live events skipped at the end of a node's start-up replay because the replay already applied them.
pub const REPLAY_DUPLICATES_SKIPPED_TOTAL: &str = "reco_replay_duplicates_skipped_total";
/// Counter: events applied to a member's session with a producer time (`at_ms`) older than one it applied before.
pub const EVENTS_OUT_OF_ORDER_TOTAL: &str = "reco_events_out_of_order_total";

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
        name: ROW_REPLIES_TOTAL,
        kind: Kind::Counter,
        help: "Replies sent, by row kind, source and reason.",
    },
    Described {
        name: REQUEST_ERRORS_TOTAL,
        kind: Kind::Counter,
        help: "Requests answered with an error, by code.",
    },
    Described {
        name: ADMIN_REFUSED_TOTAL,
        kind: Kind::Counter,
        help: "State-changing admin requests refused for a missing or wrong operator token, by subject.",
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
        name: MODEL_BREAKER_STATE,
        kind: Kind::Gauge,
        help: "State of the breaker in front of the model pool (0 closed, 1 open, 2 half-open).",
    },
    Described {
        name: MODEL_BREAKER_TRANSITIONS_TOTAL,
        kind: Kind::Counter,
        help: "Breaker state changes, by the state entered.",
    },
    Described {
        name: COUNTERFACTUAL_TOTAL,
        kind: Kind::Counter,
        help: "Late model answers of the counterfactual log, by outcome (published, dropped, failed, unsampled, expired).",
    },
    Described {
        name: COUNTERFACTUAL_LATE_SECONDS,
        kind: Kind::Histogram,
        help: "How late the model answered after the fallback had replied (counterfactual log).",
    },
    Described {
        name: COUNTERFACTUAL_SETUP_FAILED_TOTAL,
        kind: Kind::Counter,
        help: "The counterfactual log's JetStream stream could not be created at start-up.",
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
        name: MODEL_ANSWERS_REUSED_TOTAL,
        kind: Kind::Counter,
        help: "Model answers served again without a scan (nothing they depended on changed).",
    },
    Described {
        name: MODEL_CLUSTERS,
        kind: Kind::Gauge,
        help: "Item clusters of the model in service (0: scans are exact).",
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
        name: MODEL_VERSIONS_REJECTED_TOTAL,
        kind: Kind::Counter,
        help: "Published model versions or notices refused, by `reason` (bucket, unsigned, untrusted_key, bad_signature, invalid).",
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
    Described {
        name: AGGREGATES_EVENTS_TOTAL,
        kind: Kind::Counter,
        help: "Events read by the aggregation job, by outcome.",
    },
    Described {
        name: AGGREGATES_LAG_EVENTS,
        kind: Kind::Gauge,
        help: "Events in the stream not yet aggregated.",
    },
    Described {
        name: AGGREGATES_CHECKPOINT_AGE_SECONDS,
        kind: Kind::Gauge,
        help: "Seconds since the aggregation job's last checkpoint.",
    },
    Described {
        name: AGGREGATES_CHECKPOINTS_TOTAL,
        kind: Kind::Counter,
        help: "Aggregate checkpoints, by outcome and store.",
    },
    Described {
        name: AGGREGATES_REPROCESSED_EVENTS_TOTAL,
        kind: Kind::Counter,
        help: "Events past the checkpoint that were already in the stream at start-up.",
    },
    Described {
        name: AGGREGATES_SNAPSHOTS_TOTAL,
        kind: Kind::Counter,
        help: "Aggregate snapshots published, by outcome.",
    },
    Described {
        name: AGGREGATES_LAST_SEQUENCE,
        kind: Kind::Gauge,
        help: "Last event-stream sequence aggregated.",
    },
    Described {
        name: AGGREGATES_TITLES,
        kind: Kind::Gauge,
        help: "Titles the aggregation job tracks.",
    },
    Described {
        name: AGGREGATES_SNAPSHOT_SECONDS,
        kind: Kind::Histogram,
        help: "Seconds to build, store and announce one aggregate snapshot.",
    },
    Described {
        name: AGGREGATES_SWAPS_TOTAL,
        kind: Kind::Counter,
        help: "Aggregate snapshot swaps on a node, by outcome.",
    },
    Described {
        name: AGGREGATES_SNAPSHOT_SEQUENCE,
        kind: Kind::Gauge,
        help: "Stream sequence of the aggregate snapshot in service on a node.",
    },
    Described {
        name: AGGREGATES_SNAPSHOT_AGE_SECONDS,
        kind: Kind::Gauge,
        help: "Seconds since the aggregate snapshot in service was read (-1: none).",
    },
    Described {
        name: AGGREGATE_ROWS_TOTAL,
        kind: Kind::Counter,
        help: "Trending and billboard rows served, by row and outcome.",
    },
    Described {
        name: BILLBOARD_NEW_TITLES_TOTAL,
        kind: Kind::Counter,
        help: "Billboard titles featured that the model in service does not know.",
    },
    Described {
        name: PARTITIONS_OWNED,
        kind: Kind::Gauge,
        help: "Partitions this node holds a lease for.",
    },
    Described {
        name: PARTITION_MOVES_TOTAL,
        kind: Kind::Counter,
        help: "Ownership changes of this node, by change (acquired, released, lost).",
    },
    Described {
        name: CLUSTER_NODES_LIVE,
        kind: Kind::Gauge,
        help: "Live nodes as this node sees them, itself included.",
    },
    Described {
        name: LEASE_OPERATIONS_TOTAL,
        kind: Kind::Counter,
        help: "Partition lease operations, by op and outcome.",
    },
    Described {
        name: REPLAY_SECONDS,
        kind: Kind::Histogram,
        help: "Seconds from opening a partition's intake to caught up.",
    },
    Described {
        name: REPLAY_EVENTS_TOTAL,
        kind: Kind::Counter,
        help: "Events delivered during partition replays.",
    },
    Described {
        name: PARTITION_SERVING,
        kind: Kind::Gauge,
        help: "Partitions this node answers requests for (replay done).",
    },
    Described {
        name: PARTITION_LAG_EVENTS,
        kind: Kind::Gauge,
        help: "Events of a partition stored and not yet delivered to its owner (consumer lag), by partition.",
    },
    Described {
        name: PARTITION_REQUESTS_FENCED_TOTAL,
        kind: Kind::Counter,
        help: "Requests not answered because the partition's lease had run out.",
    },
    Described {
        name: PARTITION_REQUESTS_SHED_TOTAL,
        kind: Kind::Counter,
        help: "Partition requests shed because the ingress had no room (the caller falls back).",
    },
    Described {
        name: PARTITION_MISMATCH_TOTAL,
        kind: Kind::Counter,
        help: "Events in a partition their member does not belong to by this node's count.",
    },
    Described {
        name: PARTITION_REQUESTS_WITHOUT_REPLY_TOTAL,
        kind: Kind::Counter,
        help: "Messages on a partition's request subject without a reply subject, dropped.",
    },
    Described {
        name: REPLAYS_RUNNING,
        kind: Kind::Gauge,
        help: "Replays of recent events running (nearline refreshes wait meanwhile).",
    },
    Described {
        name: REPLAY_DUPLICATES_SKIPPED_TOTAL,
        kind: Kind::Counter,
        help: "Live events skipped after a start-up replay that had already applied them.",
    },
    Described {
        name: EVENTS_OUT_OF_ORDER_TOTAL,
        kind: Kind::Counter,
        help: "Events applied with a producer time older than one their member's session applied before.",
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
