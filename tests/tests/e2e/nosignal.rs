//! "No signal" (SPEC "Camera, calibration and no signal"), with the real tree: a missing
//! camera never makes the video worker `failed`, the dashboard answers with a placeholder
//! that says why, and a source that appears later starts the frames by itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use billiards_tests::*;
use opencv::core::{Mat, Scalar, Size, Vector, CV_8UC3};
use opencv::prelude::*;
use opencv::{imgcodecs, videoio};

const START: Duration = Duration::from_secs(30);
/// Generous: the machine running the tests may be loaded.
const IO: Duration = Duration::from_secs(20);

fn worker(s: &Status, name: &str) -> WorkerStatus {
    s.worker(name)
        .unwrap_or_else(|| panic!("no {name} in {s:?}"))
        .clone()
}

/// One HTTP response, as a plain client sees it.
struct Http {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Http {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn connect(port: u16, path: &str) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the stream worker");
    s.set_read_timeout(Some(IO)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    BufReader::new(s)
}

/// Reads header lines up to the blank line, names lower-cased.
fn read_headers(r: &mut BufReader<TcpStream>) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("read a header line");
        let line = line.trim_end();
        if line.is_empty() {
            return headers;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
}

/// `GET path` with `Connection: close`; the body is read to the end.
fn get(port: u16, path: &str) -> Http {
    let mut r = connect(port, path);
    let mut status_line = String::new();
    r.read_line(&mut status_line).expect("read the status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = read_headers(&mut r);
    let mut body = Vec::new();
    match headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body).expect("read the body");
        }
        None => {
            r.read_to_end(&mut body).expect("read the body");
        }
    }
    Http {
        status,
        headers,
        body,
    }
}

/// An open `/stream/video` response, read part by part.
struct Mjpeg(BufReader<TcpStream>);

impl Mjpeg {
    fn open(port: u16) -> Mjpeg {
        let mut r = connect(port, "/stream/video");
        let mut status_line = String::new();
        r.read_line(&mut status_line).unwrap();
        assert!(status_line.contains(" 200 "), "{status_line}");
        read_headers(&mut r);
        Mjpeg(r)
    }

    /// The next part: (frame number, JPEG). Chunked transfer framing is skipped over: the
    /// part's own headers carry its length.
    fn next_part(&mut self) -> (u64, Vec<u8>) {
        loop {
            let mut line = String::new();
            let n = self.0.read_line(&mut line).expect("read the stream");
            assert!(n > 0, "the stream ended");
            if line.trim_end() != "--frame" {
                continue;
            }
            let headers = read_headers(&mut self.0);
            let find = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("part without {name}: {headers:?}"))
            };
            let len: usize = find("content-length").parse().unwrap();
            let number: u64 = find("x-frame-number").parse().unwrap();
            let mut jpeg = vec![0; len];
            self.0.read_exact(&mut jpeg).expect("read a part");
            return (number, jpeg);
        }
    }
}

fn jpeg_size(jpeg: &[u8]) -> (i32, i32) {
    let m = imgcodecs::imdecode(&Vector::<u8>::from_slice(jpeg), imgcodecs::IMREAD_COLOR)
        .expect("decode the JPEG");
    (m.cols(), m.rows())
}

fn stop(env: &TestEnv, sup: &mut Proc) {
    assert_eq!(
        sup.terminate(Duration::from_secs(15)),
        Some(0),
        "clean stop"
    );
    assert!(
        env.leftover_segments().is_empty(),
        "{:?}",
        env.leftover_segments()
    );
}

#[test]
fn a_missing_camera_shows_no_signal_and_is_retried_without_failing() {
    let env = TestEnv::new("nosignal");
    let mut c = env.config();
    c.video.source.kind = config::SourceKind::Camera;
    c.video.source.path = "/dev/video-nonexistent".into();
    c.supervisor.restart_max = 2;
    c.supervisor.restart_backoff_initial_ms = 100;
    c.supervisor.restart_backoff_max_ms = 300;
    c.supervisor.restart_window_sec = 60.0;
    let cfg = env.write_config(&c);
    let mut sup = env.start(&cfg);

    // The readers start without a frame.
    env.wait_status(START, "stream and vision running without frames", |s| {
        worker(s, "stream").state == WorkerState::Running
            && worker(s, "vision").state == WorkerState::Running
    });
    let page = get(env.port, "/");
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("no_signal"));
    assert_eq!(get(env.port, "/healthz").status, 503);

    // The placeholder, at the configured size, with the reason behind it.
    let reason = "camera unavailable: /dev/video-nonexistent";
    let stats = wait_for(IO, || {
        let r = get(env.port, "/api/stream");
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        (v["no_signal"].as_str() == Some(reason)).then_some(v)
    });
    assert!(stats.is_some(), "/api/stream never said {reason:?}");
    let snap = get(env.port, "/snapshot.jpg");
    assert_eq!(snap.status, 200);
    assert_eq!(snap.header("content-type"), Some("image/jpeg"));
    assert_eq!(snap.header("x-no-signal"), Some("1"));
    assert_eq!(jpeg_size(&snap.body), (320, 240));
    let mut stream = Mjpeg::open(env.port);
    for _ in 0..2 {
        let (n, jpeg) = stream.next_part();
        assert_eq!(n, 0, "a placeholder is numbered 0");
        assert_eq!(jpeg_size(&jpeg), (320, 240));
    }

    // restart_max + 1 counted exits at these delays would take about a second: watch for
    // several times that. The video worker is retried and never `failed`.
    let window = Instant::now();
    let mut restarts = 0;
    while window.elapsed() < Duration::from_secs(6) {
        let s = env.status().expect("status");
        let v = worker(&s, "video");
        assert_ne!(v.state, WorkerState::Failed, "{v:?}");
        restarts = v.restarts;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        restarts > c.supervisor.restart_max,
        "retried {restarts} times in 6 s"
    );
    let v = worker(&env.status().unwrap(), "video");
    let exit = v.last_exit.expect("last_exit");
    assert_eq!(exit.reason, reason, "{exit:?}");
    assert_eq!(get(env.port, "/healthz").status, 503);
    // The stream client is still there, still getting placeholders.
    assert_eq!(stream.next_part().0, 0);
    drop(stream);
    stop(&env, &mut sup);
}

/// Writes an MJPG AVI of `frames` grey frames.
fn write_video(path: &Path, frames: u32, width: i32, height: i32) {
    let fourcc = videoio::VideoWriter::fourcc('M', 'J', 'P', 'G').unwrap();
    let mut w = videoio::VideoWriter::new(
        path.to_str().unwrap(),
        fourcc,
        30.0,
        Size::new(width, height),
        true,
    )
    .unwrap();
    assert!(w.is_opened().unwrap(), "cannot write {}", path.display());
    let frame =
        Mat::new_rows_cols_with_default(height, width, CV_8UC3, Scalar::all(128.0)).unwrap();
    for _ in 0..frames {
        w.write(&frame).unwrap();
    }
    w.release().unwrap();
}

#[test]
fn a_file_that_appears_later_starts_the_frames_by_itself() {
    let env = TestEnv::new("appears");
    let video = env.dir().join("table.avi");
    let mut c = env.config();
    c.video.source.kind = config::SourceKind::File;
    c.video.source.path = video.display().to_string();
    c.video.source.looping = true;
    c.supervisor.restart_max = 1;
    c.supervisor.restart_backoff_initial_ms = 100;
    c.supervisor.restart_backoff_max_ms = 300;
    c.supervisor.restart_window_sec = 60.0;
    let cfg = env.write_config(&c);
    let mut sup = env.start(&cfg);
    env.wait_status(START, "video retried while the file is missing", |s| {
        let v = worker(s, "video");
        worker(s, "stream").state == WorkerState::Running
            && v.restarts > c.supervisor.restart_max
            && v.state != WorkerState::Failed
    });
    let mut stream = Mjpeg::open(env.port);
    assert_eq!(
        stream.next_part().0,
        0,
        "the placeholder while the file is missing"
    );

    // The file appears (renamed into place whole): frames flow with no operator action.
    let partial = env.dir().join("table.partial.avi");
    write_video(&partial, 60, 320, 240);
    std::fs::rename(&partial, &video).unwrap();
    env.wait_status(START, "every worker running", |s| {
        s.workers.iter().all(|w| w.state == WorkerState::Running)
    });
    let deadline = Instant::now() + START;
    loop {
        let (n, jpeg) = stream.next_part();
        if n > 0 {
            assert_eq!(jpeg_size(&jpeg), (320, 240));
            break;
        }
        assert!(Instant::now() < deadline, "no frame on the open stream");
    }
    assert!(
        wait_for(IO, || (get(env.port, "/healthz").status == 200)
            .then_some(()))
        .is_some(),
        "/healthz never turned 200"
    );
    drop(stream);
    stop(&env, &mut sup);
}
