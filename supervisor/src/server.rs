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

/// Who may send requests.
#[derive(Debug, Clone, Copy)]
struct Owner {
    /// The supervisor's uid.
    uid: u32,
    /// Whether root may too (it could read our memory anyway).
    root_too: bool,
}

impl Owner {
    fn admits(&self, peer_uid: u32) -> bool {
        peer_uid == self.uid || (self.root_too && peer_uid == 0)
    }
}

/// Serves until the task is aborted.
///
/// Every connection holds a clone of `answered` until its answer is written, so that after
/// aborting this task the caller can wait for the receiver to report all senders gone: the
/// answer to the `stop` that ended the event loop must reach its client before the process
/// exits, or the client sees the connection close with no answer.
pub async fn serve(
    listener: UnixListener,
    to_loop: mpsc::Sender<ControlMsg>,
    answered: mpsc::Sender<()>,
) {
    let uid = nix::unistd::getuid().as_raw();
    serve_for(
        listener,
        to_loop,
        answered,
        Owner {
            uid,
            root_too: true,
        },
    )
    .await
}

async fn serve_for(
    listener: UnixListener,
    to_loop: mpsc::Sender<ControlMsg>,
    answered: mpsc::Sender<()>,
    owner: Owner,
) {
    let my_uid = owner.uid;
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
            Ok(cred) if owner.admits(cred.uid()) => {}
            Ok(cred) => {
                tracing::warn!(
                    "control socket: refused a connection from uid {} (only uid {my_uid} may control this supervisor)",
                    cred.uid()
                );
                // Tell the client why instead of hanging up on it; a peer that does not read
                // cannot hold the accept loop.
                let mut stream = stream;
                let answer = refusal(cred.uid(), my_uid);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(READ_TIMEOUT, write(&mut stream, &answer)).await;
                });
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
        let answered = answered.clone();
        tokio::spawn(async move {
            handle(stream, to_loop, answered).await;
            drop(permit);
        });
    }
}

/// The answer to a peer of another user.
fn refusal(peer_uid: u32, my_uid: u32) -> Response {
    Response::Error(format!(
        "permission denied: this supervisor belongs to uid {my_uid} and you are uid \
         {peer_uid}; run the command as that user"
    ))
}

async fn handle(
    mut stream: UnixStream,
    to_loop: mpsc::Sender<ControlMsg>,
    answered: mpsc::Sender<()>,
) {
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
    drop(answered);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_of_another_user_is_told_why_it_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = bind(&path).unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let (answered, _answers) = mpsc::channel(1);
        let me = nix::unistd::getuid().as_raw();
        let owner = Owner {
            uid: me.wrapping_add(1),
            root_too: false,
        };
        let server = tokio::spawn(serve_for(listener, tx, answered, owner));
        let mut client = UnixStream::connect(&path).await.unwrap();
        async_frame::write_frame(&mut client, br#"{"cmd":"status"}"#)
            .await
            .unwrap();
        let body = tokio::time::timeout(
            Duration::from_secs(30),
            async_frame::read_frame(&mut client),
        )
        .await
        .expect("the refusal arrives")
        .unwrap();
        let answer: Response = serde_json::from_slice(&body).unwrap();
        let Response::Error(text) = answer else {
            panic!("expected an error, got {answer:?}");
        };
        assert!(
            text.contains("permission denied") && text.contains(&format!("you are uid {me}")),
            "{text}"
        );
        assert!(
            rx.try_recv().is_err(),
            "a refused request reached the event loop"
        );
        server.abort();
    }

    #[test]
    fn root_is_admitted_only_when_allowed() {
        let with = Owner {
            uid: 1000,
            root_too: true,
        };
        let without = Owner {
            uid: 1000,
            root_too: false,
        };
        assert!(with.admits(1000) && with.admits(0) && !with.admits(1001));
        assert!(without.admits(1000) && !without.admits(0));
    }
}
