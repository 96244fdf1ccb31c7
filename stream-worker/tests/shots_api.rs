//! Shots against the real stream worker: a real writer of the detections channel announces two
//! shots the way the vision worker does (each repeated on the records of a second); the server
//! keeps each once in `GET /api/shots` (newest first, `limit`, 400 on a bad limit) and pushes
//! each as a `shot` message to a real WebSocket client.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn shot(id: u64, start: u64) -> Value {
    json!({"id": id, "start_frame": start, "end_frame": start + 45, "start_unix_s": 1.7e9,
           "duration_s": 1.5, "balls_moved": [0, 3, 8], "pocketed": [3],
           "cue_ball_first_hit": 3})
}

/// Publishes a result every 50 ms; records 20-39 carry shot 1, records 60-79 shot 2.
fn shot_feed(seg: &Segment) -> DetectionsFeed {
    DetectionsFeed::with(seg, Duration::from_millis(50), |n, v| match n {
        20..=39 => v["shot"] = shot(1, 2),
        60..=79 => v["shot"] = shot(2, 50),
        _ => {}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shots_are_served_once_newest_first_and_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let seg = setup.frame_segment();
    let det = Segment::detections(&setup.det_name);
    let _feed = seg.feed(30);
    let _sup = FakeSupervisor::start(&setup.control_socket, "running");
    let server = Server::start(&setup, dir.path());
    server.wait_health(200);
    let addr = server.addr;

    // Before any shot: an empty list.
    let r = get(addr, "/api/shots");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"shots": []}));

    let url = format!("ws://{addr}/api/ws");
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("handshake within 20 s")
    .unwrap();
    let shots_feed = shot_feed(&det);

    // Both shots are pushed, each once, as they are announced.
    let mut pushed = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while pushed.len() < 2 {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("only {} shot messages in 60 s", pushed.len()));
        if let Some(Ok(Message::Text(t))) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == "shot" {
                pushed.push(v["data"].clone());
            }
        }
    }
    assert_eq!(pushed[0], shot(1, 2));
    assert_eq!(pushed[1], shot(2, 50));

    // Give the writer time to finish the repeats of shot 2, then ask.
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = get(addr, "/api/detections");
        let n = if r.status == 200 {
            r.json()["frame_number"].as_u64().unwrap_or(0)
        } else {
            0
        };
        if n >= 85 || std::time::Instant::now() > end {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(shots_feed);
    let r = get(addr, "/api/shots");
    assert_eq!(r.status, 200);
    let v = r.json();
    let list = v["shots"].as_array().unwrap();
    assert_eq!(list.len(), 2, "each shot once: {v}");
    assert_eq!(list[0], shot(2, 50), "newest first");
    assert_eq!(list[1], shot(1, 2));

    let r = get(addr, "/api/shots?limit=1");
    assert_eq!(r.json()["shots"].as_array().unwrap().len(), 1);
    assert_eq!(r.json()["shots"][0]["id"], 2);
    for bad in ["0", "1001", "x", "-3"] {
        let r = get(addr, &format!("/api/shots?limit={bad}"));
        assert_eq!(r.status, 400, "limit={bad}: {}", r.text());
        assert!(r.text().contains("limit must be"), "{}", r.text());
    }
    drop(ws);
    drop(server);
}
