//! Process tests of `/stream/video`: multipart framing that real clients parse, pacing,
//! max_clients, disconnect cleanup, slow clients, a video-worker restart with clients
//! connected (same segment: no re-attach), and segments that are replaced (followed). The real
//! server binary reads a real segment fed by a test writer.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn multipart_framing_is_exact_and_frames_decode() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    let mut c = StreamClient::open(server.addr, "/stream/video?quality=70");
    assert_eq!(c.status, 200);
    assert_eq!(
        c.header("content-type"),
        Some("multipart/x-mixed-replace; boundary=frame")
    );
    assert!(c.header("cache-control").unwrap().contains("no-store"));
    let mut last = 0u64;
    for _ in 0..10 {
        // The parser checks delimiter, header syntax, Content-Length and the CRLF after the body.
        let p = c
            .next_part(Duration::from_secs(10))
            .unwrap()
            .expect("a part within 10 s");
        assert_eq!(p.header("content-type"), Some("image/jpeg"));
        assert_eq!(
            p.header("content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            p.body.len()
        );
        assert!(p.body.starts_with(b"\xff\xd8") && p.body.ends_with(b"\xff\xd9"));
        assert_eq!(jpeg_size(&p.body), (320, 240));
        let n: u64 = p.header("x-frame-number").unwrap().parse().unwrap();
        assert!(n > last, "frame numbers increase: {n} after {last}");
        last = n;
        assert!(p.header("x-timestamp").unwrap().contains('.'));
    }
}

#[test]
fn curl_and_opencv_read_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    let url = format!("http://{}/stream/video?fps=10", server.addr);

    // curl: a generic HTTP client; the raw (de-chunked) body must parse as the multipart stream.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "3", "-o", "-", &url])
        .output()
        .expect("curl is installed");
    // curl exits 28 when --max-time ends the endless stream.
    assert_eq!(
        out.status.code(),
        Some(28),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut parser = billiards_stream_worker::multipart::Parser::new("frame");
    parser.push(&out.stdout);
    let mut parts = 0;
    while let Ok(Some(p)) = parser.next_part() {
        assert_eq!(jpeg_size(&p.body), (320, 240));
        parts += 1;
    }
    assert!(parts >= 10, "curl got {parts} parts in 3 s at fps=10");

    // OpenCV's FFmpeg backend, as a camera-style consumer would open the URL.
    use opencv::prelude::*;
    use opencv::videoio;
    let mut cap = videoio::VideoCapture::from_file(&url, videoio::CAP_FFMPEG).unwrap();
    assert!(cap.is_opened().unwrap(), "OpenCV could not open {url}");
    let mut frame = opencv::core::Mat::default();
    for _ in 0..3 {
        assert!(cap.read(&mut frame).unwrap());
        assert_eq!((frame.cols(), frame.rows()), (320, 240));
    }
}

#[test]
fn max_clients_is_enforced_and_freed_on_disconnect() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.max_clients = 2;
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    let mut a = StreamClient::open(server.addr, "/stream/video");
    let mut b = StreamClient::open(server.addr, "/stream/video?overlay=1");
    assert_eq!((a.status, b.status), (200, 200));
    assert!(a.next_part(Duration::from_secs(10)).unwrap().is_some());
    assert!(b.next_part(Duration::from_secs(10)).unwrap().is_some());
    let c = StreamClient::open(server.addr, "/stream/video");
    assert_eq!(c.status, 503);
    let e: serde_json::Value = serde_json::from_slice(&c.error_body).unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("max_clients = 2"),
        "{e}"
    );
    // Other endpoints still answer while the stream slots are full.
    assert_eq!(get(server.addr, "/api/stream").status, 200);
    drop(a);
    server.wait_metric("billiards_stream_clients", 1.0);
    let mut d = StreamClient::open(server.addr, "/stream/video");
    assert_eq!(d.status, 200);
    assert!(d.next_part(Duration::from_secs(10)).unwrap().is_some());
    let m = get(server.addr, "/metrics").text();
    assert_eq!(
        metric(&m, "billiards_stream_clients_rejected_total"),
        Some(1.0)
    );
}

#[test]
fn disconnecting_clients_free_everything_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    server.wait_health(200);
    let tasks_before = metric(
        &get(server.addr, "/metrics").text(),
        "billiards_stream_tasks",
    )
    .unwrap();
    let mut clients: Vec<StreamClient> = [
        "",
        "?quality=40",
        "?overlay=1",
        "?quality=40&overlay=1",
        "?fps=5",
    ]
    .iter()
    .map(|q| StreamClient::open(server.addr, &format!("/stream/video{q}")))
    .collect();
    for c in &mut clients {
        assert!(c.next_part(Duration::from_secs(10)).unwrap().is_some());
    }
    let m = get(server.addr, "/metrics").text();
    assert_eq!(metric(&m, "billiards_stream_clients"), Some(5.0));
    assert_eq!(
        metric(&m, "billiards_stream_variants"),
        Some(4.0),
        "one encoder per (quality, overlay)"
    );
    drop(clients);
    server.wait_metric("billiards_stream_clients", 0.0);
    server.wait_metric("billiards_stream_variants", 0.0);
    server.wait_metric_at_most("billiards_stream_tasks", tasks_before);
    // With no clients nothing is encoded.
    let e0 = metric(
        &get(server.addr, "/metrics").text(),
        "billiards_stream_encodes_total",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let e1 = metric(
        &get(server.addr, "/metrics").text(),
        "billiards_stream_encodes_total",
    )
    .unwrap();
    assert_eq!(e0, e1, "frames were encoded with no client");
}

#[test]
fn each_client_gets_its_own_rate() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    server.wait_health(200);
    let addr = server.addr;
    let counts: Vec<(u32, usize)> = std::thread::scope(|s| {
        let hs: Vec<_> = [5u32, 5, 30, 30]
            .into_iter()
            .map(|fps| {
                s.spawn(move || {
                    let mut c = StreamClient::open(addr, &format!("/stream/video?fps={fps}"));
                    c.next_part(Duration::from_secs(10)).unwrap().unwrap();
                    (fps, c.count_parts(Duration::from_secs(4)))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (fps, n) in counts {
        let rate = n as f64 / 4.0;
        if fps == 5 {
            assert!((4.0..=5.6).contains(&rate), "fps=5 client got {rate} fps");
        } else {
            assert!(rate >= 20.0, "fps=30 client got {rate} fps");
        }
    }
}

#[test]
fn a_stalled_client_does_not_slow_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.width = 640;
    setup.height = 480;
    // This test is about the stalled client's cost while it is connected; its disconnection
    // (stream.client_stall_sec) is tested in hardening.rs.
    setup.client_stall_sec = 300.0;
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    server.wait_health(200);
    // The stalled client asks and then never reads: its socket buffers fill and stay full.
    let mut stalled = std::net::TcpStream::connect(server.addr).unwrap();
    std::io::Write::write_all(
        &mut stalled,
        b"GET /stream/video HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let mut c = StreamClient::open(server.addr, "/stream/video");
    c.next_part(Duration::from_secs(10)).unwrap().unwrap();
    let rss0 = metric(
        &get(server.addr, "/metrics").text(),
        "process_resident_memory_bytes",
    )
    .unwrap();
    let n = c.count_parts(Duration::from_secs(4));
    assert!(
        n as f64 / 4.0 >= 20.0,
        "a reading client got {} fps next to a stalled one",
        n as f64 / 4.0
    );
    let m = get(server.addr, "/metrics").text();
    let rss1 = metric(&m, "process_resident_memory_bytes").unwrap();
    assert!(
        rss1 < rss0 + 20e6,
        "memory grew from {rss0} to {rss1} with a stalled client"
    );
    assert_eq!(metric(&m, "billiards_stream_clients"), Some(2.0));
    assert!(metric(&m, "billiards_stream_client_dropped_frames_total").unwrap() >= 0.0);
    drop(stalled);
    drop(c);
    server.wait_metric("billiards_stream_clients", 0.0);
}

#[test]
fn clients_stay_connected_across_a_video_worker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.frame_timeout_sec = 0.5;
    let seg = setup.frame_segment();
    let feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    let mut c = StreamClient::open(server.addr, "/stream/video?overlay=1");
    let mut last = 0u64;
    for _ in 0..5 {
        let p = c.next_part(Duration::from_secs(10)).unwrap().unwrap();
        last = p.header("x-frame-number").unwrap().parse().unwrap();
    }
    let mut quitter = StreamClient::open(server.addr, "/stream/video");
    quitter.next_part(Duration::from_secs(10)).unwrap().unwrap();
    // The writer goes away (the video worker died); the segment stays.
    feed.stop();
    server.wait_health(503);
    // A client leaving during the outage (its response is idle, waiting for frames) is
    // noticed at once, not when frames return.
    drop(quitter);
    server.wait_metric("billiards_stream_clients", 1.0);
    // After what was in flight: the "no signal" placeholder (frame 0, the configured size)
    // about once a second, and no end of stream.
    let mut placeholders = 0;
    while placeholders < 3 {
        let p = c
            .next_part(Duration::from_secs(10))
            .unwrap()
            .expect("the placeholder arrives during the outage");
        let n: u64 = p.header("x-frame-number").unwrap().parse().unwrap();
        if n == 0 {
            placeholders += 1;
            assert_eq!(
                jpeg_size(&p.body),
                (setup.width as i32, setup.height as i32)
            );
        } else {
            assert_eq!(placeholders, 0, "frame {n} after the placeholder");
            last = n;
        }
    }
    let snap = get(server.addr, "/snapshot.jpg");
    assert_eq!(snap.status, 200);
    assert_eq!(snap.header("x-no-signal"), Some("1"));
    assert_eq!(
        jpeg_size(&snap.body),
        (setup.width as i32, setup.height as i32)
    );
    let m = get(server.addr, "/metrics").text();
    assert_eq!(metric(&m, "billiards_stream_clients"), Some(1.0));
    assert_eq!(metric(&m, "billiards_stream_video_up"), Some(0.0));
    let s = get(server.addr, "/api/stream").json();
    assert_eq!(s["video_up"], false);
    // A new writer opens the same segment (the restarted video worker): the stream resumes.
    // Placeholders may still come first; a generous deadline, not a speed check.
    let deadline = Instant::now() + Duration::from_secs(30);
    let _feed = seg.feed(30);
    let n = loop {
        assert!(
            Instant::now() < deadline,
            "only placeholders for 30 s after the writer came back"
        );
        let p = c
            .next_part(Duration::from_secs(10))
            .unwrap()
            .expect("stream resumed after the writer came back");
        let n: u64 = p.header("x-frame-number").unwrap().parse().unwrap();
        if n != 0 {
            break n;
        }
    };
    assert!(
        n > last,
        "frame {n} after {last}: numbering continues across writers"
    );
    assert!(c.count_parts(Duration::from_secs(3)) >= 15);
    server.wait_health(200);
    // A writer restarting on the same segment never makes the reader move.
    assert!(
        !server.log_text().contains("re-created"),
        "{}",
        server.log_text()
    );
}

/// Waits up to 30 s until both `/healthz` and `/api/detections` answer `code`, polling every
/// 10 ms; returns how long that took.
fn wait_fresh(server: &Server, code: u16) -> Duration {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if get(server.addr, "/healthz").status == code
            && get(server.addr, "/api/detections").status == code
        {
            return t.elapsed();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "/healthz and /api/detections never both answered {code}; log:\n{}",
        server.log_text()
    );
}

#[test]
fn replaced_frame_and_detections_segments_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.frame_timeout_sec = 0.5;
    let seg = setup.frame_segment();
    let det = Segment::detections(&setup.det_name);
    let feed = seg.feed(30);
    let dets = DetectionsFeed::start(&det);
    let server = Server::start(&setup, dir.path());
    wait_fresh(&server, 200);
    // The old writers stop for good: frames and detections go stale.
    feed.stop();
    drop(dets);
    wait_fresh(&server, 503);

    // Standalone workers that restart unlink their segments and create new ones. Fresh
    // frames and detections can only come from those.
    let seg2 = setup.frame_segment();
    let det2 = Segment::detections(&setup.det_name);
    let _feed = seg2.feed(30);
    let _dets = DetectionsFeed::start(&det2);
    let took = wait_fresh(&server, 200);
    println!(
        "fresh frames and detections from the re-created segments {} ms after their writers started",
        took.as_millis()
    );
    let log = server.log_text();
    assert!(
        log.contains("the frame segment was re-created; following the new one")
            && log.contains("the detections segment was re-created; following the new one"),
        "{log}"
    );
}
