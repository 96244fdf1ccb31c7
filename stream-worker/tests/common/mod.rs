//! Shared fixtures of the process tests: segments fed by a test writer (the video worker's
//! part), the real `billiards-stream-worker` binary, a small blocking HTTP client that
//! de-chunks and parses the multipart stream, a detections writer and a fake control socket.
//! Every fixture cleans up on drop, also when the test fails.

#![allow(dead_code)]

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use billiards_stream_worker::feed::Feed;
use billiards_stream_worker::multipart::{ParsedPart, Parser, BOUNDARY};
use shm_core::{CreateMode, PublishMeta, SegmentLocation, SegmentSpec, Writer};

/// A name no other test (or run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Relaxed),
        shm_core::monotonic_ns() % 1_000_000
    )
}

/// A segment, unlinked on drop.
pub struct Segment {
    pub loc: SegmentLocation,
    pub spec: SegmentSpec,
}

impl Segment {
    pub fn frames(name: &str, w: u32, h: u32) -> Segment {
        let loc = SegmentLocation::new(name, std::env::temp_dir()).unwrap();
        let spec = SegmentSpec::frames(w, h, 3);
        shm_core::create(&loc, &spec, CreateMode::ReplaceExisting).unwrap();
        Segment { loc, spec }
    }

    pub fn detections(name: &str) -> Segment {
        let loc = SegmentLocation::new(name, std::env::temp_dir()).unwrap();
        let spec = SegmentSpec::bytes(65536, 4);
        shm_core::create(&loc, &spec, CreateMode::ReplaceExisting).unwrap();
        Segment { loc, spec }
    }

    /// A synthetic writer publishing at `fps`.
    pub fn feed(&self, fps: u32) -> Feed {
        Feed::start(
            self.loc.clone(),
            self.spec.width,
            self.spec.height,
            fps,
            self.spec.slot_count,
        )
        .unwrap()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = shm_core::unlink(&self.loc);
    }
}

/// Test configuration of one server.
#[derive(Clone)]
pub struct Setup {
    pub shm_name: String,
    pub det_name: String,
    pub width: u32,
    pub height: u32,
    pub max_clients: u32,
    pub max_fps: u32,
    pub auth_token: String,
    pub vision_enabled: bool,
    pub control_socket: PathBuf,
    pub attach_timeout_sec: f64,
    pub frame_timeout_sec: f64,
    pub listen: String,
    pub allowed_hosts: Vec<String>,
    pub client_stall_sec: f64,
    pub max_connections_per_ip: u32,
    /// Extra environment of the server process (e.g. the head-deadline test hook).
    pub env: Vec<(String, String)>,
    /// More `[stream]` lines (e.g. `h264_keyframe_sec = 60.0`).
    pub stream_extra: String,
}

impl Setup {
    pub fn new(dir: &Path) -> Setup {
        Setup {
            shm_name: unique("stw"),
            det_name: unique("stwd"),
            width: 320,
            height: 240,
            max_clients: 16,
            max_fps: 30,
            auth_token: String::new(),
            vision_enabled: true,
            control_socket: dir.join("supervisor.sock"),
            attach_timeout_sec: 5.0,
            frame_timeout_sec: 2.0,
            listen: "127.0.0.1:0".into(),
            allowed_hosts: Vec::new(),
            client_stall_sec: 10.0,
            max_connections_per_ip: 0,
            env: Vec::new(),
            stream_extra: String::new(),
        }
    }

    pub fn toml(&self) -> String {
        format!(
            "[video]\nshm_name = \"{}\"\nwidth = {}\nheight = {}\nattach_timeout_sec = {}\n\n\
             [vision]\nenabled = {}\ndetections_shm_name = \"{}\"\n\n\
             [stream]\nlisten = \"{}\"\nmax_clients = {}\nmax_fps = {}\nauth_token = \"{}\"\n\
             allowed_hosts = {:?}\nclient_stall_sec = {:?}\nmax_connections_per_ip = {}\n{}\n\n\
             [supervisor]\ncontrol_socket = \"{}\"\n\n\
             [watchdog]\nframe_timeout_sec = {}\n",
            self.shm_name,
            self.width,
            self.height,
            self.attach_timeout_sec,
            self.vision_enabled,
            self.det_name,
            self.listen,
            self.max_clients,
            self.max_fps,
            self.auth_token,
            self.allowed_hosts,
            self.client_stall_sec,
            self.max_connections_per_ip,
            self.stream_extra,
            self.control_socket.display(),
            self.frame_timeout_sec,
        )
    }

    pub fn frame_segment(&self) -> Segment {
        Segment::frames(&self.shm_name, self.width, self.height)
    }
}

/// The stream worker binary under test.
pub fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_billiards-stream-worker"))
}

/// A running stream worker; SIGTERMed (then killed) and reaped on drop.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
    _config: PathBuf,
}

impl Server {
    /// Starts the server with `setup` (config file in `dir`) and waits until it listens.
    pub fn start(setup: &Setup, dir: &Path) -> Server {
        let config = dir.join(format!("{}.toml", unique("cfg")));
        std::fs::write(&config, setup.toml()).unwrap();
        let mut child = Command::new(server_bin())
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .envs(setup.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start billiards-stream-worker");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.split('/').next().unwrap_or_default().to_string());
                }
                log2.lock().unwrap().push(line);
            }
        });
        let mut server = Server {
            child: Some(child),
            addr: "127.0.0.1:1".parse().unwrap(),
            log,
            _config: config,
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => server.addr = a.parse().unwrap(),
            Err(_) => panic!(
                "server did not listen within 30 s; log:\n{}",
                server.log_text()
            ),
        }
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Whether the server process is still running (not exited, not crashed).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and waits for the exit (at most `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Waits until `/metrics` shows `name` == `value` (or panics after 10 s).
    pub fn wait_metric(&self, name: &str, value: f64) {
        self.wait_metric_until(name, &format!("== {value}"), |v| v == value);
    }

    /// Waits until `/metrics` shows `name` <= `value` (or panics after 10 s).
    pub fn wait_metric_at_most(&self, name: &str, value: f64) {
        self.wait_metric_until(name, &format!("<= {value}"), |v| v <= value);
    }

    fn wait_metric_until(&self, name: &str, what: &str, ok: impl Fn(f64) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = None;
        while Instant::now() < deadline {
            last = metric(&get(self.addr, "/metrics").text(), name);
            if last.is_some_and(&ok) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{name} stayed {last:?}, expected {what}");
    }

    /// Waits until `/healthz` answers `code`.
    pub fn wait_health(&self, code: u16) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if get(self.addr, "/healthz").status == code {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("/healthz never answered {code}; log:\n{}", self.log_text());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(5));
    }
}

/// Runs the server to its exit (for start-up failures); returns status and stderr.
pub fn run_to_exit(setup: &Setup, dir: &Path, timeout: Duration) -> (ExitStatus, String) {
    let config = dir.join(format!("{}.toml", unique("cfg")));
    std::fs::write(&config, setup.toml()).unwrap();
    run_bin_to_exit(&["--config", config.to_str().unwrap()], timeout)
}

/// Runs the server binary with `args` to its exit.
pub fn run_bin_to_exit(args: &[&str], timeout: Duration) -> (ExitStatus, String) {
    let mut child = Command::new(server_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, reader.join().unwrap());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A complete HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    request(addr, "GET", path, &[])
}

/// One request on a fresh connection (`Connection: close`), read to the end.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let host = addr.to_string();
    request_to_host(addr, method, path, &host, headers)
}

/// One request naming `host` in its `Host` header, on a fresh connection, read to the end.
pub fn request_to_host(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let mut resp = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if method == "HEAD" {
        return resp;
    }
    if resp.header("transfer-encoding") == Some("chunked") {
        let mut body = Vec::new();
        while let Some(chunk) = read_chunk(&mut r) {
            body.extend(chunk);
        }
        resp.body = body;
    } else if let Some(len) = resp.header("content-length") {
        let mut body = vec![0; len.parse().unwrap()];
        r.read_exact(&mut body).unwrap();
        resp.body = body;
    } else {
        r.read_to_end(&mut resp.body).unwrap();
    }
    resp
}

fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 "), "status line {line:?}");
    let status = line[9..12].parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    (status, headers)
}

/// One chunk of a chunked body; None at the last chunk.
fn read_chunk(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
    if size == 0 {
        let mut end = String::new();
        let _ = r.read_line(&mut end);
        return None;
    }
    let mut data = vec![0; size + 2];
    r.read_exact(&mut data).ok()?;
    assert_eq!(&data[size..], b"\r\n", "chunk not followed by CRLF");
    data.truncate(size);
    Some(data)
}

/// A `/stream/video` client reading part by part.
pub struct StreamClient {
    reader: BufReader<TcpStream>,
    parser: Parser,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub error_body: Vec<u8>,
    ended: bool,
}

impl StreamClient {
    pub fn open(addr: SocketAddr, path: &str) -> StreamClient {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = s.try_clone().unwrap();
        write!(w, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut reader = BufReader::new(s);
        let (status, headers) = read_head(&mut reader);
        let mut c = StreamClient {
            reader,
            parser: Parser::new(BOUNDARY),
            status,
            headers,
            error_body: Vec::new(),
            ended: false,
        };
        if status != 200 {
            let len: usize = c.header("content-length").unwrap_or("0").parse().unwrap();
            let mut body = vec![0; len];
            c.reader.read_exact(&mut body).unwrap();
            c.error_body = body;
        }
        c
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next part within `timeout`: Ok(None) on timeout, Err on end of stream.
    pub fn next_part(&mut self, timeout: Duration) -> Result<Option<ParsedPart>, String> {
        assert_eq!(self.header("transfer-encoding"), Some("chunked"));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.parser.next_part().map_err(|e| e.to_string())? {
                return Ok(Some(p));
            }
            if self.ended {
                return Err("stream ended".into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.reader.get_ref().set_read_timeout(Some(left)).unwrap();
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => self.ended = true,
                Ok(_) => {
                    let size = usize::from_str_radix(line.trim(), 16)
                        .map_err(|_| format!("bad chunk size line {line:?}"))?;
                    if size == 0 {
                        self.ended = true;
                        continue;
                    }
                    // The chunk itself follows at once; read it whole.
                    self.reader
                        .get_ref()
                        .set_read_timeout(Some(Duration::from_secs(20)))
                        .unwrap();
                    let mut data = vec![0; size + 2];
                    self.reader
                        .read_exact(&mut data)
                        .map_err(|e| e.to_string())?;
                    if &data[size..] != b"\r\n" {
                        return Err("chunk not followed by CRLF".into());
                    }
                    self.parser.push(&data[..size]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Reads parts for `d`; returns how many arrived.
    pub fn count_parts(&mut self, d: Duration) -> usize {
        let end = Instant::now() + d;
        let mut n = 0;
        while Instant::now() < end {
            match self.next_part(end.saturating_duration_since(Instant::now())) {
                Ok(Some(_)) => n += 1,
                Ok(None) => break,
                Err(e) => panic!("stream broke: {e}"),
            }
        }
        n
    }
}

/// The value of a sample in a Prometheus exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        (s == series).then(|| v.parse().ok()).flatten()
    })
}

/// Decodes a JPEG; returns (width, height).
pub fn jpeg_size(jpeg: &[u8]) -> (i32, i32) {
    use opencv::prelude::*;
    let buf = opencv::core::Vector::<u8>::from_slice(jpeg);
    let m = opencv::imgcodecs::imdecode(&buf, opencv::imgcodecs::IMREAD_COLOR).unwrap();
    (m.cols(), m.rows())
}

/// A detections writer publishing `detections_json(n)` with a fresh capture time, every 100 ms
/// unless started with [`DetectionsFeed::with`].
pub struct DetectionsFeed {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DetectionsFeed {
    pub fn start(seg: &Segment) -> DetectionsFeed {
        DetectionsFeed::with(seg, Duration::from_millis(100), |_, _| {})
    }

    /// Publishes every `period`, after `edit(n, &mut record)` has changed record `n`.
    pub fn with(
        seg: &Segment,
        period: Duration,
        mut edit: impl FnMut(u64, &mut serde_json::Value) + Send + 'static,
    ) -> DetectionsFeed {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let (loc, spec) = (seg.loc.clone(), seg.spec);
        let thread = std::thread::spawn(move || {
            let mut w = Writer::open(&loc, &spec).unwrap();
            let mut n = 0u64;
            while !stop2.load(Relaxed) {
                n += 1;
                let now = shm_core::monotonic_ns();
                let mut v: serde_json::Value =
                    serde_json::from_str(&detections_json(n, now)).unwrap();
                edit(n, &mut v);
                w.publish(v.to_string().as_bytes(), PublishMeta::bytes(now))
                    .unwrap();
                std::thread::sleep(period);
            }
        });
        DetectionsFeed {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DetectionsFeed {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A detection result with 1 cue, 1 eight, 3 solids and 2 stripes (with the second round's
/// ids, numbers and velocities; one stripe is not identified).
pub fn detections_json(n: u64, capture_ns: u64) -> String {
    serde_json::json!({
        "frame_number": n, "capture_ts_ns": capture_ns, "processed_ts_ns": capture_ns + 1000,
        "table": {"corners": [[20, 20], [300, 20], [300, 220], [20, 220]]},
        "motion": "moving", "pocketed": [], "cue": null,
        "balls": [
            {"x": 60.0, "y": 60.0, "radius": 8.0, "kind": "cue", "id": 0, "number": 0, "vx": 120.0, "vy": 80.0, "moving": true},
            {"x": 100.0, "y": 60.0, "radius": 8.0, "kind": "eight", "id": 8, "number": 8, "vx": 0.0, "vy": 0.0, "moving": false},
            {"x": 140.0, "y": 60.0, "radius": 8.0, "kind": "solid", "id": 1, "number": 1, "vx": 0.0, "vy": 0.0, "moving": false},
            {"x": 180.0, "y": 60.0, "radius": 8.0, "kind": "solid", "id": 3, "number": 3, "vx": -60.0, "vy": 100.0, "moving": true},
            {"x": 220.0, "y": 60.0, "radius": 8.0, "kind": "solid", "id": 5, "number": 5, "vx": 0.0, "vy": 0.0, "moving": false},
            {"x": 140.0, "y": 120.0, "radius": 8.0, "kind": "stripe", "id": 11, "number": 11, "vx": 0.0, "vy": 0.0, "moving": false},
            {"x": 180.0, "y": 120.0, "radius": 8.0, "kind": "stripe", "id": 101, "number": null, "vx": 0.0, "vy": 0.0, "moving": false},
        ]
    })
    .to_string()
}

/// The one mock allowed: a control socket answering `status` with a canned tree of three
/// workers (the real supervisor is tested in its own crate). Removed on drop.
pub struct FakeSupervisor {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub status: serde_json::Value,
}

impl FakeSupervisor {
    pub fn start(path: &Path, video_state: &str) -> FakeSupervisor {
        let status = canned_status(path, video_state);
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let answer = serde_json::json!({"ok": true, "status": status.clone()});
        let thread = std::thread::spawn(move || {
            while !stop2.load(Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let mut len = [0u8; 4];
                        if s.read_exact(&mut len).is_err() {
                            continue;
                        }
                        let mut req = vec![0; u32::from_be_bytes(len) as usize];
                        if s.read_exact(&mut req).is_err() {
                            continue;
                        }
                        let req: serde_json::Value = serde_json::from_slice(&req).unwrap();
                        let body = if req["cmd"] == "status" {
                            serde_json::to_vec(&answer).unwrap()
                        } else {
                            br#"{"ok":false,"error":"unsupported in the fake"}"#.to_vec()
                        };
                        let _ = s.write_all(&(body.len() as u32).to_be_bytes());
                        let _ = s.write_all(&body);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeSupervisor {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
            status,
        }
    }
}

impl Drop for FakeSupervisor {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn canned_status(sock: &Path, video_state: &str) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let worker = |name: &str, state: &str, pid: u32, restarts: u32, fps: f64| {
        serde_json::json!({
            "name": name, "state": state, "pid": if state == "running" { serde_json::json!(pid) } else { serde_json::Value::Null },
            "uptime_s": 12.5, "restarts": restarts,
            "last_exit": if restarts > 0 { serde_json::json!({"code": null, "signal": 9, "reason": "killed by SIGKILL", "at_unix_s": now - 95.0}) } else { serde_json::Value::Null },
            "cpu_percent": 12.5, "rss_bytes": 52_428_800u64,
            "stats": {"fps": fps, "frames": 1000, "dropped": 2, "latency_p50_ms": 1.5, "latency_p99_ms": 4.0}
        })
    };
    serde_json::json!({
        "supervisor": {"pid": 4242, "uptime_s": 30.0, "config_path": "/etc/billiards.toml",
            "control_socket": sock.display().to_string(),
            "shm": {"name": "billiards_video", "path": "/dev/shm/billiards_video", "size_bytes": 8294400,
                    "slots": 3, "width": 1280, "height": 720, "readers": 2, "frames_published": 1000}},
        "workers": [
            worker("video", video_state, 4243, 3, 30.0),
            worker("vision", "running", 4244, 0, 29.5),
            worker("stream", "running", 4245, 1, 30.0),
        ]
    })
}
