//! The push API (`GET /api/ws`) against the real stream worker, fed by a real writer of the
//! frame segment and of the detections channel: message rate and schema, subscribe, ping,
//! auth, `stream.max_clients`, the 4 KiB cap on client messages, and a client that never reads
//! (the others are unaffected and the server's memory stays flat). The clients are real
//! WebSocket clients (tokio-tungstenite).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Everything one test needs: segments, feeds, the fake supervisor and the server. Dropped in
/// reverse order of creation, so the server stops before its segments go.
struct Rig {
    server: Server,
    _sup: FakeSupervisor,
    _dets: Option<DetectionsFeed>,
    _feed: billiards_stream_worker::feed::Feed,
    det: Segment,
    _seg: Segment,
    _dir: tempfile::TempDir,
}

fn rig(edit: impl FnOnce(&mut Setup), with_dets_feed: bool) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    edit(&mut setup);
    let seg = setup.frame_segment();
    let det = Segment::detections(&setup.det_name);
    let feed = seg.feed(30);
    let dets = with_dets_feed.then(|| DetectionsFeed::start(&det));
    let sup = FakeSupervisor::start(&setup.control_socket, "running");
    let server = Server::start(&setup, dir.path());
    server.wait_health(200);
    Rig {
        server,
        _sup: sup,
        _dets: dets,
        _feed: feed,
        det,
        _seg: seg,
        _dir: dir,
    }
}

async fn connect(addr: SocketAddr, query: &str) -> Result<Ws, WsError> {
    let url = format!("ws://{addr}/api/ws{query}");
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("handshake within 20 s")
    .map(|(ws, _)| ws)
}

/// The next text message as JSON within `timeout` (pings are answered by the client library).
async fn next_json(ws: &mut Ws, timeout: Duration) -> Option<Value> {
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => return None,
            Ok(None) => panic!("the server closed the socket"),
            Ok(Some(Err(e))) => panic!("websocket error: {e}"),
            Ok(Some(Ok(Message::Text(t)))) => {
                return Some(
                    serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {t}")),
                )
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Every message for `d`.
async fn collect(ws: &mut Ws, d: Duration) -> Vec<Value> {
    let end = Instant::now() + d;
    let mut out = Vec::new();
    while let Some(v) = next_json(ws, end.saturating_duration_since(Instant::now())).await {
        out.push(v);
    }
    out
}

fn of_type<'a>(msgs: &'a [Value], t: &str) -> Vec<&'a Value> {
    msgs.iter().filter(|m| m["type"] == t).collect()
}

fn check_shape(m: &Value) {
    let o = m
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {m}"));
    let keys: BTreeSet<&str> = o.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["type", "data"]), "message {m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detections_and_status_are_pushed_with_the_contract_shape() {
    let rig = rig(|_| {}, true);
    let mut ws = connect(rig.server.addr, "").await.unwrap();
    let msgs = collect(&mut ws, Duration::from_secs(4)).await;
    for m in &msgs {
        check_shape(m);
        assert!(
            ["detections", "status"].contains(&m["type"].as_str().unwrap()),
            "unexpected message {m}"
        );
    }

    // Detections: every result the writer published (every 100 ms) arrives, in order.
    let dets = of_type(&msgs, "detections");
    let numbers: Vec<u64> = dets
        .iter()
        .map(|m| m["data"]["frame_number"].as_u64().unwrap())
        .collect();
    assert!(
        numbers.len() >= 25,
        "only {} detections in 4 s",
        numbers.len()
    );
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "out of order: {numbers:?}"
    );
    let span = numbers.last().unwrap() - numbers.first().unwrap() + 1;
    assert!(
        numbers.len() as u64 * 10 >= span * 9,
        "{} of {span} published results arrived: {numbers:?}",
        numbers.len()
    );
    let d = &dets[0]["data"];
    assert_eq!(d["balls"].as_array().unwrap().len(), 7);
    assert!(d["capture_ts_ns"].as_u64().unwrap() > 0);
    assert_eq!(d["table"]["corners"].as_array().unwrap().len(), 4);

    // Status: the supervisor's status about once a second (the first at once).
    let status = of_type(&msgs, "status");
    assert!(
        (3..=6).contains(&status.len()),
        "{} status messages in 4 s",
        status.len()
    );
    let names: Vec<&str> = status[0]["data"]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["video", "vision", "stream"]);

    // The counters show the client and what it was sent.
    let text = get(rig.server.addr, "/metrics").text();
    assert_eq!(metric(&text, "billiards_ws_clients"), Some(1.0));
    let sent = metric(
        &text,
        "billiards_ws_messages_sent_total{type=\"detections\"}",
    )
    .unwrap();
    assert!(
        sent >= dets.len() as f64,
        "sent {sent}, received {}",
        dets.len()
    );
    assert_eq!(
        metric(&text, "billiards_ws_messages_sent_total{type=\"shot\"}"),
        Some(0.0)
    );
    ws.close(None).await.unwrap();
    rig.server.wait_metric("billiards_ws_clients", 0.0);
    rig.server.wait_metric("billiards_stream_clients", 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_ping_and_bad_messages() {
    let rig = rig(|_| {}, true);
    let mut ws = connect(rig.server.addr, "").await.unwrap();

    ws.send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let m = next_json(&mut ws, end.saturating_duration_since(Instant::now()))
            .await
            .expect("a pong within 10 s");
        if m["type"] == "pong" {
            assert_eq!(m, serde_json::json!({"type": "pong"}));
            break;
        }
    }

    // Only status from now on.
    ws.send(Message::Text(
        r#"{"type":"subscribe","streams":["status"]}"#.into(),
    ))
    .await
    .unwrap();
    // Messages already on their way may still come; after a short while only status does.
    collect(&mut ws, Duration::from_millis(500)).await;
    let msgs = collect(&mut ws, Duration::from_millis(2500)).await;
    assert!(!msgs.is_empty(), "no status after subscribing to status");
    assert!(
        msgs.iter().all(|m| m["type"] == "status"),
        "subscribed to status only, got {:?}",
        msgs.iter().map(|m| m["type"].clone()).collect::<Vec<_>>()
    );

    // Back to detections only: the newest result comes at once, status no more.
    ws.send(Message::Text(
        r#"{"type":"subscribe","streams":["detections"]}"#.into(),
    ))
    .await
    .unwrap();
    collect(&mut ws, Duration::from_millis(500)).await;
    let msgs = collect(&mut ws, Duration::from_millis(2500)).await;
    assert!(of_type(&msgs, "detections").len() >= 15, "{msgs:?}");
    assert!(
        of_type(&msgs, "status").is_empty(),
        "status after unsubscribing"
    );

    // Bad messages get an error message that says what to send; the socket stays open.
    for (bad, says) in [
        (
            r#"{"type":"subscribe","streams":["video"]}"#,
            "unknown stream",
        ),
        ("hello", "not JSON"),
        (r#"{"type":"dance"}"#, "unknown message type"),
    ] {
        ws.send(Message::Text(bad.into())).await.unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        let err = loop {
            let m = next_json(&mut ws, end.saturating_duration_since(Instant::now()))
                .await
                .expect("an error message within 10 s");
            if m["type"] == "error" {
                break m;
            }
        };
        let e = err["data"]["error"].as_str().unwrap();
        assert!(e.contains(says), "error for {bad:?} says {e:?}");
    }

    // A message over 4 KiB closes the socket with 1009 (message too big).
    ws.send(Message::Text("x".repeat(5000).into()))
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let code = loop {
        match tokio::time::timeout(end.saturating_duration_since(Instant::now()), ws.next()).await {
            Err(_) => panic!("no close within 10 s after a 5000-byte message"),
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.code),
            Ok(Some(Ok(_))) => {}
            Ok(None) | Ok(Some(Err(_))) => break None,
        }
    };
    assert_eq!(code, Some(CloseCode::Size));
    rig.server.wait_metric("billiards_ws_clients", 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_needs_the_token_like_every_endpoint() {
    let rig = rig(|s| s.auth_token = "s3cret".into(), true);
    let addr = rig.server.addr;
    match connect(addr, "").await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 401),
        Err(e) => panic!("expected 401, got {e}"),
        Ok(_) => panic!("connected without the token"),
    }
    match connect(addr, "?token=wrong").await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    let mut ws = connect(addr, "?token=s3cret").await.unwrap();
    assert!(next_json(&mut ws, Duration::from_secs(10)).await.is_some());

    let mut req = format!("ws://{addr}/api/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", "Bearer s3cret".parse().unwrap());
    let (mut ws2, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert!(next_json(&mut ws2, Duration::from_secs(10)).await.is_some());

    // A plain GET is told to use a WebSocket client.
    let r = request(addr, "GET", "/api/ws?token=s3cret", &[]);
    assert_eq!(r.status, 426, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("WebSocket"));
    // A handshake without its key is a bad request, and takes no client place.
    let r = request(
        addr,
        "GET",
        "/api/ws?token=s3cret",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
        ],
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("Sec-WebSocket-Key"));
    let m = get(addr, "/metrics?token=s3cret").text();
    assert_eq!(metric(&m, "billiards_stream_clients_total"), Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_count_towards_max_clients() {
    let rig = rig(|s| s.max_clients = 2, true);
    let addr = rig.server.addr;
    let a = connect(addr, "").await.unwrap();
    let mut video = StreamClient::open(addr, "/stream/video?fps=5");
    assert_eq!(video.status, 200);
    match connect(addr, "").await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("a third client was not refused: {:?}", other.map(|_| ())),
    }
    let refused = StreamClient::open(addr, "/stream/video");
    assert_eq!(refused.status, 503);
    rig.server.wait_metric("billiards_stream_clients", 2.0);

    // A freed place is usable again.
    drop(a);
    rig.server.wait_metric("billiards_ws_clients", 0.0);
    let mut b = connect(addr, "").await.unwrap();
    assert!(next_json(&mut b, Duration::from_secs(10)).await.is_some());
    assert!(video.next_part(Duration::from_secs(10)).unwrap().is_some());
}

/// A detections writer publishing `size`-byte results at `hz`, so sockets fill quickly.
fn big_detections(seg: &Segment, hz: u64, size: usize) -> DetectionsFeed {
    let padding = Value::String("p".repeat(size));
    DetectionsFeed::with(seg, Duration::from_micros(1_000_000 / hz), move |_, v| {
        // Unknown keys are ignored by readers; this one only makes the result big.
        v["padding"] = padding.clone();
    })
}

fn rss_bytes(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// Opens a WebSocket by hand and then never reads from it.
fn never_reading_client(addr: SocketAddr) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /api/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    // Read just the 101 head, byte by byte, so nothing after it is consumed.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_costs_nothing_and_is_closed() {
    let rig = rig(|_| {}, false);
    let addr = rig.server.addr;
    // 100 results a second of 60 kB: a socket nobody reads is full within a second or two.
    let big = big_detections(&rig.det, 100, 60_000);
    let stuck = never_reading_client(addr);
    let mut good = connect(addr, "").await.unwrap();
    collect(&mut good, Duration::from_secs(3)).await;
    let rss_before = rss_bytes(rig.server.pid());

    // For 8 s the reading client keeps getting the results while the other one is stuck.
    let msgs = collect(&mut good, Duration::from_secs(8)).await;
    let numbers: Vec<u64> = of_type(&msgs, "detections")
        .iter()
        .map(|m| m["data"]["frame_number"].as_u64().unwrap())
        .collect();
    let span = numbers.last().unwrap() - numbers.first().unwrap() + 1;
    assert!(
        numbers.len() as u64 * 10 >= span * 7,
        "the reading client got {} of {span} results while another was stuck",
        numbers.len()
    );
    let rss_after = rss_bytes(rig.server.pid());
    // A queue for the stuck client would grow by about 6 MB/s here.
    assert!(
        rss_after < rss_before + 24 * 1024 * 1024,
        "server RSS grew from {} to {} MiB",
        rss_before >> 20,
        rss_after >> 20
    );

    // The stuck client is closed (its socket took nothing for 10 s, or it answered no ping).
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let text = get(addr, "/metrics").text();
        if metric(&text, "billiards_ws_clients_closed_dead_total") == Some(1.0) {
            assert_eq!(metric(&text, "billiards_ws_clients"), Some(1.0));
            break;
        }
        assert!(Instant::now() < end, "the stuck client was never closed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stuck);
    drop(big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_the_newest_results_and_its_drops_are_counted() {
    let rig = rig(|_| {}, false);
    let addr = rig.server.addr;
    let _big = big_detections(&rig.det, 100, 30_000);
    let mut slow = connect(addr, "").await.unwrap();
    // Read one message every 100 ms: the server has 10 times more than this client takes.
    let end = Instant::now() + Duration::from_secs(10);
    let mut last = 0;
    while Instant::now() < end {
        if let Some(m) = next_json(&mut slow, Duration::from_secs(5)).await {
            if m["type"] == "detections" {
                let n = m["data"]["frame_number"].as_u64().unwrap();
                assert!(n > last, "results out of order: {n} after {last}");
                last = n;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dropped = metric(
        &get(addr, "/metrics").text(),
        "billiards_ws_messages_dropped_total{type=\"detections\"}",
    )
    .unwrap();
    assert!(dropped > 0.0, "a slow reader dropped nothing");
}

#[test]
fn compatibility_paths_of_the_trainer_web_app() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.auth_token = "s3cret".into();
    setup.frame_timeout_sec = 1.0;
    let seg = setup.frame_segment();
    let feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    server.wait_health(200);

    // /api/v1/health is /healthz (no token needed) with a "healthy" status.
    let r = get(server.addr, "/api/v1/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "healthy");

    // /api/v1/stream/video is /stream/video; every part has its type and length.
    let mut c = StreamClient::open(server.addr, "/api/v1/stream/video?token=s3cret&fps=10");
    assert_eq!(c.status, 200);
    assert_eq!(
        c.header("content-type"),
        Some("multipart/x-mixed-replace; boundary=frame")
    );
    for _ in 0..3 {
        let p = c.next_part(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(p.header("content-type"), Some("image/jpeg"));
        let len: usize = p.header("content-length").unwrap().parse().unwrap();
        assert_eq!(len, p.body.len());
        assert_eq!(jpeg_size(&p.body), (320, 240));
    }
    assert_eq!(
        StreamClient::open(server.addr, "/api/v1/stream/video").status,
        401
    );
    drop(c);

    feed.stop();
    server.wait_health(503);
    let r = get(server.addr, "/api/v1/health");
    assert_eq!(r.status, 503);
    let v = r.json();
    assert_eq!(v["status"], "unhealthy");
    assert!(v["error"].as_str().unwrap().contains("video worker"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_without_a_supervisor_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    server.wait_health(200);
    let mut ws = connect(server.addr, "").await.unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let m = next_json(&mut ws, end.saturating_duration_since(Instant::now()))
            .await
            .expect("a status message within 10 s");
        if m["type"] == "status" {
            break m;
        }
    };
    check_shape(&status);
    let e = status["data"]["error"].as_str().unwrap();
    assert!(e.contains("no supervisor answers"), "{e}");
}
