//! Process tests of the HTTP API: every endpoint and status code of the SPEC, the auth rules,
//! bad query values, the supervisor relay, and start-up failures. The real server binary reads
//! a real segment fed by a test writer.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn every_endpoint_answers_as_the_spec_says() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let seg = setup.frame_segment();
    let det = Segment::detections(&setup.det_name);
    let _feed = seg.feed(30);
    let _dets = DetectionsFeed::start(&det);
    let server = Server::start(&setup, dir.path());
    server.wait_health(200);
    let a = server.addr;

    let r = get(a, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.text().contains("id=\"stream\""));

    let r = get(a, "/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");

    let r = get(a, "/snapshot.jpg");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert_eq!(jpeg_size(&r.body), (320, 240));
    let small = get(a, "/snapshot.jpg?quality=5").body.len();
    let large = get(a, "/snapshot.jpg?quality=100").body.len();
    assert!(
        small < large,
        "quality 5 ({small} B) must be smaller than 100 ({large} B)"
    );
    let r = get(a, "/snapshot.jpg?overlay=1&quality=90");
    assert_eq!(r.status, 200);
    assert_eq!(jpeg_size(&r.body), (320, 240));
    // The SPEC's own template, left blank: the defaults.
    let r = get(a, "/snapshot.jpg?quality=&overlay=");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/jpeg"));

    // The detections writer publishes fresh results every 100 ms.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = get(a, "/api/detections");
        if r.status == 200 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let d = r.json();
    assert_eq!(d["balls"].as_array().unwrap().len(), 7);
    assert_eq!(d["table"]["corners"].as_array().unwrap().len(), 4);

    // No supervisor on the configured socket: a clear 503 that names neither the socket's
    // path nor the OS error; the log has both.
    let r = get(a, "/api/status");
    assert_eq!(r.status, 503);
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        e.contains("no supervisor answers on the control socket"),
        "{e}"
    );
    for secret in ["supervisor.sock", "os error", "No such file", "/"] {
        assert!(!e.contains(secret), "{secret:?} leaked to a client: {e}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains("supervisor.sock") {
        assert!(
            std::time::Instant::now() < deadline,
            "the log lacks the detail; log:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let r = get(a, "/api/stream");
    assert_eq!(r.status, 200);
    let s = r.json();
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(s["video_up"], true);
    // What the dashboard needs to offer H.264.
    assert_eq!(s["h264"], true);
    assert_eq!(s["h264_bitrate_kbps"], 2500);
    assert_eq!(s["h264_clients"], 0);

    let r = get(a, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let m = r.text();
    for series in [
        "billiards_stream_frames_total",
        "billiards_stream_input_fps",
        "billiards_stream_frames_missed_total",
        "billiards_stream_clients",
        "billiards_stream_bytes_sent_total",
        "billiards_stream_send_latency_seconds_count",
        "billiards_stream_encode_seconds_count",
        "billiards_supervisor_up",
    ] {
        assert!(
            metric(&m, series).is_some(),
            "{series} missing from /metrics"
        );
    }
    assert!(metric(&m, "billiards_stream_frames_total").unwrap() > 0.0);
    assert_eq!(metric(&m, "billiards_supervisor_up"), Some(0.0));

    let r = get(a, "/no/such/thing");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("/no/such/thing"));

    let r = request(a, "POST", "/", &[("Content-Length", "0")]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));

    let r = request(a, "HEAD", "/stream/video", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("multipart/x-mixed-replace; boundary=frame")
    );
}

#[test]
fn a_host_name_in_stream_listen_is_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.listen = "localhost:0".into();
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    server.wait_health(200);
}

#[test]
fn bad_query_values_are_400_naming_the_parameter_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    for (path, name, range) in [
        ("/stream/video?quality=0", "quality", "1 to 100"),
        ("/stream/video?quality=101", "quality", "1 to 100"),
        ("/stream/video?quality=high", "quality", "1 to 100"),
        ("/stream/video?fps=0", "fps", "1 to 60"),
        ("/stream/video?fps=61", "fps", "1 to 60"),
        ("/stream/video?overlay=yes", "overlay", "0 or 1"),
        ("/snapshot.jpg?quality=-1", "quality", "1 to 100"),
        ("/snapshot.jpg?overlay=2", "overlay", "0 or 1"),
    ] {
        let r = get(server.addr, path);
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(e.contains(name) && e.contains(range), "{path}: {e}");
    }
    // Nothing was admitted as a client.
    server.wait_metric("billiards_stream_clients", 0.0);
}

#[test]
fn auth_token_guards_every_endpoint_but_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.auth_token = "s3cr3t-T0ken".into();
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    let a = server.addr;
    server.wait_health(200);
    for path in [
        "/",
        "/stream/video",
        "/snapshot.jpg",
        "/api/detections",
        "/api/status",
        "/api/stream",
        "/metrics",
        "/nope",
    ] {
        let r = get(a, path);
        assert_eq!(r.status, 401, "{path} without a token");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"billiards\"")
        );
        assert!(r.json()["error"].as_str().unwrap().contains("Bearer"));
        let r = request(a, "GET", path, &[("Authorization", "Bearer wrong")]);
        assert_eq!(r.status, 401, "{path} with a wrong token");
        let r = get(a, &format!("{path}?token=s3cr3t-T0ke"));
        assert_eq!(r.status, 401, "{path} with a prefix of the token");
    }
    assert_eq!(
        request(a, "GET", "/", &[("Authorization", "Bearer s3cr3t-T0ken")]).status,
        200
    );
    assert_eq!(get(a, "/?token=s3cr3t-T0ken").status, 200);
    assert_eq!(get(a, "/metrics?token=s3cr3t-T0ken").status, 200);
    assert_eq!(
        get(a, "/snapshot.jpg?quality=50&token=s3cr3t-T0ken").status,
        200
    );
    assert_eq!(get(a, "/nope?token=s3cr3t-T0ken").status, 404);
    assert_eq!(get(a, "/healthz").status, 200, "healthz needs no token");
    let mut c = StreamClient::open(a, "/stream/video?token=s3cr3t-T0ken");
    assert_eq!(c.status, 200);
    assert!(c.next_part(Duration::from_secs(10)).unwrap().is_some());
}

#[test]
fn api_status_relays_the_supervisor_and_metrics_show_its_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let fake = FakeSupervisor::start(&setup.control_socket, "running");
    let server = Server::start(&setup, dir.path());
    let r = get(server.addr, "/api/status");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), fake.status);
    let m = get(server.addr, "/metrics").text();
    assert_eq!(metric(&m, "billiards_supervisor_up"), Some(1.0));
    assert_eq!(
        metric(&m, "billiards_worker_restarts_total{worker=\"video\"}"),
        Some(3.0)
    );
    assert_eq!(
        metric(&m, "billiards_worker_restarts_total{worker=\"stream\"}"),
        Some(1.0)
    );
    drop(fake);
    let r = get(server.addr, "/api/status");
    assert_eq!(r.status, 503);
}

#[test]
fn detections_are_503_when_disabled_missing_or_stale() {
    let dir = tempfile::tempdir().unwrap();

    let mut setup = Setup::new(dir.path());
    setup.vision_enabled = false;
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    let r = get(server.addr, "/api/detections");
    assert_eq!(r.status, 503);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("vision.enabled = false"));
    // The overlay still works (frame age only).
    assert_eq!(get(server.addr, "/snapshot.jpg?overlay=1").status, 200);
    drop(server);

    let mut setup = Setup::new(dir.path());
    setup.frame_timeout_sec = 0.5;
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    let r = get(server.addr, "/api/detections");
    assert_eq!(r.status, 503);
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        e.contains(&setup.det_name) && e.contains("vision worker"),
        "{e}"
    );

    // A result that is never refreshed becomes stale after frame_timeout_sec.
    let det = Segment::detections(&setup.det_name);
    let mut w = shm_core::Writer::open(&det.loc, &det.spec).unwrap();
    let now = shm_core::monotonic_ns();
    w.publish(
        detections_json(1, now).as_bytes(),
        shm_core::PublishMeta::bytes(now),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut saw_fresh = false;
    loop {
        let r = get(server.addr, "/api/detections");
        if r.status == 200 {
            saw_fresh = true;
        } else if saw_fresh {
            assert_eq!(r.status, 503);
            let e = r.json()["error"].as_str().unwrap().to_string();
            assert!(e.contains("no fresh detections"), "{e}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "detections never became fresh then stale; log:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn healthz_turns_503_when_frames_stop_and_200_when_they_return() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.frame_timeout_sec = 0.5;
    let seg = setup.frame_segment();
    let feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    server.wait_health(200);
    feed.stop();
    server.wait_health(503);
    let r = get(server.addr, "/healthz");
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("watchdog.frame_timeout_sec"));
    let _feed = seg.feed(30);
    server.wait_health(200);
}

#[test]
fn missing_segment_exits_11_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.attach_timeout_sec = 0.5;
    let (status, stderr) = run_to_exit(&setup, dir.path(), Duration::from_secs(20));
    assert_eq!(status.code(), Some(11), "{stderr}");
    let expected = format!(
        "exit-reason: video worker not available: segment {} not found after 0.5 s; start the tree with `billiards-supervisor start`",
        setup.shm_name
    );
    assert!(stderr.lines().any(|l| l == expected), "{stderr}");
}

#[test]
fn bad_config_and_usage_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[stream]\nmax_clients = 0\n").unwrap();
    let (status, stderr) = run_bin_to_exit(
        &["--config", path.to_str().unwrap()],
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("exit-reason: invalid configuration")
            && stderr.contains("stream.max_clients"),
        "{stderr}"
    );
    let (status, _) = run_bin_to_exit(&["--no-such-flag"], Duration::from_secs(20));
    assert_eq!(status.code(), Some(2));
}

#[test]
fn sigterm_stops_cleanly_and_ends_open_streams() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let mut server = Server::start(&setup, dir.path());
    let mut c = StreamClient::open(server.addr, "/stream/video");
    assert!(c.next_part(Duration::from_secs(10)).unwrap().is_some());
    let pid = server.pid();
    let snap = shm_core::Monitor::open(&seg.loc).unwrap().snapshot();
    assert!(
        snap.readers.iter().any(|r| r.pid == pid && r.alive),
        "{:?}",
        snap.readers
    );
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("did not stop within 10 s");
    assert_eq!(status.code(), Some(0));
    // The stream ends (final chunk or close), it does not hang.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match c.next_part(Duration::from_millis(200)) {
            Err(_) => break,
            Ok(_) => assert!(
                std::time::Instant::now() < deadline,
                "stream still open after the server stopped"
            ),
        }
    }
    // The reader entry was released.
    let snap = shm_core::Monitor::open(&seg.loc).unwrap().snapshot();
    assert!(
        snap.readers.iter().all(|r| r.pid != pid),
        "{:?}",
        snap.readers
    );
}
