//! chaos: a soak and fault-injection run of the whole tree.
//!
//! Starts the real supervisor on the synthetic camera, holds MJPEG clients and extra shm
//! reader processes on it, and for `--seconds` injects faults at random: SIGKILL or SIGSTOP of
//! a random worker, client and reader churn, bursts of bad HTTP requests. Then it stops the
//! tree with SIGTERM and prints one JSON summary. Exit status 1 when a "must" fails (torn frame
//! delivered, an unexplained client disconnection, a 5xx or unanswered bad request, a leak,
//! anything left behind), 2 on bad usage.
//!
//! ```text
//! chaos [--seconds 600] [--clients 20] [--readers 5] [--seed N] [--width 1280 --height 720]
//! ```
//! Binaries are taken from the directory of this executable (build the workspace first).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use billiards_tests::{
    control, free_port, pid_alive, pids_with_arg, signal, target_dir, Request, Response, Status,
};
use serde_json::{json, Value};
use shm_core::{monotonic_ns, AttachOptions, Reader, SegmentLocation, ZeroCopy};

const WORKERS: [&str; 3] = ["video", "vision", "stream"];
/// Video faults are spaced so the restart backoff has reset (30 s of clean running) and every
/// kill is measured against the initial backoff, as a user would see it.
const VIDEO_FAULT_SPACING: Duration = Duration::from_secs(32);

#[derive(Debug, Clone)]
struct Args {
    seconds: u64,
    clients: usize,
    readers: usize,
    seed: u64,
    width: u32,
    height: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seconds: 600,
        clients: 20,
        readers: 5,
        seed: monotonic_ns(),
        width: 1280,
        height: 720,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n = v
            .parse::<u64>()
            .map_err(|_| format!("{flag} {v:?}: not a whole number"))?;
        match flag.as_str() {
            "--seconds" => a.seconds = n,
            "--clients" => a.clients = n as usize,
            "--readers" => a.readers = n as usize,
            "--seed" => a.seed = n,
            "--width" => a.width = n as u32,
            "--height" => a.height = n as u32,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.seconds < 20 {
        return Err("--seconds: at least 20 (recovery from one fault takes a few seconds)".into());
    }
    if a.readers > 50 {
        return Err("--readers: at most 50".into());
    }
    Ok(a)
}

/// A small deterministic generator (xorshift64*), so a run can be replayed with `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn secs(&mut self, lo: f64, hi: f64) -> Duration {
        Duration::from_secs_f64(lo + (hi - lo) * (self.next() % 10_000) as f64 / 10_000.0)
    }
}

/// Seconds since the start of the run.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

#[derive(Debug, Clone)]
struct Fault {
    at: f64,
    kind: &'static str,
    worker: &'static str,
    pid: u32,
    recovered_at: Option<f64>,
    reason: Option<String>,
}

struct Shared {
    stop: AtomicBool,
    clock: Clock,
    frames: Mutex<Vec<f64>>,
    faults: Mutex<Vec<Fault>>,
    disconnects: Mutex<Vec<(f64, String)>>,
    client_frames: Mutex<u64>,
    client_connects: Mutex<u64>,
    reader_results: Mutex<Vec<Value>>,
    reader_attach_failures: Mutex<Vec<String>>,
    bad_answers: Mutex<BTreeMap<String, u64>>,
    bursts: AtomicU64,
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chaos: {e}");
            eprintln!("usage: chaos [--seconds S] [--clients N] [--readers N] [--seed N] [--width W --height H]");
            std::process::exit(2);
        }
    };
    match run(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("chaos: {e}");
            std::process::exit(1);
        }
    }
}

/// The supervisor process; killed (with its group) and reaped on drop if still running.
struct Tree {
    child: Child,
    dir: PathBuf,
}

impl Drop for Tree {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            // The workers exit on their own when the supervisor dies (death signal); make sure.
            for pid in pids_with_arg(&self.dir.display().to_string()) {
                signal(pid, libc::SIGKILL);
            }
        }
    }
}

fn status(sock: &Path) -> Option<Status> {
    match control::request(sock, &Request::Status, Duration::from_secs(3)) {
        Ok(Response::Status(s)) => Some(*s),
        _ => None,
    }
}

fn all_running(sock: &Path) -> Option<Status> {
    let s = status(sock)?;
    let ok = WORKERS.iter().all(|w| {
        s.worker(w)
            .is_some_and(|ws| ws.state == billiards_tests::WorkerState::Running && ws.pid.is_some())
    });
    ok.then_some(s)
}

fn wait_all_running(sock: &Path, timeout: Duration) -> Option<Status> {
    billiards_tests::wait_for(timeout, || all_running(sock))
}

fn proc_sample(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss_kb * 1024, fds))
}

fn sample_tree(s: &Status) -> BTreeMap<String, (u64, u64)> {
    let mut m = BTreeMap::new();
    if let Some(v) = proc_sample(s.supervisor.pid) {
        m.insert("supervisor".to_string(), v);
    }
    for w in &s.workers {
        if let Some(v) = w.pid.and_then(proc_sample) {
            m.insert(w.name.clone(), v);
        }
    }
    m
}

fn run(args: &Args) -> Result<bool, String> {
    let bin = target_dir();
    let supervisor_bin = bin.join("billiards-supervisor");
    let shm_bench = bin.join("shm-bench");
    for b in [&supervisor_bin, &shm_bench] {
        if !b.is_file() {
            return Err(format!(
                "{} is not built; run `cargo build --workspace --bins` first",
                b.display()
            ));
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix("chaos-")
        .tempdir()
        .map_err(|e| format!("cannot make a temp dir: {e}"))?;
    let dir = tmp.path().to_path_buf();
    let tag = format!("chaos_{}", std::process::id());
    let (video_shm, det_shm) = (format!("{tag}_video"), format!("{tag}_det"));
    let sock = dir.join("supervisor.sock");
    let port = free_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let config = format!(
        "[video]\nshm_name = \"{video_shm}\"\nwidth = {w}\nheight = {h}\nfallback_dir = \"{d}\"\n\
         [vision]\ndetections_shm_name = \"{det_shm}\"\n\
         [stream]\nlisten = \"{listen}\"\n\
         [supervisor]\ncontrol_socket = \"{s}\"\nshutdown_timeout_sec = 2.0\nrestart_max = 100\n\
         [watchdog]\nframe_timeout_sec = 1.0\nheartbeat_timeout_sec = 3.0\n",
        w = args.width,
        h = args.height,
        d = dir.display(),
        s = sock.display(),
    );
    let config_path = dir.join("chaos.toml");
    std::fs::write(&config_path, config).map_err(|e| format!("cannot write config: {e}"))?;
    let log_path = dir.join("supervisor.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("cannot create log: {e}"))?;
    eprintln!(
        "chaos: seed {} for {} s; tree log {}",
        args.seed,
        args.seconds,
        log_path.display()
    );
    let child = Command::new(&supervisor_bin)
        .args(["start", "--config"])
        .arg(&config_path)
        .env("BILLIARDS_STAMP_FRAMES", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", supervisor_bin.display()))?;
    let mut tree = Tree {
        child,
        dir: dir.clone(),
    };
    let first = wait_all_running(&sock, Duration::from_secs(60)).ok_or_else(|| {
        format!(
            "the tree did not come up within 60 s; log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        )
    })?;
    let supervisor_pid = first.supervisor.pid;
    let clock = Clock(Instant::now());
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        clock,
        frames: Mutex::new(Vec::new()),
        faults: Mutex::new(Vec::new()),
        disconnects: Mutex::new(Vec::new()),
        client_frames: Mutex::new(0),
        client_connects: Mutex::new(0),
        reader_results: Mutex::new(Vec::new()),
        reader_attach_failures: Mutex::new(Vec::new()),
        bad_answers: Mutex::new(BTreeMap::new()),
        bursts: AtomicU64::new(0),
    });
    let run_end = Instant::now() + Duration::from_secs(args.seconds);
    let loc = SegmentLocation::new(&video_shm, &dir).map_err(|e| e.to_string())?;

    let mut threads = Vec::new();
    {
        let (sh, loc) = (shared.clone(), loc.clone());
        threads.push(std::thread::spawn(move || watch_frames(&sh, &loc)));
    }
    for i in 0..args.clients {
        let sh = shared.clone();
        let seed = args.seed.wrapping_add(i as u64 * 7919);
        threads.push(std::thread::spawn(move || {
            mjpeg_client(&sh, listen, i, seed)
        }));
    }
    for i in 0..args.readers {
        let (sh, exe, dir) = (shared.clone(), shm_bench.clone(), dir.clone());
        let (name, seed) = (video_shm.clone(), args.seed.wrapping_add(1000 + i as u64));
        threads.push(std::thread::spawn(move || {
            reader_slot(&sh, &exe, &name, &dir, i, seed, run_end)
        }));
    }

    // Warm up, then take the leak baseline.
    std::thread::sleep(Duration::from_secs(5).min(Duration::from_secs(args.seconds / 4)));
    let baseline_status =
        wait_all_running(&sock, Duration::from_secs(30)).ok_or("tree not running after warm-up")?;
    let baseline = sample_tree(&baseline_status);
    let warm_at = clock.now();

    let mut rng = Rng(args.seed | 1);
    let mut last_video_fault = Instant::now() - VIDEO_FAULT_SPACING;
    let mut next_burst = Instant::now() + rng.secs(2.0, 6.0);
    let mut seen_pids: Vec<u32> = first.workers.iter().filter_map(|w| w.pid).collect();
    // Leave the last seconds quiet so the end state is measured on a recovered tree.
    let quiet_from = run_end - Duration::from_secs(8);
    while Instant::now() < quiet_from {
        std::thread::sleep(
            rng.secs(2.0, 6.0)
                .min(quiet_from.saturating_duration_since(Instant::now())),
        );
        if Instant::now() >= quiet_from {
            break;
        }
        if Instant::now() >= next_burst {
            bad_request_burst(&shared, listen);
            next_burst = Instant::now() + rng.secs(4.0, 10.0);
        }
        let Some(s) = all_running(&sock) else {
            continue;
        };
        let mut worker = WORKERS[rng.below(3) as usize];
        if worker == "video" && last_video_fault.elapsed() < VIDEO_FAULT_SPACING {
            worker = if rng.below(2) == 0 {
                "vision"
            } else {
                "stream"
            };
        }
        let Some(pid) = s.worker(worker).and_then(|w| w.pid) else {
            continue;
        };
        let kind = if rng.below(4) == 0 {
            "sigstop"
        } else {
            "sigkill"
        };
        let at = clock.now();
        signal(
            pid,
            if kind == "sigstop" {
                libc::SIGSTOP
            } else {
                libc::SIGKILL
            },
        );
        if worker == "video" {
            last_video_fault = Instant::now();
        }
        let mut fault = Fault {
            at,
            kind,
            worker,
            pid,
            recovered_at: None,
            reason: None,
        };
        // Wait for the replacement, and read why the supervisor says the old one ended.
        let replaced = billiards_tests::wait_for(Duration::from_secs(30), || {
            let s = status(&sock)?;
            let w = s.worker(worker)?;
            (w.pid.is_some_and(|p| p != pid) && w.state == billiards_tests::WorkerState::Running)
                .then(|| w.clone())
        });
        if let Some(w) = replaced {
            fault.recovered_at = Some(clock.now());
            fault.reason = w.last_exit.map(|e| e.reason);
            seen_pids.extend(w.pid);
        }
        if kind == "sigstop" && pid_alive(pid) {
            // The watchdog failed to end it; do not leave a stopped process behind.
            signal(pid, libc::SIGKILL);
        }
        shared.faults.lock().unwrap().push(fault);
    }
    // Quiet end: let the readers' windows close and the clients run on a healthy tree.
    std::thread::sleep(run_end.saturating_duration_since(Instant::now()));
    let end_status = wait_all_running(&sock, Duration::from_secs(30));
    let end_sample = end_status.as_ref().map(sample_tree).unwrap_or_default();
    if let Some(s) = &end_status {
        seen_pids.extend(s.workers.iter().filter_map(|w| w.pid));
    }
    let run_seconds = clock.now();
    shared.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }

    // Stop the tree the way systemd would.
    let stop_started = Instant::now();
    signal(supervisor_pid, libc::SIGTERM);
    let exit = billiards_tests::wait_for(Duration::from_secs(30), || {
        tree.child.try_wait().ok().flatten()
    });
    let stop_seconds = stop_started.elapsed().as_secs_f64();
    let exit_code = exit.and_then(|e| e.code());
    std::thread::sleep(Duration::from_millis(1200));
    let mut leftovers: Vec<String> = Vec::new();
    for name in [&video_shm, &det_shm] {
        for p in [Path::new("/dev/shm").join(name), dir.join(name)] {
            if p.exists() {
                leftovers.push(p.display().to_string());
            }
        }
    }
    if sock.exists() {
        leftovers.push(sock.display().to_string());
    }
    let live: Vec<u32> = seen_pids
        .iter()
        .chain(std::iter::once(&supervisor_pid))
        .copied()
        .filter(|&p| pid_alive(p))
        .chain(pids_with_arg(&dir.display().to_string()))
        .collect();

    let summary = summarize(
        args,
        &shared,
        warm_at,
        run_seconds,
        &baseline,
        &end_sample,
        exit_code,
        stop_seconds,
        &leftovers,
        &live,
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    let passed = summary["pass"].as_bool().unwrap_or(false);
    if !passed {
        eprintln!(
            "chaos: a must failed; tree log kept at {}",
            log_path.display()
        );
        // Keep the temp dir with the log for inspection.
        let _ = tmp.keep();
    }
    drop(tree);
    Ok(passed)
}

/// Records the arrival time of every new frame, from a reader of the frame segment.
fn watch_frames(sh: &Shared, loc: &SegmentLocation) {
    let Ok(mut r) = Reader::attach(
        loc,
        AttachOptions::new("chaos-watch", Duration::from_secs(10)),
    ) else {
        return;
    };
    while !sh.stop.load(Ordering::Relaxed) {
        if matches!(r.wait_next(Duration::from_millis(100)), Ok(true)) {
            if let Ok(Some(ZeroCopy::Intact { .. })) = r.read_zero_copy(|_| ()) {
                sh.frames.lock().unwrap().push(sh.clock.now());
            }
        }
    }
}

/// Parses a multipart/x-mixed-replace body and counts JPEG parts.
#[derive(Default)]
struct Parts {
    buf: Vec<u8>,
    frames: u64,
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

impl Parts {
    fn feed(&mut self, data: &[u8]) -> Result<u64, String> {
        self.buf.extend_from_slice(data);
        let mut got = 0;
        while let Some(end) = find(&self.buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
            if !head.contains("--frame") {
                return Err(format!("part without boundary: {head:?}"));
            }
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("part without content-length: {head:?}"))?;
            if self.buf.len() < end + 4 + len {
                break;
            }
            if self.buf[end + 4..end + 6] != [0xFF, 0xD8] {
                return Err("part is not a JPEG".into());
            }
            self.buf.drain(..end + 4 + len);
            got += 1;
        }
        self.frames += got;
        Ok(got)
    }
}

/// One MJPEG client: connects, reads the stream, reconnects. Deliberate churn closes are not
/// disconnections; anything else that ends a stream is recorded with its time.
fn mjpeg_client(sh: &Shared, addr: SocketAddr, i: usize, seed: u64) {
    let mut rng = Rng(seed | 1);
    let qualities = [50, 70, 85];
    while !sh.stop.load(Ordering::Relaxed) {
        let q = qualities[rng.below(3) as usize];
        let fps = if i.is_multiple_of(4) { 5 } else { 30 };
        let lifetime = rng.secs(10.0, 60.0);
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            // The stream worker is down (being restarted): try again shortly.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let req = format!(
            "GET /stream/video?quality={q}&fps={fps}&overlay={} HTTP/1.0\r\nHost: localhost\r\n\r\n",
            i % 2
        );
        if s.write_all(req.as_bytes()).is_err() {
            continue;
        }
        *sh.client_connects.lock().unwrap() += 1;
        let started = Instant::now();
        let mut head = Vec::new();
        let mut parts = Parts::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut in_body = false;
        let outcome: Option<String> = loop {
            if sh.stop.load(Ordering::Relaxed) || started.elapsed() > lifetime {
                break None;
            }
            match s.read(&mut buf) {
                Ok(0) => break Some("closed by server".into()),
                Ok(n) => {
                    let data = &buf[..n];
                    if in_body {
                        match parts.feed(data) {
                            Ok(k) => *sh.client_frames.lock().unwrap() += k,
                            Err(e) => break Some(format!("bad stream: {e}")),
                        }
                    } else {
                        head.extend_from_slice(data);
                        if let Some(end) = find(&head, b"\r\n\r\n") {
                            let h = String::from_utf8_lossy(&head[..end]).to_string();
                            if !h.starts_with("HTTP/1.1 200") && !h.starts_with("HTTP/1.0 200") {
                                break Some(format!("answer {}", h.lines().next().unwrap_or("")));
                            }
                            in_body = true;
                            let rest = head[end + 4..].to_vec();
                            if let Err(e) = parts.feed(&rest) {
                                break Some(format!("bad stream: {e}"));
                            }
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => break Some(format!("read error: {e}")),
            }
        };
        if let Some(why) = outcome {
            sh.disconnects
                .lock()
                .unwrap()
                .push((sh.clock.now(), format!("client {i}: {why}")));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One extra shm reader at a time in slot `i`: a `shm-bench` reader process with a random
/// window (churn); its JSON result is collected when the window ends.
fn reader_slot(
    sh: &Shared,
    exe: &Path,
    segment: &str,
    dir: &Path,
    i: usize,
    seed: u64,
    run_end: Instant,
) {
    let mut rng = Rng(seed | 1);
    while !sh.stop.load(Ordering::Relaxed) {
        let left = run_end.saturating_duration_since(Instant::now());
        if left < Duration::from_secs(2) {
            return;
        }
        let window = rng.secs(5.0, 40.0).min(left - Duration::from_secs(1));
        let mode = if i.is_multiple_of(2) {
            "zero-copy"
        } else {
            "copy"
        };
        let spawned = Command::new(exe)
            .args(["--role", "reader", "--segment", segment, "--dir"])
            .arg(dir)
            .args([
                "--name",
                &format!("chaos-r{i}"),
                "--mode",
                mode,
                "--check",
                "stamps",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut c) = spawned else {
            sh.reader_attach_failures
                .lock()
                .unwrap()
                .push("cannot start shm-bench".into());
            return;
        };
        let t0 = monotonic_ns();
        let t1 = t0 + window.as_nanos() as u64;
        let wrote = c
            .stdin
            .as_mut()
            .map(|s| writeln!(s, "{t0} {t1}").is_ok())
            .unwrap_or(false);
        let mut line = String::new();
        if wrote {
            if let Some(out) = c.stdout.take() {
                let _ = BufReader::new(out).read_line(&mut line);
            }
        }
        let status = c.wait();
        match serde_json::from_str::<Value>(&line) {
            Ok(v) if status.as_ref().is_ok_and(|s| s.success()) => {
                sh.reader_results.lock().unwrap().push(v)
            }
            _ => {
                let mut err = String::new();
                if let Some(mut e) = c.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                sh.reader_attach_failures.lock().unwrap().push(format!(
                    "reader {i}: {} {}",
                    err.trim(),
                    line.trim()
                ));
            }
        }
    }
}

/// Bad requests and what they must get: any 4xx.
const BAD_REQUESTS: [&str; 12] = [
    "GET /stream/video?quality=0 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET /stream/video?quality=abc HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET /stream/video?fps=0 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET /stream/video?fps=1000 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET /stream/video?overlay=2 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET /snapshot.jpg?quality=101 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET /no/such/path HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET /../../etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "POST /api/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    "GARBAGE\r\n\r\n",
    "GET /stream/video?quality=%ZZ HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "HUGE",
];

fn bad_request_burst(sh: &Shared, addr: SocketAddr) {
    sh.bursts.fetch_add(1, Ordering::Relaxed);
    for req in BAD_REQUESTS {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            *sh.bad_answers
                .lock()
                .unwrap()
                .entry("skipped (stream worker down)".into())
                .or_insert(0) += 1;
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let payload = if req == "HUGE" {
            format!(
                "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
                "a".repeat(200_000)
            )
        } else {
            req.to_string()
        };
        let _ = s.write_all(payload.as_bytes());
        let mut answer = Vec::new();
        let mut buf = [0u8; 256];
        while answer.len() < 12 {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        let line = String::from_utf8_lossy(&answer);
        let key = match line.split_whitespace().nth(1) {
            Some(code) if code.len() == 3 => code.to_string(),
            _ => "no answer".to_string(),
        };
        *sh.bad_answers.lock().unwrap().entry(key).or_insert(0) += 1;
    }
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    args: &Args,
    sh: &Shared,
    warm_at: f64,
    run_seconds: f64,
    baseline: &BTreeMap<String, (u64, u64)>,
    end: &BTreeMap<String, (u64, u64)>,
    exit_code: Option<i32>,
    stop_seconds: f64,
    leftovers: &[String],
    live: &[u32],
) -> Value {
    let faults = sh.faults.lock().unwrap().clone();
    let frames = sh.frames.lock().unwrap().clone();
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for f in &faults {
        *by_kind
            .entry(format!("{}_{}", f.kind, f.worker))
            .or_insert(0) += 1;
        let reason = f
            .reason
            .clone()
            .unwrap_or_else(|| "not restarted within 30 s".into());
        // Group "watchdog: no frame for 1.0s" etc. without pids or numbers that vary.
        *reasons
            .entry(format!("{}: {reason}", f.worker))
            .or_insert(0) += 1;
    }
    by_kind.insert(
        "bad_request_bursts".into(),
        sh.bursts.load(Ordering::Relaxed),
    );

    // Frame availability: seconds after warm-up with at least one new frame, leaving out the
    // seconds in which a video worker was being restarted.
    let first_after = |t: f64| frames.iter().copied().find(|&a| a > t);
    let outages: Vec<(f64, f64)> = faults
        .iter()
        .filter(|f| f.worker == "video")
        .map(|f| (f.at, first_after(f.at).unwrap_or(run_seconds)))
        .collect();
    let (mut fresh, mut counted) = (0u64, 0u64);
    let mut s = warm_at.ceil();
    while s + 1.0 <= run_seconds {
        let in_outage = outages.iter().any(|&(a, b)| a < s + 1.0 && b > s);
        if !in_outage {
            counted += 1;
            if frames.iter().any(|&t| t >= s && t < s + 1.0) {
                fresh += 1;
            }
        }
        s += 1.0;
    }
    let availability = if counted == 0 {
        1.0
    } else {
        fresh as f64 / counted as f64
    };
    let kill_gaps_ms: Vec<f64> = faults
        .iter()
        .filter(|f| f.worker == "video" && f.kind == "sigkill")
        .filter_map(|f| first_after(f.at).map(|t| ((t - f.at) * 1000.0 * 10.0).round() / 10.0))
        .collect();
    let longest_gap = kill_gaps_ms.iter().copied().fold(0.0, f64::max);

    // Reader side.
    let results = sh.reader_results.lock().unwrap().clone();
    let attach_failures = sh.reader_attach_failures.lock().unwrap().clone();
    let attached = results.len() as u64;
    let attempts = attached + attach_failures.len() as u64;
    let sum = |k: &str| {
        results
            .iter()
            .map(|r| r[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let (read, missed, torn) = (sum("frames_read"), sum("frames_missed"), sum("torn"));
    let missed_pct = if read + missed == 0 {
        0.0
    } else {
        missed as f64 / (read + missed) as f64 * 100.0
    };

    // HTTP side: a disconnection is explained when the stream worker was killed or stopped
    // shortly before it (the watchdog needs heartbeat timeout + grace to end a stopped one).
    let disconnects = sh.disconnects.lock().unwrap().clone();
    let unexplained: Vec<String> = disconnects
        .iter()
        .filter(|(t, _)| {
            !faults.iter().any(|f| {
                f.worker == "stream"
                    && *t >= f.at - 0.5
                    && *t <= f.recovered_at.unwrap_or(f.at + 15.0) + 1.0
            })
        })
        .map(|(t, why)| format!("{t:.1}s {why}"))
        .collect();
    let answers = sh.bad_answers.lock().unwrap().clone();
    let bad_ok = answers
        .iter()
        .all(|(k, _)| k.starts_with('4') || k.starts_with("skipped"));

    // Leaks.
    let mut leak_rows = Vec::new();
    let mut leak_ok = true;
    for (name, (rss0, fd0)) in baseline {
        if let Some((rss1, fd1)) = end.get(name) {
            let grew_mb = (*rss1 as f64 - *rss0 as f64) / 1_048_576.0;
            let grew_fds = *fd1 as i64 - *fd0 as i64;
            let ok = grew_mb <= 5.0 && grew_fds <= 10;
            leak_ok &= ok;
            leak_rows.push(json!({"process": name, "rss_mb_start": *rss0 as f64 / 1_048_576.0,
                "rss_mb_end": *rss1 as f64 / 1_048_576.0, "fds_start": fd0, "fds_end": fd1, "ok": ok}));
        } else {
            leak_ok = false;
            leak_rows.push(json!({"process": name, "missing_at_end": true, "ok": false}));
        }
    }

    let musts = json!({
        "torn_frames_delivered_zero": torn == 0,
        "unexplained_client_disconnections_zero": unexplained.is_empty(),
        "bad_requests_all_4xx": bad_ok,
        "no_leak_growth": leak_ok,
        "clean_stop_exit_0": exit_code == Some(0),
        "nothing_left_behind": leftovers.is_empty() && live.is_empty(),
    });
    let pass = musts
        .as_object()
        .is_some_and(|m| m.values().all(|v| v == &Value::Bool(true)));
    json!({
        "seed": args.seed,
        "seconds": args.seconds,
        "resolution": format!("{}x{}", args.width, args.height),
        "clients": args.clients,
        "extra_readers": args.readers,
        "faults": by_kind,
        "fault_log": faults.iter().map(|f| json!({
            "at_s": (f.at * 10.0).round() / 10.0, "kind": f.kind, "worker": f.worker, "pid": f.pid,
            "recovered_after_s": f.recovered_at.map(|r| ((r - f.at) * 100.0).round() / 100.0),
            "reason": f.reason,
        })).collect::<Vec<_>>(),
        "restarts_by_reason": reasons,
        "frames": {
            "availability_pct": (availability * 10_000.0).round() / 100.0,
            "availability_goal_met": availability >= 0.99,
            "video_kill_gaps_ms": kill_gaps_ms,
            "longest_gap_after_kill_ms": longest_gap,
            "gap_goal_met": longest_gap < 300.0,
        },
        "readers": {
            "attach_attempts": attempts,
            "attach_success_pct": if attempts == 0 { 100.0 } else { attached as f64 / attempts as f64 * 100.0 },
            "attach_failures": attach_failures,
            "frames_read": read,
            "frames_missed": missed,
            "missed_pct": (missed_pct * 1000.0).round() / 1000.0,
            "torn_frames_delivered": torn,
        },
        "http": {
            "connects": *sh.client_connects.lock().unwrap(),
            "frames_received": *sh.client_frames.lock().unwrap(),
            "disconnections": disconnects.len(),
            "unexplained_disconnections": unexplained,
            "bad_request_answers": answers,
        },
        "leaks": leak_rows,
        "stop": {"exit_code": exit_code, "seconds": (stop_seconds * 1000.0).round() / 1000.0,
                 "leftovers": leftovers, "live_processes": live},
        "musts": musts,
        "pass": pass,
    })
}
