//! Names of the metrics the actors emit, defined once.
//!
//! Names follow `reco_<component>_<what>_<unit>`; label values are bounded
//! sets (sources, reasons, error codes), never member or item ids.

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
/// Gauge: state of the breaker in front of the model pool (0 closed, 1
/// open, 2 half-open).
pub const MODEL_BREAKER_STATE: &str = "reco_model_breaker_state";
/// Counter: breaker state changes, by `to` (`closed`, `open`, `half_open`).
pub const MODEL_BREAKER_TRANSITIONS_TOTAL: &str = "reco_model_breaker_transitions_total";
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

/// Registers a description for every metric so that the exporter shows
/// `# HELP` lines even before a metric first moves.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        RECOMMEND_LATENCY_SECONDS,
        Unit::Seconds,
        "Time from receipt of a recommend request to its reply."
    );
    describe_counter!(REPLIES_TOTAL, "Replies sent, by source and reason.");
    describe_counter!(
        REQUEST_ERRORS_TOTAL,
        "Requests answered with an error, by code."
    );
    describe_gauge!(REQUESTS_IN_FLIGHT, "Recommend requests not yet answered.");
    describe_counter!(EVENTS_INGESTED_TOTAL, "Events accepted, by kind.");
    describe_counter!(
        EVENTS_REJECTED_TOTAL,
        "Events refused as bad input, by why."
    );
    describe_counter!(
        EVENTS_DROPPED_TOTAL,
        "Valid events shed at a full mailbox, by stage."
    );
    describe_counter!(
        DLQ_PUBLISHED_TOTAL,
        "Rejected events copied to the dead-letter subject."
    );
    describe_gauge!(SESSION_ACTIVE, "Member sessions resident in memory.");
    describe_counter!(SESSION_PASSIVATIONS_TOTAL, "Sessions passivated, by cause.");
    describe_counter!(
        MODEL_REQUESTS_TOTAL,
        "Scoring requests offered to the model pool, by outcome."
    );
    describe_histogram!(
        MODEL_SCORE_SECONDS,
        Unit::Seconds,
        "Time a model worker spent on one request (a batched pass shared out)."
    );
    describe_histogram!(
        MODEL_BATCH_SIZE,
        Unit::Count,
        "Requests a model worker scored in one pass over the factor matrix."
    );
    describe_gauge!(
        MODEL_IN_FLIGHT,
        "Scoring requests admitted and not finished."
    );
    describe_counter!(NATS_SLOW_CONSUMER_TOTAL, "NATS slow-consumer events.");
    describe_counter!(NATS_EVENTS_TOTAL, "NATS connection events, by event.");
    describe_gauge!(LISTS_MEMBERS, "Members with a precomputed list in service.");
    describe_gauge!(MODEL_ITEMS, "Items in the model in service.");
    describe_counter!(
        ACTOR_PANICS_TOTAL,
        "Panics caught in actor handlers, by actor."
    );
    describe_counter!(
        EVENTS_QUARANTINED_TOTAL,
        "Events quarantined after crashing a session repeatedly."
    );
    describe_gauge!(MODEL_WORKERS_UP, "Model workers up, by pool.");
    describe_counter!(NEARLINE_REFRESHES_TOTAL, "Nearline refreshes, by outcome.");
    describe_histogram!(
        NEARLINE_REFRESH_SECONDS,
        Unit::Seconds,
        "Time to compute a nearline refresh."
    );
    describe_histogram!(
        NEARLINE_FRESHNESS_SECONDS,
        Unit::Seconds,
        "Time from an important event to the member's refreshed nearline list."
    );
    describe_counter!(
        SESSION_RESTARTS_TOTAL,
        "Sessions restarted in place after a panic."
    );
}
