//! The push API (SPEC "Push API (WebSocket)"): `GET /api/ws` upgrades to a WebSocket over
//! which the server sends `{"type": T, "data": ...}` text messages.
//!
//! - `detections`: every new vision result, forwarded the moment the detections thread reads
//!   it from the channel (no timer).
//! - `status`: the supervisor's status JSON, every second and at once when a worker changes
//!   state. One task polls the control socket for every client together.
//! - `shot`: a finished shot (as in `/api/shots`), forwarded by [`forward_shots`] the
//!   moment the detections announce it.
//!
//! Each type has one newest-value slot (a `watch` channel) shared by every client. A message
//! is serialised once and its bytes are shared by all clients. A client that reads slowly
//! simply finds a newer value in the slot when it is ready again: nothing queues for it, and
//! the values it never saw are counted as dropped. A client waits for its own socket only,
//! so it never delays another.
//!
//! Keep-alive: the server pings every [`PING_INTERVAL`] and closes a peer that sent nothing
//! (not even a pong) for [`DEAD_PEER_TIMEOUT`], or whose socket did not take a message within
//! [`SEND_TIMEOUT`]. Client messages are capped at [`MAX_CLIENT_MESSAGE`] bytes. A WebSocket
//! client counts towards `stream.max_clients` like a video stream client.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info};

use crate::control;
use crate::detections::DetectionsHub;
use crate::shutdown::Shutdown;
use crate::stream::ClientGuard;

/// Largest message a client may send (text or binary, after reassembly).
pub const MAX_CLIENT_MESSAGE: usize = 4096;
/// How often the server pings each client.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A client that sent nothing (not even a pong) for this long is closed.
pub const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(15);
/// A client whose socket does not take a message within this long is closed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the supervisor's status is polled while WebSocket clients are connected; a state
/// change goes out at the next poll, an unchanged status once per [`STATUS_EVERY`].
const STATUS_POLL: Duration = Duration::from_millis(250);
/// How often `status` is sent when nothing changes.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// How long one status poll may take.
const STATUS_TIMEOUT: Duration = Duration::from_millis(900);

/// The message types the server pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Every new vision result.
    Detections,
    /// The supervisor's status.
    Status,
    /// A finished shot.
    Shot,
}

impl Kind {
    /// Every pushed type, in slot order.
    pub const ALL: [Kind; 3] = [Kind::Detections, Kind::Status, Kind::Shot];

    /// The `type` of its messages (and its name in `subscribe`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Detections => "detections",
            Kind::Status => "status",
            Kind::Shot => "shot",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The type called `name`, if any.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One pushed message, serialised once and shared by every client.
#[derive(Debug)]
pub struct Pushed {
    /// Position in its type's sequence (from 1), to count what a slow client skipped.
    pub seq: u64,
    /// The whole message, `{"type": T, "data": ...}`.
    pub text: Utf8Bytes,
}

/// The slots and counters of the push API, shared by the publishers and every client.
#[derive(Debug)]
pub struct PushHub {
    slots: [watch::Sender<Option<Arc<Pushed>>>; 3],
    seq: [AtomicU64; 3],
    /// The push API's figures for `/metrics`.
    pub metrics: PushMetrics,
}

impl Default for PushHub {
    fn default() -> Self {
        PushHub {
            slots: std::array::from_fn(|_| watch::Sender::new(None)),
            seq: std::array::from_fn(|_| AtomicU64::new(0)),
            metrics: PushMetrics::default(),
        }
    }
}

impl PushHub {
    /// Publishes `data` (one JSON value, already serialised) as the newest `kind` message.
    /// `data` must be valid JSON: it is embedded as is.
    pub fn publish_raw(&self, kind: Kind, data: &[u8]) {
        let data = data.trim_ascii();
        let name = kind.name();
        let mut text = Vec::with_capacity(data.len() + name.len() + 20);
        text.extend_from_slice(b"{\"type\":\"");
        text.extend_from_slice(name.as_bytes());
        text.extend_from_slice(b"\",\"data\":");
        text.extend_from_slice(data);
        text.push(b'}');
        self.publish_text(kind, text);
    }

    /// Publishes `data` as the newest `kind` message.
    pub fn publish(&self, kind: Kind, data: &Value) {
        self.publish_text(
            kind,
            serde_json::to_vec(&serde_json::json!({"type": kind.name(), "data": data}))
                .unwrap_or_default(),
        );
    }

    fn publish_text(&self, kind: Kind, text: Vec<u8>) {
        let Ok(text) = Utf8Bytes::try_from(Bytes::from(text)) else {
            // Only reachable with non-UTF-8 input to publish_raw, which the callers rule out.
            return;
        };
        let seq = self.seq[kind.index()].fetch_add(1, Relaxed) + 1;
        self.slots[kind.index()].send_replace(Some(Arc::new(Pushed { seq, text })));
    }

    /// The slot of `kind`; the current value counts as not yet seen.
    pub fn subscribe(&self, kind: Kind) -> watch::Receiver<Option<Arc<Pushed>>> {
        let mut rx = self.slots[kind.index()].subscribe();
        rx.mark_changed();
        rx
    }
}

/// Counters of the push API. They render themselves, so they can move into the metrics
/// table as a block.
#[derive(Debug, Default)]
pub struct PushMetrics {
    /// WebSocket clients connected now.
    pub clients: AtomicI64,
    /// WebSocket clients accepted since start.
    pub clients_total: AtomicU64,
    /// Messages handed to clients' sockets, by type.
    pub sent: [AtomicU64; 3],
    /// Messages clients never got because a newer one replaced them first, by type.
    pub dropped: [AtomicU64; 3],
    /// Clients closed by the server because they stopped reading or answering.
    pub closed_dead: AtomicU64,
}

impl PushMetrics {
    /// Appends the push API's series to a Prometheus text exposition.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP billiards_ws_clients WebSocket push clients (GET /api/ws) connected now.\n# TYPE billiards_ws_clients gauge\nbilliards_ws_clients {}", self.clients.load(Relaxed));
        let _ = writeln!(out, "# HELP billiards_ws_clients_total WebSocket push clients accepted since start.\n# TYPE billiards_ws_clients_total counter\nbilliards_ws_clients_total {}", self.clients_total.load(Relaxed));
        let _ = writeln!(out, "# HELP billiards_ws_messages_sent_total Push messages handed to WebSocket clients' sockets, by type.\n# TYPE billiards_ws_messages_sent_total counter");
        for k in Kind::ALL {
            let _ = writeln!(
                out,
                "billiards_ws_messages_sent_total{{type=\"{}\"}} {}",
                k.name(),
                self.sent[k.index()].load(Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP billiards_ws_messages_dropped_total Push messages a WebSocket client never got because a newer one of the same type replaced them while it was busy, by type.\n# TYPE billiards_ws_messages_dropped_total counter");
        for k in Kind::ALL {
            let _ = writeln!(
                out,
                "billiards_ws_messages_dropped_total{{type=\"{}\"}} {}",
                k.name(),
                self.dropped[k.index()].load(Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP billiards_ws_clients_closed_dead_total WebSocket clients closed because they stopped reading or answering pings.\n# TYPE billiards_ws_clients_closed_dead_total counter\nbilliards_ws_clients_closed_dead_total {}", self.closed_dead.load(Relaxed));
    }
}

/// Forwards every new detections result to the `detections` slot until `shutdown`.
pub async fn forward_detections(
    hub: Arc<PushHub>,
    dets: Arc<DetectionsHub>,
    mut shutdown: Shutdown,
) {
    let mut rx = dets.subscribe();
    loop {
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = shutdown.recv() => return,
        }
        let latest = rx.borrow_and_update().clone();
        if let Some(latest) = latest {
            hub.publish_raw(Kind::Detections, &latest.json);
        }
    }
}

/// Forwards every new shot the detections announce to the `shot` slot until `shutdown`.
pub async fn forward_shots(hub: Arc<PushHub>, dets: Arc<DetectionsHub>, mut shutdown: Shutdown) {
    let mut rx = dets.shots.subscribe();
    loop {
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = shutdown.recv() => return,
        }
        let shot = rx.borrow_and_update().clone();
        if let Some(shot) = shot {
            match serde_json::to_value(&*shot) {
                Ok(v) => hub.publish(Kind::Shot, &v),
                Err(e) => tracing::warn!(worker = "stream", "push shot: cannot serialize: {e}"),
            }
        }
    }
}

/// Publishes the supervisor's status while WebSocket clients are connected: every
/// [`STATUS_EVERY`], and at the next poll when any worker's state changed. When the supervisor
/// does not answer, `data` is `{"error": "..."}` (as the body of `/api/status` would be).
pub async fn poll_status(hub: Arc<PushHub>, socket: std::path::PathBuf, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(STATUS_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_states: Option<Vec<(String, String)>> = None;
    let mut last_sent: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.recv() => return,
        }
        if hub.metrics.clients.load(Relaxed) <= 0 {
            // Nobody listens: forget, so the next client gets a status at once.
            last_sent = None;
            continue;
        }
        let result = tokio::select! {
            r = control::status(&socket, STATUS_TIMEOUT) => r,
            _ = shutdown.recv() => return,
        };
        // Relayed through `Value` like /api/status; a client is told what failed, never the
        // socket's path or an OS error (those go to the log).
        let result = match result {
            Ok(status) => serde_json::to_value(&status).map_err(|e| {
                tracing::warn!(
                    worker = "stream",
                    "push status: cannot serialize the status: {e}"
                );
                "internal error"
            }),
            Err(e) => {
                tracing::debug!(worker = "stream", "push status: {e}");
                Err(crate::routes::status_error(&e).1)
            }
        };
        let states = result.as_ref().ok().map(worker_states);
        if !status_due(last_sent.map(|t| t.elapsed()), &last_states, &states) {
            continue;
        }
        match &result {
            Ok(status) => hub.publish(Kind::Status, status),
            Err(e) => hub.publish(Kind::Status, &serde_json::json!({ "error": e })),
        }
        last_states = states;
        last_sent = Some(Instant::now());
    }
}

/// Whether a status goes out now: none was sent yet, a second has passed since the last one,
/// or some worker's state differs from the last one sent (a worker appeared, went, or changed
/// state; the supervisor going away or coming back counts too).
fn status_due(
    since_last: Option<Duration>,
    last: &Option<Vec<(String, String)>>,
    now: &Option<Vec<(String, String)>>,
) -> bool {
    since_last.is_none_or(|d| d >= STATUS_EVERY) || last != now
}

/// Each worker's name and state, to notice a state change.
fn worker_states(status: &Value) -> Vec<(String, String)> {
    status
        .get("workers")
        .and_then(Value::as_array)
        .map(|ws| {
            ws.iter()
                .map(|w| {
                    let s = |k: &str| w.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (s("name"), s("state"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `Sec-WebSocket-Accept` answer to the handshake of `req`, or the status to answer
/// (426 for a plain request, 400 for a bad handshake) and what is wrong, in words for the client.
pub fn handshake(req: &Request<Incoming>) -> Result<HeaderValue, (StatusCode, String)> {
    handshake_key(req).map_err(|e| {
        let code = if req.headers().contains_key(header::UPGRADE) {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UPGRADE_REQUIRED
        };
        (code, e)
    })
}

fn handshake_key(req: &Request<Incoming>) -> Result<HeaderValue, String> {
    let h = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err(
            "/api/ws is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket)"
                .into(),
        );
    }
    if h.get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err("unsupported WebSocket version: send Sec-WebSocket-Version: 13".into());
    }
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("the WebSocket handshake lacks Sec-WebSocket-Key")?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| "invalid Sec-WebSocket-Key".to_string())
}

/// What the route needs to accept a push client.
#[derive(Debug)]
pub struct Accept {
    /// The slots.
    pub hub: Arc<PushHub>,
    /// The server's shutdown.
    pub shutdown: Shutdown,
    /// The client's place in `stream.max_clients`.
    pub guard: ClientGuard,
    /// Keeps the connection counted while the socket lives on past hyper.
    pub lease: Option<crate::server::ConnectionLease>,
}

/// Answers 101 to the handshake of `req` (checked by [`handshake`], which gave `accept_key`)
/// and serves the client on its own task once hyper hands the connection over.
pub fn upgrade(
    req: &mut Request<Incoming>,
    accept_key: HeaderValue,
    accept: Accept,
) -> Result<Response<()>, (StatusCode, String)> {
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Accept {
            hub,
            shutdown,
            guard,
            lease,
        } = accept;
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .read_buffer_size(8 * 1024)
                    .write_buffer_size(0)
                    .max_write_buffer_size(1 << 20)
                    .max_message_size(Some(MAX_CLIENT_MESSAGE))
                    .max_frame_size(Some(MAX_CLIENT_MESSAGE));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                Client::new(hub, shutdown).serve(ws).await;
            }
            Err(e) => debug!("websocket upgrade failed: {e}"),
        }
        drop(guard);
        drop(lease);
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept_key)
        .body(())
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Why a client's connection ended.
#[derive(Debug)]
enum End {
    /// The client closed or the connection broke.
    Gone,
    /// The server stops.
    Shutdown,
    /// No frame from the client for [`DEAD_PEER_TIMEOUT`].
    Dead,
    /// A message did not leave within [`SEND_TIMEOUT`].
    Stalled,
    /// A client message over [`MAX_CLIENT_MESSAGE`].
    TooBig,
}

/// One connected push client.
struct Client {
    hub: Arc<PushHub>,
    shutdown: Shutdown,
    slots: [watch::Receiver<Option<Arc<Pushed>>>; 3],
    subscribed: [bool; 3],
    /// Sequence number of the last message of each type sent (0: none since subscribing).
    last_seq: [u64; 3],
}

/// A slot change, or `None` while not subscribed (never ready).
async fn slot_changed(rx: &mut watch::Receiver<Option<Arc<Pushed>>>, on: bool) -> bool {
    if !on {
        return std::future::pending().await;
    }
    rx.changed().await.is_ok()
}

impl Client {
    fn new(hub: Arc<PushHub>, shutdown: Shutdown) -> Client {
        let slots = Kind::ALL.map(|k| hub.subscribe(k));
        Client {
            hub,
            shutdown,
            slots,
            subscribed: [true; 3],
            last_seq: [0; 3],
        }
    }

    async fn serve<S>(mut self, mut ws: WebSocketStream<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let m = &self.hub.metrics;
        m.clients.fetch_add(1, Relaxed);
        m.clients_total.fetch_add(1, Relaxed);
        debug!("websocket client connected");
        let end = self.run(&mut ws).await;
        let m = &self.hub.metrics;
        m.clients.fetch_sub(1, Relaxed);
        let close = match end {
            End::Gone => None,
            End::Shutdown => Some((CloseCode::Away, "server stopping")),
            End::Dead => Some((CloseCode::Policy, "no answer to pings")),
            End::Stalled => None,
            End::TooBig => Some((CloseCode::Size, "message too big: the limit is 4096 bytes")),
        };
        if matches!(end, End::Dead | End::Stalled) {
            m.closed_dead.fetch_add(1, Relaxed);
            info!("closing a websocket client: {end:?}");
        } else {
            debug!("websocket client ended: {end:?}");
        }
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(Some(frame))).await;
        }
    }

    async fn run<S>(&mut self, ws: &mut WebSocketStream<S>) -> End
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        loop {
            let [d, s, h] = &mut self.slots;
            let [on_d, on_s, on_h] = self.subscribed;
            let out: Option<Message> = tokio::select! {
                biased;
                _ = self.shutdown.recv() => return End::Shutdown,
                incoming = ws.next() => {
                    last_heard = Instant::now();
                    match incoming {
                        None => return End::Gone,
                        Some(Err(WsError::Capacity(_))) => return End::TooBig,
                        Some(Err(e)) => {
                            debug!("websocket read failed: {e}");
                            return End::Gone;
                        }
                        Some(Ok(msg)) => self.on_message(msg),
                    }
                }
                ok = slot_changed(d, on_d) => if ok { self.take(Kind::Detections) } else { return End::Shutdown },
                ok = slot_changed(s, on_s) => if ok { self.take(Kind::Status) } else { return End::Shutdown },
                ok = slot_changed(h, on_h) => if ok { self.take(Kind::Shot) } else { return End::Shutdown },
                _ = ping.tick() => {
                    if last_heard.elapsed() >= DEAD_PEER_TIMEOUT {
                        return End::Dead;
                    }
                    Some(Message::Ping(Bytes::new()))
                }
            };
            if let Some(msg) = out {
                match tokio::time::timeout(SEND_TIMEOUT, ws.send(msg)).await {
                    Ok(Ok(())) => {}
                    // The connection's write-progress deadline (`stream.client_stall_sec`)
                    // may end a stalled client before SEND_TIMEOUT does: a stall all the same.
                    Ok(Err(WsError::Io(e))) if e.kind() == std::io::ErrorKind::TimedOut => {
                        return End::Stalled;
                    }
                    Ok(Err(e)) => {
                        debug!("websocket send failed: {e}");
                        return End::Gone;
                    }
                    Err(_) => return End::Stalled,
                }
            }
        }
    }

    /// The newest message of `kind`, counting what this client skipped.
    fn take(&mut self, kind: Kind) -> Option<Message> {
        let i = kind.index();
        let pushed = self.slots[i].borrow_and_update().clone()?;
        let m = &self.hub.metrics;
        let last = self.last_seq[i];
        if last != 0 && pushed.seq > last + 1 {
            m.dropped[i].fetch_add(pushed.seq - last - 1, Relaxed);
        }
        if pushed.seq <= last {
            return None;
        }
        self.last_seq[i] = pushed.seq;
        m.sent[i].fetch_add(1, Relaxed);
        Some(Message::Text(pushed.text.clone()))
    }

    /// Answers one client message (if it needs an answer).
    fn on_message(&mut self, msg: Message) -> Option<Message> {
        match msg {
            Message::Text(text) => match self.command(text.as_str()) {
                Ok(answer) => answer,
                Err(e) => Some(error_message(&e)),
            },
            Message::Binary(_) => Some(error_message(
                "binary messages are not understood; send JSON text such as {\"type\": \"ping\"}",
            )),
            // Pings are answered by the WebSocket layer; pongs and closes need nothing here.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => None,
        }
    }

    fn command(&mut self, text: &str) -> Result<Option<Message>, String> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| format!("message is not JSON ({e}); send {{\"type\": \"ping\"}} or {{\"type\": \"subscribe\", \"streams\": [...]}}"))?;
        match v.get("type").and_then(Value::as_str) {
            Some("ping") => Ok(Some(Message::Text(Utf8Bytes::from_static(
                "{\"type\":\"pong\"}",
            )))),
            Some("subscribe") => {
                let streams = parse_streams(v.get("streams"))?;
                for k in Kind::ALL {
                    let i = k.index();
                    let on = streams.contains(&k);
                    if on && !self.subscribed[i] {
                        // Newly subscribed: the newest value goes out at once.
                        self.last_seq[i] = 0;
                        self.slots[i].mark_changed();
                    }
                    self.subscribed[i] = on;
                }
                Ok(None)
            }
            Some(other) => Err(format!(
                "unknown message type {other:?}; send \"subscribe\" or \"ping\""
            )),
            None => Err("message has no \"type\"; send {\"type\": \"ping\"} or {\"type\": \"subscribe\", \"streams\": [...]}".into()),
        }
    }
}

/// The `streams` of a subscribe message (absent: all).
fn parse_streams(v: Option<&Value>) -> Result<Vec<Kind>, String> {
    let Some(v) = v else {
        return Ok(Kind::ALL.to_vec());
    };
    let names = v
        .as_array()
        .ok_or("\"streams\" must be a list such as [\"detections\", \"status\", \"shot\"]")?;
    names
        .iter()
        .map(|n| {
            n.as_str().and_then(Kind::from_name).ok_or_else(|| {
                format!("unknown stream {n}; streams are \"detections\", \"status\" and \"shot\"")
            })
        })
        .collect()
}

fn error_message(e: &str) -> Message {
    let text = serde_json::json!({"type": "error", "data": {"error": e}}).to_string();
    Message::Text(text.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(rx: &mut watch::Receiver<Option<Arc<Pushed>>>) -> Option<String> {
        rx.borrow_and_update()
            .as_ref()
            .map(|p| p.text.as_str().to_string())
    }

    #[test]
    fn messages_embed_the_data_as_is_under_type_and_data() {
        let hub = PushHub::default();
        let mut rx = hub.subscribe(Kind::Detections);
        hub.publish_raw(Kind::Detections, b" {\"frame_number\": 7, \"balls\": []}\n");
        let t = text(&mut rx).unwrap();
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["type"], "detections");
        assert_eq!(v["data"]["frame_number"], 7);
        hub.publish(Kind::Status, &serde_json::json!({"workers": []}));
        let mut st = hub.subscribe(Kind::Status);
        assert!(
            st.has_changed().unwrap(),
            "a new subscriber sees the current value"
        );
        let v: Value = serde_json::from_str(&text(&mut st).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "status", "data": {"workers": []}})
        );
    }

    #[test]
    fn a_slow_client_gets_the_newest_and_counts_the_skipped() {
        let hub = Arc::new(PushHub::default());
        let (_tx, rx) = watch::channel(false);
        let mut c = Client::new(hub.clone(), Shutdown::new(rx));
        hub.publish_raw(Kind::Detections, b"1");
        assert!(c.take(Kind::Detections).is_some());
        for i in 2..=5 {
            hub.publish_raw(Kind::Detections, i.to_string().as_bytes());
        }
        let Some(Message::Text(t)) = c.take(Kind::Detections) else {
            panic!("no message")
        };
        assert_eq!(t.as_str(), "{\"type\":\"detections\",\"data\":5}");
        assert_eq!(hub.metrics.dropped[0].load(Relaxed), 3);
        assert_eq!(hub.metrics.sent[0].load(Relaxed), 2);
        assert!(
            c.take(Kind::Detections).is_none(),
            "nothing new, nothing sent"
        );
    }

    #[test]
    fn commands_are_checked_and_answered() {
        let hub = Arc::new(PushHub::default());
        let (_tx, rx) = watch::channel(false);
        let mut c = Client::new(hub, Shutdown::new(rx));
        let answer = |c: &mut Client, t: &str| match c.on_message(Message::Text(t.into())) {
            Some(Message::Text(a)) => Some(serde_json::from_str::<Value>(a.as_str()).unwrap()),
            _ => None,
        };
        assert_eq!(
            answer(&mut c, r#"{"type":"ping"}"#).unwrap()["type"],
            "pong"
        );
        assert!(answer(&mut c, r#"{"type":"subscribe","streams":["status"]}"#).is_none());
        assert_eq!(c.subscribed, [false, true, false]);
        assert!(answer(&mut c, r#"{"type":"subscribe"}"#).is_none());
        assert_eq!(c.subscribed, [true, true, true]);
        let e = answer(&mut c, r#"{"type":"subscribe","streams":["video"]}"#).unwrap();
        assert_eq!(e["type"], "error");
        assert!(e["data"]["error"]
            .as_str()
            .unwrap()
            .contains("unknown stream \"video\""));
        assert_eq!(
            c.subscribed,
            [true, true, true],
            "a bad subscribe changes nothing"
        );
        let e = answer(&mut c, "not json").unwrap();
        assert!(e["data"]["error"].as_str().unwrap().contains("not JSON"));
        let e = answer(&mut c, r#"{"type":"dance"}"#).unwrap();
        assert!(e["data"]["error"]
            .as_str()
            .unwrap()
            .contains("unknown message type"));
    }

    #[test]
    fn status_goes_out_every_second_and_at_once_on_a_state_change() {
        let states = |v: &str| Some(vec![("video".to_string(), v.to_string())]);
        let ms = Duration::from_millis;
        assert!(status_due(None, &None, &states("running")), "first one");
        assert!(!status_due(
            Some(ms(250)),
            &states("running"),
            &states("running")
        ));
        assert!(status_due(
            Some(ms(1000)),
            &states("running"),
            &states("running")
        ));
        assert!(status_due(
            Some(ms(250)),
            &states("running"),
            &states("backoff")
        ));
        assert!(
            status_due(Some(ms(250)), &states("running"), &None),
            "supervisor gone"
        );
        assert!(
            status_due(Some(ms(250)), &None, &states("running")),
            "supervisor back"
        );
        assert!(!status_due(Some(ms(250)), &None, &None));
    }

    #[test]
    fn worker_states_list_name_and_state() {
        let s = serde_json::json!({"workers": [{"name": "video", "state": "running"}, {"name": "vision", "state": "failed"}]});
        assert_eq!(
            worker_states(&s),
            vec![
                ("video".to_string(), "running".to_string()),
                ("vision".to_string(), "failed".to_string())
            ]
        );
    }

    #[test]
    fn metrics_render_every_type() {
        let hub = PushHub::default();
        hub.metrics.sent[1].store(4, Relaxed);
        let mut out = String::new();
        hub.metrics.render(&mut out);
        assert!(out.contains("billiards_ws_messages_sent_total{type=\"status\"} 4\n"));
        assert!(out.contains("billiards_ws_messages_dropped_total{type=\"shot\"} 0\n"));
        assert!(out.contains("billiards_ws_clients 0\n"));
    }
}
