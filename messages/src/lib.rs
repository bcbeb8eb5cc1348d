//! reco's wire contract: what producers, callers and operators exchange with
//! a reco node over NATS.
//!
//! Payloads are MessagePack maps with field names; decoders also accept the
//! compact array form and ignore unknown fields. This crate does no I/O, so
//! any producer or test can depend on it.
//!
//! # Layout
//! - [`ids`]: `MemberId` and `ItemId`, the newtypes of the contract's u64 ids.
//! - [`wire`]: the payloads (`Event`, `RecommendRequest`, `Recommendations`,
//!   `ErrorReply`) and their enums.
//! - [`subjects`]: every NATS subject, built from one prefix.
//! - [`partition`]: the partition function (the server's `{{partition(N,1)}}`)
//!   and the partitioned subjects of a cluster.
//! - [`admin`]: payloads of the operator surface (`<prefix>.admin.…`).
//! - [`published`]: notifications of the offline job
//!   (`<prefix>.published.…`).
//! - [`row`]: the rows (galleries) a request can ask for.
//! - [`metrics`]: the name of every metric reco emits, with its kind and help.
//! - [`codec`]: encoding, size-limited decoding and validation with clear
//!   errors.

pub mod admin;
pub mod codec;
pub mod ids;
pub mod metrics;
pub mod partition;
pub mod published;
pub mod row;
mod strict;
pub mod subjects;
pub mod wire;

pub use codec::{decode, decode_event, decode_request, encode, DecodeError, ValidRequest};
pub use ids::{ItemId, MemberId};
pub use published::{AggregatesPublished, ModelPublished};
pub use row::Row;
pub use subjects::Subjects;
pub use wire::{
    Counterfactual, ErrorBody, ErrorCode, ErrorReply, Event, EventKind, ItemDetails, Reason,
    RecommendReply, RecommendRequest, Recommendations, ScoredItem, Source,
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    const LIMIT: usize = 64 * 1024;

    fn any_kind() -> impl Strategy<Value = EventKind> {
        proptest::sample::select(EventKind::ALL.to_vec())
    }

    fn any_event() -> impl Strategy<Value = Event> {
        (
            any::<u64>(),
            any::<u64>(),
            any_kind(),
            0.0f32..5.0,
            proptest::option::of(any::<u64>()),
            proptest::option::of("[a-z]{0,12}"),
        )
            .prop_map(|(member, item, kind, value, at_ms, device)| Event {
                member: MemberId(member),
                item: ItemId(item),
                kind,
                value,
                at_ms,
                device,
            })
    }

    proptest! {
        #[test]
        fn events_round_trip(event in any_event()) {
            let bytes = encode(&event);
            let back = decode_event(&bytes, event.member, LIMIT).unwrap();
            prop_assert_eq!(back, event);
        }

        #[test]
        fn recommendations_round_trip(
            member in any::<u64>(),
            items in proptest::collection::vec((any::<u64>(), -1e6f32..1e6), 0..50),
            version in proptest::option::of("[a-z0-9-]{1,20}"),
        ) {
            let reply = Recommendations {
                member: MemberId(member),
                items: items.into_iter().map(|(i, s)| ScoredItem { item: ItemId(i), score: s }).collect(),
                source: Source::Precomputed,
                model_version: version,
                degraded: true,
                reason: Some(Reason::Deadline),
                served_us: 1234,
                lists_version: Some("l1".into()),
                list_age_ms: Some(5),
                signals: Some(3),
                newest_signal_age_ms: None,
                aggregates_version: None,
                row: Some("genre:Comedy".into()),
                details: Some(vec![ItemDetails { item: ItemId(1), title: "Toy Story (1995)".into(), genres: vec!["Comedy".into()] }]),
                reused: false,
            };
            let back: RecommendReply = decode(&encode(&reply), LIMIT).unwrap();
            prop_assert_eq!(back, RecommendReply::Ok(reply));
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_event(&bytes, MemberId(1), LIMIT);
            let _ = decode_request(&bytes, LIMIT);
            let _ = decode::<RecommendReply>(&bytes, LIMIT);
        }

        #[test]
        fn truncated_events_are_rejected_not_panicked(event in any_event(), cut in 0usize..64) {
            let bytes = encode(&event);
            let cut = cut.min(bytes.len().saturating_sub(1));
            prop_assert!(decode_event(&bytes[..cut], event.member, LIMIT).is_err());
        }
    }

    #[test]
    fn counterfactual_records_round_trip_as_named_maps() {
        let record = Counterfactual {
            member: MemberId(7),
            request_id: 42,
            node: "n1".into(),
            at_ms: 1_700_000_000_000,
            k: 2,
            late_items: vec![ScoredItem {
                item: ItemId(3),
                score: 0.5,
            }],
            late_source: Source::Model,
            late_model_version: Some("m1".into()),
            served_items: vec![ScoredItem {
                item: ItemId(4),
                score: 9.0,
            }],
            served_source: Source::Precomputed,
            reason: Reason::Deadline,
            served_version: None,
            late_ms: 180,
        };
        let bytes = encode(&record);
        let back: Counterfactual = decode(&bytes, LIMIT).unwrap();
        assert_eq!(back, record);
        // Named fields on the wire, for readers in other languages.
        let map: std::collections::BTreeMap<String, serde::de::IgnoredAny> =
            rmp_serde::from_slice(&bytes).unwrap();
        for key in [
            "late_items",
            "served_items",
            "late_ms",
            "request_id",
            "reason",
        ] {
            assert!(map.contains_key(key), "{key}");
        }
    }

    #[test]
    fn replies_with_and_without_provenance_decode_on_both_sides() {
        // An older node's reply: no provenance fields.
        #[derive(Serialize, Deserialize)]
        struct OldReply {
            member: u64,
            items: Vec<ScoredItem>,
            source: String,
            model_version: Option<String>,
            degraded: bool,
            reason: Option<String>,
            served_us: u64,
        }
        let old = OldReply {
            member: 4,
            items: vec![],
            source: "model".into(),
            model_version: Some("m1".into()),
            degraded: false,
            reason: None,
            served_us: 7,
        };
        let RecommendReply::Ok(new) =
            decode::<RecommendReply>(&rmp_serde::to_vec_named(&old).unwrap(), LIMIT).unwrap()
        else {
            panic!("a list");
        };
        assert_eq!((new.lists_version, new.signals), (None, None));
        // A new reply, read by an older caller that ignores the new fields.
        let reply = Recommendations {
            member: MemberId(4),
            items: vec![],
            source: Source::Nearline,
            model_version: Some("m1".into()),
            degraded: true,
            reason: Some(Reason::Deadline),
            served_us: 7,
            lists_version: Some("l1".into()),
            list_age_ms: Some(1500),
            signals: Some(2),
            newest_signal_age_ms: Some(40),
            aggregates_version: None,
            row: None,
            details: None,
            reused: false,
        };
        let read: OldReply = rmp_serde::from_slice(&encode(&reply)).unwrap();
        assert_eq!(read.model_version.as_deref(), Some("m1"));
        assert_eq!(read.served_us, 7);
    }

    #[test]
    fn compact_array_form_and_unknown_fields_are_accepted() {
        // Array form, as rmp_serde::to_vec writes it, with the optional tail left out.
        let compact = rmp_serde::to_vec(&(5u64, 9u64, "play")).unwrap();
        let event = decode_event(&compact, MemberId(5), LIMIT).unwrap();
        assert_eq!(event.kind, EventKind::Play);
        assert_eq!(event.value, 0.0);

        #[derive(Serialize)]
        struct Extended<'a> {
            member: u64,
            item: u64,
            kind: &'a str,
            value: f32,
            session_id: &'a str,
            experiment: [u32; 2],
        }
        let extended = rmp_serde::to_vec_named(&Extended {
            member: 5,
            item: 9,
            kind: "rate",
            value: 4.5,
            session_id: "abc",
            experiment: [1, 2],
        })
        .unwrap();
        let event = decode_event(&extended, MemberId(5), LIMIT).unwrap();
        assert_eq!((event.kind, event.value), (EventKind::Rate, 4.5));
    }

    #[test]
    fn the_decoder_follows_the_contract_strictly() {
        // A kind given as the variant's position is not a kind.
        #[derive(Serialize)]
        struct IntKind {
            member: u64,
            item: u64,
            kind: u8,
        }
        let bytes = rmp_serde::to_vec_named(&IntKind {
            member: 5,
            item: 9,
            kind: 0,
        })
        .unwrap();
        let err = decode_event(&bytes, MemberId(5), LIMIT).unwrap_err();
        assert_eq!(err.label(), "malformed", "{err}");

        // MessagePack binary where the contract says string: refused for the
        // kind, the device and the request's row.
        #[derive(Serialize)]
        struct BinKind<'a> {
            member: u64,
            item: u64,
            #[serde(with = "serde_bytes_shim")]
            kind: &'a [u8],
        }
        let bytes = rmp_serde::to_vec_named(&BinKind {
            member: 5,
            item: 9,
            kind: b"play",
        })
        .unwrap();
        assert!(decode_event(&bytes, MemberId(5), LIMIT).is_err());

        #[derive(Serialize)]
        struct BinDevice<'a> {
            member: u64,
            item: u64,
            kind: &'a str,
            #[serde(with = "serde_bytes_shim")]
            device: &'a [u8],
        }
        let bytes = rmp_serde::to_vec_named(&BinDevice {
            member: 5,
            item: 9,
            kind: "play",
            device: b"tv",
        })
        .unwrap();
        assert!(decode_event(&bytes, MemberId(5), LIMIT).is_err());

        #[derive(Serialize)]
        struct BinRow<'a> {
            #[serde(with = "serde_bytes_shim")]
            row: &'a [u8],
        }
        let bytes = rmp_serde::to_vec_named(&BinRow { row: b"popular" }).unwrap();
        assert!(decode_request(&bytes, LIMIT).is_err());

        // The same fields as strings, and nil, still decode.
        #[derive(Serialize)]
        struct Good<'a> {
            member: u64,
            item: u64,
            kind: &'a str,
            device: Option<&'a str>,
        }
        for device in [Some("tv"), None] {
            let bytes = rmp_serde::to_vec_named(&Good {
                member: 5,
                item: 9,
                kind: "list_add",
                device,
            })
            .unwrap();
            let event = decode_event(&bytes, MemberId(5), LIMIT).unwrap();
            assert_eq!(event.kind, EventKind::ListAdd);
            assert_eq!(event.device.as_deref(), device);
        }
    }

    /// Serialises a byte slice as MessagePack binary (what serde_bytes does),
    /// to build payloads that put binary where the contract says string.
    mod serde_bytes_shim {
        pub(super) fn serialize<S: serde::Serializer>(v: &&[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
    }

    #[test]
    fn invalid_events_say_what_is_wrong() {
        let event = |kind, value| Event {
            member: MemberId(1),
            item: ItemId(2),
            kind,
            value,
            at_ms: None,
            device: None,
        };
        let err = decode_event(&encode(&event(EventKind::Play, 1.0)), MemberId(2), LIMIT)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("member 1") && err.contains("member 2"),
            "{err}"
        );
        let err = decode_event(&encode(&event(EventKind::Rate, 9.0)), MemberId(1), LIMIT)
            .unwrap_err()
            .to_string();
        assert!(err.contains("stars"), "{err}");
        let err = decode_event(
            &encode(&event(EventKind::Play, f32::NAN)),
            MemberId(1),
            LIMIT,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("finite"), "{err}");

        #[derive(Serialize)]
        struct Raw<'a> {
            member: u64,
            item: u64,
            kind: &'a str,
        }
        let unknown = rmp_serde::to_vec_named(&Raw {
            member: 1,
            item: 2,
            kind: "teleport",
        })
        .unwrap();
        let err = decode_event(&unknown, MemberId(1), LIMIT).unwrap_err();
        assert_eq!(err.label(), "malformed");
        assert!(err.to_string().contains("teleport"), "{err}");

        #[derive(Serialize)]
        struct WrongType<'a> {
            member: &'a str,
            item: u64,
            kind: &'a str,
        }
        let wrong = rmp_serde::to_vec_named(&WrongType {
            member: "one",
            item: 2,
            kind: "play",
        })
        .unwrap();
        assert_eq!(
            decode_event(&wrong, MemberId(1), LIMIT)
                .unwrap_err()
                .label(),
            "malformed"
        );
    }

    #[test]
    fn oversized_payloads_are_refused_before_decoding() {
        let err = decode_event(&[0xc0; 100], MemberId(1), 99).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::TooLarge {
                size: 100,
                limit: 99
            }
        ));
    }

    #[test]
    fn requests_get_defaults_and_range_checks() {
        let req = decode_request(&[], LIMIT).unwrap();
        assert_eq!((req.k, req.exclude_seen, req.deadline_ms), (10, true, None));
        let bad = |r: RecommendRequest| decode_request(&encode(&r), LIMIT).unwrap_err().to_string();
        assert!(bad(RecommendRequest {
            k: Some(0),
            ..Default::default()
        })
        .contains("k = 0"));
        assert!(bad(RecommendRequest {
            k: Some(501),
            ..Default::default()
        })
        .contains("1 to 500"));
        assert!(bad(RecommendRequest {
            deadline_ms: Some(0),
            ..Default::default()
        })
        .contains("deadline_ms"));
        let ok = decode_request(
            &encode(&RecommendRequest {
                k: Some(500),
                exclude_seen: Some(false),
                deadline_ms: Some(20),
                ..Default::default()
            }),
            LIMIT,
        )
        .unwrap();
        assert_eq!(
            (ok.k, ok.exclude_seen, ok.deadline_ms),
            (500, false, Some(20))
        );
    }

    #[test]
    fn error_replies_decode_as_errors() {
        let reply = ErrorReply::new(ErrorCode::BadRequest, "k = 0 is out of range");
        let bytes = encode(&reply);
        assert_eq!(
            decode::<RecommendReply>(&bytes, LIMIT).unwrap(),
            RecommendReply::Error(reply)
        );
    }
}
