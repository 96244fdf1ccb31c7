//! Process-level tests: readers and writers in child processes (the `shm-bench` binary
//! re-executed in its reader and writer roles), killed writers, many readers.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shm_core::*;

const BIN: &str = env!("CARGO_BIN_EXE_shm-bench");
const W: u32 = 320;
const H: u32 = 240;

/// A unique segment, unlinked on drop even when the test panics.
struct Seg {
    loc: SegmentLocation,
    dir: tempfile::TempDir,
}

impl Seg {
    fn new(tag: &str) -> Seg {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::tempdir().unwrap();
        let name = format!(
            "shmproc-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let loc = SegmentLocation::new(&name, dir.path()).unwrap();
        create(&loc, &SegmentSpec::frames(W, H, 3), CreateMode::Exclusive).unwrap();
        Seg { loc, dir }
    }

    fn args(&self) -> Vec<String> {
        let mut v: Vec<String> = ["--segment", self.loc.name(), "--dir"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push(self.dir.path().display().to_string());
        v.extend(
            ["--width", &W.to_string(), "--height", &H.to_string()]
                .iter()
                .map(|s| s.to_string()),
        );
        v
    }
}

impl Drop for Seg {
    fn drop(&mut self) {
        let _ = unlink(&self.loc);
    }
}

/// Child processes killed and reaped on drop.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_reader(seg: &Seg, name: &str, mode: &str) -> Child {
    Command::new(BIN)
        .args(["--role", "reader", "--name", name, "--mode", mode])
        .args(seg.args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start reader process")
}

fn spawn_writer(seg: &Seg, fps: u32, seconds: u32) -> Child {
    Command::new(BIN)
        .args([
            "--role",
            "writer",
            "--fps",
            &fps.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .args(seg.args())
        .spawn()
        .expect("start writer process")
}

fn wait_readers(seg: &Seg, n: usize) {
    let m = Monitor::open(&seg.loc).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.snapshot().readers.len() < n {
        assert!(
            Instant::now() < deadline,
            "readers did not attach within 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn send_window(c: &mut Child, t0: u64, t1: u64) {
    writeln!(c.stdin.as_mut().unwrap(), "{t0} {t1}").unwrap();
}

fn result(c: &mut Child) -> serde_json::Value {
    let mut line = String::new();
    BufReader::new(c.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(c.wait().unwrap().success(), "reader failed");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reader output {line:?}: {e}"))
}

/// Publishes stamped frames from a thread of the test until dropped.
struct ThreadWriter {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl ThreadWriter {
    fn start(loc: &SegmentLocation, fps: u32) -> ThreadWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, loc) = (stop.clone(), loc.clone());
        let handle = std::thread::spawn(move || {
            let spec = SegmentSpec::frames(W, H, 3);
            let mut w = Writer::open(&loc, &spec).unwrap();
            let mut frame = vec![0u8; spec.slot_capacity];
            let len = frame.len();
            while !s.load(Ordering::Relaxed) {
                let n = w.next_frame_number();
                // The shm-bench reader's check: stamps at both ends, fill byte by n % 4.
                frame.fill(0x10 + (n % 4) as u8 * 0x30);
                frame[..8].copy_from_slice(&n.to_le_bytes());
                frame[len - 8..].copy_from_slice(&n.to_le_bytes());
                w.publish(&frame, PublishMeta::bgr(W, H, monotonic_ns()))
                    .unwrap();
                std::thread::sleep(Duration::from_secs(1) / fps);
            }
            w.next_frame_number() - 1
        });
        ThreadWriter {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for ThreadWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn twenty_reader_processes_get_frames_and_no_torn_frame() {
    let seg = Seg::new("twenty");
    let mut procs = Procs(Vec::new());
    for i in 0..20 {
        let mode = if i % 2 == 0 { "copy" } else { "zero-copy" };
        procs.0.push(spawn_reader(&seg, &format!("r{i}"), mode));
    }
    wait_readers(&seg, 20);
    let writer = ThreadWriter::start(&seg.loc, 200);
    let t0 = monotonic_ns();
    let t1 = t0 + 2_000_000_000;
    for c in &mut procs.0 {
        send_window(c, t0, t1);
    }
    let results: Vec<_> = procs.0.iter_mut().map(result).collect();
    let published = writer.finish();
    assert!(published > 50, "writer published only {published} frames");
    for r in &results {
        assert_eq!(r["torn"], 0, "torn frame delivered: {r}");
        assert!(
            r["received"].as_u64().unwrap() > 10,
            "reader got too few frames: {r}"
        );
    }
    let m = Monitor::open(&seg.loc).unwrap();
    assert!(
        m.snapshot().readers.is_empty(),
        "exited readers released their entries"
    );
}

#[test]
fn writer_killed_and_restarted_while_ten_readers_stay_attached() {
    let seg = Seg::new("restart");
    let mut procs = Procs(Vec::new());
    for i in 0..10 {
        procs.0.push(spawn_reader(
            &seg,
            &format!("r{i}"),
            if i % 2 == 0 { "copy" } else { "zero-copy" },
        ));
    }
    wait_readers(&seg, 10);
    let t0 = monotonic_ns();
    let t1 = t0 + 4_000_000_000;
    for c in &mut procs.0 {
        send_window(c, t0, t1);
    }
    let mut writers = Procs(vec![spawn_writer(&seg, 60, 60)]);
    let m = Monitor::open(&seg.loc).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.snapshot().frames_published < 30 {
        assert!(Instant::now() < deadline, "first writer published nothing");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SIGKILL: no chance to close cleanly; the dead pid stays in the header.
    writers.0[0].kill().unwrap();
    writers.0[0].wait().unwrap();
    let before = m.snapshot();
    assert!(!before.writer.alive);
    std::thread::sleep(Duration::from_millis(300));
    writers.0.push(spawn_writer(&seg, 60, 60));
    let results: Vec<_> = procs.0.iter_mut().map(result).collect();
    let after = m.snapshot();
    assert_eq!(after.writer.generation, 2);
    assert!(
        after.frames_published > before.frames_published + 30,
        "second writer did not continue"
    );
    for r in &results {
        assert_eq!(r["torn"], 0, "{r}");
        let gens: Vec<u64> = r["generations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_u64().unwrap())
            .collect();
        assert_eq!(
            gens,
            vec![1, 2],
            "reader saw both writers without re-attaching: {r}"
        );
        assert!(
            r["max_frame"].as_u64().unwrap() > before.frames_published,
            "{r}"
        );
    }
}

#[test]
fn second_live_writer_process_is_refused() {
    let seg = Seg::new("second");
    let mut writers = Procs(vec![spawn_writer(&seg, 30, 60)]);
    let m = Monitor::open(&seg.loc).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.snapshot().frames_published == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let e = Writer::open(&seg.loc, &SegmentSpec::frames(W, H, 3))
        .err()
        .unwrap();
    assert!(
        matches!(e, OpenError::WriterActive { pid, .. } if pid == writers.0[0].id()),
        "{e}"
    );
    writers.0[0].kill().unwrap();
    writers.0[0].wait().unwrap();
    // Dead writer: a new one may take over.
    Writer::open(&seg.loc, &SegmentSpec::frames(W, H, 3)).unwrap();
}

#[test]
fn readers_attach_and_detach_while_frames_flow() {
    let seg = Seg::new("churn");
    let writer = ThreadWriter::start(&seg.loc, 100);
    for wave in 0..4 {
        let mut procs = Procs(Vec::new());
        for i in 0..5 {
            procs
                .0
                .push(spawn_reader(&seg, &format!("w{wave}r{i}"), "zero-copy"));
        }
        let t0 = monotonic_ns();
        for c in &mut procs.0 {
            send_window(c, t0, t0 + 400_000_000);
        }
        for r in procs.0.iter_mut().map(result) {
            assert_eq!(r["torn"], 0, "{r}");
            assert!(r["received"].as_u64().unwrap() > 0, "{r}");
        }
    }
    let m = Monitor::open(&seg.loc).unwrap();
    assert!(m.snapshot().readers.is_empty());
    writer.finish();
}

#[test]
fn a_killed_reader_entry_is_reclaimed() {
    let seg = Seg::new("reclaim");
    let mut procs = Procs(vec![spawn_reader(&seg, "doomed", "copy")]);
    wait_readers(&seg, 1);
    procs.0[0].kill().unwrap();
    procs.0[0].wait().unwrap();
    let m = Monitor::open(&seg.loc).unwrap();
    let s = m.snapshot();
    assert_eq!(s.readers.len(), 1);
    assert!(!s.readers[0].alive, "entry of the killed reader is stale");
    let _r = Reader::attach(
        &seg.loc,
        AttachOptions::new("fresh", Duration::from_secs(1)),
    )
    .unwrap();
    let s = m.snapshot();
    assert_eq!(s.readers.len(), 1);
    assert_eq!(s.readers[0].name, "fresh");
}

#[test]
fn nothing_is_left_in_dev_shm_after_unlink_or_a_panicking_test() {
    let path;
    {
        let seg = Seg::new("leftover");
        path = seg.loc.shm_path();
        assert!(path.exists());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _s = &seg;
            panic!("test failure");
        }));
        assert!(r.is_err());
    }
    assert!(!path.exists(), "guard unlinked the segment");

    // And the real thing: a test that panics while holding a guard unlinks on unwind.
    let name = std::sync::Mutex::new(None);
    let r = std::panic::catch_unwind(|| {
        let seg = Seg::new("unwind");
        *name.lock().unwrap() = Some(seg.loc.shm_path());
        panic!("boom");
    });
    assert!(r.is_err());
    let p = name.lock().unwrap().clone().unwrap();
    assert!(!p.exists(), "{} left behind", p.display());
}

#[test]
fn bench_prints_the_documented_json() {
    let out = Command::new(BIN)
        .args([
            "--width",
            "320",
            "--height",
            "240",
            "--fps",
            "60",
            "--readers",
            "2",
        ])
        .args(["--seconds", "1", "--warmup", "0.2", "--mode", "copy"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "mode",
        "width",
        "height",
        "fps",
        "readers",
        "seconds",
        "frames_published",
        "drop_pct",
        "torn_reads",
        "writer_cpu_pct",
        "readers_cpu_pct_total",
        "peak_rss_mb_max",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    for p in ["p50", "p90", "p99", "max"] {
        assert!(v["latency_us"][p].as_f64().unwrap() > 0.0, "{v}");
    }
    assert_eq!(v["torn_reads"], 0);
    assert!(v["frames_published"].as_u64().unwrap() > 30, "{v}");
    let seg = v["segment"].as_str().unwrap();
    assert!(
        !std::path::Path::new("/dev/shm").join(seg).exists(),
        "bench left {seg} behind"
    );
}

#[test]
fn bench_rejects_bad_arguments_clearly() {
    let out = Command::new(BIN).args(["--mode", "fast"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--mode \"fast\": use copy or zero-copy"),
        "{err}"
    );
}
