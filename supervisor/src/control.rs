//! The control-socket protocol: typed requests and responses, their framing, and a blocking
//! client.
//!
//! A Unix stream socket; each message is a 4-byte big-endian length followed by that many bytes
//! of JSON, at most [`MAX_MESSAGE_BYTES`]. The client sends one request and reads one response;
//! after answering `stop`, the server keeps the connection open until it has finished stopping,
//! so a client that reads on until end-of-file knows the tree is down (see [`stop_and_wait`]).
//! The whole protocol is described in `docs/control-protocol.md`.
//!
//! The client half is plain blocking `std` code so that any process (the CLI, the stream
//! worker) can call [`request`] without a tokio runtime.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::status::Status;
use crate::worker::WorkerName;

/// Largest message (either direction) in bytes, not counting the 4-byte length.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// The status JSON.
    Status,
    /// A clean stop of the whole tree.
    Stop,
    /// Restart one worker (also revives a `failed` one).
    Restart {
        /// Which worker.
        worker: WorkerName,
    },
    /// Is a supervisor there? Answered with its pid.
    Ping,
}

/// What the supervisor answers.
///
/// On the wire: `{"ok":true}`, `{"ok":true,"pid":N}` (ping), `{"ok":true,"status":{...}}`
/// or `{"ok":false,"error":"..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WireResponse", into = "WireResponse")]
pub enum Response {
    /// Done (stop, restart).
    Ok,
    /// Answer to [`Request::Ping`]: the supervisor's pid.
    Pong {
        /// Pid of the supervisor.
        pid: u32,
    },
    /// Answer to [`Request::Status`].
    Status(Box<Status>),
    /// The request failed; says why.
    Error(String),
}

/// The flat JSON object every response is sent as.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WireResponse {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Box<Status>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<Response> for WireResponse {
    fn from(r: Response) -> Self {
        let mut w = WireResponse {
            ok: true,
            pid: None,
            status: None,
            error: None,
        };
        match r {
            Response::Ok => {}
            Response::Pong { pid } => w.pid = Some(pid),
            Response::Status(s) => w.status = Some(s),
            Response::Error(e) => {
                w.ok = false;
                w.error = Some(e);
            }
        }
        w
    }
}

impl TryFrom<WireResponse> for Response {
    type Error = String;

    fn try_from(w: WireResponse) -> Result<Self, String> {
        Ok(match w {
            WireResponse {
                ok: false, error, ..
            } => Response::Error(error.unwrap_or_else(|| "the supervisor gave no reason".into())),
            WireResponse {
                status: Some(s), ..
            } => Response::Status(s),
            WireResponse { pid: Some(pid), .. } => Response::Pong { pid },
            WireResponse { .. } => Response::Ok,
        })
    }
}

/// A message could not be framed or unframed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than [`MAX_MESSAGE_BYTES`].
    #[error("message of {len} bytes is larger than the limit of {MAX_MESSAGE_BYTES} bytes")]
    TooLarge {
        /// The announced (or attempted) length.
        len: usize,
    },
    /// The peer closed the connection before a whole message arrived.
    #[error("connection closed before a whole message arrived")]
    Closed,
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn check_len(len: usize) -> Result<(), FrameError> {
    if len > MAX_MESSAGE_BYTES {
        Err(FrameError::TooLarge { len })
    } else {
        Ok(())
    }
}

/// Writes one framed message.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> Result<(), FrameError> {
    check_len(payload.len())?;
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Reads one framed message; refuses a length above the cap before allocating.
pub fn read_frame(r: &mut impl Read) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    read_exact_or_closed(r, &mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    check_len(len)?;
    let mut payload = vec![0u8; len];
    read_exact_or_closed(r, &mut payload)?;
    Ok(payload)
}

fn read_exact_or_closed(r: &mut impl Read, buf: &mut [u8]) -> Result<(), FrameError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Closed,
        _ => FrameError::Io(e),
    })
}

/// Async framing for the server side.
pub mod async_frame {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::{check_len, FrameError};

    /// Writes one framed message.
    pub async fn write_frame(
        w: &mut (impl AsyncWrite + Unpin),
        payload: &[u8],
    ) -> Result<(), FrameError> {
        check_len(payload.len())?;
        let mut buf = Vec::with_capacity(4 + payload.len());
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(payload);
        w.write_all(&buf).await?;
        w.flush().await?;
        Ok(())
    }

    /// Reads one framed message; refuses a length above the cap before allocating.
    pub async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> Result<Vec<u8>, FrameError> {
        let mut len = [0u8; 4];
        read_exact(r, &mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        check_len(len)?;
        let mut payload = vec![0u8; len];
        read_exact(r, &mut payload).await?;
        Ok(payload)
    }

    async fn read_exact(
        r: &mut (impl AsyncRead + Unpin),
        buf: &mut [u8],
    ) -> Result<(), FrameError> {
        match r.read_exact(buf).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Closed),
            Err(e) => Err(FrameError::Io(e)),
        }
    }
}

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
    /// The answer was not a valid response.
    #[error("control socket {}: malformed response: {message}", path.display())]
    Protocol {
        /// The control socket.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

impl ClientError {
    fn io(path: &Path, timeout: Duration, e: FrameError) -> ClientError {
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
    let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
            path: path.to_path_buf(),
        },
        _ if e.raw_os_error() == Some(libc::ENOTSOCK) => ClientError::NotRunning {
            path: path.to_path_buf(),
        },
        _ => ClientError::Io {
            path: path.to_path_buf(),
            cause: FrameError::Io(e),
        },
    })?;
    let t = timeout.max(Duration::from_millis(1));
    let set = stream
        .set_read_timeout(Some(t))
        .and_then(|_| stream.set_write_timeout(Some(t)));
    set.map_err(|e| ClientError::io(path, timeout, FrameError::Io(e)))?;
    Ok(stream)
}

fn exchange(
    stream: &mut UnixStream,
    path: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let body = serde_json::to_vec(req).map_err(|e| ClientError::Protocol {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_frame(stream, &body).map_err(|e| ClientError::io(path, timeout, e))?;
    let answer = read_frame(stream).map_err(|e| ClientError::io(path, timeout, e))?;
    serde_json::from_slice(&answer).map_err(|e| ClientError::Protocol {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Sends one request to the supervisor listening on `path` and returns its answer.
///
/// Blocking, no runtime needed. `timeout` bounds each read and write.
pub fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let mut stream = connect(path, timeout)?;
    exchange(&mut stream, path, req, timeout)
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
    fn requests_have_the_documented_json() {
        let cases = [
            (Request::Status, r#"{"cmd":"status"}"#),
            (Request::Stop, r#"{"cmd":"stop"}"#),
            (Request::Ping, r#"{"cmd":"ping"}"#),
            (
                Request::Restart {
                    worker: WorkerName::Video,
                },
                r#"{"cmd":"restart","worker":"video"}"#,
            ),
        ];
        for (req, json) in cases {
            assert_eq!(serde_json::to_string(&req).unwrap(), json);
            assert_eq!(serde_json::from_str::<Request>(json).unwrap(), req);
        }
        let bad = serde_json::from_str::<Request>(r#"{"cmd":"restart","worker":"audio"}"#);
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("unknown variant `audio`"));
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
    }

    #[test]
    fn responses_have_the_documented_json() {
        let cases = [
            (Response::Ok, r#"{"ok":true}"#),
            (Response::Pong { pid: 7 }, r#"{"ok":true,"pid":7}"#),
            (
                Response::Error("unknown worker".into()),
                r#"{"ok":false,"error":"unknown worker"}"#,
            ),
        ];
        for (resp, json) in cases {
            assert_eq!(serde_json::to_string(&resp).unwrap(), json);
            assert_eq!(serde_json::from_str::<Response>(json).unwrap(), resp);
        }
        assert_eq!(
            serde_json::from_str::<Response>(r#"{"ok":false}"#).unwrap(),
            Response::Error("the supervisor gave no reason".into())
        );
    }

    #[test]
    fn framing_round_trips_and_caps_the_size() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"{\"cmd\":\"ping\"}").unwrap();
        assert_eq!(&buf[..4], &[0, 0, 0, 14]);
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).unwrap(), b"{\"cmd\":\"ping\"}");

        // A hostile length is refused before anything is allocated.
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(
            matches!(read_frame(&mut r), Err(FrameError::TooLarge { len }) if len == u32::MAX as usize)
        );
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            write_frame(&mut Vec::new(), &big),
            Err(FrameError::TooLarge { .. })
        ));

        // Exactly the cap is allowed.
        let max = vec![b' '; MAX_MESSAGE_BYTES];
        let mut buf = Vec::new();
        write_frame(&mut buf, &max).unwrap();
        assert_eq!(read_frame(&mut &buf[..]).unwrap().len(), MAX_MESSAGE_BYTES);

        // Truncated input is an error, not a hang or a panic.
        let mut r: &[u8] = &[0, 0, 0, 9, b'{'];
        assert!(matches!(read_frame(&mut r), Err(FrameError::Closed)));
        let mut r: &[u8] = &[0, 0];
        assert!(matches!(read_frame(&mut r), Err(FrameError::Closed)));
    }

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
