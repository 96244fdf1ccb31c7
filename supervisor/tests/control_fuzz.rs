//! The control-socket decoder (framing + JSON) on random and hostile input: it must return an
//! error, never panic, never allocate beyond the 1 MiB cap, never accept a malformed request.
//! `PROPTEST_CASES=N` makes a longer fuzzing run (docs/SECURITY.md).

use billiards_supervisor::control::{
    read_frame, write_frame, FrameError, Request, Response, MAX_MESSAGE_BYTES,
};
use proptest::prelude::*;

/// What the server does with the bytes a peer sends: unframe, then decode the request.
fn decode(bytes: &[u8]) -> Result<Request, String> {
    let mut r = bytes;
    let body = read_frame(&mut r).map_err(|e| e.to_string())?;
    serde_json::from_slice::<Request>(&body).map_err(|e| e.to_string())
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// JSON-ish bodies built from the protocol's own words, so the fuzzer reaches the decoder's
/// interesting paths instead of failing at the first byte.
fn jsonish() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just("\"cmd\"".to_string()),
        Just("\"worker\"".to_string()),
        Just("\"status\"".to_string()),
        Just("\"stop\"".to_string()),
        Just("\"restart\"".to_string()),
        Just("\"ping\"".to_string()),
        Just("\"video\"".to_string()),
        Just("\"vision\"".to_string()),
        Just("\"stream\"".to_string()),
        Just("\"bogus\"".to_string()),
        Just("null".to_string()),
        Just("1e999".to_string()),
        Just("-1".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(":".to_string()),
        Just(",".to_string()),
        "\\PC{0,8}".prop_map(|s| format!("{s:?}")),
    ];
    proptest::collection::vec(word, 0..12).prop_map(|w| w.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(&bytes);
        let _ = serde_json::from_slice::<Response>(&bytes);
    }

    #[test]
    fn framed_jsonish_bodies_decode_only_to_valid_requests(body in jsonish()) {
        match decode(&framed(body.as_bytes())) {
            Ok(req) => {
                // Whatever was accepted re-encodes to one of the documented shapes.
                let again = serde_json::to_string(&req).unwrap();
                prop_assert!(again.starts_with("{\"cmd\":\""), "{}", again);
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
        let _ = serde_json::from_slice::<Response>(body.as_bytes());
    }

    #[test]
    fn oversized_length_prefixes_are_refused_before_allocating(
        len in (MAX_MESSAGE_BYTES as u32 + 1)..=u32::MAX,
    ) {
        let mut r: &[u8] = &len.to_be_bytes();
        match read_frame(&mut r) {
            Err(FrameError::TooLarge { len: l }) => prop_assert_eq!(l, len as usize),
            other => prop_assert!(false, "expected TooLarge, got {:?}", other),
        }
    }

    #[test]
    fn truncated_frames_say_closed(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        cut in 0usize..515,
    ) {
        let f = framed(&body);
        let cut = cut.min(f.len() - 1);
        let mut r = &f[..cut];
        prop_assert!(matches!(read_frame(&mut r), Err(FrameError::Closed)));
    }
}

#[test]
fn every_documented_request_round_trips_through_the_framing() {
    for json in [
        r#"{"cmd":"status"}"#,
        r#"{"cmd":"stop"}"#,
        r#"{"cmd":"ping"}"#,
        r#"{"cmd":"restart","worker":"video"}"#,
        r#"{"cmd":"restart","worker":"vision"}"#,
        r#"{"cmd":"restart","worker":"stream"}"#,
    ] {
        let mut buf = Vec::new();
        write_frame(&mut buf, json.as_bytes()).unwrap();
        let req = decode(&buf).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(serde_json::to_string(&req).unwrap(), json);
    }
}

#[test]
fn malformed_requests_are_rejected_with_a_reason() {
    for json in [
        r#"{"cmd":"restart","worker":"audio"}"#,
        r#"{"cmd":"restart"}"#,
        r#"{"cmd":"reboot"}"#,
        r#"{}"#,
        r#"[]"#,
        "",
    ] {
        let e = decode(&framed(json.as_bytes())).expect_err(json);
        assert!(!e.is_empty(), "{json}");
    }
}
