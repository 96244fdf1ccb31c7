//! The dashboard in a real headless browser: Debian's Chromium driven by playwright-core
//! (tests/browser/dashboard.mjs). Checks that the page starts in H.264 mode (this Chromium
//! plays H.264 through Media Source Extensions) and `video.currentTime` advances at the
//! configured size with a small buffer near the live edge and no MJPEG stream open, that the
//! switch to MJPEG closes the H.264 stream and is remembered across a reload, that without
//! WebSocket the page shows MJPEG and says why, and that an H.264 page plays again after the
//! video outage and after its socket was closed. In MJPEG mode it checks that the live image loads at the configured size,
//! the worker table lists the three workers (from a fake control socket, the one mock), the
//! detections panel counts balls by kind, detections and status arrive over `/api/ws` and the
//! canvas overlay draws the pushed balls (read from its `data-balls-drawn`), toggling the
//! overlay never touches the stream while the quality selector changes its URL, the page falls
//! back to polling (and says so) without WebSocket, and the banner shows while the video
//! worker is down. Screenshots go to `tests/artifacts/` at the workspace root
//! (`docs/dashboard.png` is a copy of `dashboard.png`).

mod common;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Installs playwright-core from the lock file when it is missing.
fn npm_ci() {
    let dir = browser_dir();
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("npm is installed");
    assert!(status.success(), "npm ci failed in {}", dir.display());
}

#[test]
fn dashboard_works_in_headless_chromium() {
    npm_ci();
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.width = 1280;
    setup.height = 720;
    setup.frame_timeout_sec = 1.0;
    let seg = setup.frame_segment();
    let det = Segment::detections(&setup.det_name);
    let mut feed = Some(seg.feed(30));
    let _dets = DetectionsFeed::start(&det);
    let _supervisor = FakeSupervisor::start(&setup.control_socket, "running");
    let server = Server::start(&setup, dir.path());
    server.wait_health(200);

    let mut node = Command::new("node")
        .arg(browser_dir().join("dashboard.mjs"))
        .arg(format!("http://{}", server.addr))
        .arg(setup.width.to_string())
        .arg(setup.height.to_string())
        .arg(&artifacts)
        .current_dir(browser_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is installed");
    let pid = node.id();
    // Kill the browser driver if the whole check takes unreasonably long.
    // The child is reaped only after the watchdog has been joined, so its pid cannot have been
    // reused by then.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            done_rx.recv_timeout(Duration::from_secs(360))
        {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let stderr2 = stderr.clone();
    let mut err_pipe = node.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err_pipe, &mut s);
        *stderr2.lock().unwrap() = s;
    });
    let mut stdin = node.stdin.take().unwrap();
    let mut ok = false;
    for line in BufReader::new(node.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        match line.as_str() {
            "OUTAGE?" => {
                if let Some(f) = feed.take() {
                    f.stop();
                }
                server.wait_health(503);
                writeln!(stdin, "go").unwrap();
            }
            "RESUME?" => {
                feed = Some(seg.feed(30));
                server.wait_health(200);
                writeln!(stdin, "go").unwrap();
            }
            "OK" => ok = true,
            other => println!("node: {other}"),
        }
    }
    let _ = done_tx.send(());
    watchdog.join().unwrap();
    // Its stdout is closed: it is exiting. Give it a while, then make sure.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = node.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = node.kill();
            break node.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        ok && status.success(),
        "browser check failed ({status}): {}\nserver log:\n{}",
        stderr.lock().unwrap(),
        server.log_text()
    );
    assert!(artifacts.join("dashboard.png").exists());
    // Closing the browser closed its stream.
    server.wait_metric("billiards_stream_clients", 0.0);
}
