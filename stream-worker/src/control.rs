//! A minimal client of the supervisor's control socket, for `/api/status` and the restart
//! counters of `/metrics`.
//!
//! Protocol (owned by the supervisor): a Unix stream socket; each message is a 4-byte
//! big-endian length followed by that many bytes of JSON, at most 1 MiB. `{"cmd":"status"}`
//! is answered by `{"ok":true,"status":{...}}` or `{"ok":false,"error":"..."}`. Only the status
//! request is spoken here, with untyped JSON, so this crate need not depend on the supervisor's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Largest message either side may send.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Why the supervisor's status could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens on the socket (or it does not exist).
    #[error("no supervisor answers on {path}: {source}; start the tree with `billiards-supervisor start`")]
    Connect {
        /// The control socket.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The connection broke mid-exchange.
    #[error("supervisor control socket {path}: {source}")]
    Io {
        /// The control socket.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// No complete answer within the timeout.
    #[error("supervisor on {path} did not answer within {:.1} s", .timeout.as_secs_f64())]
    Timeout {
        /// The control socket.
        path: PathBuf,
        /// The limit.
        timeout: Duration,
    },
    /// The answer is not the protocol.
    #[error("supervisor on {path} sent an invalid answer: {reason}")]
    Protocol {
        /// The control socket.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The supervisor answered with `ok: false`.
    #[error("supervisor refused the status request: {0}")]
    Refused(String),
}

impl ControlError {
    /// Whether the supervisor is simply not there (as opposed to answering badly).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ControlError::Connect { .. } | ControlError::Timeout { .. }
        )
    }
}

/// Asks the supervisor listening on `path` for its status JSON (the `status` object).
pub async fn status(path: &Path, timeout: Duration) -> Result<Value, ControlError> {
    match tokio::time::timeout(
        timeout,
        exchange(path, &serde_json::json!({"cmd": "status"})),
    )
    .await
    {
        Err(_) => Err(ControlError::Timeout {
            path: path.to_path_buf(),
            timeout,
        }),
        Ok(Err(e)) => Err(e),
        Ok(Ok(mut answer)) => {
            if answer.get("ok").and_then(Value::as_bool) == Some(true) {
                match answer.get_mut("status").map(Value::take) {
                    Some(status @ Value::Object(_)) => Ok(status),
                    _ => Err(ControlError::Protocol {
                        path: path.to_path_buf(),
                        reason: "\"ok\": true without a \"status\" object".into(),
                    }),
                }
            } else {
                let error = answer
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given");
                Err(ControlError::Refused(error.to_string()))
            }
        }
    }
}

/// One request/answer exchange.
async fn exchange(path: &Path, request: &Value) -> Result<Value, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut sock = UnixStream::connect(path)
        .await
        .map_err(|source| ControlError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    let body = serde_json::to_vec(request).unwrap_or_default();
    let mut msg = Vec::with_capacity(4 + body.len());
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes());
    msg.extend_from_slice(&body);
    sock.write_all(&msg).await.map_err(io)?;
    let mut len = [0u8; 4];
    sock.read_exact(&mut len).await.map_err(io)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(ControlError::Protocol {
            path: path.to_path_buf(),
            reason: format!("message of {len} bytes is larger than the 1 MiB limit"),
        });
    }
    let mut buf = vec![0u8; len];
    sock.read_exact(&mut buf).await.map_err(io)?;
    serde_json::from_slice(&buf).map_err(|e| ControlError::Protocol {
        path: path.to_path_buf(),
        reason: format!("not JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// Serves one connection with `answer` (raw bytes after reading one request).
    async fn serve_once(listener: UnixListener, answer: Vec<u8>) -> Value {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut req = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut req).await.unwrap();
        s.write_all(&answer).await.unwrap();
        serde_json::from_slice(&req).unwrap()
    }

    fn framed(v: &Value) -> Vec<u8> {
        let body = serde_json::to_vec(v).unwrap();
        let mut m = (body.len() as u32).to_be_bytes().to_vec();
        m.extend(body);
        m
    }

    #[tokio::test]
    async fn status_is_relayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let l = UnixListener::bind(&path).unwrap();
        let answer = framed(&serde_json::json!({"ok": true, "status": {"workers": []}}));
        let server = tokio::spawn(serve_once(l, answer));
        let st = status(&path, Duration::from_secs(5)).await.unwrap();
        assert_eq!(st, serde_json::json!({"workers": []}));
        assert_eq!(server.await.unwrap(), serde_json::json!({"cmd": "status"}));
    }

    #[tokio::test]
    async fn timestamps_are_relayed_to_the_last_bit() {
        // Unix times near 1.8e9 with sub-microsecond digits are where a parser that is not
        // round-trip exact loses a unit in the last place (seen in CI).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let at = [1795671605.0508347_f64, 1795671605.050835, 1764136000.123456];
        for &t in &at {
            let l = UnixListener::bind(&path).unwrap();
            let answer = framed(&serde_json::json!({"ok": true, "status": {"at": t}}));
            let server = tokio::spawn(serve_once(l, answer));
            let st = status(&path, Duration::from_secs(5)).await.unwrap();
            assert_eq!(st["at"].as_f64().unwrap().to_bits(), t.to_bits(), "{t}");
            let text = serde_json::to_string(&st).unwrap();
            let back: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                back["at"].as_f64().unwrap().to_bits(),
                t.to_bits(),
                "{text}"
            );
            server.await.unwrap();
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[tokio::test]
    async fn missing_socket_is_unavailable_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let e = status(&dir.path().join("none.sock"), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.is_unavailable());
        assert!(e.to_string().contains("no supervisor answers on"), "{e}");
    }

    #[tokio::test]
    async fn refusals_garbage_and_silence_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");

        let l = UnixListener::bind(&path).unwrap();
        let t = tokio::spawn(serve_once(
            l,
            framed(&serde_json::json!({"ok": false, "error": "busy"})),
        ));
        let e = status(&path, Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(e, ControlError::Refused(ref m) if m == "busy"),
            "{e}"
        );
        t.await.unwrap();

        std::fs::remove_file(&path).unwrap();
        let l = UnixListener::bind(&path).unwrap();
        let t = tokio::spawn(serve_once(l, b"\xff\xff\xff\xffjunk".to_vec()));
        let e = status(&path, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(e, ControlError::Protocol { .. }), "{e}");
        t.await.unwrap();

        std::fs::remove_file(&path).unwrap();
        let l = UnixListener::bind(&path).unwrap();
        let t = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(s);
        });
        let e = status(&path, Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(e, ControlError::Timeout { .. }), "{e}");
        t.abort();
    }
}
