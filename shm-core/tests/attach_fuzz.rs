//! Attaching to random, truncated and corrupted segments must give an error, never a panic or
//! an out-of-bounds access; reads from a corrupted segment must give an error too.

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
