//! The endpoints (SPEC "HTTP"): routing, auth, parameter checks and the answers.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::auth;
use crate::control::{self, ControlError};
use crate::dashboard;
use crate::detections::DetectionsHub;
use crate::h264::{self, H264Hub, H264Settings};
use crate::host::HostPolicy;
use crate::hub::{Hub, SnapshotError, VariantKey};
use crate::metrics::{self, Extra, Metrics, ProcessStats};
use crate::multipart;
use crate::push::{self, PushHub};
use crate::query::{Defaults, Query};
use crate::shots;
use crate::shutdown::Shutdown;
use crate::stream::{ClientGuard, ClientStream};

/// Body of every response.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How long `/api/status` waits for the supervisor.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `/metrics` waits for the supervisor (scrapes must stay fast).
const METRICS_STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// The endpoints, for 404 messages.
const ENDPOINTS: &str = "/, /stream/video, /stream/h264, /snapshot.jpg, /api/detections, /api/shots, /api/status, /api/stream, /api/ws, /metrics, /healthz, /api/v1/stream/video, /api/v1/health";

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The effective configuration.
    pub config: Arc<config::Config>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Encoders and variants.
    pub hub: Arc<Hub>,
    /// Latest detections.
    pub detections: Arc<DetectionsHub>,
    /// The push API's slots (`/api/ws`).
    pub push: Arc<PushHub>,
    /// The server's shutdown, for stream bodies.
    pub shutdown: Shutdown,
    /// The H.264 encoders (`/stream/h264`).
    pub h264: Arc<H264Hub>,
    defaults: Defaults,
    token: auth::Token,
    hosts: HostPolicy,
    control_socket: PathBuf,
    frame_timeout_ns: u64,
}

impl AppState {
    /// The state of one server.
    pub fn new(
        config: Arc<config::Config>,
        metrics: Arc<Metrics>,
        hub: Arc<Hub>,
        detections: Arc<DetectionsHub>,
        push: Arc<PushHub>,
        shutdown: Shutdown,
    ) -> AppState {
        let h264 = H264Hub::new(
            hub.frames(),
            H264Settings {
                keyframe_sec: config.stream.h264_keyframe_sec,
                fps: config.video.fps,
            },
            metrics.clone(),
            hub.pool(),
            hub.done_sender(),
        );
        AppState {
            h264,
            defaults: Defaults {
                // Validated by the config crate to 1..=100.
                quality: config.stream.jpeg_quality.clamp(1, 100) as u8,
                max_fps: config.stream.max_fps.max(1),
            },
            token: auth::Token::new(&config.stream.auth_token),
            hosts: HostPolicy::new(&config.stream.listen, &config.stream.allowed_hosts),
            control_socket: config.control_socket_path(),
            frame_timeout_ns: (config.watchdog.frame_timeout_sec * 1e9) as u64,
            config,
            metrics,
            hub,
            detections,
            push,
            shutdown,
        }
    }
}

/// Answers one request.
pub async fn handle(
    state: Arc<AppState>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let resp = route(&state, &mut req).await;
    state.metrics.count_response(resp.status().as_u16());
    Ok(resp)
}

async fn route(state: &Arc<AppState>, req: &mut Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let path = path.as_str();
    let query = Query::parse(req.uri().query());
    let head = req.method() == Method::HEAD;
    // First: a rebound name must learn nothing, not even which methods or paths exist.
    if let Err(e) = state.hosts.check(req) {
        return error(StatusCode::FORBIDDEN, e);
    }
    if req.method() != Method::GET && !head {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} is not allowed; use GET or HEAD", req.method()),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // The health check of the billiards-trainer web app is /healthz under another name.
    if path != "/healthz"
        && path != "/api/v1/health"
        && !auth::authorized(&state.token, req.headers(), &query)
    {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "authentication required: send `Authorization: Bearer TOKEN` or add `?token=TOKEN` (stream.auth_token)",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"billiards\""),
        );
        return r;
    }
    match path {
        "/" | "/index.html" => html(dashboard::page()),
        // The billiards-trainer web app's name for the same stream.
        "/stream/video" | "/api/v1/stream/video" => stream_video(state, &query, head),
        "/stream/h264" => h264::ws::handle(
            h264::ws::Endpoint {
                config: &state.config,
                metrics: &state.metrics,
                hub: &state.h264,
                shutdown: &state.shutdown,
            },
            req,
            &query,
        ),
        "/snapshot.jpg" => snapshot(state, &query).await,
        "/api/detections" => api_detections(state),
        "/api/shots" => api_shots(state, &query),
        "/api/status" => api_status(state).await,
        "/api/stream" => json(StatusCode::OK, &stream_stats(state)),
        "/metrics" => metrics_page(state).await,
        "/healthz" => healthz(state),
        "/api/v1/health" => health_v1(state),
        "/api/ws" => websocket(state, req),
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {path}; endpoints are {ENDPOINTS}"),
        ),
    }
}

fn websocket(state: &Arc<AppState>, req: &mut Request<Incoming>) -> Response<Body> {
    let accept_key = match push::handshake(req) {
        Ok(k) => k,
        Err((code, e)) => {
            let mut r = error(code, e);
            if code == StatusCode::UPGRADE_REQUIRED {
                r.headers_mut()
                    .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            }
            return r;
        }
    };
    let max = state.config.stream.max_clients;
    let Some(guard) = ClientGuard::admit(&state.metrics, max) else {
        state.metrics.clients_rejected.fetch_add(1, Relaxed);
        return too_many_clients(max);
    };
    let accept = push::Accept {
        hub: state.push.clone(),
        shutdown: state.shutdown.clone(),
        guard,
        lease: req.extensions().get().cloned(),
    };
    match push::upgrade(req, accept_key, accept) {
        Ok(r) => r.map(|()| empty()),
        Err((code, e)) => error(code, e),
    }
}

fn too_many_clients(max: u32) -> Response<Body> {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("too many stream clients: {max} are connected (stream.max_clients = {max}, video streams and WebSocket clients together); try again later"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn stream_video(state: &Arc<AppState>, query: &Query, head: bool) -> Response<Body> {
    let params = match query.stream_params(state.defaults) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, multipart::CONTENT_TYPE)
        .header(
            header::CACHE_CONTROL,
            "no-store, no-cache, must-revalidate, max-age=0",
        )
        .header(header::PRAGMA, "no-cache")
        .header("X-Accel-Buffering", "no");
    if head {
        return builder.body(empty()).unwrap_or_else(|_| internal());
    }
    let max = state.config.stream.max_clients;
    let Some(guard) = ClientGuard::admit(&state.metrics, max) else {
        state.metrics.clients_rejected.fetch_add(1, Relaxed);
        return too_many_clients(max);
    };
    let key = VariantKey {
        quality: params.quality,
        overlay: params.overlay,
    };
    let rx = state.hub.subscribe(key);
    tracing::debug!(%params, "stream client connected");
    let client = ClientStream::new(
        rx,
        params.fps,
        state.shutdown.clone(),
        state.metrics.clone(),
        guard,
    );
    builder
        .body(client.into_body())
        .unwrap_or_else(|_| internal())
}

async fn snapshot(state: &Arc<AppState>, query: &Query) -> Response<Body> {
    let params = match query.snapshot_params(state.defaults) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let Some(p) = state.hub.no_signal() {
        // No fresh frame: the placeholder says why (SPEC "No signal").
        state.metrics.snapshots.fetch_add(1, Relaxed);
        state
            .metrics
            .bytes_sent
            .fetch_add(p.jpeg.len() as u64, Relaxed);
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "image/jpeg")
            .header(header::CACHE_CONTROL, "no-store")
            .header("X-No-Signal", "1")
            .body(full(p.jpeg.clone()))
            .unwrap_or_else(|_| internal());
    }
    let key = VariantKey {
        quality: params.quality,
        overlay: params.overlay,
    };
    match state.hub.snapshot(key).await {
        Ok(jpeg) => {
            state.metrics.snapshots.fetch_add(1, Relaxed);
            state
                .metrics
                .bytes_sent
                .fetch_add(jpeg.len() as u64, Relaxed);
            let age = state
                .hub
                .latest_frame()
                .map(|f| shm_core::monotonic_ns().saturating_sub(f.capture_ns) / 1_000_000);
            let mut b = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "image/jpeg")
                .header(header::CACHE_CONTROL, "no-store");
            if let Some(age) = age {
                b = b.header("X-Frame-Age-Ms", age);
            }
            b.body(full(jpeg)).unwrap_or_else(|_| internal())
        }
        Err(e @ SnapshotError::NoFrame) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => {
            // The encoder's text is for the operator, not for clients.
            tracing::error!("/snapshot.jpg: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the snapshot; the stream worker's log says why",
            )
        }
    }
}

fn api_detections(state: &Arc<AppState>) -> Response<Body> {
    match state
        .detections
        .fresh(shm_core::monotonic_ns(), state.frame_timeout_ns)
    {
        Ok(latest) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-store")
            .body(full(latest.json.clone()))
            .unwrap_or_else(|_| internal()),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn api_status(state: &Arc<AppState>) -> Response<Body> {
    match control::status(&state.control_socket, STATUS_TIMEOUT).await {
        // Through `Value`, as before the status was typed: the relayed bytes stay the same.
        Ok(status) => match serde_json::to_value(&status) {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => {
                tracing::warn!("/api/status: cannot serialize the status: {e}");
                error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        },
        Err(e) => {
            let (code, msg) = status_error(&e);
            tracing::warn!("/api/status: {e}");
            error(code, msg)
        }
    }
}

/// What a client is told when the supervisor's status cannot be had: the kind of failure and
/// what to do, but never the control socket's path or an OS error (those go to the log).
pub(crate) fn status_error(e: &ControlError) -> (StatusCode, &'static str) {
    match e {
        ControlError::NotRunning { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no supervisor answers on the control socket; start the tree with `billiards-supervisor start`",
        ),
        ControlError::Timeout { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the supervisor did not answer in time; try again",
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            "the supervisor's answer could not be used; the stream worker's log says why",
        ),
    }
}

async fn metrics_page(state: &Arc<AppState>) -> Response<Body> {
    let supervisor_status = control::status(&state.control_socket, METRICS_STATUS_TIMEOUT)
        .await
        .ok();
    let extra = Extra {
        now_ns: shm_core::monotonic_ns(),
        supervisor_status,
        tasks: Some(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
        ),
        process: ProcessStats::current(),
    };
    let mut text = state.metrics.render(&extra);
    state.push.metrics.render(&mut text);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, metrics::CONTENT_TYPE)
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(Bytes::from(text)))
        .unwrap_or_else(|_| internal())
}

fn healthz(state: &Arc<AppState>) -> Response<Body> {
    let now = shm_core::monotonic_ns();
    let limit = state.config.watchdog.frame_timeout_sec;
    match state.metrics.frame_age_secs(now) {
        Some(age) if age < limit => json(
            StatusCode::OK,
            &json!({"status": "ok", "frame_age_s": age, "frame_number": state.metrics.last_frame_number.load(Relaxed)}),
        ),
        Some(age) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "stale", "frame_age_s": age,
                    "error": format!("no new frame for {age:.1} s (watchdog.frame_timeout_sec = {limit:.1}); is the video worker running?")}),
        ),
        None => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "no_frame", "frame_age_s": null,
                    "error": "no frame read yet; is the video worker running?"}),
        ),
    }
}

/// `/healthz` for the billiards-trainer web app: the same code, and a body whose `status` is
/// `healthy` or `unhealthy`.
fn health_v1(state: &Arc<AppState>) -> Response<Body> {
    let now = shm_core::monotonic_ns();
    let limit = state.config.watchdog.frame_timeout_sec;
    let age = state.metrics.frame_age_secs(now);
    let healthy = age.is_some_and(|a| a < limit);
    let mut body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "frame_age_s": age,
        "frame_number": state.metrics.last_frame_number.load(Relaxed),
        "frame_timeout_s": limit,
    });
    if !healthy {
        body["error"] = json!(match age {
            Some(a) => format!("no new frame for {a:.1} s (watchdog.frame_timeout_sec = {limit:.1}); is the video worker running?"),
            None => "no frame read yet; is the video worker running?".to_string(),
        });
    }
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(code, &body)
}

/// The stream worker's own figures, for the dashboard (`GET /api/stream`).
fn stream_stats(state: &Arc<AppState>) -> Value {
    let m = &state.metrics;
    let now = shm_core::monotonic_ns();
    let (p50, p99) = m.send_latency_percentiles();
    let frame = state.hub.latest_frame();
    json!({
        "pid": std::process::id(),
        "video_up": m.video_up.load(Relaxed),
        "frame_number": m.last_frame_number.load(Relaxed),
        "frame_age_s": m.frame_age_secs(now),
        "frame_timeout_s": state.config.watchdog.frame_timeout_sec,
        "width": frame.as_ref().map_or(state.config.video.width, |f| f.width),
        "height": frame.as_ref().map_or(state.config.video.height, |f| f.height),
        "input_fps": m.current_input_fps(now),
        "frames": m.frames_read.load(Relaxed),
        "frames_missed": m.frames_missed.load(Relaxed),
        "clients": m.clients.load(Relaxed),
        "ws_clients": state.push.metrics.clients.load(Relaxed),
        "max_clients": state.config.stream.max_clients,
        "connections": m.connections.load(Relaxed),
        "variants": state.hub.variant_count(),
        "jpeg_quality": state.defaults.quality,
        "max_fps": state.defaults.max_fps,
        "encodes": m.encodes.load(Relaxed),
        "encode_ms_mean": m.encode_seconds.mean_secs() * 1e3,
        "parts_sent": m.parts_sent.load(Relaxed),
        "bytes_sent": m.bytes_sent.load(Relaxed),
        "client_dropped_frames": m.client_skipped.load(Relaxed),
        "send_latency_p50_ms": p50 as f64 / 1e6,
        "send_latency_p99_ms": p99 as f64 / 1e6,
        "vision_enabled": state.config.vision.enabled,
        // The dashboard offers its H.264 view only when the server has it.
        "h264": state.config.stream.h264,
        "h264_bitrate_kbps": state.config.stream.h264_bitrate_kbps,
        "h264_clients": m.h264.clients.load(Relaxed),
        "h264_encode_ms_mean": m.h264.encode_seconds.mean_secs() * 1e3,
        "h264_send_latency_ms_mean": m.h264.send_latency.mean_secs() * 1e3,
        // Why the stream shows the "no signal" placeholder; null while frames are fresh.
        "no_signal": state.hub.no_signal().map(|p| p.reason.clone()),
    })
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

fn empty() -> Body {
    Empty::new().boxed_unsync()
}

fn html(page: &'static str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(Bytes::from_static(page.as_bytes())))
        .unwrap_or_else(|_| internal())
}

/// `GET /api/shots?limit=N`: the newest finished shots, newest first.
fn api_shots(state: &Arc<AppState>, query: &Query) -> Response<Body> {
    let limit = match shots::parse_limit(query.get("limit")) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let list = state.detections.shots.newest(limit);
    let shots: Vec<&billiards_detections::ShotJson> = list.iter().map(|s| &**s).collect();
    json(StatusCode::OK, &json!({ "shots": shots }))
}

fn json(code: StatusCode, v: &Value) -> Response<Body> {
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(body))
        .unwrap_or_else(|_| internal())
}

fn error(code: StatusCode, msg: impl std::fmt::Display) -> Response<Body> {
    json(code, &json!({ "error": msg.to_string() }))
}

fn internal() -> Response<Body> {
    let mut r = Response::new(full(Bytes::from_static(
        b"{\"error\":\"internal error\"}\n",
    )));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}
