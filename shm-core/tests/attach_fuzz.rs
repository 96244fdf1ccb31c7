//! Attaching to random, truncated and corrupted segments must give an error, never a panic or
//! an out-of-bounds access; reads from a corrupted segment must give an error too.

use std::os::unix::fs::FileExt;
use std::time::Duration;

use proptest::prelude::*;
use shm_core::*;

fn loc(dir: &tempfile::TempDir, tag: &str) -> SegmentLocation {
    SegmentLocation::new(&format!("fuzz-{tag}"), dir.path())
        .unwrap()
        .with_forced_fallback()
}

fn try_everything(l: &SegmentLocation) {
    if let Ok(m) = Monitor::open(l) {
        let _ = m.snapshot();
    }
    if let Ok(mut r) = Reader::attach(l, AttachOptions::new("fuzz", Duration::ZERO)) {
        let mut buf = Vec::new();
        let _ = r.read_latest(&mut buf);
        let _ = r.read_zero_copy(|v| v.len());
        let _ = r.wait_next(Duration::ZERO);
    }
    let _ = Writer::open(l, &SegmentSpec::bytes(64, 2));
}

proptest! {
    // 256 cases by default; a long fuzzing run sets PROPTEST_CASES (docs/SECURITY.md).
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn random_bytes_never_attach(bytes in proptest::collection::vec(any::<u8>(), 0..20_000)) {
        let dir = tempfile::tempdir().unwrap();
        let l = loc(&dir, "rand");
        std::fs::write(l.fallback_path(), &bytes).unwrap();
        let r = Reader::attach(&l, AttachOptions::new("fuzz", Duration::ZERO));
        prop_assert!(r.is_err());
        try_everything(&l);
    }

    #[test]
    fn corrupted_header_or_truncation_is_an_error_or_safe(
        flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..8),
        truncate_to in proptest::option::of(0usize..40_000),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let l = loc(&dir, "flip");
        let spec = SegmentSpec::bytes(64, 2);
        create(&l, &spec, CreateMode::Exclusive).unwrap();
        {
            let mut w = Writer::open(&l, &spec).unwrap();
            w.publish(b"payload", PublishMeta::bytes(1)).unwrap();
        }
        let mut bytes = std::fs::read(l.fallback_path()).unwrap();
        for (at, v) in flips {
            bytes[at] = v;
        }
        if let Some(n) = truncate_to {
            bytes.truncate(n);
        }
        std::fs::write(l.fallback_path(), &bytes).unwrap();
        try_everything(&l);
    }

    #[test]
    fn corrupted_slot_metadata_is_reported(
        len in any::<u64>(), width in any::<u32>(), height in any::<u32>(),
        stride in any::<u32>(), format in any::<u32>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let l = loc(&dir, "meta");
        let spec = SegmentSpec::frames(16, 16, 2);
        create(&l, &spec, CreateMode::Exclusive).unwrap();
        let mut w = Writer::open(&l, &spec).unwrap();
        w.publish(&[7u8; 16 * 16 * 3], PublishMeta::bgr(16, 16, 1)).unwrap();
        drop(w);
        // Slot metadata of frame 1 (slot 1): offset 12288 + 128, fields after seq/frame/ts.
        let mut bytes = std::fs::read(l.fallback_path()).unwrap();
        let base = 12288 + 128;
        bytes[base + 32..base + 40].copy_from_slice(&len.to_le_bytes());
        bytes[base + 40..base + 44].copy_from_slice(&width.to_le_bytes());
        bytes[base + 44..base + 48].copy_from_slice(&height.to_le_bytes());
        bytes[base + 48..base + 52].copy_from_slice(&stride.to_le_bytes());
        bytes[base + 52..base + 56].copy_from_slice(&format.to_le_bytes());
        std::fs::write(l.fallback_path(), &bytes).unwrap();
        let mut r = Reader::attach(&l, AttachOptions::new("fuzz", Duration::ZERO)).unwrap();
        let mut buf = Vec::new();
        match r.read_latest(&mut buf) {
            Ok(Some(m)) => {
                // Accepted: then it must be self-consistent and within the slot.
                prop_assert!(m.len <= 16 * 16 * 3);
                prop_assert_eq!(buf.len(), m.len);
                if let Some(bpp) = m.format.bytes_per_pixel() {
                    prop_assert!(u64::from(m.stride) >= u64::from(m.width) * u64::from(bpp));
                    prop_assert!(u64::from(m.stride) * u64::from(m.height) <= m.len as u64);
                }
            }
            Ok(None) => prop_assert!(false, "a published frame was not offered"),
            Err(ReadError::Corrupt { reason, .. }) => prop_assert!(!reason.is_empty()),
        }
    }
}

/// Offset of the writer's `latest` frame number in the header.
const LATEST_AT: u64 = 144;
/// Offset of the slot metadata table; each entry is 128 bytes, `seq` then `frame_number`.
const SLOT_META_AT: u64 = 12288;

/// Frame and sequence numbers a hostile process might put in the header: the edges of u64
/// and anything else.
fn hostile_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1u64),
        Just(2u64),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(u64::MAX - 2),
        any::<u64>(),
    ]
}

/// Writes `value` at `at` in the segment file without truncating it (the mappings stay
/// valid, and they see the new bytes at once: the file is their backing store).
fn poke(file: &std::fs::File, at: u64, value: u64) {
    file.write_all_at(&value.to_le_bytes(), at).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    /// Hostile `latest`, slot frame numbers and sequences, changed under live readers and a
    /// writer: every call returns (an error or a value), none overflows or panics.
    #[test]
    fn hostile_frame_numbers_never_panic(
        steps in proptest::collection::vec(
            (hostile_u64(), hostile_u64(), hostile_u64(), any::<bool>()),
            1..12,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let l = loc(&dir, "latest");
        let spec = SegmentSpec::bytes(64, 2);
        create(&l, &spec, CreateMode::Exclusive).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(l.fallback_path())
            .unwrap();
        let mut copier = Reader::attach(&l, AttachOptions::new("copy", Duration::ZERO)).unwrap();
        let mut zero = Reader::attach(&l, AttachOptions::new("zero", Duration::ZERO)).unwrap();
        let mut buf = Vec::new();
        for (latest, frame, seq, consistent) in steps {
            poke(&file, LATEST_AT, latest);
            let slot = SLOT_META_AT + (latest % 2) * 128;
            // A consistent slot names `latest` and is not being written, so the readers accept
            // it and remember `latest` as the last frame seen; otherwise anything goes.
            let (frame, seq) = if consistent { (latest, seq & !1) } else { (frame, seq) };
            poke(&file, slot, seq);
            poke(&file, slot + 8, frame);
            let _ = copier.read_latest(&mut buf);
            let _ = zero.read_zero_copy(|v| v.len());
            let _ = copier.wait_next(Duration::ZERO);
            let _ = copier.stats();
            if let Ok(m) = Monitor::open(&l) {
                let _ = m.snapshot();
            }
            match Writer::open(&l, &spec) {
                Ok(mut w) => {
                    for _ in 0..3 {
                        match w.publish(b"frame", PublishMeta::bytes(1)) {
                            Ok(n) => prop_assert!(n != 0),
                            Err(e) => prop_assert!(matches!(e, PublishError::Exhausted)),
                        }
                    }
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}

#[test]
fn writer_refuses_a_header_with_no_next_frame_number() {
    let dir = tempfile::tempdir().unwrap();
    let l = loc(&dir, "max");
    let spec = SegmentSpec::bytes(64, 2);
    create(&l, &spec, CreateMode::Exclusive).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(l.fallback_path())
        .unwrap();
    poke(&file, LATEST_AT, u64::MAX);
    let msg = Writer::open(&l, &spec).err().unwrap().to_string();
    assert!(msg.contains("leaves no next frame number"), "{msg}");
    // One frame number left: it is used, then the numbering reports it is used up.
    poke(&file, LATEST_AT, u64::MAX - 1);
    let mut w = Writer::open(&l, &spec).unwrap();
    assert_eq!(w.publish(b"x", PublishMeta::bytes(1)), Ok(u64::MAX));
    assert_eq!(
        w.publish(b"x", PublishMeta::bytes(1)),
        Err(PublishError::Exhausted)
    );
}

#[test]
fn reader_survives_latest_going_backwards_from_u64_max() {
    let dir = tempfile::tempdir().unwrap();
    let l = loc(&dir, "back");
    let spec = SegmentSpec::bytes(64, 2);
    create(&l, &spec, CreateMode::Exclusive).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(l.fallback_path())
        .unwrap();
    let mut r = Reader::attach(&l, AttachOptions::new("r", Duration::ZERO)).unwrap();
    let mut z = Reader::attach(&l, AttachOptions::new("z", Duration::ZERO)).unwrap();
    // Frame u64::MAX in slot 1, consistent: both readers take it.
    poke(&file, LATEST_AT, u64::MAX);
    poke(&file, SLOT_META_AT + 128, 2);
    poke(&file, SLOT_META_AT + 128 + 8, u64::MAX);
    let mut buf = Vec::new();
    assert!(r.read_latest(&mut buf).unwrap().is_some());
    assert!(z.read_zero_copy(|v| v.len()).unwrap().is_some());
    // Then latest says 5 (slot 1) while the slot still names u64::MAX: the zero-copy reader
    // counts the frame as lost (latest is below what it saw), the copying reader skips it.
    poke(&file, LATEST_AT, 5);
    assert!(r.read_latest(&mut buf).unwrap().is_none());
    assert!(matches!(
        z.read_zero_copy(|v| v.len()).unwrap(),
        Some(ZeroCopy::Overwritten { frame_number: 5 })
    ));
    // Then a consistent frame 7 after u64::MAX.
    poke(&file, LATEST_AT, 7);
    poke(&file, SLOT_META_AT + 128 + 8, 7);
    assert!(r.read_latest(&mut buf).unwrap().is_some());
}

#[test]
fn invalid_segment_error_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let l = loc(&dir, "magic");
    std::fs::write(l.fallback_path(), vec![0xAB; 8192]).unwrap();
    let e = Reader::attach(&l, AttachOptions::new("x", Duration::ZERO))
        .err()
        .unwrap();
    let msg = e.to_string();
    assert!(msg.contains("bad magic"), "{msg}");
    assert!(
        msg.contains(&l.fallback_path().display().to_string()),
        "{msg}"
    );
}

#[test]
fn truncated_segment_error_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let l = loc(&dir, "trunc");
    create(&l, &SegmentSpec::bytes(64, 2), CreateMode::Exclusive).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(l.fallback_path())
        .unwrap();
    f.set_len(10_000).unwrap();
    let msg = Reader::attach(&l, AttachOptions::new("x", Duration::ZERO))
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("segment is 10000 bytes but its header says"),
        "{msg}"
    );
}
