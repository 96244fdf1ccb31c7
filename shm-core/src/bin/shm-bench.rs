//! shm-bench: one writer and N reader processes on a private segment; prints one JSON line.
//!
//! ```text
//! shm-bench --width 1920 --height 1080 --fps 30 --readers 20 --seconds 10 --mode zero-copy
//! ```
//!
//! The same binary is re-executed as the reader processes (`--role reader`) and, for the
//! process tests, as a standalone writer (`--role writer`, with `--create` to create the
//! segment itself and remove it when done). Readers get the measurement window `T0 T1`
//! (CLOCK_MONOTONIC ns) as one line on stdin and print one JSON line when it ends.
//!
//! `shm-bench [flags] -- CMD ARGS...` runs `CMD ARGS... --role reader --segment S --dir D
//! --mode M --name N` as the reader processes instead (they must speak the same stdin/stdout
//! protocol): this is how `python -m billiards_shm.bench` measures Python readers against the
//! very same writer and prints the very same JSON line.
//!
//! Every frame `n` is copied from one of four source buffers filled with distinct bytes and
//! stamped with `n` in its first and last 8 bytes, so a reader can tell a torn frame (stamps
//! or fill bytes from two frames) from a good one.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shm_core::*;

const USAGE: &str =
    "usage: shm-bench [--width W] [--height H] [--fps F] [--readers N] [--seconds S] \
[--mode copy|zero-copy] [--slots K] [--warmup S] [-- READER_CMD ARGS...]\n\
       shm-bench --role writer --segment NAME [--dir D] [--create] [--width W] [--height H] \
[--fps F] [--slots K] [--seconds S]";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Copy,
    ZeroCopy,
}

#[derive(Debug, Clone)]
struct Args {
    role: String,
    width: u32,
    height: u32,
    fps: f64,
    readers: usize,
    seconds: f64,
    warmup: f64,
    slots: u32,
    mode: Mode,
    segment: String,
    dir: String,
    name: String,
    check: Check,
    /// Writer role: create the segment (and remove it at the end) instead of opening it.
    create: bool,
    /// Bench role: the reader processes' command (default: this binary).
    reader_command: Vec<String>,
}

/// What a reader verifies in every delivered frame.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    /// Stamps at both ends and the fill bytes of shm-bench's own writer.
    Pattern,
    /// Only the stamps at both ends (real frames from `BILLIARDS_STAMP_FRAMES=1` video workers).
    Stamps,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        role: "bench".into(),
        width: 1280,
        height: 720,
        fps: 30.0,
        readers: 1,
        seconds: 10.0,
        warmup: 1.0,
        slots: 3,
        mode: Mode::ZeroCopy,
        segment: String::new(),
        dir: "/tmp".into(),
        name: "bench".into(),
        check: Check::Pattern,
        create: false,
        reader_command: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--" {
            a.reader_command = it.by_ref().collect();
            if a.reader_command.is_empty() {
                return Err(format!(
                    "-- must be followed by the reader command\n{USAGE}"
                ));
            }
            break;
        }
        if flag == "--create" {
            a.create = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{flag} {v:?}: not a number"))
        };
        match flag.as_str() {
            "--role" => a.role = value,
            "--width" => a.width = num(&value)? as u32,
            "--height" => a.height = num(&value)? as u32,
            "--fps" => a.fps = num(&value)?,
            "--readers" => a.readers = num(&value)? as usize,
            "--seconds" => a.seconds = num(&value)?,
            "--warmup" => a.warmup = num(&value)?,
            "--slots" => a.slots = num(&value)? as u32,
            "--segment" => a.segment = value,
            "--dir" => a.dir = value,
            "--name" => a.name = value,
            "--check" => {
                a.check = match value.as_str() {
                    "pattern" => Check::Pattern,
                    "stamps" => Check::Stamps,
                    _ => return Err(format!("--check {value:?}: use pattern or stamps")),
                }
            }
            "--mode" => {
                a.mode = match value.as_str() {
                    "copy" => Mode::Copy,
                    "zero-copy" => Mode::ZeroCopy,
                    _ => return Err(format!("--mode {value:?}: use copy or zero-copy")),
                }
            }
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if a.width == 0 || a.height == 0 || a.fps <= 0.0 || a.seconds <= 0.0 || a.slots < 2 {
        return Err(format!(
            "width, height, fps and seconds must be > 0 and slots >= 2\n{USAGE}"
        ));
    }
    if a.readers > 60 {
        return Err("--readers: at most 60 (the reader table holds 64 entries)".into());
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shm-bench: {e}");
            std::process::exit(2);
        }
    };
    let result = match args.role.as_str() {
        "bench" => bench(&args),
        "reader" => reader(&args),
        "writer" => writer(&args),
        other => Err(format!("unknown role {other:?}")),
    };
    if let Err(e) = result {
        eprintln!("shm-bench ({}): {e}", args.role);
        std::process::exit(1);
    }
}

fn location(args: &Args) -> Result<SegmentLocation, String> {
    SegmentLocation::new(&args.segment, &args.dir).map_err(|e| e.to_string())
}

/// Source frames: four buffers of distinct fill bytes.
struct Sources {
    bufs: Vec<Vec<u8>>,
}

fn fill_byte(n: u64) -> u8 {
    0x10 + (n % 4) as u8 * 0x30
}

impl Sources {
    fn new(len: usize) -> Sources {
        Sources {
            bufs: (0..4u64).map(|k| vec![fill_byte(k); len]).collect(),
        }
    }

    fn stamped(&mut self, n: u64) -> &[u8] {
        let b = &mut self.bufs[(n % 4) as usize];
        let len = b.len();
        b[..8].copy_from_slice(&n.to_le_bytes());
        b[len - 8..].copy_from_slice(&n.to_le_bytes());
        b
    }
}

/// Checks the stamps and (with `Check::Pattern`) a sample of fill bytes of frame `n` read
/// through `at(offset, dst)`.
fn intact(check: Check, n: u64, len: usize, mut at: impl FnMut(usize, &mut [u8])) -> bool {
    let mut w = [0u8; 8];
    at(0, &mut w);
    if u64::from_le_bytes(w) != n {
        return false;
    }
    at(len - 8, &mut w);
    if u64::from_le_bytes(w) != n {
        return false;
    }
    if check == Check::Stamps {
        return true;
    }
    // Three fill bytes between the stamps catch a frame whose middle was rewritten; more
    // samples would only add page walks to every reader's wake-up.
    let want = fill_byte(n);
    let mut b = [0u8; 1];
    (1..4).all(|k| {
        at(len * k / 4, &mut b);
        b[0] == want
    })
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn peak_rss_mb() -> f64 {
    // VmHWM: the peak resident set of this process.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Kills and reaps the reader processes if the bench fails half-way.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Unlinks the private segment however the bench ends.
struct Unlink(SegmentLocation);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = unlink(&self.0);
    }
}

fn bench(args: &Args) -> Result<(), String> {
    let mut args = args.clone();
    args.segment = format!("shm-bench-{}", std::process::id());
    let loc = location(&args)?;
    let spec = SegmentSpec::frames(args.width, args.height, args.slots);
    let len = spec.slot_capacity;
    create(&loc, &spec, CreateMode::ReplaceExisting).map_err(|e| e.to_string())?;
    let _unlink = Unlink(loc.clone());
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mode = if args.mode == Mode::Copy {
        "copy"
    } else {
        "zero-copy"
    };
    let mut children = Children(Vec::new());
    let (program, prefix) = match args.reader_command.split_first() {
        Some((cmd, rest)) => (std::path::PathBuf::from(cmd), rest.to_vec()),
        None => (exe, Vec::new()),
    };
    for i in 0..args.readers {
        let child = Command::new(&program)
            .args(&prefix)
            .args([
                "--role",
                "reader",
                "--segment",
                &args.segment,
                "--dir",
                &args.dir,
                "--mode",
                mode,
            ])
            .args(["--name", &format!("bench-{i}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start reader process {}: {e}", program.display()))?;
        children.0.push(child);
    }
    let monitor = Monitor::open(&loc).map_err(|e| e.to_string())?;
    // Generous: 20 Python readers importing numpy on two busy cores take seconds to start.
    let attach_deadline = Instant::now() + Duration::from_secs(60);
    while monitor.snapshot().readers.len() < args.readers {
        if Instant::now() > attach_deadline {
            return Err("readers did not attach within 60 s".into());
        }
        for c in &mut children.0 {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(format!(
                    "a reader process exited before attaching: {status}"
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut w = Writer::open(&loc, &spec).map_err(|e| e.to_string())?;
    let t0 = monotonic_ns() + (args.warmup * 1e9) as u64;
    let t1 = t0 + (args.seconds * 1e9) as u64;
    for c in &mut children.0 {
        let stdin = c.stdin.as_mut().ok_or("reader stdin")?;
        writeln!(stdin, "{t0} {t1}")
            .map_err(|e| format!("cannot tell a reader the window: {e}"))?;
    }
    let mut sources = Sources::new(len);
    let period = Duration::from_secs_f64(1.0 / args.fps);
    let start = Instant::now();
    let mut published_in_window = 0u64;
    let (mut cpu0, mut cpu1) = (None, None);
    for k in 0u64.. {
        sleep_until(start + period * k as u32);
        let now = monotonic_ns();
        if now >= t0 && cpu0.is_none() {
            cpu0 = Some(thread_cpu_ns());
        }
        if now >= t1 {
            cpu1 = Some(thread_cpu_ns());
            break;
        }
        let n = w.next_frame_number();
        let frame = sources.stamped(n);
        let published = w
            .publish(frame, PublishMeta::bgr(args.width, args.height, now))
            .map_err(|e| e.to_string())?;
        if monotonic_ns() >= t0 {
            published_in_window += 1;
        }
        debug_assert_eq!(published, n);
    }
    let window_s = (t1 - t0) as f64 / 1e9;
    let writer_cpu_pct = (cpu1.unwrap_or(0) - cpu0.unwrap_or(0)) as f64 / 1e9 / window_s * 100.0;
    drop(w);

    let mut latencies: Vec<u64> = Vec::new();
    let (mut received, mut torn, mut cpu_pct, mut rss) = (0u64, 0u64, 0f64, 0f64);
    for mut c in std::mem::take(&mut children.0) {
        let out = c.stdout.take().ok_or("reader stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| format!("cannot read a reader's result: {e}"))?;
        let status = c.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("a reader process failed: {status}"));
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("bad reader output {line:?}: {e}"))?;
        received += v["received"].as_u64().unwrap_or(0);
        torn += v["torn"].as_u64().unwrap_or(0);
        cpu_pct += v["cpu_pct"].as_f64().unwrap_or(0.0);
        rss = rss.max(v["peak_rss_mb"].as_f64().unwrap_or(0.0));
        latencies.extend(
            v["latencies_ns"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_u64()).collect::<Vec<_>>())
                .unwrap_or_default(),
        );
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    };
    let expected = published_in_window * args.readers as u64;
    let drop_pct = if expected == 0 {
        0.0
    } else {
        (expected.saturating_sub(received)) as f64 / expected as f64 * 100.0
    };
    let out = serde_json::json!({
        "mode": mode,
        "segment": args.segment,
        "width": args.width,
        "height": args.height,
        "fps": args.fps,
        "readers": args.readers,
        "seconds": args.seconds,
        "slots": args.slots,
        "segment_bytes": spec.segment_bytes(),
        "frame_bytes": len,
        "frames_published": published_in_window,
        "frames_received": received,
        "latency_us": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0)},
        "drop_pct": drop_pct,
        "torn_reads": torn,
        "writer_cpu_pct": writer_cpu_pct,
        "readers_cpu_pct_total": cpu_pct,
        "peak_rss_mb_max": rss,
    });
    println!("{out}");
    Ok(())
}

fn reader(args: &Args) -> Result<(), String> {
    let loc = location(args)?;
    let mut r = Reader::attach(
        &loc,
        AttachOptions::new(&args.name, Duration::from_secs(10)),
    )
    .map_err(|e| e.to_string())?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the window: {e}"))?;
    let mut parts = line.split_whitespace().map(|p| p.parse::<u64>());
    let (Some(Ok(t0)), Some(Ok(t1))) = (parts.next(), parts.next()) else {
        return Err(format!("bad window line {line:?}; expected \"T0 T1\""));
    };
    let mut buf = Vec::with_capacity(r.info().spec.slot_capacity);
    let mut latencies = Vec::with_capacity(4096);
    let (mut received, mut torn, mut max_frame) = (0u64, 0u64, 0u64);
    let mut generations = BTreeSet::new();
    let (mut cpu0, mut cpu1) = (None, None);
    loop {
        let now = monotonic_ns();
        if now >= t0 && cpu0.is_none() {
            cpu0 = Some(process_cpu_ns());
        }
        if now >= t1 && cpu1.is_none() {
            cpu1 = Some(process_cpu_ns());
        }
        if now >= t1 + 300_000_000 {
            break;
        }
        if !r
            .wait_next(Duration::from_millis(100))
            .map_err(|e| e.to_string())?
        {
            continue;
        }
        // (frame meta, latency ns, intact content)
        let got = match args.mode {
            Mode::Copy => r
                .read_latest(&mut buf)
                .map_err(|e| e.to_string())?
                .map(|m| {
                    let lat = monotonic_ns().saturating_sub(m.publish_ns);
                    let ok = intact(args.check, m.frame_number, m.len, |off, dst| {
                        dst.copy_from_slice(&buf[off..off + dst.len()])
                    });
                    (m, lat, ok)
                }),
            Mode::ZeroCopy => match r
                .read_zero_copy(|v| {
                    let lat = monotonic_ns().saturating_sub(v.meta().publish_ns);
                    (
                        lat,
                        intact(args.check, v.meta().frame_number, v.len(), |off, dst| {
                            v.copy_at(off, dst)
                        }),
                    )
                })
                .map_err(|e| e.to_string())?
            {
                Some(ZeroCopy::Intact {
                    meta,
                    value: (lat, ok),
                }) => Some((meta, lat, ok)),
                _ => None,
            },
        };
        let Some((meta, lat, ok)) = got else { continue };
        generations.insert(meta.writer_generation);
        max_frame = max_frame.max(meta.frame_number);
        if !ok {
            torn += 1;
        }
        if meta.publish_ns >= t0 && meta.publish_ns < t1 {
            received += 1;
            latencies.push(lat);
        }
    }
    let window_s = (t1 - t0) as f64 / 1e9;
    let cpu_pct =
        (cpu1.unwrap_or(0).saturating_sub(cpu0.unwrap_or(0))) as f64 / 1e9 / window_s * 100.0;
    let stats = r.stats();
    let out = serde_json::json!({
        "name": args.name,
        "received": received,
        "torn": torn,
        "frames_read": stats.frames_read,
        "frames_missed": stats.frames_missed,
        "torn_retries": stats.torn_retries,
        "max_frame": max_frame,
        "generations": generations,
        "cpu_pct": cpu_pct,
        "peak_rss_mb": peak_rss_mb(),
        "latencies_ns": latencies,
    });
    println!("{out}");
    Ok(())
}

/// A writer publishing stamped frames at `--fps` for `--seconds` (or until killed), on an
/// existing segment or, with `--create`, on one it creates and removes at the end.
fn writer(args: &Args) -> Result<(), String> {
    let loc = location(args)?;
    let spec = SegmentSpec::frames(args.width, args.height, args.slots);
    let _unlink = if args.create {
        create(&loc, &spec, CreateMode::Exclusive).map_err(|e| e.to_string())?;
        Some(Unlink(loc.clone()))
    } else {
        None
    };
    let mut w = Writer::open(&loc, &spec).map_err(|e| e.to_string())?;
    let mut sources = Sources::new(spec.slot_capacity);
    let period = Duration::from_secs_f64(1.0 / args.fps);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.seconds);
    for k in 0u64.. {
        let next = start + period * k as u32;
        if next > end {
            break;
        }
        sleep_until(next);
        let n = w.next_frame_number();
        w.publish(
            sources.stamped(n),
            PublishMeta::bgr(args.width, args.height, monotonic_ns()),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}
