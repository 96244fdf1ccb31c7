//! In-process tests of the channel. Process-level tests are in `tests/`.

use std::sync::atomic::{AtomicBool, Ordering as O};
use std::sync::Arc;
use std::time::Duration;

use crate::*;

/// A unique location in a temp dir; unlinks the segment on drop, even when the test fails.
pub(crate) struct TestSeg {
    pub loc: SegmentLocation,
    _dir: tempfile::TempDir,
}

impl TestSeg {
    pub fn new(tag: &str) -> TestSeg {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = tempfile::tempdir().unwrap();
        let name = format!(
            "shmcore-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, O::Relaxed)
        );
        TestSeg {
            loc: SegmentLocation::new(&name, dir.path()).unwrap(),
            _dir: dir,
        }
    }

    pub fn fallback(tag: &str) -> TestSeg {
        let mut t = TestSeg::new(tag);
        t.loc = t.loc.clone().with_forced_fallback();
        t
    }
}

impl Drop for TestSeg {
    fn drop(&mut self) {
        let _ = unlink(&self.loc);
    }
}

fn frame(w: u32, h: u32, n: u64) -> Vec<u8> {
    let mut v = vec![(n % 251) as u8; (w * h * 3) as usize];
    v[..8].copy_from_slice(&n.to_le_bytes());
    v
}

const T: Duration = Duration::from_secs(5);

#[test]
fn write_read_cycle() {
    let t = TestSeg::new("cycle");
    let spec = SegmentSpec::frames(64, 48, 3);
    let info = create(&t.loc, &spec, CreateMode::Exclusive).unwrap();
    assert_eq!(info.size_bytes, spec.segment_bytes());
    assert!(!info.fallback);
    let mut w = Writer::open(&t.loc, &spec).unwrap();
    assert_eq!(w.generation(), 1);
    let mut r = Reader::attach(&t.loc, AttachOptions::new("t", T)).unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        r.read_latest(&mut buf).unwrap(),
        None,
        "nothing published yet"
    );
    let started = std::time::Instant::now();
    assert!(!r.wait_next(Duration::from_millis(20)).unwrap());
    assert!(
        started.elapsed() >= Duration::from_millis(20),
        "wait_next returned before its timeout"
    );
    assert!(!r.wait_next(Duration::ZERO).unwrap());
    for n in 1..=10u64 {
        let f = frame(64, 48, n);
        assert_eq!(
            w.publish(&f, PublishMeta::bgr(64, 48, monotonic_ns()))
                .unwrap(),
            n
        );
        assert!(r.wait_next(T).unwrap());
        assert!(
            r.wait_next(Duration::ZERO).unwrap(),
            "a zero timeout still reports the unread frame"
        );
        let m = r.read_latest(&mut buf).unwrap().unwrap();
        assert_eq!(m.frame_number, n);
        assert_eq!(
            (m.width, m.height, m.stride, m.len),
            (64, 48, 192, 64 * 48 * 3)
        );
        assert_eq!(buf, f);
        assert_eq!(r.read_latest(&mut buf).unwrap(), None, "no new frame");
    }
    assert_eq!(r.stats().frames_read, 10);
    assert_eq!(r.stats().frames_missed, 0);
}

#[test]
fn exclusive_create_refuses_existing_and_replace_recreates() {
    let t = TestSeg::new("excl");
    let spec = SegmentSpec::bytes(100, 2);
    create(&t.loc, &spec, CreateMode::Exclusive).unwrap();
    let e = create(&t.loc, &spec, CreateMode::Exclusive).unwrap_err();
    assert!(matches!(e, CreateError::Exists { .. }), "{e}");
    assert!(e.to_string().contains("already exists"), "{e}");
    create(&t.loc, &spec, CreateMode::ReplaceExisting).unwrap();
    assert!(unlink(&t.loc).unwrap());
    assert!(!unlink(&t.loc).unwrap(), "second unlink finds nothing");
    assert!(t.loc.existing_path().is_none());
}

#[test]
fn segment_mode_is_0600() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestSeg::new("mode");
    let info = create(&t.loc, &SegmentSpec::bytes(100, 2), CreateMode::Exclusive).unwrap();
    let mode = std::fs::metadata(&info.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn restarted_writer_continues_numbering_and_bumps_generation() {
    let t = TestSeg::new("restart");
    let spec = SegmentSpec::bytes(64, 3);
    create(&t.loc, &spec, CreateMode::Exclusive).unwrap();
    let mut r = Reader::attach(&t.loc, AttachOptions::new("t", T)).unwrap();
    let mut buf = Vec::new();
    {
        let mut w = Writer::open(&t.loc, &spec).unwrap();
        for _ in 0..5 {
            w.publish(b"x", PublishMeta::bytes(1)).unwrap();
        }
    }
    assert_eq!(r.writer().pid, 0, "clean close clears the pid");
    let mut w2 = Writer::open(&t.loc, &spec).unwrap();
    assert_eq!(w2.generation(), 2);
    assert_eq!(w2.next_frame_number(), 6);
    assert_eq!(w2.publish(b"hello", PublishMeta::bytes(2)).unwrap(), 6);
    let m = r.read_latest(&mut buf).unwrap().unwrap();
    assert_eq!((m.frame_number, m.writer_generation), (6, 2));
    assert_eq!(buf, b"hello");
}

#[test]
fn second_live_writer_is_refused() {
    let t = TestSeg::new("two");
    let spec = SegmentSpec::bytes(64, 2);
    create(&t.loc, &spec, CreateMode::Exclusive).unwrap();
    let _w = Writer::open(&t.loc, &spec).unwrap();
    // Same process: allowed (the pid is ours); a different live pid is refused, which the
    // process tests check. Here check the spec mismatch path instead.
    let e = Writer::open(&t.loc, &SegmentSpec::bytes(128, 2))
        .err()
        .unwrap();
    assert!(matches!(e, OpenError::SpecMismatch { .. }), "{e}");
    assert!(e.to_string().contains("2 slots of 64 bytes"), "{e}");
}

#[test]
fn writer_on_missing_segment_says_to_create_it_first() {
    let t = TestSeg::new("nowriter");
    let e = Writer::open(&t.loc, &SegmentSpec::bytes(8, 2))
        .err()
        .unwrap();
    assert!(matches!(e, OpenError::Missing { .. }), "{e}");
    assert!(e.to_string().contains("create it before opening it"), "{e}");
}

#[test]
fn attach_timeout_names_segment() {
    let t = TestSeg::new("absent");
    let start = std::time::Instant::now();
    let e = Reader::attach(&t.loc, AttachOptions::new("t", Duration::from_millis(300)))
        .err()
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
    let msg = e.to_string();
    assert!(msg.contains(t.loc.name()), "{msg}");
    assert!(msg.contains("not found"), "{msg}");
    for word in ["video", "supervisor", "worker", "camera"] {
        assert!(!msg.contains(word), "shm-core knows no {word}: {msg}");
    }
    assert!(msg.contains("after 0.3 s"), "{msg}");
}

#[test]
fn attach_waits_for_a_segment_created_later() {
    let t = TestSeg::new("later");
    let loc = t.loc.clone();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        create(&loc, &SegmentSpec::bytes(16, 2), CreateMode::Exclusive).unwrap();
    });
    let r = Reader::attach(&t.loc, AttachOptions::new("t", T)).unwrap();
    assert_eq!(r.info().spec.slot_capacity, 16);
    h.join().unwrap();
}

#[test]
fn forced_fallback_uses_a_file_with_the_same_api() {
    let t = TestSeg::fallback("fb");
    let spec = SegmentSpec::frames(32, 32, 2);
    let info = create(&t.loc, &spec, CreateMode::Exclusive).unwrap();
    assert!(info.fallback);
    assert_eq!(info.path, t.loc.fallback_path());
    assert!(!t.loc.shm_path().exists(), "nothing in /dev/shm");
    let mut w = Writer::open(&t.loc, &spec).unwrap();
    let mut r = Reader::attach(&t.loc, AttachOptions::new("t", T)).unwrap();
    assert!(r.info().fallback);
    w.publish(&frame(32, 32, 1), PublishMeta::bgr(32, 32, 0))
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(r.read_latest(&mut buf).unwrap().unwrap().frame_number, 1);
    drop((w, r));
    assert!(unlink(&t.loc).unwrap());
    assert!(!t.loc.fallback_path().exists());
}

#[test]
fn zero_copy_read_reports_intact_and_overwritten() {
    let t = TestSeg::new("zc");
    let spec = SegmentSpec::bytes(64, 2);
    create(&t.loc, &spec, CreateMode::Exclusive).unwrap();
    let mut w = Writer::open(&t.loc, &spec).unwrap();
    let mut r = Reader::attach(&t.loc, AttachOptions::new("t", T)).unwrap();
    w.publish(b"one", PublishMeta::bytes(0)).unwrap();
    let got = r
        .read_zero_copy(|v| {
            let mut b = vec![0; v.len()];
            v.copy_to(&mut b);
            b
        })
        .unwrap()
        .unwrap();
    match got {
        ZeroCopy::Intact { meta, value } => {
            assert_eq!(meta.frame_number, 1);
            assert_eq!(value, b"one");
        }
        other => panic!("expected intact, got {other:?}"),
    }
    w.publish(b"two", PublishMeta::bytes(0)).unwrap();
    // Lap the reader while it looks at frame 2: frames 3 and 4 reuse both slots.
    let got = r
        .read_zero_copy(|_| {
            w.publish(b"three", PublishMeta::bytes(0)).unwrap();
            w.publish(b"four", PublishMeta::bytes(0)).unwrap();
        })
        .unwrap()
        .unwrap();
    assert_eq!(got, ZeroCopy::Overwritten { frame_number: 2 });
    assert_eq!(r.stats().torn_retries, 1);
    let mut buf = Vec::new();
    assert_eq!(r.read_latest(&mut buf).unwrap().unwrap().frame_number, 4);
    assert_eq!(
        r.stats().frames_missed,
        2,
        "frames 2 (overwritten) and 3 were never delivered"
    );
}

#[test]
fn publish_rejects_oversized_and_inconsistent_frames() {
    let t = TestSeg::new("big");
    let spec = SegmentSpec::frames(8, 8, 2);
    create(&t.loc, &spec, CreateMode::Exclusive).unwrap();
    let mut w = Writer::open(&t.loc, &spec).unwrap();
    let e = w
        .publish(&[0; 8 * 8 * 3 + 1], PublishMeta::bgr(8, 8, 0))
        .unwrap_err();
    assert_eq!(
        e,
        PublishError::TooLarge {
            len: 193,
            capacity: 192
        }
    );
    let e = w.publish(&[0; 10], PublishMeta::bgr(8, 8, 0)).unwrap_err();
    assert!(matches!(e, PublishError::InvalidMeta(_)), "{e}");
    let e = w.publish_with(PublishMeta::bytes(0), |_| 1000).unwrap_err();
    assert!(matches!(e, PublishError::TooLarge { .. }));
    // Nothing was published by the failures.
    assert_eq!(w.publish(&[1; 192], PublishMeta::bgr(8, 8, 0)).unwrap(), 1);
}

#[test]
fn reader_table_tracks_and_releases_entries() {
    let t = TestSeg::new("table");
    let spec = SegmentSpec::bytes(64, 2);
    create(&t.loc, &spec, CreateMode::Exclusive).unwrap();
    let m = Monitor::open(&t.loc).unwrap();
    assert!(m.snapshot().readers.is_empty());
    let mut w = Writer::open(&t.loc, &spec).unwrap();
    let mut a = Reader::attach(&t.loc, AttachOptions::new("vision", T)).unwrap();
    let b = Reader::attach(&t.loc, AttachOptions::new("a-very-long-reader-name", T)).unwrap();
    w.publish(b"x", PublishMeta::bytes(monotonic_ns())).unwrap();
    a.read_latest(&mut Vec::new()).unwrap().unwrap();
    let s = m.snapshot();
    assert_eq!(s.frames_published, 1);
    assert_eq!(s.writer.pid, std::process::id());
    assert!(s.writer.alive);
    assert_eq!(s.readers.len(), 2);
    assert_eq!(s.readers[0].name, "vision");
    assert_eq!(s.readers[0].frames_read, 1);
    assert_eq!(s.readers[1].name, "a-very-long-read");
    drop(b);
    assert_eq!(m.snapshot().readers.len(), 1);
    m.mark_stopping();
    assert!(w.stop_requested());
}

#[test]
fn reader_table_full_is_an_error() {
    let t = TestSeg::new("full");
    create(&t.loc, &SegmentSpec::bytes(8, 2), CreateMode::Exclusive).unwrap();
    let readers: Vec<_> = (0..layout::READER_CAPACITY)
        .map(|_| Reader::attach(&t.loc, AttachOptions::new("r", T)).unwrap())
        .collect();
    let e = Reader::attach(&t.loc, AttachOptions::new("r", T))
        .err()
        .unwrap();
    assert!(
        matches!(e, AttachError::ReaderTableFull { capacity: 64, .. }),
        "{e}"
    );
    drop(readers);
    Reader::attach(&t.loc, AttachOptions::new("r", T)).unwrap();
}

#[test]
fn dead_reader_entries_are_reclaimed() {
    let t = TestSeg::new("dead");
    create(&t.loc, &SegmentSpec::bytes(8, 2), CreateMode::Exclusive).unwrap();
    let m = Monitor::open(&t.loc).unwrap();
    let r = Reader::attach(&t.loc, AttachOptions::new("r", T)).unwrap();
    // Forge the entry of a process that died: pid_max is never a live pid here.
    let slot = m.snapshot().readers[0].slot;
    std::mem::forget(r);
    m.forge_reader_pid_for_test(slot, 4_194_304);
    assert!(!m.snapshot().readers[0].alive);
    let _r2 = Reader::attach(&t.loc, AttachOptions::new("r2", T)).unwrap();
    let s = m.snapshot();
    assert_eq!(s.readers.len(), 1, "the dead entry was reused");
    assert_eq!(s.readers[0].name, "r2");
}

#[test]
fn torn_reads_are_never_delivered_under_a_hammering_writer() {
    let t = TestSeg::new("hammer");
    // Two slots and a large frame: the writer laps the reader often.
    let spec = SegmentSpec::bytes(256 * 1024, 2);
    create(&t.loc, &spec, CreateMode::Exclusive).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let loc = t.loc.clone();
    let s2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut w = Writer::open(&loc, &spec).unwrap();
        let mut n = 0u64;
        while !s2.load(O::Relaxed) {
            n += 1;
            // Every 8-byte word of frame n holds n: any mix of two frames is visible.
            w.publish_with(PublishMeta::bytes(0), |b| {
                for c in b.chunks_exact_mut(8) {
                    c.copy_from_slice(&n.to_le_bytes());
                }
                b.len()
            })
            .unwrap();
        }
        n
    });
    let mut r = Reader::attach(&t.loc, AttachOptions::new("t", T)).unwrap();
    let mut buf = Vec::new();
    let mut checked = 0;
    // Run at least 1.5 s, and on until the writer has lapped the reader at least once: on a
    // loaded machine the two threads may share one core and take a while to overlap.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(1500)
        || (r.stats().torn_retries == 0 && start.elapsed() < Duration::from_secs(60))
    {
        if let Some(m) = r.read_latest(&mut buf).unwrap() {
            let want = m.frame_number.to_le_bytes();
            assert!(
                buf.chunks_exact(8).all(|c| c == want),
                "torn frame {} delivered",
                m.frame_number
            );
            checked += 1;
        }
        if let Some(ZeroCopy::Intact { meta, value }) = r
            .read_zero_copy(|v| {
                let mut b = vec![0; v.len()];
                v.copy_to(&mut b);
                // Hand the core to the writer while holding the slot, as a slow consumer
                // would: with one free core this is what lets it overwrite the slot.
                std::thread::yield_now();
                b
            })
            .unwrap()
        {
            let want = meta.frame_number.to_le_bytes();
            assert!(
                value.chunks_exact(8).all(|c| c == want),
                "torn zero-copy frame delivered"
            );
            checked += 1;
        }
    }
    stop.store(true, O::Relaxed);
    let published = writer.join().unwrap();
    assert!(checked > 10, "only {checked} frames checked");
    assert!(published > checked);
    assert!(
        r.stats().torn_retries > 0,
        "the writer never lapped the reader; test is not testing"
    );
}

#[test]
fn wait_next_wakes_on_publish_from_another_thread() {
    let t = TestSeg::new("wake");
    let spec = SegmentSpec::bytes(8, 3);
    create(&t.loc, &spec, CreateMode::Exclusive).unwrap();
    let mut r = Reader::attach(&t.loc, AttachOptions::new("t", T)).unwrap();
    let loc = t.loc.clone();
    let h = std::thread::spawn(move || {
        let mut w = Writer::open(&loc, &spec).unwrap();
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(2));
            w.publish(b"x", PublishMeta::bytes(0)).unwrap();
        }
    });
    let mut buf = Vec::new();
    let mut got = 0;
    while got < 50 && r.wait_next(T).unwrap() {
        if let Some(m) = r.read_latest(&mut buf).unwrap() {
            got = m.frame_number;
        }
    }
    h.join().unwrap();
    assert_eq!(got, 50);
}

/// Calls `follow_replaced` until it moves the reader, for at most a few intervals.
fn follow(r: &mut Reader) -> bool {
    for _ in 0..8 {
        if r.follow_replaced().unwrap() {
            return true;
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
    false
}

#[test]
fn a_replaced_segment_is_followed() {
    for t in [TestSeg::new("follow"), TestSeg::fallback("follow")] {
        let spec = SegmentSpec::bytes(64, 3);
        create(&t.loc, &spec, CreateMode::Exclusive).unwrap();
        let mut r = Reader::attach(&t.loc, AttachOptions::new("follower", T)).unwrap();
        let old = Monitor::open(&t.loc).unwrap();
        let mut buf = Vec::new();
        {
            let mut w = Writer::open(&t.loc, &spec).unwrap();
            for _ in 0..5 {
                w.publish(b"old", PublishMeta::bytes(1)).unwrap();
            }
        }
        assert_eq!(r.read_latest(&mut buf).unwrap().unwrap().frame_number, 5);
        assert!(!r.replaced());
        assert!(!r.follow_replaced().unwrap(), "nothing to follow yet");

        // Unlinked: nothing to follow until a new segment is there.
        unlink(&t.loc).unwrap();
        assert!(!r.replaced());
        std::thread::sleep(FOLLOW_INTERVAL);
        assert!(!r.follow_replaced().unwrap());

        // Created anew, with another geometry: the reader moves to it.
        let spec2 = SegmentSpec::bytes(128, 2);
        create(&t.loc, &spec2, CreateMode::Exclusive).unwrap();
        assert!(r.replaced());
        assert!(follow(&mut r), "the replaced segment was not followed");
        assert!(!r.replaced());
        assert_eq!(r.info().spec.slot_capacity, 128);
        assert_eq!(r.last_frame_number(), 0);
        // Its frames are numbered from 1 again, and the reader gets them.
        let mut w = Writer::open(&t.loc, &spec2).unwrap();
        assert_eq!(w.publish(b"new", PublishMeta::bytes(2)).unwrap(), 1);
        assert!(r.wait_next(T).unwrap());
        let m = r.read_latest(&mut buf).unwrap().unwrap();
        assert_eq!((m.frame_number, m.writer_generation), (1, 1));
        assert_eq!(buf, b"new");

        // The entry moved: released in the old segment, claimed in the new one.
        let names = |m: &Monitor| {
            m.snapshot()
                .readers
                .into_iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
        };
        assert!(names(&old).is_empty(), "old entry kept: {:?}", names(&old));
        assert_eq!(names(&Monitor::open(&t.loc).unwrap()), ["follower"]);
    }
}

#[test]
fn a_writer_restarting_on_the_same_segment_is_not_followed() {
    let t = TestSeg::new("nofollow");
    let spec = SegmentSpec::bytes(64, 3);
    create(&t.loc, &spec, CreateMode::Exclusive).unwrap();
    let mut r = Reader::attach(&t.loc, AttachOptions::new("t", T)).unwrap();
    let mut buf = Vec::new();
    {
        let mut w = Writer::open(&t.loc, &spec).unwrap();
        w.publish(b"a", PublishMeta::bytes(1)).unwrap();
    }
    assert_eq!(r.read_latest(&mut buf).unwrap().unwrap().frame_number, 1);
    let entry = Monitor::open(&t.loc).unwrap().snapshot().readers[0].slot;
    // The writer is gone and comes back on the same segment: the reader stays and reads on.
    for _ in 0..3 {
        assert!(!r.wait_next(Duration::from_millis(50)).unwrap());
        assert!(!r.replaced());
        assert!(!r.follow_replaced().unwrap());
        std::thread::sleep(FOLLOW_INTERVAL);
    }
    let mut w = Writer::open(&t.loc, &spec).unwrap();
    assert_eq!(w.generation(), 2);
    w.publish(b"b", PublishMeta::bytes(2)).unwrap();
    assert!(!r.follow_replaced().unwrap());
    assert!(r.wait_next(T).unwrap());
    let m = r.read_latest(&mut buf).unwrap().unwrap();
    assert_eq!((m.frame_number, m.writer_generation), (2, 2));
    assert_eq!(r.stats().frames_read, 2, "the same reader read on");
    let readers = Monitor::open(&t.loc).unwrap().snapshot().readers;
    assert_eq!(readers.len(), 1);
    assert_eq!(readers[0].slot, entry, "the reader kept its entry");
}

#[test]
fn a_replacement_still_being_created_is_followed_once_ready() {
    let t = TestSeg::fallback("initialising");
    let spec = SegmentSpec::bytes(64, 2);
    create(&t.loc, &spec, CreateMode::Exclusive).unwrap();
    let mut r = Reader::attach(&t.loc, AttachOptions::new("t", T)).unwrap();
    // Its creator has made the file but not sized it yet.
    unlink(&t.loc).unwrap();
    std::fs::write(t.loc.fallback_path(), b"").unwrap();
    assert!(r.replaced());
    assert!(
        !r.follow_replaced().unwrap(),
        "an empty segment is not ready"
    );
    unlink(&t.loc).unwrap();
    create(&t.loc, &spec, CreateMode::Exclusive).unwrap();
    assert!(follow(&mut r));
}

#[test]
fn an_invalid_replacement_is_an_error_and_the_reader_stays() {
    let t = TestSeg::fallback("invalid");
    let spec = SegmentSpec::bytes(64, 2);
    create(&t.loc, &spec, CreateMode::Exclusive).unwrap();
    let mut r = Reader::attach(&t.loc, AttachOptions::new("t", T)).unwrap();
    unlink(&t.loc).unwrap();
    std::fs::write(t.loc.fallback_path(), vec![0xAB; 8192]).unwrap();
    let e = r.follow_replaced().unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(t.loc.name()), "{msg}");
    assert_eq!(r.info().spec.slot_capacity, 64, "the reader stays");
}
