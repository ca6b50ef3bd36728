//! Wire protocol v2: every message kind round-trips, large payloads chunk and reassemble byte
//! for byte, and every malformed input is a typed error, never a panic.

use bridge::protocol::{WireInvocation, MAX_MQTT_PAYLOAD, PROTOCOL_VERSION};
use bridge::wire::{encode, encode_whole, Limits, ProtocolError, Reassembler, CHUNK_DATA};
use bridge::{DevMessage, Frame, Presence, StubMessage};
use bytes::Bytes;
use std::time::{Duration, Instant};

fn invocation() -> StubMessage {
    StubMessage::Invoke(WireInvocation {
        request_id: "8476a536-e9f4-11e8-9739-2dfe598c3fcd".into(),
        function: "hello".into(),
        env_id: "0123456789abcdef0123456789abcdef".into(),
        headers: vec![
            ("Lambda-Runtime-Aws-Request-Id".into(), "8476a536".into()),
            ("Lambda-Runtime-Deadline-Ms".into(), "1542409706888".into()),
            (
                "Lambda-Runtime-Client-Context".into(),
                r#"{"custom":{"é":"ü"}}"#.into(),
            ),
        ],
        remaining_ms: 2_999,
        attempt: 0,
        env: None,
        credentials: None,
        objects: None,
    })
}

/// A body that JSON re-encoding would damage: non-ASCII text, integers beyond 2^53, a float
/// with trailing zeros, and raw bytes that are not UTF-8.
fn awkward_body(len: usize) -> Vec<u8> {
    let unit = "{\"id\":9007199254740993,\"big\":123456789012345678901234567890,\"f\":1.50,\"text\":\"héllo wörld — 日本語 🚀\"}\n".as_bytes();
    let mut body: Vec<u8> = unit.iter().copied().cycle().take(len).collect();
    body.extend_from_slice(&[0xff, 0xfe, 0x00, 0x80]);
    body
}

fn decode_all(payloads: Vec<Bytes>) -> Frame {
    let mut r = Reassembler::default();
    let now = Instant::now();
    let mut out = None;
    for p in payloads {
        assert!(p.len() <= MAX_MQTT_PAYLOAD, "payload of {} bytes", p.len());
        if let Some(frame) = r.push(p, now).expect("valid chunk") {
            assert!(out.is_none(), "completed twice");
            out = Some(frame);
        }
    }
    assert_eq!(r.held(), 0, "nothing left held after completion");
    out.expect("message completed")
}

#[test]
fn every_message_kind_round_trips() {
    let body = awkward_body(300);
    let stub = [
        invocation(),
        StubMessage::Probe {
            request_id: "r1".into(),
            env_id: "e1".into(),
        },
    ];
    for msg in stub {
        let frame = decode_all(encode(&msg, &body).unwrap());
        assert_eq!(frame.parse::<StubMessage>().unwrap(), msg);
        assert_eq!(frame.body, body);
    }
    let dev = [
        DevMessage::Ack {
            request_id: "r1".into(),
        },
        DevMessage::Response {
            request_id: "r1".into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            in_object: false,
        },
        DevMessage::Error {
            request_id: "r1".into(),
            error_type: Some("Runtime.HandlerCrashed".into()),
            headers: vec![],
        },
        DevMessage::Error {
            request_id: "r1".into(),
            error_type: None,
            headers: vec![],
        },
    ];
    for msg in dev {
        let frame = decode_all(encode(&msg, &body).unwrap());
        assert_eq!(frame.parse::<DevMessage>().unwrap(), msg);
        assert_eq!(frame.body, body);
    }
    let presence = Presence {
        session: "alice-1".into(),
        online: true,
        epoch: 1_700_000_000_000,
        version: PROTOCOL_VERSION,
        functions: vec!["hello".into(), "http".into()],
        lanes: 1,
    };
    let frame = decode_all(encode(&presence, b"").unwrap());
    assert_eq!(frame.parse::<Presence>().unwrap(), presence);
    // A session on several lanes says how many; one that does not (an older one) has one.
    let wide = Presence {
        lanes: 12,
        ..presence.clone()
    };
    let frame = decode_all(encode(&wide, b"").unwrap());
    assert_eq!(frame.parse::<Presence>().unwrap().lanes, 12);
    let old = serde_json::json!({"session": "bob-2", "online": true, "epoch": 1, "version": PROTOCOL_VERSION, "functions": []});
    let frame = decode_all(encode(&old, b"").unwrap());
    assert_eq!(frame.parse::<Presence>().unwrap().lanes, 1);
}

/// The forwarded environment and credentials are optional fields: a header without them (as
/// a stub before them sends) reads as `None`, and `None` is not written, so v2 readers that
/// predate them and invocations that carry neither are unaffected; credentials never show in
/// `Debug`.
#[test]
fn the_forwarded_context_is_optional_and_its_secrets_never_debug_print() {
    let old = br#"{"type":"invoke","request_id":"r","function":"f","env_id":"e","headers":[],"remaining_ms":5,"attempt":0}"#;
    let StubMessage::Invoke(read) = serde_json::from_slice::<StubMessage>(old).unwrap() else {
        panic!("not an invocation");
    };
    assert_eq!((read.env, read.credentials), (None, None));
    let plain = serde_json::to_string(&invocation()).unwrap();
    assert!(
        !plain.contains("env\"") && !plain.contains("credentials"),
        "{plain}"
    );

    let StubMessage::Invoke(mut with) = invocation() else {
        unreachable!()
    };
    with.env = Some(bridge::FunctionEnv(
        [("TABLE".to_string(), "db-password".to_string())].into(),
    ));
    with.credentials = Some(bridge::RoleCredentials {
        access_key_id: "ASIAEXAMPLE".into(),
        secret_access_key: "the-secret".into(),
        session_token: Some("the-token".into()),
        expires_in_secs: Some(900),
    });
    let message = StubMessage::Invoke(with);
    let frame = decode_all(encode(&message, b"{}").unwrap());
    assert_eq!(frame.parse::<StubMessage>().unwrap(), message);
    let shown = format!("{message:?}");
    assert!(
        shown.contains("ASIAEXAMPLE") && shown.contains("TABLE"),
        "{shown}"
    );
    for secret in ["the-secret", "the-token", "db-password"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[test]
fn a_header_of_another_kind_is_a_typed_error() {
    let frame = decode_all(encode(&invocation(), b"{}").unwrap());
    assert!(matches!(
        frame.parse::<DevMessage>(),
        Err(ProtocolError::BadHeader(_))
    ));
}

#[test]
fn six_megabytes_chunk_below_the_limit_and_reassemble_byte_for_byte() {
    let body = awkward_body(6 * 1024 * 1024);
    let payloads = encode(&invocation(), &body).unwrap();
    assert!(payloads.len() > 40, "{} chunks", payloads.len());
    assert!(payloads.iter().all(|p| p.len() <= MAX_MQTT_PAYLOAD));
    let frame = decode_all(payloads);
    assert_eq!(frame.body.len(), body.len());
    assert!(frame.body == body, "body changed in transit");
    assert_eq!(frame.parse::<StubMessage>().unwrap(), invocation());
}

#[test]
fn chunks_out_of_order_still_reassemble() {
    let body = awkward_body(1_000_000);
    let mut payloads = encode(&invocation(), &body).unwrap();
    payloads.reverse();
    payloads.swap(1, 3);
    assert_eq!(decode_all(payloads).body, body);
}

#[test]
fn a_duplicated_chunk_is_refused_and_the_message_still_completes() {
    let body = awkward_body(400_000);
    let payloads = encode(&invocation(), &body).unwrap();
    let mut r = Reassembler::default();
    let now = Instant::now();
    assert_eq!(r.push(payloads[0].clone(), now), Ok(None));
    assert!(matches!(
        r.push(payloads[0].clone(), now),
        Err(ProtocolError::DuplicateChunk { index: 0, .. })
    ));
    let mut done = None;
    for p in &payloads[1..] {
        done = r.push(p.clone(), now).unwrap();
    }
    assert_eq!(done.expect("completed").body, body);
}

#[test]
fn a_missing_chunk_times_out_and_frees_its_memory() {
    let body = awkward_body(500_000);
    let payloads = encode(&invocation(), &body).unwrap();
    let limits = Limits {
        timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    let mut r = Reassembler::new(limits);
    let start = Instant::now();
    for p in payloads.iter().skip(1) {
        assert_eq!(r.push(p.clone(), start), Ok(None));
    }
    assert!(r.held() > 0);
    assert!(r.expire(start + Duration::from_secs(4)).is_empty());
    let expired = r.expire(start + Duration::from_secs(5));
    assert!(matches!(
        expired.as_slice(),
        [ProtocolError::ChunkTimeout { got, count, .. }] if *got + 1 == *count
    ));
    assert_eq!(r.held(), 0);
    // The late chunk now starts a new partial message instead of completing a stale one.
    assert_eq!(
        r.push(payloads[0].clone(), start + Duration::from_secs(6)),
        Ok(None)
    );
}

#[test]
fn oversized_messages_are_refused_on_both_sides() {
    let body = vec![b'x'; 7 * 1024 * 1024];
    assert!(matches!(
        encode(&invocation(), &body),
        Err(ProtocolError::TooLarge { .. })
    ));
    // A forged first chunk that declares more than the limit.
    let mut chunk = encode(&invocation(), &awkward_body(300_000)).unwrap()[0].to_vec();
    chunk[16..20].copy_from_slice(&(100_000_000u32).to_be_bytes());
    let mut r = Reassembler::default();
    assert!(matches!(
        r.push(chunk.into(), Instant::now()),
        Err(ProtocolError::TooLarge { .. })
    ));
}

#[test]
fn a_whole_frame_fills_one_payload_exactly_and_never_more() {
    let ack = DevMessage::Ack {
        request_id: "r".into(),
    };
    let room = MAX_MQTT_PAYLOAD - encode_whole(&ack, b"").unwrap().len();
    let full = encode_whole(&ack, &vec![7; room]).unwrap();
    assert_eq!(full.len(), MAX_MQTT_PAYLOAD);
    assert_eq!(encode(&ack, &vec![7; room]).unwrap(), vec![full.clone()]);
    let frame = Reassembler::whole_of_any_version(full).unwrap();
    assert_eq!(frame.body.len(), room);
    // One byte more is chunked by `encode`, refused by `encode_whole`.
    assert_eq!(encode(&ack, &vec![7; room + 1]).unwrap().len(), 2);
    assert_eq!(
        encode_whole(&ack, &vec![7; room + 1]),
        Err(ProtocolError::TooLarge {
            size: MAX_MQTT_PAYLOAD + 1,
            limit: MAX_MQTT_PAYLOAD
        })
    );
}

#[test]
fn the_reassembly_budget_bounds_memory_across_messages() {
    let limits = Limits {
        budget: 1_000_000,
        ..Limits::default()
    };
    let mut r = Reassembler::new(limits);
    let now = Instant::now();
    let first = encode(&invocation(), &awkward_body(600_000)).unwrap();
    let second = encode(&invocation(), &awkward_body(600_000)).unwrap();
    assert_eq!(r.push(first[0].clone(), now), Ok(None));
    assert!(matches!(
        r.push(second[0].clone(), now),
        Err(ProtocolError::BudgetExceeded { .. })
    ));
    assert!(r.held() <= 1_000_000);
}

#[test]
fn a_wrong_version_names_the_side_to_update() {
    let mut payload = encode(&invocation(), b"{}").unwrap()[0].to_vec();
    payload[2] = PROTOCOL_VERSION + 1;
    let err = Reassembler::default()
        .push(payload.clone().into(), Instant::now())
        .unwrap_err();
    assert_eq!(
        err,
        ProtocolError::VersionMismatch {
            theirs: PROTOCOL_VERSION + 1,
            ours: PROTOCOL_VERSION
        }
    );
    assert!(err.to_string().contains("update this side"), "{err}");
    payload[2] = 0;
    let err = Reassembler::default()
        .push(payload.into(), Instant::now())
        .unwrap_err();
    assert!(err.to_string().contains("update the peer"), "{err}");
}

#[test]
fn garbage_and_truncation_are_typed_errors() {
    let mut r = Reassembler::default();
    let now = Instant::now();
    // This version's prefix with an unknown kind, a header length beyond the frame, and a
    // truncated chunk header.
    let ours = |rest: &[u8]| [&[b'L', b'V', PROTOCOL_VERSION][..], rest].concat();
    for garbage in [
        b"".to_vec(),
        b"L".to_vec(),
        b"hello world".to_vec(),
        b"{\"type\":\"ack\"}".to_vec(),
        ours(b"\x09rest"),
        ours(b"\x01\x00\x00\xff\xff{}"),
        ours(b"\x02short"),
    ] {
        let result = r.push(Bytes::copy_from_slice(&garbage), now);
        assert!(
            matches!(result, Err(ProtocolError::Garbage(_))),
            "{garbage:?}: {result:?}"
        );
    }
    // A chunk whose index is beyond its count, and one whose count is zero.
    let chunk = encode(&invocation(), &awkward_body(300_000)).unwrap()[1].to_vec();
    let mut bad = chunk.clone();
    bad[12..14].copy_from_slice(&9u16.to_be_bytes());
    assert!(matches!(
        r.push(bad.into(), now),
        Err(ProtocolError::ChunkOutOfRange { index: 9, .. })
    ));
    let mut bad = chunk.clone();
    bad[14..16].copy_from_slice(&0u16.to_be_bytes());
    assert!(matches!(
        r.push(bad.into(), now),
        Err(ProtocolError::ChunkOutOfRange { count: 0, .. })
    ));
    // A truncated chunk: the message never adds up to its declared size.
    let payloads = encode(&invocation(), &awkward_body(300_000)).unwrap();
    let mut r = Reassembler::default();
    let last = payloads.len() - 1;
    for (i, p) in payloads.into_iter().enumerate() {
        let p = if i == last {
            p.slice(..p.len() - 10)
        } else {
            p
        };
        let result = r.push(p, now);
        if i == last {
            assert!(
                matches!(result, Err(ProtocolError::SizeMismatch { .. })),
                "{result:?}"
            );
        }
    }
    assert_eq!(r.held(), 0);
    const { assert!(CHUNK_DATA < MAX_MQTT_PAYLOAD) };
}

#[test]
fn random_bytes_never_panic() {
    let mut r = Reassembler::default();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let now = Instant::now();
    for round in 0..20_000 {
        let len = (seed % 200) as usize;
        let mut buf = Vec::with_capacity(len + 4);
        if round % 2 == 0 {
            buf.extend_from_slice(&[b'L', b'V', PROTOCOL_VERSION, 1 + (round % 3) as u8]);
        }
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            buf.push(seed as u8);
        }
        if let Ok(Some(frame)) = r.push(buf.into(), now) {
            let _ = frame.parse::<StubMessage>();
        }
    }
}
