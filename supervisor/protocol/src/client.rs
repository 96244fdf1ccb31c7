//! The blocking client: plain `std` code, so any process (the CLI, tests, tools) can call
//! [`request`] without a runtime.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::frame::{read_frame, write_frame, FrameError};
use crate::message::{Request, Response};
use crate::status::Status;

/// Why a control request failed on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket (absent, or a stale file).
    #[error("no supervisor running (socket {})", path.display())]
    NotRunning {
        /// The control socket.
        path: PathBuf,
    },
    /// Connecting, sending or receiving failed.
    #[error("control socket {}: {cause}", path.display())]
    Io {
        /// The control socket.
        path: PathBuf,
        /// What failed (in the message already, so not a `source`: error chains would print
        /// it twice).
        cause: FrameError,
    },
    /// The supervisor did not answer in time.
    #[error("control socket {}: no answer within {:.1}s", path.display(), timeout.as_secs_f64())]
    Timeout {
        /// The control socket.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },
    /// The answer was not a valid response, or not the one the request calls for.
    #[error("control socket {}: malformed response: {message}", path.display())]
    Protocol {
        /// The control socket.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The supervisor answered `{"ok":false}` (only from helpers such as [`status`] that
    /// expect one kind of answer; [`request`] returns [`Response::Error`] instead).
    #[error("control socket {}: the supervisor refused the request: {message}", path.display())]
    Refused {
        /// The control socket.
        path: PathBuf,
        /// The supervisor's reason.
        message: String,
    },
}

impl ClientError {
    /// Whether the supervisor is simply not there or not answering (as opposed to answering
    /// badly): callers that relay the status report this as "unavailable".
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ClientError::NotRunning { .. } | ClientError::Timeout { .. }
        )
    }

    /// A failed `connect`: `NotRunning` when nothing listens there (absent, or a stale file).
    pub(crate) fn connect(path: &Path, e: io::Error) -> ClientError {
        let not_running = matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
        ) || e.raw_os_error() == Some(libc::ENOTSOCK);
        if not_running {
            ClientError::NotRunning {
                path: path.to_path_buf(),
            }
        } else {
            ClientError::Io {
                path: path.to_path_buf(),
                cause: FrameError::Io(e),
            }
        }
    }

    pub(crate) fn io(path: &Path, timeout: Duration, e: FrameError) -> ClientError {
        match &e {
            FrameError::Io(io)
                if matches!(
                    io.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                ClientError::Timeout {
                    path: path.to_path_buf(),
                    timeout,
                }
            }
            _ => ClientError::Io {
                path: path.to_path_buf(),
                cause: e,
            },
        }
    }
}

/// Connects to the control socket; `NotRunning` when nothing listens there.
fn connect(path: &Path, timeout: Duration) -> Result<UnixStream, ClientError> {
    let stream = UnixStream::connect(path).map_err(|e| ClientError::connect(path, e))?;
    let t = timeout.max(Duration::from_millis(1));
    let set = stream
        .set_read_timeout(Some(t))
        .and_then(|_| stream.set_write_timeout(Some(t)));
    set.map_err(|e| ClientError::io(path, timeout, FrameError::Io(e)))?;
    Ok(stream)
}

/// The request's JSON body.
pub(crate) fn encode(path: &Path, req: &Request) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(req).map_err(|e| ClientError::Protocol {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The answer's JSON body, decoded.
pub(crate) fn decode(path: &Path, answer: &[u8]) -> Result<Response, ClientError> {
    serde_json::from_slice(answer).map_err(|e| ClientError::Protocol {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The status out of the answer to [`Request::Status`].
pub(crate) fn expect_status(path: &Path, answer: Response) -> Result<Status, ClientError> {
    match answer {
        Response::Status(s) => Ok(*s),
        Response::Error(message) => Err(ClientError::Refused {
            path: path.to_path_buf(),
            message,
        }),
        other => Err(ClientError::Protocol {
            path: path.to_path_buf(),
            message: format!("expected the status, got {other:?}"),
        }),
    }
}

fn exchange(
    stream: &mut UnixStream,
    path: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let body = encode(path, req)?;
    write_frame(stream, &body).map_err(|e| ClientError::io(path, timeout, e))?;
    let answer = read_frame(stream).map_err(|e| ClientError::io(path, timeout, e))?;
    decode(path, &answer)
}

/// Sends one request to the supervisor listening on `path` and returns its answer.
///
/// Blocking, no runtime needed. `timeout` bounds each read and write.
pub fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let mut stream = connect(path, timeout)?;
    exchange(&mut stream, path, req, timeout)
}

/// Asks for the status JSON; an `{"ok":false}` answer is [`ClientError::Refused`].
pub fn status(path: &Path, timeout: Duration) -> Result<Status, ClientError> {
    expect_status(path, request(path, &Request::Status, timeout)?)
}

/// Asks for a clean stop and waits until the supervisor has finished it (it closes the
/// connection when it exits), at most `timeout`. Returns the supervisor's answer to `stop`.
pub fn stop_and_wait(path: &Path, timeout: Duration) -> Result<Response, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(path, timeout)?;
    let answer = exchange(&mut stream, path, &Request::Stop, timeout)?;
    if !matches!(answer, Response::Ok) {
        return Ok(answer);
    }
    let mut sink = [0u8; 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::Timeout {
                path: path.to_path_buf(),
                timeout,
            });
        }
        // A zero duration would mean "no timeout" to set_read_timeout; `left` is non-zero here.
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| ClientError::io(path, timeout, FrameError::Io(e)))?;
        match stream.read(&mut sink) {
            Ok(0) => return Ok(answer),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(answer),
            Err(e) => return Err(ClientError::io(path, timeout, FrameError::Io(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_says_not_running_when_nothing_listens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.sock");
        let err = request(&path, &Request::Ping, Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no supervisor running (socket {})", path.display())
        );

        // A stale socket file (bound, then the listener went away) also means "not running".
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(listener);
        let err = request(&path, &Request::Ping, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err}");
    }

    #[test]
    fn client_times_out_on_a_silent_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(600));
            drop(s);
        });
        let err = request(&path, &Request::Ping, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
        t.join().unwrap();
    }
}
