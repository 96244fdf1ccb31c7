//! `/stream/h264` against the real server binary: real WebSocket clients (tungstenite over TCP),
//! the received stream decoded by FFmpeg (OpenCV videoio), late joiners, stalled clients.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

/// The server, with extra `[stream]` keys.
fn start(setup: &Setup, dir: &Path, stream_keys: &str) -> Server {
    let mut s = setup.clone();
    s.stream_extra = stream_keys.to_string();
    Server::start(&s, dir)
}

fn connect(addr: SocketAddr, path: &str) -> WebSocket<TcpStream> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (ws, resp) = tungstenite::client::client(format!("ws://{addr}{path}"), tcp)
        .unwrap_or_else(|e| panic!("websocket handshake on {path}: {e}"));
    assert_eq!(resp.status(), 101);
    ws
}

fn next_binary(ws: &mut WebSocket<TcpStream>) -> Vec<u8> {
    loop {
        match ws.read().expect("read a websocket message") {
            Message::Binary(b) => return b.to_vec(),
            Message::Close(c) => panic!("the server closed the stream: {c:?}"),
            _ => {}
        }
    }
}

fn box_type(msg: &[u8]) -> &[u8] {
    &msg[4..8]
}

/// Whether a fragment's sample starts with an IDR slice, read from the mdat itself.
fn is_idr(fragment: &[u8]) -> bool {
    assert_eq!(box_type(fragment), b"moof");
    let moof_len = u32::from_be_bytes(fragment[0..4].try_into().unwrap()) as usize;
    let mdat = &fragment[moof_len..];
    assert_eq!(box_type(mdat), b"mdat");
    // mdat header (8), then the first NAL's 4-byte length, then its header byte.
    mdat[12] & 0x1f == 5
}

#[test]
fn the_websocket_stream_decodes_with_ffmpeg_and_counts_as_a_client() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = start(&setup, dir.path(), "h264_bitrate_kbps = 1500");
    server.wait_health(200);

    // Not a WebSocket, a bad bitrate: clear errors, no upgrade.
    let plain = get(server.addr, "/stream/h264");
    assert_eq!(plain.status, 426);
    assert!(plain.text().contains("WebSocket"), "{}", plain.text());
    let bad = get(server.addr, "/stream/h264?bitrate_kbps=100");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("from 200 to 20000"), "{}", bad.text());

    let mut ws = connect(server.addr, "/stream/h264?bitrate_kbps=800");
    let init = next_binary(&mut ws);
    assert_eq!(
        box_type(&init),
        b"ftyp",
        "the first message is the init segment"
    );
    let path = dir.path().join("received.mp4");
    let mut file = init.clone();
    let n = 40;
    for i in 0..n {
        let frag = next_binary(&mut ws);
        assert_eq!(box_type(&frag), b"moof", "message {i} is a fragment");
        if i == 0 {
            assert!(is_idr(&frag), "the first fragment is a keyframe");
        }
        file.extend_from_slice(&frag);
    }
    let m = get(server.addr, "/metrics").text();
    assert_eq!(metric(&m, "billiards_stream_h264_clients"), Some(1.0));
    assert_eq!(metric(&m, "billiards_stream_clients"), Some(1.0));
    assert_eq!(metric(&m, "billiards_stream_h264_encoders"), Some(1.0));
    std::fs::write(&path, &file).unwrap();

    let mut cap =
        videoio::VideoCapture::from_file(path.to_str().unwrap(), videoio::CAP_FFMPEG).unwrap();
    assert!(cap.is_opened().unwrap());
    let mut img = Mat::default();
    let mut decoded = 0;
    while cap.read(&mut img).unwrap() {
        assert_eq!((img.cols(), img.rows()), (320, 240));
        decoded += 1;
    }
    assert_eq!(decoded, n, "every fragment decodes to one frame");

    drop(ws);
    server.wait_metric("billiards_stream_h264_clients", 0.0);
    server.wait_metric("billiards_stream_clients", 0.0);
    server.wait_metric("billiards_stream_h264_encoders", 0.0);

    // Stopping with a client connected: the client gets a close frame, the server exits 0.
    let mut ws = connect(server.addr, "/stream/h264");
    assert_eq!(box_type(&next_binary(&mut ws)), b"ftyp");
    let mut server = server;
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("the server stops within 10 s with an H.264 client connected");
    assert!(status.success(), "{status:?}");
    let closed = loop {
        match ws.read() {
            Ok(Message::Close(c)) => break c.map(|c| c.code),
            Ok(_) => continue,
            Err(e) => panic!("no close frame before the connection ended: {e}"),
        }
    };
    assert_eq!(
        closed,
        Some(tungstenite::protocol::frame::coding::CloseCode::Away)
    );
}

#[test]
fn a_late_client_starts_at_a_forced_keyframe_and_a_stalled_one_slows_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.width = 640;
    setup.height = 480;
    // The stalled client must still be connected when the metrics are read: keep the
    // connection's write-progress deadline out of the way.
    setup.client_stall_sec = 120.0;
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    // No periodic keyframe during the test: only joins can cause one.
    let server = start(&setup, dir.path(), "h264_keyframe_sec = 60.0");
    server.wait_health(200);
    // A high bitrate fills a stalled client's socket buffers within a second or two.
    let path = "/stream/h264?bitrate_kbps=20000";
    let mut a = connect(server.addr, path);
    assert_eq!(box_type(&next_binary(&mut a)), b"ftyp");
    assert!(is_idr(&next_binary(&mut a)));

    // A stalled client: the handshake, then never a read.
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    std::io::Write::write_all(
        &mut stalled,
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    // More than a second after the first keyframe, so the join may force one.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        assert_eq!(box_type(&next_binary(&mut a)), b"moof");
    }
    let mut late = connect(server.addr, path);
    assert_eq!(box_type(&next_binary(&mut late)), b"ftyp");
    let first = next_binary(&mut late);
    assert!(is_idr(&first), "a late client starts at a keyframe");
    let m = get(server.addr, "/metrics").text();
    assert!(metric(&m, "billiards_stream_h264_forced_keyframes_total").unwrap() >= 1.0);

    // The reading clients keep the source's pace next to the stalled one.
    let t0 = Instant::now();
    let mut got = 0;
    while t0.elapsed() < Duration::from_secs(4) {
        next_binary(&mut a);
        got += 1;
    }
    let fps = f64::from(got) / t0.elapsed().as_secs_f64();
    assert!(
        fps >= 20.0,
        "a reading client got {fps:.1} fps next to a stalled one"
    );
    let m = get(server.addr, "/metrics").text();
    assert_eq!(metric(&m, "billiards_stream_h264_clients"), Some(3.0));
    assert_eq!(metric(&m, "billiards_stream_h264_encoders"), Some(1.0));
    drop((a, late, stalled));
    server.wait_metric("billiards_stream_h264_clients", 0.0);
}

#[test]
fn h264_off_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.auth_token = "sekret".into();
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = start(&setup, dir.path(), "h264 = false");
    assert_eq!(get(server.addr, "/stream/h264").status, 401);
    let off = get(server.addr, "/stream/h264?token=sekret");
    assert_eq!(off.status, 404);
    assert!(off.text().contains("stream.h264 = false"), "{}", off.text());
}

#[test]
fn h264_clients_count_towards_max_clients() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.max_clients = 1;
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    server.wait_health(200);
    let mut ws = connect(server.addr, "/stream/h264");
    assert_eq!(box_type(&next_binary(&mut ws)), b"ftyp");
    let mjpeg = StreamClient::open(server.addr, "/stream/video");
    assert_eq!(mjpeg.status, 503, "the H.264 client holds the only place");
    let tcp = TcpStream::connect(server.addr).unwrap();
    match tungstenite::client::client(format!("ws://{}/stream/h264", server.addr), tcp) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            assert_eq!(resp.status(), 503)
        }
        other => panic!(
            "a second H.264 client was not refused: {:?}",
            other.map(|r| r.1)
        ),
    }
    drop(ws);
    server.wait_metric("billiards_stream_clients", 0.0);
    assert_eq!(
        StreamClient::open(server.addr, "/stream/video").status,
        200,
        "the place is free again"
    );
}
