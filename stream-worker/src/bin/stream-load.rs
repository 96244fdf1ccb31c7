//! `stream-load`: load generator and measurement tool for the stream worker.
//!
//! Opens N concurrent `/stream/video` clients (real HTTP/1.1 clients on tokio + hyper), parses
//! the multipart stream strictly, decodes a sample of the JPEGs with OpenCV, and reports each
//! client's fps, end-to-end latency (capture to receipt, from the parts' `X-Timestamp`), and
//! the server's CPU, memory and descriptors from `/proc/PID`.
//!
//! With `--spawn --feed` it runs everything itself: a synthetic writer publishing into a fresh
//! segment (the video worker's part) and a stream worker reading it, both removed afterwards.
//!
//! `--ws N` adds N WebSocket push clients (`/api/ws`, tokio-tungstenite) and reports their
//! messages/s and the capture-to-client latency of the detections (CLOCK_MONOTONIC at receipt
//! minus the result's `capture_ts_ns`; both processes are on this host). Detections need a
//! vision worker: run it with `--url` against a supervisor tree (the server pid is then read
//! from `/api/stream` unless `--pid` is given).
//!
//! ```text
//! stream-load --spawn --feed --clients 64 --seconds 20
//! stream-load --spawn --feed --mix 10@5,10@30
//! stream-load --spawn --feed --clients 4 --stall 1 --seconds 30
//! stream-load --spawn --feed --cycles 1000
//! stream-load --url http://127.0.0.1:8080 --pid 1234 --clients 10
//! stream-load --url http://127.0.0.1:8080 --clients 64 --ws 64 --seconds 20
//! stream-load --spawn --feed --h264 16 --seconds 20
//! stream-load --h264-bench --width 1280 --height 720
//! ```
//!
//! `--h264 N` opens N WebSocket clients of `/stream/h264` instead of MJPEG clients and
//! reports their bitrate and frame rate, and the server's encode time and publish-to-send
//! latency. `--h264-bench` encodes synthetic frames in this process (no server) and reports
//! the conversion and encode time per frame, the bitrate and the PSNR.

#![forbid(unsafe_code)]

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use billiards_stream_worker::feed::{self, Feed};
use billiards_stream_worker::multipart::{Parser as PartParser, BOUNDARY};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use opencv::core::Vector;
use opencv::prelude::*;
use shm_core::{LatencyWindow, SegmentLocation, SegmentSpec};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
#[command(
    name = "stream-load",
    about = "Load generator and measurements for billiards-stream-worker"
)]
struct Args {
    /// Base URL of a running stream worker (not needed with --spawn).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Start a stream worker for the run (the billiards-stream-worker binary beside this one).
    #[arg(long)]
    spawn: bool,
    /// The server binary for --spawn.
    #[arg(long, value_name = "PATH")]
    server_bin: Option<PathBuf>,
    /// With --spawn: the server's config (default: generated; required without --feed).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// With --spawn: publish synthetic frames into a fresh segment the server reads.
    #[arg(long)]
    feed: bool,
    /// Feed frame width.
    #[arg(long, default_value_t = 1280)]
    width: u32,
    /// Feed frame height.
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// Feed frames per second.
    #[arg(long, default_value_t = 30)]
    source_fps: u32,
    /// Server pid for CPU/memory figures (known automatically with --spawn).
    #[arg(long)]
    pid: Option<u32>,
    /// Concurrent stream clients.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// fps each client asks for (default: the server's max_fps).
    #[arg(long)]
    fps: Option<u32>,
    /// JPEG quality each client asks for (default: the server's jpeg_quality).
    #[arg(long)]
    quality: Option<u8>,
    /// Clients ask for the detections overlay.
    #[arg(long)]
    overlay: bool,
    /// Client groups instead of --clients/--fps, as COUNT@FPS pairs: "10@5,10@30".
    #[arg(long)]
    mix: Option<String>,
    /// WebSocket push clients (`/api/ws`) besides the stream clients.
    #[arg(long, default_value_t = 0)]
    ws: usize,
    /// Extra clients that send their request and then never read.
    #[arg(long, default_value_t = 0)]
    stall: usize,
    /// Measurement window in seconds.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Seconds between connecting and measuring.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Decode one JPEG in this many per client.
    #[arg(long, default_value_t = 30)]
    decode_every: u64,
    /// Instead of streaming: this many connect / read one part / disconnect cycles, then
    /// check that no task, descriptor or memory was left behind.
    #[arg(long)]
    cycles: Option<usize>,
    /// Concurrent cycles.
    #[arg(long, default_value_t = 4)]
    cycle_concurrency: usize,
    /// Rounds of --cycles, with the server's figures after each (growth shows as a trend).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Show the spawned server's log.
    #[arg(long)]
    verbose: bool,
    /// H.264 mode: this many WebSocket clients of /stream/h264 instead of MJPEG clients.
    #[arg(long, value_name = "N")]
    h264: Option<usize>,
    /// bitrate_kbps the H.264 clients ask for (default: the server's h264_bitrate_kbps),
    /// and the bitrate of --h264-bench (default 2500).
    #[arg(long)]
    bitrate_kbps: Option<u32>,
    /// Encode synthetic --width x --height frames in this process and report conversion and
    /// encode time per frame, bitrate and PSNR (no server).
    #[arg(long)]
    h264_bench: bool,
    /// Frames encoded by --h264-bench.
    #[arg(long, default_value_t = 300)]
    bench_frames: usize,
    /// With --h264-bench: encode the frames of this live frame segment (e.g. a running tree's
    /// synthetic table, `video.shm_name`) instead of the built-in feed; they are read first,
    /// one per new frame, then encoded
    #[arg(long)]
    bench_segment: Option<String>,
}

/// Where the server is.
#[derive(Debug, Clone)]
struct Target {
    /// host:port
    authority: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .context("--url must start with http://")?;
        let authority = rest.split('/').next().unwrap_or_default().to_string();
        if authority.is_empty() {
            bail!("--url has no host:port");
        }
        Ok(Target { authority })
    }
}

/// Figures of one client.
#[derive(Debug, Default)]
struct ClientStats {
    connected: AtomicBool,
    parts: AtomicU64,
    parts_in_window: AtomicU64,
    bytes: AtomicU64,
    bytes_in_window: AtomicU64,
    decoded_ok: AtomicU64,
    decode_failed: AtomicU64,
    errors: Mutex<Vec<String>>,
    latency: Mutex<Option<LatencyWindow>>,
}

/// Figures of one WebSocket client.
#[derive(Debug, Default)]
struct WsStats {
    connected: AtomicBool,
    /// Messages of every type received in the window.
    messages_in_window: AtomicU64,
    /// Detections received in the window.
    detections_in_window: AtomicU64,
    /// Capture-to-receipt latency of each detections message in the window (ns).
    latencies: Mutex<Vec<u64>>,
    /// Vision-published-to-receipt latency (ns): the push path alone, without vision's time.
    push_latencies: Mutex<Vec<u64>>,
    errors: Mutex<Vec<String>>,
}

/// Runs one WebSocket push client until aborted.
async fn ws_client(target: Target, stats: Arc<WsStats>, measuring: Arc<AtomicBool>) -> Result<()> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let url = format!("ws://{}/api/ws", target.authority);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    stats.connected.store(true, Relaxed);
    while let Some(msg) = ws.next().await {
        let now_ns = shm_core::monotonic_ns();
        let Message::Text(text) = msg? else {
            continue;
        };
        if !measuring.load(Relaxed) {
            continue;
        }
        stats.messages_in_window.fetch_add(1, Relaxed);
        // Only the two keys needed; the rest of the result is skipped unparsed.
        #[derive(serde::Deserialize)]
        struct Head {
            #[serde(rename = "type")]
            kind: String,
            data: Option<Data>,
        }
        #[derive(serde::Deserialize)]
        struct Data {
            capture_ts_ns: Option<u64>,
            processed_ts_ns: Option<u64>,
        }
        let head: Head = serde_json::from_str(text.as_str())
            .with_context(|| format!("a message is not the push JSON: {text}"))?;
        if head.kind == "detections" {
            stats.detections_in_window.fetch_add(1, Relaxed);
            let data = head.data.unwrap_or(Data {
                capture_ts_ns: None,
                processed_ts_ns: None,
            });
            if let Some(ts) = data.capture_ts_ns {
                if let Ok(mut l) = stats.latencies.lock() {
                    l.push(now_ns.saturating_sub(ts));
                }
            }
            if let Some(ts) = data.processed_ts_ns.filter(|&t| t > 0) {
                if let Ok(mut l) = stats.push_latencies.lock() {
                    l.push(now_ns.saturating_sub(ts));
                }
            }
        }
    }
    bail!("the server closed the WebSocket")
}

/// Prints the WebSocket clients' figures.
fn report_ws(ws: &[Arc<WsStats>], elapsed: f64) -> usize {
    if ws.is_empty() {
        return 0;
    }
    let rate = |f: &dyn Fn(&WsStats) -> u64| {
        let mut v: Vec<f64> = ws.iter().map(|s| f(s) as f64 / elapsed).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    };
    let det = rate(&|s| s.detections_in_window.load(Relaxed));
    let all = rate(&|s| s.messages_in_window.load(Relaxed));
    let sorted_ms = |f: &dyn Fn(&WsStats) -> &Mutex<Vec<u64>>| {
        let mut v: Vec<f64> = ws
            .iter()
            .flat_map(|s| f(s).lock().map(|l| l.clone()).unwrap_or_default())
            .map(|ns| ns as f64 / 1e6)
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    };
    let lat = sorted_ms(&|s| &s.latencies);
    let push = sorted_ms(&|s| &s.push_latencies);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "websocket: {} clients: detections/s per client min {:.1} median {:.1} mean {:.1} max {:.1}; all messages/s per client min {:.1} mean {:.1}",
        ws.len(),
        det.first().copied().unwrap_or(0.0),
        percentile(&det, 0.5),
        mean(&det),
        det.last().copied().unwrap_or(0.0),
        all.first().copied().unwrap_or(0.0),
        mean(&all),
    );
    println!(
        "websocket: capture-to-client latency over {} detections: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0),
    );
    println!(
        "websocket: vision-published-to-client latency (the push path alone): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&push, 0.5),
        percentile(&push, 0.9),
        percentile(&push, 0.99),
        push.last().copied().unwrap_or(0.0),
    );
    let mut errors = 0;
    for (i, s) in ws.iter().enumerate() {
        if !s.connected.load(Relaxed) {
            println!("websocket client {i}: never connected");
            errors += 1;
        }
        if let Ok(e) = s.errors.lock() {
            for msg in e.iter().take(3) {
                println!("websocket client {i}: error: {msg}");
                errors += 1;
            }
        }
    }
    errors
}

/// The process under test, from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct ProcSample {
    cpu_ticks: u64,
    rss_bytes: u64,
    fds: u64,
    threads: u64,
}

fn proc_sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Some(ProcSample {
        cpu_ticks: utime + stime,
        rss_bytes: field("VmRSS:") * 1024,
        fds,
        threads: field("Threads:"),
    })
}

fn clock_ticks() -> f64 {
    let t = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(0);
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// A spawned server and the segment it reads; removed on drop.
struct Fixture {
    child: Option<Child>,
    feed: Option<Feed>,
    loc: Option<SegmentLocation>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(f) = self.feed.take() {
            f.stop();
        }
        if let Some(loc) = self.loc.take() {
            let _ = shm_core::unlink(&loc);
        }
    }
}

fn spawn(args: &Args, max_clients: usize) -> Result<(Fixture, Target, u32)> {
    let mut fixture = Fixture {
        child: None,
        feed: None,
        loc: None,
        _dir: None,
    };
    let config_path = if args.feed {
        let dir = tempfile::tempdir()?;
        let name = format!("stream_load_{}", std::process::id());
        let loc = SegmentLocation::new(&name, std::env::temp_dir())?;
        let spec = SegmentSpec::frames(args.width, args.height, 3);
        shm_core::create(&loc, &spec, shm_core::CreateMode::ReplaceExisting)?;
        fixture.loc = Some(loc.clone());
        fixture.feed = Some(Feed::start(
            loc,
            args.width,
            args.height,
            args.source_fps,
            3,
        )?);
        let path = dir.path().join("stream-load.toml");
        let toml = format!(
            "[video]\nshm_name = \"{name}\"\nwidth = {}\nheight = {}\nfps = {}\nslots = 3\n\n\
             [vision]\nenabled = false\ndetections_shm_name = \"{name}_det\"\n\n\
             [stream]\nlisten = \"127.0.0.1:0\"\nmax_clients = {max_clients}\nmax_fps = 60\n\n\
             [supervisor]\ncontrol_socket = \"{}\"\n",
            args.width,
            args.height,
            args.source_fps,
            dir.path().join("no-supervisor.sock").display()
        );
        std::fs::write(&path, toml)?;
        fixture._dir = Some(dir);
        path
    } else {
        args.config.clone().context(
            "--spawn without --feed needs --config (a config whose frame segment exists)",
        )?
    };
    let bin = match &args.server_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory of this executable")?
            .join("billiards-stream-worker"),
    };
    let mut child = Command::new(&bin)
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let pid = child.id();
    let stderr = child.stderr.take().context("no stderr")?;
    fixture.child = Some(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let verbose = args.verbose;
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if verbose {
                eprintln!("[server] {line}");
            }
            if !sent {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split('/').next().unwrap_or_default().to_string();
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        }
    });
    let authority = rx
        .recv_timeout(Duration::from_secs(15))
        .context("the server did not report its address within 15 s (run with --verbose)")?;
    Ok((fixture, Target { authority }, pid))
}

/// One GET with a small response, by a fresh connection.
async fn get_text(target: &Target, path: &str) -> Result<(u16, String)> {
    let stream = TcpStream::connect(&target.authority).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(hyper::header::HOST, &target.authority)
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn wait_healthy(target: &Target) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((200, _)) = get_text(target, "/healthz").await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the server at {} did not become healthy within 20 s (are frames published?)",
                target.authority
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn stream_path(quality: Option<u8>, fps: Option<u32>, overlay: bool) -> String {
    let mut q = vec![];
    if let Some(v) = quality {
        q.push(format!("quality={v}"));
    }
    if let Some(v) = fps {
        q.push(format!("fps={v}"));
    }
    if overlay {
        q.push("overlay=1".into());
    }
    if q.is_empty() {
        "/stream/video".into()
    } else {
        format!("/stream/video?{}", q.join("&"))
    }
}

/// Runs one stream client until `stop` (or `max_parts` parts when given).
async fn client(
    target: Target,
    path: String,
    stats: Arc<ClientStats>,
    measuring: Arc<AtomicBool>,
    decode_every: u64,
    expect: (u32, u32),
    max_parts: Option<u64>,
) -> Result<()> {
    let stream = TcpStream::connect(&target.authority).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn_task = tokio::spawn(conn);
    let req = Request::get(&path)
        .header(hyper::header::HOST, &target.authority)
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    if resp.status() != 200 {
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        bail!("{path}: HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    let ct = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if ct != format!("multipart/x-mixed-replace; boundary={BOUNDARY}") {
        bail!("unexpected Content-Type {ct:?}");
    }
    stats.connected.store(true, Relaxed);
    let mut body = resp.into_body();
    let mut parser = PartParser::new(BOUNDARY);
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        parser.push(data);
        while let Some(part) = parser.next_part()? {
            n += 1;
            let now_ns = shm_core::monotonic_ns();
            stats.parts.fetch_add(1, Relaxed);
            stats.bytes.fetch_add(part.body.len() as u64, Relaxed);
            if measuring.load(Relaxed) {
                stats.parts_in_window.fetch_add(1, Relaxed);
                if let Some(ts) = part.header("x-timestamp").and_then(parse_ts) {
                    if let Ok(mut w) = stats.latency.lock() {
                        w.get_or_insert_with(|| LatencyWindow::new(4096))
                            .record(now_ns.saturating_sub(ts));
                    }
                }
            }
            if part.header("content-type") != Some("image/jpeg") {
                bail!("part without Content-Type: image/jpeg");
            }
            if n % decode_every.max(1) == 1 || decode_every <= 1 {
                let jpeg = part.body.clone();
                let s = stats.clone();
                tokio::task::spawn_blocking(move || match decode(&jpeg) {
                    Ok((w, h)) if (w, h) == expect || expect == (0, 0) => {
                        s.decoded_ok.fetch_add(1, Relaxed);
                    }
                    Ok((w, h)) => {
                        s.decode_failed.fetch_add(1, Relaxed);
                        if let Ok(mut e) = s.errors.lock() {
                            e.push(format!(
                                "decoded {w}x{h}, expected {}x{}",
                                expect.0, expect.1
                            ));
                        }
                    }
                    Err(e) => {
                        s.decode_failed.fetch_add(1, Relaxed);
                        if let Ok(mut v) = s.errors.lock() {
                            v.push(e);
                        }
                    }
                });
            }
            if max_parts.is_some_and(|m| n >= m) {
                conn_task.abort();
                return Ok(());
            }
        }
    }
    bail!("the server ended the stream")
}

fn parse_ts(v: &str) -> Option<u64> {
    let (s, us) = v.split_once('.')?;
    Some(s.parse::<u64>().ok()? * 1_000_000_000 + us.parse::<u64>().ok()? * 1_000)
}

fn decode(jpeg: &[u8]) -> std::result::Result<(u32, u32), String> {
    let buf = Vector::<u8>::from_slice(jpeg);
    let m = opencv::imgcodecs::imdecode(&buf, opencv::imgcodecs::IMREAD_COLOR)
        .map_err(|e| e.to_string())?;
    if m.empty() {
        return Err("imdecode returned an empty image".into());
    }
    Ok((m.cols() as u32, m.rows() as u32))
}

/// A client that sends its request and never reads.
async fn stalled_client(target: Target, path: String) -> Result<TcpStream> {
    let mut s = TcpStream::connect(&target.authority).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", target.authority);
    s.write_all(req.as_bytes()).await?;
    Ok(s)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn groups(args: &Args) -> Result<Vec<(usize, Option<u32>)>> {
    match &args.mix {
        None => Ok(vec![(args.clients, args.fps)]),
        Some(mix) => mix
            .split(',')
            .map(|g| {
                let (n, f) = g
                    .split_once('@')
                    .with_context(|| format!("--mix group {g:?} is not COUNT@FPS"))?;
                Ok((n.trim().parse()?, Some(f.trim().parse()?)))
            })
            .collect(),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The WebSocket clients get a runtime (and a thread) of their own, as browsers on other
    // machines would: on the MJPEG clients' runtime, a push message waited behind up to a
    // few hundred multipart reads, and the client's queueing (170 ms p99 with 64 MJPEG
    // clients) was reported as the server's push latency.
    let ws_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ws-clients")
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(args, ws_runtime.handle().clone()));
    ws_runtime.shutdown_background();
    result
}

async fn run(args: Args, ws_runtime: tokio::runtime::Handle) -> Result<()> {
    if args.h264_bench {
        return tokio::task::block_in_place(|| h264_load::bench(&args));
    }
    let groups = groups(&args)?;
    let total_clients: usize =
        groups.iter().map(|g| g.0).sum::<usize>() + args.stall + args.ws + args.h264.unwrap_or(0);
    let (_fixture, target, pid) = if args.spawn {
        let max = total_clients.max(args.cycle_concurrency) + 16;
        let (f, t, pid) = tokio::task::block_in_place(|| spawn(&args, max))?;
        (Some(f), t, Some(pid))
    } else {
        (None, Target::parse(&args.url)?, args.pid)
    };
    wait_healthy(&target).await?;
    // The server tells its pid, so a tree started elsewhere needs no --pid.
    let pid = match pid {
        Some(p) => Some(p),
        None => match get_text(&target, "/api/stream").await {
            Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["pid"].as_u64())
                .map(|p| p as u32),
            _ => None,
        },
    };
    let expect = if args.feed {
        (args.width, args.height)
    } else {
        (0, 0)
    };
    println!(
        "server {} pid {} | source {}x{}@{} | quality {} overlay {}",
        target.authority,
        pid.map_or("?".into(), |p| p.to_string()),
        args.width,
        args.height,
        args.source_fps,
        args.quality.map_or("default".into(), |q| q.to_string()),
        u8::from(args.overlay)
    );
    if let Some(n) = args.cycles {
        return cycles(&args, &target, pid, n, expect).await;
    }
    if let Some(n) = args.h264 {
        return h264_load::run(&args, &target, pid, n).await;
    }

    let measuring = Arc::new(AtomicBool::new(false));
    let mut all: Vec<(usize, Arc<ClientStats>)> = Vec::new();
    let mut tasks = Vec::new();
    for (gi, (n, fps)) in groups.iter().enumerate() {
        for _ in 0..*n {
            let stats = Arc::new(ClientStats::default());
            all.push((gi, stats.clone()));
            let path = stream_path(args.quality, *fps, args.overlay);
            let (t, m, s) = (target.clone(), measuring.clone(), stats.clone());
            let every = args.decode_every;
            tasks.push(tokio::spawn(async move {
                if let Err(e) = client(t, path, s.clone(), m, every, expect, None).await {
                    if let Ok(mut v) = s.errors.lock() {
                        v.push(format!("{e:#}"));
                    }
                }
            }));
        }
    }
    let mut ws_all = Vec::new();
    for _ in 0..args.ws {
        let stats = Arc::new(WsStats::default());
        ws_all.push(stats.clone());
        let (t, m) = (target.clone(), measuring.clone());
        tasks.push(ws_runtime.spawn(async move {
            if let Err(e) = ws_client(t, stats.clone(), m).await {
                if let Ok(mut v) = stats.errors.lock() {
                    v.push(format!("{e:#}"));
                }
            }
        }));
    }
    let mut stalled = Vec::new();
    for _ in 0..args.stall {
        stalled.push(
            stalled_client(
                target.clone(),
                stream_path(args.quality, args.fps, args.overlay),
            )
            .await?,
        );
    }

    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let before = pid.and_then(proc_sample);
    let t0 = Instant::now();
    measuring.store(true, Relaxed);
    let mut rss_max = before.map_or(0, |b| b.rss_bytes);
    let mut rss_min = rss_max;
    let end = t0 + Duration::from_secs_f64(args.seconds);
    while Instant::now() < end {
        tokio::time::sleep(
            Duration::from_millis(500).min(end.saturating_duration_since(Instant::now())),
        )
        .await;
        if let Some(s) = pid.and_then(proc_sample) {
            rss_max = rss_max.max(s.rss_bytes);
            rss_min = rss_min.min(s.rss_bytes);
        }
    }
    measuring.store(false, Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let after = pid.and_then(proc_sample);
    let metrics = get_text(&target, "/metrics")
        .await
        .map(|r| r.1)
        .unwrap_or_default();

    println!("window {elapsed:.1} s after {:.1} s warm-up", args.warmup);
    for (gi, (n, fps)) in groups.iter().enumerate() {
        let mut rates: Vec<f64> = all
            .iter()
            .filter(|(g, _)| *g == gi)
            .map(|(_, s)| s.parts_in_window.load(Relaxed) as f64 / elapsed)
            .collect();
        rates.sort_by(|a, b| a.total_cmp(b));
        let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
        let mut lat: Vec<f64> = Vec::new();
        for (_, s) in all.iter().filter(|(g, _)| *g == gi) {
            if let Ok(mut w) = s.latency.lock() {
                if let Some(w) = w.as_mut() {
                    let (p50, p99) = w.percentiles();
                    lat.push(p50 as f64 / 1e6);
                    lat.push(p99 as f64 / 1e6);
                }
            }
        }
        let p50s: Vec<f64> = lat.iter().step_by(2).copied().collect();
        let p99s: Vec<f64> = lat.iter().skip(1).step_by(2).copied().collect();
        let med = |mut v: Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            percentile(&v, 0.5)
        };
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        println!(
            "group {gi}: {n} clients at fps={}: per-client fps min {:.1} median {:.1} mean {:.1} max {:.1}; capture-to-client latency p50 {:.1} ms (median of clients), p99 {:.1} ms (worst client)",
            fps.map_or("default".into(), |f| f.to_string()),
            rates.first().copied().unwrap_or(0.0),
            percentile(&rates, 0.5),
            mean,
            rates.last().copied().unwrap_or(0.0),
            med(p50s),
            max(&p99s),
        );
    }
    let decoded: u64 = all.iter().map(|(_, s)| s.decoded_ok.load(Relaxed)).sum();
    let failed: u64 = all.iter().map(|(_, s)| s.decode_failed.load(Relaxed)).sum();
    let bytes: u64 = all.iter().map(|(_, s)| s.bytes.load(Relaxed)).sum();
    let parts: u64 = all.iter().map(|(_, s)| s.parts.load(Relaxed)).sum();
    println!(
        "received {parts} parts, {:.1} MB; JPEGs decoded {decoded}, failed {failed}; mean JPEG {:.0} KB",
        bytes as f64 / 1e6,
        bytes as f64 / parts.max(1) as f64 / 1e3
    );
    let mut errors = report_ws(&ws_all, elapsed);
    for (i, (_, s)) in all.iter().enumerate() {
        if let Ok(e) = s.errors.lock() {
            for msg in e.iter().take(3) {
                println!("client {i}: error: {msg}");
                errors += 1;
            }
        }
    }
    if let (Some(b), Some(a)) = (before, after) {
        let cpu = (a.cpu_ticks - b.cpu_ticks) as f64 / clock_ticks() / elapsed * 100.0;
        println!(
            "server: CPU {cpu:.1}% of one core; RSS {:.1} MB at start, {:.1} MB at end (min {:.1}, max {:.1}); fds {} -> {}; threads {} -> {}",
            b.rss_bytes as f64 / 1e6,
            a.rss_bytes as f64 / 1e6,
            rss_min as f64 / 1e6,
            rss_max as f64 / 1e6,
            b.fds,
            a.fds,
            b.threads,
            a.threads
        );
    }
    println!(
        "server metrics: clients {} encodes {} encode_skipped {} client_dropped_frames {} encode mean {:.2} ms",
        metric(&metrics, "billiards_stream_clients").unwrap_or(-1.0),
        metric(&metrics, "billiards_stream_encodes_total").unwrap_or(-1.0),
        metric(&metrics, "billiards_stream_encode_skipped_total").unwrap_or(-1.0),
        metric(&metrics, "billiards_stream_client_dropped_frames_total").unwrap_or(-1.0),
        metric(&metrics, "billiards_stream_encode_seconds_sum").unwrap_or(0.0)
            / metric(&metrics, "billiards_stream_encode_seconds_count").unwrap_or(1.0).max(1.0)
            * 1e3,
    );
    if let Ok((200, body)) = get_text(&target, "/api/stream").await {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
            println!(
                "server publish-to-send latency (last 512 parts): p50 {:.1} ms, p99 {:.1} ms; input fps {:.1}",
                v["send_latency_p50_ms"].as_f64().unwrap_or(-1.0),
                v["send_latency_p99_ms"].as_f64().unwrap_or(-1.0),
                v["input_fps"].as_f64().unwrap_or(-1.0),
            );
        }
    }
    println!(
        "load generator CPU: {:.1}% of one core over the whole run",
        shm_core::process_cpu_ns() as f64 / 1e9 / (t0.elapsed().as_secs_f64() + args.warmup)
            * 100.0
    );
    for t in &tasks {
        t.abort();
    }
    drop(stalled);
    if errors > 0 {
        bail!("{errors} client errors");
    }
    Ok(())
}

/// Connect/disconnect cycles and the leak check.
async fn cycles(
    args: &Args,
    target: &Target,
    pid: Option<u32>,
    n: usize,
    expect: (u32, u32),
) -> Result<()> {
    let measuring = Arc::new(AtomicBool::new(false));
    let one = |i: usize| {
        let t = target.clone();
        let m = measuring.clone();
        let path = stream_path(args.quality, args.fps, args.overlay && i.is_multiple_of(2));
        async move {
            let s = Arc::new(ClientStats::default());
            client(t, path, s, m, 1_000_000, expect, Some(1)).await
        }
    };
    // Warm-up: lazily allocated buffers and pools settle before the baseline.
    for i in 0..20 {
        one(i).await?;
    }
    let settle = |label: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = get_text(target, "/metrics")
                .await
                .map(|r| r.1)
                .unwrap_or_default();
            let clients = metric(&m, "billiards_stream_clients").unwrap_or(-1.0);
            let variants = metric(&m, "billiards_stream_variants").unwrap_or(-1.0);
            if (clients == 0.0 && variants == 0.0) || Instant::now() > deadline {
                return (m, label);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (m0, _) = settle("before").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p0 = pid.and_then(proc_sample);
    let g = |m: &str, k: &str| metric(m, k).unwrap_or(-1.0);
    let mut failures = 0;
    let mut m1 = m0.clone();
    let mut p1 = p0;
    for round in 1..=args.rounds.max(1) {
        let t0 = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(args.cycle_concurrency.max(1)));
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let permit = sem.clone().acquire_owned().await?;
            let fut = one(i);
            handles.push(tokio::spawn(async move {
                let r = fut.await;
                drop(permit);
                r
            }));
        }
        for h in handles {
            if let Err(e) = h.await? {
                failures += 1;
                if failures <= 3 {
                    println!("cycle error: {e:#}");
                }
            }
        }
        let took = t0.elapsed().as_secs_f64();
        m1 = settle("after").await.0;
        tokio::time::sleep(Duration::from_millis(500)).await;
        p1 = pid.and_then(proc_sample);
        println!(
            "round {round}: {n} connect/read-one-part/disconnect cycles in {took:.1} s ({:.0}/s); now clients {}, variants {}, tasks {}, connections {}, open fds {}, RSS {:.1} MB",
            n as f64 / took,
            g(&m1, "billiards_stream_clients"),
            g(&m1, "billiards_stream_variants"),
            g(&m1, "billiards_stream_tasks"),
            g(&m1, "billiards_stream_connections"),
            g(&m1, "process_open_fds"),
            g(&m1, "process_resident_memory_bytes") / 1e6,
        );
    }
    println!("{failures} cycles failed");
    println!(
        "server metrics before -> after: clients {} -> {}, variants {} -> {}, tasks {} -> {}, connections {} -> {}, open fds {} -> {}, RSS {:.1} -> {:.1} MB",
        g(&m0, "billiards_stream_clients"),
        g(&m1, "billiards_stream_clients"),
        g(&m0, "billiards_stream_variants"),
        g(&m1, "billiards_stream_variants"),
        g(&m0, "billiards_stream_tasks"),
        g(&m1, "billiards_stream_tasks"),
        g(&m0, "billiards_stream_connections"),
        g(&m1, "billiards_stream_connections"),
        g(&m0, "process_open_fds"),
        g(&m1, "process_open_fds"),
        g(&m0, "process_resident_memory_bytes") / 1e6,
        g(&m1, "process_resident_memory_bytes") / 1e6,
    );
    if let (Some(a), Some(b)) = (p0, p1) {
        println!(
            "server /proc before -> after: fds {} -> {}, threads {} -> {}, RSS {:.1} -> {:.1} MB",
            a.fds,
            b.fds,
            a.threads,
            b.threads,
            a.rss_bytes as f64 / 1e6,
            b.rss_bytes as f64 / 1e6
        );
    }
    let _ = std::io::stdout().flush();
    if failures > 0 {
        bail!("{failures} cycles failed");
    }
    if g(&m1, "billiards_stream_clients") != 0.0
        || g(&m1, "billiards_stream_tasks") > g(&m0, "billiards_stream_tasks")
    {
        bail!("clients or tasks left behind");
    }
    Ok(())
}

/// `--h264` and `--h264-bench`.
mod h264_load {
    use super::*;
    use billiards_stream_worker::frames::RawFrame;
    use billiards_stream_worker::h264::encoder::{EncoderSettings, H264Encoder};
    use billiards_stream_worker::h264::yuv::I420;
    use futures_util::StreamExt;
    use openh264::formats::YUVSource;
    use tokio_tungstenite::tungstenite::Message;

    fn path(bitrate_kbps: Option<u32>) -> String {
        match bitrate_kbps {
            Some(b) => format!("/stream/h264?bitrate_kbps={b}"),
            None => "/stream/h264".into(),
        }
    }

    /// One WebSocket client: checks that the first message is the init segment and the
    /// others are fragments, and counts them.
    async fn client(
        target: Target,
        path: String,
        stats: Arc<ClientStats>,
        measuring: Arc<AtomicBool>,
    ) -> Result<()> {
        let stream = TcpStream::connect(&target.authority).await?;
        stream.set_nodelay(true)?;
        let url = format!("ws://{}{path}", target.authority);
        let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
            .await
            .with_context(|| format!("websocket handshake with {url}"))?;
        stats.connected.store(true, Relaxed);
        let mut first = true;
        while let Some(msg) = ws.next().await {
            let data = match msg? {
                Message::Binary(b) => b,
                Message::Close(c) => bail!("the server closed the stream: {c:?}"),
                _ => continue,
            };
            let kind = data.get(4..8).unwrap_or_default();
            if first {
                if kind != b"ftyp" {
                    bail!("the first message is not an init segment (box {kind:?})");
                }
                first = false;
                continue;
            }
            match kind {
                b"ftyp" => continue,
                b"moof" => {}
                _ => bail!("a message is neither an init segment nor a fragment (box {kind:?})"),
            }
            stats.parts.fetch_add(1, Relaxed);
            stats.bytes.fetch_add(data.len() as u64, Relaxed);
            if measuring.load(Relaxed) {
                stats.parts_in_window.fetch_add(1, Relaxed);
                stats.bytes_in_window.fetch_add(data.len() as u64, Relaxed);
            }
        }
        bail!("the server ended the stream")
    }

    /// Cumulative histogram buckets `(upper bound, count)` of `name` in a /metrics text.
    fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(&prefix)?;
                let (le, v) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, v.trim().parse().ok()?))
            })
            .collect()
    }

    /// The bucket bound below which fraction `p` of the observations between two scrapes fell.
    fn bucket_percentile(before: &[(f64, f64)], after: &[(f64, f64)], p: f64) -> f64 {
        let diff: Vec<(f64, f64)> = after
            .iter()
            .map(|&(le, n)| {
                let b = before.iter().find(|x| x.0 == le).map_or(0.0, |x| x.1);
                (le, n - b)
            })
            .collect();
        let total = diff.last().map_or(0.0, |x| x.1);
        diff.iter()
            .find(|x| x.1 >= p * total && total > 0.0)
            .map_or(f64::NAN, |x| x.0)
    }

    pub(super) async fn run(
        args: &Args,
        target: &Target,
        pid: Option<u32>,
        n: usize,
    ) -> Result<()> {
        let measuring = Arc::new(AtomicBool::new(false));
        let mut all = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let stats = Arc::new(ClientStats::default());
            all.push(stats.clone());
            let (t, m) = (target.clone(), measuring.clone());
            let p = path(args.bitrate_kbps);
            tasks.push(tokio::spawn(async move {
                if let Err(e) = client(t, p, stats.clone(), m).await {
                    if let Ok(mut v) = stats.errors.lock() {
                        v.push(format!("{e:#}"));
                    }
                }
            }));
        }
        let mut stalled = Vec::new();
        for _ in 0..args.stall {
            // A WebSocket handshake, then never a read.
            let mut s = TcpStream::connect(&target.authority).await?;
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                path(args.bitrate_kbps),
                target.authority
            );
            s.write_all(req.as_bytes()).await?;
            stalled.push(s);
        }
        tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
        let m0 = get_text(target, "/metrics")
            .await
            .map(|r| r.1)
            .unwrap_or_default();
        let before = pid.and_then(proc_sample);
        let t0 = Instant::now();
        measuring.store(true, Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
        measuring.store(false, Relaxed);
        let elapsed = t0.elapsed().as_secs_f64();
        let after = pid.and_then(proc_sample);
        let m1 = get_text(target, "/metrics")
            .await
            .map(|r| r.1)
            .unwrap_or_default();

        let mut fps: Vec<f64> = all
            .iter()
            .map(|s| s.parts_in_window.load(Relaxed) as f64 / elapsed)
            .collect();
        fps.sort_by(|a, b| a.total_cmp(b));
        let mut mbps: Vec<f64> = all
            .iter()
            .map(|s| s.bytes_in_window.load(Relaxed) as f64 * 8.0 / elapsed / 1e6)
            .collect();
        mbps.sort_by(|a, b| a.total_cmp(b));
        println!(
            "window {elapsed:.1} s after {:.1} s warm-up; {n} H.264 clients at bitrate_kbps={}",
            args.warmup,
            args.bitrate_kbps
                .map_or("default".into(), |b| b.to_string())
        );
        println!(
            "per-client fps min {:.1} median {:.1} max {:.1}; per-client bitrate min {:.2} median {:.2} max {:.2} Mbit/s",
            fps.first().copied().unwrap_or(0.0),
            percentile(&fps, 0.5),
            fps.last().copied().unwrap_or(0.0),
            mbps.first().copied().unwrap_or(0.0),
            percentile(&mbps, 0.5),
            mbps.last().copied().unwrap_or(0.0),
        );
        if let (Some(b), Some(a)) = (before, after) {
            let cpu = (a.cpu_ticks - b.cpu_ticks) as f64 / clock_ticks() / elapsed * 100.0;
            println!(
                "server: CPU {cpu:.1}% of one core; RSS {:.1} MB; fds {} -> {}; threads {} -> {}",
                a.rss_bytes as f64 / 1e6,
                b.fds,
                a.fds,
                b.threads,
                a.threads
            );
        }
        let d = |k: &str| metric(&m1, k).unwrap_or(0.0) - metric(&m0, k).unwrap_or(0.0);
        let enc_n = d("billiards_stream_h264_encode_seconds_count");
        let lat = "billiards_stream_h264_send_latency_seconds";
        let (lb, la) = (buckets(&m0, lat), buckets(&m1, lat));
        println!(
            "server (window): encodes {enc_n:.0}, encode mean {:.2} ms/frame, encoders {}, keyframes {:.0} (forced {:.0}), client skipped {:.0}; publish-to-send p50 <= {} ms, p99 <= {} ms (histogram buckets)",
            d("billiards_stream_h264_encode_seconds_sum") / enc_n.max(1.0) * 1e3,
            metric(&m1, "billiards_stream_h264_encoders").unwrap_or(-1.0),
            d("billiards_stream_h264_keyframes_total"),
            d("billiards_stream_h264_forced_keyframes_total"),
            d("billiards_stream_h264_client_skipped_total"),
            bucket_percentile(&lb, &la, 0.5) * 1e3,
            bucket_percentile(&lb, &la, 0.99) * 1e3,
        );
        let mut errors = 0;
        for (i, s) in all.iter().enumerate() {
            if let Ok(e) = s.errors.lock() {
                for msg in e.iter().take(3) {
                    println!("client {i}: error: {msg}");
                    errors += 1;
                }
            }
        }
        for t in &tasks {
            t.abort();
        }
        drop(stalled);
        if errors > 0 {
            bail!("{errors} client errors");
        }
        Ok(())
    }

    fn plane_psnr(a: &[u8], a_stride: usize, b: &[u8], b_stride: usize, w: usize, h: usize) -> f64 {
        let mut se = 0f64;
        for y in 0..h {
            for x in 0..w {
                let d = f64::from(a[y * a_stride + x]) - f64::from(b[y * b_stride + x]);
                se += d * d;
            }
        }
        let mse = se / (w * h) as f64;
        if mse == 0.0 {
            99.0
        } else {
            10.0 * (255.0 * 255.0 / mse).log10()
        }
    }

    /// CPU time of this thread, which a busy machine does not inflate the way it does wall time.
    fn thread_cpu_s() -> f64 {
        use nix::time::{clock_gettime, ClockId};
        clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
            .map(|ts| ts.tv_sec() as f64 + ts.tv_nsec() as f64 / 1e9)
            .unwrap_or(0.0)
    }

    /// `n` consecutive new frames of the live segment `name` (BGR8, tightly packed).
    fn segment_frames(name: &str, n: usize) -> Result<(u32, u32, Vec<Vec<u8>>)> {
        use shm_core::{AttachOptions, Reader, SegmentLocation};
        let loc = SegmentLocation::new(name, std::env::temp_dir())
            .with_context(|| format!("--bench-segment {name:?} is not a segment name"))?;
        let mut reader = Reader::attach(
            &loc,
            AttachOptions::new("h264-bench", Duration::from_secs(5)),
        )
        .with_context(|| {
            format!("cannot attach to the frame segment {name:?}; is the tree running?")
        })?;
        let (w, h) = (reader.info().spec.width, reader.info().spec.height);
        let mut frames = Vec::with_capacity(n);
        let mut buf = Vec::new();
        let mut last = reader.last_frame_number();
        while frames.len() < n {
            if !reader.wait_next(Duration::from_secs(2))? {
                bail!("no new frame in segment {name:?} within 2 s");
            }
            if let Some(meta) = reader.read_latest(&mut buf)? {
                if meta.frame_number > last && meta.stride == w * 3 {
                    last = meta.frame_number;
                    frames.push(buf.clone());
                }
            }
        }
        Ok((w, h, frames))
    }

    /// `--h264-bench`: conversion and encode time, bitrate and luma PSNR on the synthetic
    /// table (the feed's frames), decoded again with OpenH264's decoder.
    pub(super) fn bench(args: &Args) -> Result<()> {
        let bitrate = args.bitrate_kbps.unwrap_or(2500);
        let fps = args.source_fps.max(1);
        let n = args.bench_frames.max(1);
        let (w, h, distinct) = match &args.bench_segment {
            Some(name) => segment_frames(name, n)?,
            None => {
                let (w, h) = (args.width, args.height);
                (w, h, (0..30).map(|i| feed::render(w, h, i)).collect())
            }
        };
        let mut enc = H264Encoder::new(EncoderSettings {
            bitrate_kbps: bitrate,
            fps: fps as f32,
            keyframe_frames: 2 * fps,
        })?;
        let mut dec = openh264::decoder::Decoder::new()?;
        let mut pic = I420::new();
        let (mut convert_s, mut encode_s, mut bytes, mut psnr_sum, mut psnr_min) =
            (0f64, 0f64, 0usize, 0f64, f64::INFINITY);
        let (mut convert_cpu, mut encode_cpu) = (0f64, 0f64);
        for i in 0..n {
            let data = distinct[i % distinct.len()].clone();
            let (t, c) = (Instant::now(), thread_cpu_s());
            pic.convert_bgr(&data, w, h, w * 3)?;
            convert_s += t.elapsed().as_secs_f64();
            convert_cpu += thread_cpu_s() - c;
            let frame = RawFrame {
                frame_number: i as u64 + 1,
                capture_ns: 0,
                publish_ns: 0,
                width: w,
                height: h,
                stride: w * 3,
                data,
            };
            let (t, c) = (Instant::now(), thread_cpu_s());
            // Includes a second conversion inside encode(); subtracted below.
            let out = enc.encode(&frame, false)?.context("no picture")?;
            encode_s += t.elapsed().as_secs_f64();
            encode_cpu += thread_cpu_s() - c;
            let (sps, pps) = out.parameter_sets.clone().unwrap_or_default();
            let mut annexb = Vec::new();
            for nal in [&sps, &pps] {
                if !nal.is_empty() {
                    annexb.extend_from_slice(&[0, 0, 0, 1]);
                    annexb.extend_from_slice(nal);
                }
            }
            let mut at = 0;
            while at + 4 <= out.sample.len() {
                let len = u32::from_be_bytes(out.sample[at..at + 4].try_into()?) as usize;
                annexb.extend_from_slice(&[0, 0, 0, 1]);
                annexb.extend_from_slice(&out.sample[at + 4..at + 4 + len]);
                at += 4 + len;
            }
            bytes += out.sample.len();
            if let Some(yuv) = dec.decode(&annexb)? {
                let q = plane_psnr(
                    yuv.y(),
                    yuv.strides().0,
                    pic.y(),
                    w as usize,
                    w as usize,
                    h as usize,
                );
                psnr_sum += q;
                psnr_min = psnr_min.min(q);
            }
        }
        let nf = n as f64;
        println!(
            "h264 bench {w}x{h}, {n} frames at {bitrate} kbit/s, {fps} fps: BGR->I420 {:.2} ms/frame CPU ({:.2} wall); OpenH264 encode {:.2} ms/frame CPU ({:.2} wall); output {:.2} Mbit/s at {fps} fps; luma PSNR mean {:.1} dB, worst {:.1} dB; load average {}",
            convert_cpu / nf * 1e3,
            convert_s / nf * 1e3,
            (encode_cpu - convert_cpu) / nf * 1e3,
            (encode_s - convert_s) / nf * 1e3,
            bytes as f64 * 8.0 / nf * f64::from(fps) / 1e6,
            psnr_sum / nf,
            psnr_min,
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        );
        Ok(())
    }
}
