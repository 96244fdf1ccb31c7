//! The HTTP server: listener, connection tasks, graceful shutdown, and [`run`], which wires
//! the frame reader, the detections reader and the encoders together.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use shm_core::AttachError;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::conn::{Deadlines, IpSlot, PerIpLimit, StallLimited};
use crate::detections::{self, DetectionsHub, DetectionsReader};
use crate::frames::{FrameReader, StartError};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::nosignal;
use crate::pool::EncoderPool;
use crate::push::{self, PushHub};
use crate::routes::{self, AppState};
use crate::shutdown::Shutdown;

/// Connections allowed beyond `stream.max_clients` (API calls, the dashboard's own requests,
/// clients being refused); past that, connections are answered 503 and closed at once so a
/// flood cannot exhaust file descriptors.
const EXTRA_CONNECTIONS: u32 = 256;
/// How long stopping waits for connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the stream worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The frame segment did not appear in time (no video worker).
    #[error("video worker not available: {0}; start the tree with `billiards-supervisor start`")]
    VideoNotAvailable(AttachError),
    /// The frame segment exists but is not a valid segment.
    #[error("{0}")]
    SegmentInvalid(AttachError),
    /// Any other attach failure.
    #[error("cannot attach to the frame segment: {0}")]
    Attach(AttachError),
    /// A configured segment name is unusable.
    #[error("invalid segment name: {0}")]
    Name(#[from] billiards_supervised::SegmentNameError),
    /// The listen address is unusable.
    #[error("cannot listen on {addr}: {cause}; choose another stream.listen or stop what uses it")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error (part of the message, so not chained as a source as well).
        cause: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// Accepting connections kept failing (e.g. out of file descriptors); the server stopped.
    #[error("accepting connections kept failing: {0}; check the open-file limit (ulimit -n)")]
    Accept(std::io::Error),
}

impl RunError {
    /// The process exit code for this error (`config::exit_codes`).
    pub fn exit_code(&self) -> i32 {
        use config::exit_codes::*;
        match self {
            RunError::VideoNotAvailable(_) => VIDEO_NOT_AVAILABLE,
            RunError::SegmentInvalid(_) => SEGMENT_INVALID,
            RunError::Name(_) => USAGE,
            _ => FAILURE,
        }
    }
}

impl From<StartError> for RunError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Attach(e @ AttachError::NotFound { .. }) => RunError::VideoNotAvailable(e),
            StartError::Attach(e @ AttachError::Invalid { .. }) => RunError::SegmentInvalid(e),
            StartError::Attach(e) => RunError::Attach(e),
            StartError::Thread(e) => RunError::Thread(e),
        }
    }
}

/// Runs the stream worker until `shutdown` completes: attaches to the frame segment (waiting
/// `video.attach_timeout_sec`), follows the detections channel, serves HTTP on
/// `stream.listen`, then stops cleanly (clients' responses end, readers detach).
///
/// `on_listening` is told the bound address (useful with port 0).
pub async fn run(
    config: config::Config,
    shutdown: impl Future,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), RunError> {
    tokio::pin!(shutdown);
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::default());

    let loc = billiards_supervised::frames_segment(&config)?.location;
    let timeout = Duration::from_secs_f64(config.video.attach_timeout_sec);
    let (frame_tx, frame_rx) = watch::channel(None);
    let m = metrics.clone();
    info!(segment = %loc.name(), "waiting up to {:.1} s for the frame segment", timeout.as_secs_f64());
    let attach = tokio::task::spawn_blocking(move || FrameReader::start(loc, timeout, m, frame_tx));
    let frame_reader = tokio::select! {
        r = attach => r.map_err(|e| RunError::Thread(std::io::Error::other(e.to_string())))??,
        _ = &mut shutdown => {
            info!("stopped before the frame segment appeared");
            return Ok(());
        }
    };

    let det_hub = Arc::new(DetectionsHub::new(
        config.vision.enabled,
        &config.vision.detections_shm_name,
    ));
    let det_reader = if config.vision.enabled {
        Some(
            DetectionsReader::start(
                detections::location(&config)?,
                det_hub.clone(),
                metrics.clone(),
            )
            .map_err(RunError::Thread)?,
        )
    } else {
        info!("vision.enabled = false: /api/detections answers 503 and the overlay draws no detections");
        None
    };

    let pool = EncoderPool::per_core().map_err(RunError::Thread)?;
    info!(threads = pool.threads(), "encoder pool started");

    let listen = config.stream.listen.clone();
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|cause| RunError::Bind {
            addr: listen.clone(),
            cause,
        })?;
    let local = listener.local_addr().map_err(|cause| RunError::Bind {
        addr: listen.clone(),
        cause,
    })?;
    if config.stream.auth_token.is_empty() && !local.ip().is_loopback() {
        warn!(addr = %local, "listening beyond loopback without stream.auth_token: anyone who can reach this address sees the stream");
    }
    info!(addr = %local, "listening on http://{local}/");
    on_listening(local);

    let (notify_shutdown, shutdown_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let fresh_limit_ns = (config.watchdog.frame_timeout_sec * 1e9) as u64;
    let (placeholder_tx, placeholder_rx) = watch::channel(None);
    let hub = Hub::new(
        frame_rx,
        det_hub.clone(),
        fresh_limit_ns,
        placeholder_rx,
        metrics.clone(),
        done_tx.clone(),
        pool,
    );
    let push = Arc::new(PushHub::default());
    tokio::spawn(push::forward_detections(
        push.clone(),
        det_hub.clone(),
        Shutdown::new(shutdown_rx.clone()),
    ));
    tokio::spawn(push::forward_shots(
        push.clone(),
        det_hub.clone(),
        Shutdown::new(shutdown_rx.clone()),
    ));
    tokio::spawn(push::poll_status(
        push.clone(),
        config.control_socket_path(),
        Shutdown::new(shutdown_rx.clone()),
    ));
    let fresh_hub = hub.clone();
    tokio::spawn(nosignal::run(
        config.control_socket_path(),
        config.video.width,
        config.video.height,
        // Validated by the config crate to 1..=100.
        config.stream.jpeg_quality.clamp(1, 100) as u8,
        move || fresh_hub.has_fresh_frame(),
        placeholder_tx,
        Shutdown::new(shutdown_rx.clone()),
    ));
    let state = Arc::new(AppState::new(
        config.clone(),
        metrics.clone(),
        hub,
        det_hub,
        push,
        Shutdown::new(shutdown_rx.clone()),
    ));

    let deadlines = Deadlines::from_config(&config.stream);
    info!(
        head_timeout_s = deadlines.head.as_secs_f64(),
        stall_timeout_s = deadlines.stall.as_secs_f64(),
        max_connections_per_ip = config.stream.max_connections_per_ip,
        "connection limits"
    );
    let mut server = Listener {
        listener,
        state,
        shutdown_rx,
        done_tx,
        max_connections: config.stream.max_clients.saturating_add(EXTRA_CONNECTIONS),
        per_ip: PerIpLimit::new(config.stream.max_connections_per_ip),
        deadlines,
    };
    let mut failure = None;
    tokio::select! {
        res = server.run() => {
            if let Err(e) = res {
                error!("accepting connections failed: {e}; stopping");
                failure = Some(RunError::Accept(e));
            }
        }
        _ = &mut shutdown => info!("stopping"),
    }

    // Tell every task, then wait for them: the completion senders are held by connection
    // and encoder tasks (and, through the hub, by the shared state), so the receiver closes
    // once they are all gone.
    let Listener { state, done_tx, .. } = server;
    notify_shutdown.send_replace(true);
    drop(state);
    drop(done_tx);
    if tokio::time::timeout(DRAIN_TIMEOUT, done_rx.recv())
        .await
        .is_err()
    {
        warn!(
            "some connections did not finish within {:.0} s; closing them",
            DRAIN_TIMEOUT.as_secs_f64()
        );
    }

    // Readers last: their entries vanish from the segment's reader table as they stop.
    tokio::task::spawn_blocking(move || {
        frame_reader.stop();
        if let Some(r) = det_reader {
            r.stop();
        }
    })
    .await
    .ok();
    info!("stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Accept loop state.
struct Listener {
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown_rx: watch::Receiver<bool>,
    done_tx: mpsc::Sender<()>,
    max_connections: u32,
    per_ip: Arc<PerIpLimit>,
    deadlines: Deadlines,
}

/// Counts an open connection in the gauge until dropped.
#[derive(Debug)]
struct ConnectionGuard(Arc<Metrics>);

/// Keeps a connection counted (in the connections gauge and in the shutdown drain) while
/// something holds it. Every request carries one in its extensions, so a connection upgraded
/// to a WebSocket stays counted after hyper has handed its socket over.
#[derive(Debug, Clone)]
pub struct ConnectionLease {
    _guard: Arc<ConnectionGuard>,
    _ip_slot: Arc<Option<IpSlot>>,
    _done: mpsc::Sender<()>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Relaxed);
    }
}

impl Listener {
    async fn run(&mut self) -> std::io::Result<()> {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // Starts whenever hyper waits for a head: on a new connection (slowloris) and
            // after each response on a keep-alive connection (idle close).
            .header_read_timeout(self.deadlines.head)
            // Queue parts instead of copying them, and keep at most about one part in hyper's
            // buffer: a slow client then holds at most one part here, not a backlog.
            .writev(true)
            .max_buf_size(64 * 1024);
        let builder = Arc::new(builder);
        loop {
            let (socket, peer) = self.accept().await?;
            let metrics = &self.state.metrics;
            let open = metrics.connections.fetch_add(1, Relaxed) + 1;
            let guard = ConnectionGuard(metrics.clone());
            if open > i64::from(self.max_connections) {
                metrics.count_response(503);
                tokio::spawn(refuse(
                    socket,
                    guard,
                    "too many connections; try again later",
                ));
                continue;
            }
            let Some(ip_slot) = self.per_ip.admit(peer.ip()) else {
                metrics.count_response(503);
                debug!(%peer, "refused: stream.max_connections_per_ip reached");
                tokio::spawn(refuse(
                    socket,
                    guard,
                    "too many connections from your address (stream.max_connections_per_ip); try again later",
                ));
                continue;
            };
            let state = self.state.clone();
            let mut shutdown = Shutdown::new(self.shutdown_rx.clone());
            let done = self.done_tx.clone();
            let builder = builder.clone();
            let lease = ConnectionLease {
                _guard: Arc::new(guard),
                _ip_slot: Arc::new(ip_slot),
                _done: done,
            };
            let io = TokioIo::new(StallLimited::new(socket, self.deadlines.stall));
            tokio::spawn(async move {
                let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(lease.clone());
                    routes::handle(state.clone(), req)
                });
                // Upgrades: /api/ws and /stream/h264 turn the connection into a WebSocket.
                let conn = builder.serve_connection(io, service).with_upgrades();
                tokio::pin!(conn);
                tokio::select! {
                    res = conn.as_mut() => {
                        // Deadlines end here too: the head timeout and a stalled write
                        // (`StallLimited`) are connection errors, and dropping the
                        // connection closes the socket.
                        if let Err(e) = res {
                            debug!(%peer, "connection ended: {e}");
                        }
                    }
                    _ = shutdown.recv() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(DRAIN_TIMEOUT, conn).await;
                    }
                }
            });
        }
    }

    /// Accepts a connection, backing off on errors such as running out of descriptors.
    async fn accept(&mut self) -> std::io::Result<(TcpStream, SocketAddr)> {
        let mut backoff = Duration::from_millis(10);
        loop {
            match self.listener.accept().await {
                Ok((socket, peer)) => {
                    // Parts are written whole; Nagle would only delay their tails.
                    let _ = socket.set_nodelay(true);
                    return Ok((socket, peer));
                }
                Err(e) => {
                    if backoff > Duration::from_secs(5) {
                        return Err(e);
                    }
                    warn!("accept failed: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }
}

/// Answers a connection over a limit with 503 and closes it.
async fn refuse(mut socket: TcpStream, _guard: ConnectionGuard, error: &'static str) {
    let body = serde_json::json!({ "error": error }).to_string();
    let msg = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.write_all(msg.as_bytes())).await;
    let _ = socket.shutdown().await;
}
