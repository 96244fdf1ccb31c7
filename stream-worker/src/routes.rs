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
use crate::control;
use crate::dashboard;
use crate::detections::DetectionsHub;
use crate::hub::{Hub, SnapshotError, VariantKey};
use crate::metrics::{self, Extra, Metrics, ProcessStats};
use crate::multipart;
use crate::query::{Defaults, Query};
use crate::shutdown::Shutdown;
use crate::stream::{ClientGuard, ClientStream, StallClock};

/// Body of every response.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How long `/api/status` waits for the supervisor.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `/metrics` waits for the supervisor (scrapes must stay fast).
const METRICS_STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// The endpoints, for 404 messages.
const ENDPOINTS: &str = "/, /stream/video, /snapshot.jpg, /api/detections, /api/status, /api/stream, /metrics, /healthz";

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
    /// The server's shutdown, for stream bodies.
    pub shutdown: Shutdown,
    defaults: Defaults,
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
        shutdown: Shutdown,
    ) -> AppState {
        AppState {
            defaults: Defaults {
                // Validated by the config crate to 1..=100.
                quality: config.stream.jpeg_quality.clamp(1, 100) as u8,
                max_fps: config.stream.max_fps.max(1),
            },
            control_socket: config.control_socket_path(),
            frame_timeout_ns: (config.watchdog.frame_timeout_sec * 1e9) as u64,
            config,
            metrics,
            hub,
            detections,
            shutdown,
        }
    }
}

/// Answers one request.
pub async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let resp = route(&state, &req).await;
    state.metrics.count_response(resp.status().as_u16());
    Ok(resp)
}

async fn route(state: &Arc<AppState>, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let query = Query::parse(req.uri().query());
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} is not allowed; use GET or HEAD", req.method()),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if path != "/healthz"
        && !auth::authorized(&state.config.stream.auth_token, req.headers(), &query)
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
        "/" | "/index.html" => html(dashboard::PAGE),
        "/stream/video" => {
            let stall = req
                .extensions()
                .get::<StallClock>()
                .cloned()
                .unwrap_or_default();
            stream_video(state, &query, head, stall)
        }
        "/snapshot.jpg" => snapshot(state, &query).await,
        "/api/detections" => api_detections(state),
        "/api/status" => api_status(state).await,
        "/api/stream" => json(StatusCode::OK, &stream_stats(state)),
        "/metrics" => metrics_page(state).await,
        "/healthz" => healthz(state),
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {path}; endpoints are {ENDPOINTS}"),
        ),
    }
}

fn stream_video(
    state: &Arc<AppState>,
    query: &Query,
    head: bool,
    stall: StallClock,
) -> Response<Body> {
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
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many stream clients: {max} are connected (stream.max_clients = {max}); try again later"),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
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
        stall,
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
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
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
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        },
        Err(e) if e.is_unavailable() => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => error(StatusCode::BAD_GATEWAY, e),
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
    let text = state.metrics.render(&extra);
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
