//! `GET /stream/h264`: the WebSocket handshake over hyper's upgrade, and one sender task per
//! client.
//!
//! A client first gets the init segment, then fragments from the next keyframe on. It gets a
//! fragment only when the previous one has been written to its socket; if fragments were
//! published meanwhile, it has fallen behind and its decoder would miss a reference frame, so
//! it waits for the next keyframe instead (asking for one, so it waits at most about a
//! second) and gets the init segment again if the stream's parameters changed. Nothing queues per client, and a stalled client holds only its own
//! task: the encoder never waits for anyone.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use super::hub::{Fragment, H264Hub, Subscription};
use crate::metrics::Metrics;
use crate::query::Query;
use crate::routes::Body;
use crate::shutdown::Shutdown;
use crate::stream::ClientGuard;

/// A client that takes nothing for this long is closed. The connection's own write-progress
/// deadline (`stream.client_stall_sec`, default 10 s) normally ends it sooner.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Lowest and highest `bitrate_kbps` (SPEC).
pub const BITRATE_RANGE: std::ops::RangeInclusive<u32> = 200..=20_000;

/// Largest message accepted from a client: it has nothing to send but control frames.
const MAX_CLIENT_MESSAGE: usize = 4096;

/// What the endpoint needs from the server.
#[derive(Debug, Clone)]
pub struct Endpoint<'a> {
    /// The effective configuration.
    pub config: &'a config::Config,
    /// The metrics.
    pub metrics: &'a Arc<Metrics>,
    /// The H.264 encoders.
    pub hub: &'a Arc<H264Hub>,
    /// The server's shutdown.
    pub shutdown: &'a Shutdown,
}

/// Answers `GET /stream/h264`: checks the request, admits the client, answers 101 and starts
/// the client's task once hyper hands over the connection.
pub fn handle(ep: Endpoint<'_>, req: &mut Request<Incoming>, query: &Query) -> Response<Body> {
    if !ep.config.stream.h264 {
        return error(
            StatusCode::NOT_FOUND,
            "the H.264 live view is off (stream.h264 = false); use /stream/video or set stream.h264 = true",
        );
    }
    let bitrate_kbps = match bitrate(query, ep.config.stream.h264_bitrate_kbps) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let key = match websocket_key(req) {
        Ok(k) => k,
        Err(e) => {
            let mut r = error(StatusCode::UPGRADE_REQUIRED, e);
            r.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            return r;
        }
    };
    let max = ep.config.stream.max_clients;
    let Some(guard) = ClientGuard::admit(ep.metrics, max) else {
        ep.metrics.clients_rejected.fetch_add(1, Relaxed);
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many stream clients: {max} are connected (stream.max_clients = {max}); try again later"),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let on_upgrade = hyper::upgrade::on(req);
    let client = Client {
        sub: ep.hub.subscribe(bitrate_kbps),
        metrics: ep.metrics.clone(),
        shutdown: ep.shutdown.clone(),
        _guard: guard,
        _h264: H264ClientGuard::new(ep.metrics),
        _done: ep.hub.done_sender(),
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(MAX_CLIENT_MESSAGE))
                    .max_frame_size(Some(MAX_CLIENT_MESSAGE));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                client.run(ws).await;
            }
            Err(e) => debug!("h264 client: the websocket upgrade failed: {e}"),
        }
    });
    debug!(bitrate_kbps, "h264 client connected");
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
        .body(Full::new(Bytes::new()).boxed_unsync())
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}

/// `?bitrate_kbps=`, or the default.
fn bitrate(query: &Query, default: u32) -> Result<u32, String> {
    let Some(raw) = query.get("bitrate_kbps") else {
        return Ok(default);
    };
    raw.parse::<u32>()
        .ok()
        .filter(|b| BITRATE_RANGE.contains(b))
        .ok_or_else(|| {
            format!(
                "query parameter bitrate_kbps={raw:?} is invalid: must be an integer from {} to {}",
                BITRATE_RANGE.start(),
                BITRATE_RANGE.end()
            )
        })
}

/// The `Sec-WebSocket-Key` of a valid WebSocket upgrade request (RFC 6455 section 4.2.1).
fn websocket_key(req: &Request<Incoming>) -> Result<String, &'static str> {
    const HINT: &str = "/stream/h264 is a WebSocket: connect with `new WebSocket(\"ws://HOST/stream/h264\")` (Upgrade: websocket, Sec-WebSocket-Version: 13)";
    if req.method() != hyper::Method::GET {
        return Err(HINT);
    }
    let h = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err(HINT);
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(HINT);
    }
    match h
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
    {
        Some(k) if !k.trim().is_empty() => Ok(k.trim().to_string()),
        _ => Err(HINT),
    }
}

fn error(code: StatusCode, msg: impl std::fmt::Display) -> Response<Body> {
    let mut body =
        serde_json::to_vec(&serde_json::json!({ "error": msg.to_string() })).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Counts a client in the H.264 gauge until dropped.
#[derive(Debug)]
struct H264ClientGuard(Arc<Metrics>);

impl H264ClientGuard {
    fn new(metrics: &Arc<Metrics>) -> H264ClientGuard {
        metrics.h264.clients.fetch_add(1, Relaxed);
        metrics.h264.clients_total.fetch_add(1, Relaxed);
        H264ClientGuard(metrics.clone())
    }
}

impl Drop for H264ClientGuard {
    fn drop(&mut self) {
        self.0.h264.clients.fetch_sub(1, Relaxed);
    }
}

/// What a client needs next.
#[derive(Debug, Default)]
pub struct Cursor {
    /// The last fragment sent, if the client is in step with the stream.
    last_seq: Option<u64>,
    /// The init segment the client has.
    init: Option<Bytes>,
}

/// What to send for a fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the client was in step and missed a fragment; it needs a keyframe now.
    FellBehind,
    /// Nothing: still waiting for a keyframe.
    Skip,
    /// The fragment, preceded by the init segment when the client does not have it.
    Send {
        /// The init segment to send first.
        init: Option<Bytes>,
    },
}

impl Cursor {
    /// Decides what `f` means for this client and records it as sent if it is to be sent.
    pub fn step(&mut self, f: &Fragment) -> Step {
        let in_step = self.last_seq.is_some_and(|s| f.seq == s + 1);
        if !in_step && !f.keyframe {
            // Joined mid-GOP, or missed a fragment: a decoder needs a keyframe now.
            return match self.last_seq.take() {
                Some(_) => Step::FellBehind,
                None => Step::Skip,
            };
        }
        self.last_seq = Some(f.seq);
        let init = (self.init.as_ref() != Some(&f.init)).then(|| f.init.clone());
        if init.is_some() {
            self.init = Some(f.init.clone());
        }
        Step::Send { init }
    }
}

/// One connected client.
struct Client {
    sub: Subscription,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    _guard: ClientGuard,
    _h264: H264ClientGuard,
    /// Keeps the server's shutdown waiting for this task.
    _done: tokio::sync::mpsc::Sender<()>,
}

/// Why a client's loop ended.
#[derive(Debug)]
enum End {
    Closed,
    Stalled,
    Stopping,
}

impl Client {
    async fn run<S>(mut self, ws: WebSocketStream<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (mut sink, mut incoming) = ws.split();
        let mut cursor = Cursor::default();
        let mut rx = self.sub.rx.clone();
        let h = &self.metrics.h264;
        let end = loop {
            tokio::select! {
                biased;
                _ = self.shutdown.recv() => break End::Stopping,
                msg = incoming.next() => match msg {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break End::Closed,
                    // Pings are answered by tungstenite on the next write; anything else is
                    // ignored.
                    Some(Ok(_)) => continue,
                },
                changed = rx.changed() => if changed.is_err() { break End::Stopping },
            }
            let Some(frag) = rx.borrow_and_update().clone() else {
                continue;
            };
            let init = match cursor.step(&frag) {
                Step::FellBehind => {
                    self.sub.request_keyframe();
                    h.client_skipped.fetch_add(1, Relaxed);
                    continue;
                }
                Step::Skip => {
                    h.client_skipped.fetch_add(1, Relaxed);
                    continue;
                }
                Step::Send { init } => init,
            };
            let mut bytes = frag.data.len();
            let send = async {
                if let Some(init) = init {
                    bytes += init.len();
                    sink.feed(Message::Binary(init)).await?;
                }
                sink.send(Message::Binary(frag.data.clone())).await
            };
            tokio::select! {
                biased;
                _ = self.shutdown.recv() => break End::Stopping,
                r = tokio::time::timeout(STALL_TIMEOUT, send) => match r {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break End::Closed,
                    Err(_) => break End::Stalled,
                },
            }
            h.fragments_sent.fetch_add(1, Relaxed);
            h.bytes_sent.fetch_add(bytes as u64, Relaxed);
            h.send_latency
                .observe_ns(shm_core::monotonic_ns().saturating_sub(frag.publish_ns));
            // Fragments published while this one was being written are skipped by the cursor
            // at the next turn (the sequence will not follow on).
        };
        match end {
            End::Stopping => {
                let close = Message::Close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "server stopping".into(),
                }));
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close)).await;
            }
            End::Stalled => debug!(
                bitrate_kbps = self.sub.bitrate_kbps,
                "closing an h264 client that read nothing for {}s",
                STALL_TIMEOUT.as_secs()
            ),
            End::Closed => {}
        }
        debug!(
            bitrate_kbps = self.sub.bitrate_kbps,
            ?end,
            "h264 client gone"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(seq: u64, keyframe: bool, init: &'static [u8]) -> Fragment {
        Fragment {
            seq,
            keyframe,
            init: Bytes::from_static(init),
            data: Bytes::from_static(b"frag"),
            frame_number: seq,
            publish_ns: 0,
        }
    }

    #[test]
    fn a_client_starts_at_a_keyframe_with_the_init_segment() {
        let mut c = Cursor::default();
        assert_eq!(c.step(&frag(5, false, b"A")), Step::Skip, "joined mid-GOP");
        assert_eq!(
            c.step(&frag(6, true, b"A")),
            Step::Send {
                init: Some(Bytes::from_static(b"A"))
            }
        );
        assert_eq!(c.step(&frag(7, false, b"A")), Step::Send { init: None });
    }

    #[test]
    fn a_client_that_falls_behind_skips_to_the_next_keyframe() {
        let mut c = Cursor::default();
        c.step(&frag(1, true, b"A"));
        assert_eq!(c.step(&frag(3, false, b"A")), Step::FellBehind, "missed 2");
        assert_eq!(
            c.step(&frag(4, false, b"A")),
            Step::Skip,
            "still no keyframe"
        );
        assert_eq!(c.step(&frag(5, true, b"A")), Step::Send { init: None });
        // New parameters: the init segment is sent again.
        assert_eq!(
            c.step(&frag(6, true, b"B")),
            Step::Send {
                init: Some(Bytes::from_static(b"B"))
            }
        );
    }

    #[test]
    fn bitrate_parameter() {
        assert_eq!(bitrate(&Query::parse(None), 2500), Ok(2500));
        assert_eq!(
            bitrate(&Query::parse(Some("bitrate_kbps=200")), 2500),
            Ok(200)
        );
        assert_eq!(
            bitrate(&Query::parse(Some("bitrate_kbps=20000")), 1),
            Ok(20000)
        );
        for bad in ["199", "20001", "x", "-5"] {
            let e = bitrate(&Query::parse(Some(&format!("bitrate_kbps={bad}"))), 2500).unwrap_err();
            assert!(e.contains("must be an integer from 200 to 20000"), "{e}");
        }
    }
}
