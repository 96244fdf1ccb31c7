//! The control-socket server: accepts connections from our own uid (or root), reads one request,
//! hands it to the event loop and writes the answer.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::control::{async_frame, Request, Response};

/// A request for the event loop and where to send its answer.
#[derive(Debug)]
pub struct ControlMsg {
    /// The request.
    pub request: Request,
    /// The answer goes here.
    pub reply: oneshot::Sender<Response>,
}

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;
/// A client must send its request within this time.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the control socket with mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves until the task is aborted.
pub async fn serve(listener: UnixListener, to_loop: mpsc::Sender<ControlMsg>) {
    // SAFETY: getuid has no preconditions and cannot fail.
    let my_uid = unsafe { libc::getuid() };
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match stream.peer_cred() {
            // Our own user, and root (who could read our memory anyway).
            Ok(cred) if cred.uid() == my_uid || cred.uid() == 0 => {}
            Ok(cred) => {
                tracing::warn!(
                    "control socket: refused a connection from uid {} (only uid {my_uid} may control this supervisor)",
                    cred.uid()
                );
                continue;
            }
            Err(e) => {
                tracing::warn!("control socket: cannot read the peer's credentials: {e}");
                continue;
            }
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let to_loop = to_loop.clone();
        tokio::spawn(async move {
            handle(stream, to_loop).await;
            drop(permit);
        });
    }
}

async fn handle(mut stream: UnixStream, to_loop: mpsc::Sender<ControlMsg>) {
    let body = match tokio::time::timeout(READ_TIMEOUT, async_frame::read_frame(&mut stream)).await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            tracing::debug!("control socket: bad request frame: {e}");
            let answer = Response::Error(format!("bad request: {e}"));
            let _ = write(&mut stream, &answer).await;
            return;
        }
        Err(_) => return,
    };
    let (answer, is_stop) = match serde_json::from_slice::<Request>(&body) {
        Err(e) => (Response::Error(format!("bad request: {e}")), false),
        Ok(request) => {
            let is_stop = request == Request::Stop;
            let (tx, rx) = oneshot::channel();
            let sent = to_loop.send(ControlMsg { request, reply: tx }).await;
            let answer = match sent {
                Ok(()) => rx
                    .await
                    .unwrap_or_else(|_| Response::Error("the supervisor is shutting down".into())),
                Err(_) => Response::Error("the supervisor is shutting down".into()),
            };
            (answer, is_stop)
        }
    };
    if write(&mut stream, &answer).await.is_err() {
        return;
    }
    if is_stop && answer == Response::Ok {
        // Keep the connection open until the process exits: end-of-file tells the client
        // that the stop is complete.
        std::future::pending::<()>().await;
    }
}

async fn write(
    stream: &mut UnixStream,
    answer: &Response,
) -> Result<(), crate::control::FrameError> {
    let bytes = serde_json::to_vec(answer).unwrap_or_else(|e| {
        format!("{{\"ok\":false,\"error\":\"cannot encode the answer: {e}\"}}").into_bytes()
    });
    async_frame::write_frame(stream, &bytes).await
}
