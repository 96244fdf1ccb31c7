//! The async client, for callers that already run tokio (the stream worker relays the status
//! on every `GET /api/status`). Same errors and same answers as the blocking [`crate::client`].

use std::path::Path;
use std::time::Duration;

use tokio::net::UnixStream;

use crate::client::{decode, encode, expect_status, ClientError};
use crate::frame::async_frame::{read_frame, write_frame};
use crate::message::{Request, Response};
use crate::status::Status;

/// Sends one request to the supervisor listening on `path` and returns its answer.
///
/// `timeout` bounds the whole exchange, connecting included.
pub async fn request(
    path: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let exchange = async {
        let mut stream = UnixStream::connect(path)
            .await
            .map_err(|e| ClientError::connect(path, e))?;
        let body = encode(path, req)?;
        write_frame(&mut stream, &body)
            .await
            .map_err(|e| ClientError::io(path, timeout, e))?;
        let answer = read_frame(&mut stream)
            .await
            .map_err(|e| ClientError::io(path, timeout, e))?;
        decode(path, &answer)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Timeout {
            path: path.to_path_buf(),
            timeout,
        }),
    }
}

/// Asks for the status JSON; an `{"ok":false}` answer is [`ClientError::Refused`].
pub async fn status(path: &Path, timeout: Duration) -> Result<Status, ClientError> {
    expect_status(path, request(path, &Request::Status, timeout).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::async_frame;
    use crate::status::tests::sample;
    use tokio::net::UnixListener;

    /// Serves one connection with `answer` (raw bytes after reading one request) and returns
    /// the request.
    async fn serve_once(listener: UnixListener, answer: Vec<u8>) -> Request {
        let (mut s, _) = listener.accept().await.unwrap();
        let req = async_frame::read_frame(&mut s).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, &answer)
            .await
            .unwrap();
        serde_json::from_slice(&req).unwrap()
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut m = (body.len() as u32).to_be_bytes().to_vec();
        m.extend_from_slice(body);
        m
    }

    #[tokio::test]
    async fn status_is_fetched_typed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let l = UnixListener::bind(&path).unwrap();
        let answer = serde_json::to_vec(&Response::Status(Box::new(sample()))).unwrap();
        let server = tokio::spawn(serve_once(l, framed(&answer)));
        let st = status(&path, Duration::from_secs(5)).await.unwrap();
        assert_eq!(st, sample());
        assert_eq!(server.await.unwrap(), Request::Status);
    }

    #[tokio::test]
    async fn timestamps_keep_their_last_bit() {
        // Unix times near 1.8e9 with sub-microsecond digits are where a parser that is not
        // round-trip exact loses a unit in the last place (seen in CI).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        for t in [1795671605.0508347_f64, 1795671605.050835, 1764136000.123456] {
            let mut st = sample();
            st.supervisor.uptime_s = t;
            let text = format!(
                r#"{{"ok":true,"status":{}}}"#,
                serde_json::to_string(&st).unwrap()
            );
            let l = UnixListener::bind(&path).unwrap();
            let server = tokio::spawn(serve_once(l, framed(text.as_bytes())));
            let got = status(&path, Duration::from_secs(5)).await.unwrap();
            assert_eq!(got.supervisor.uptime_s.to_bits(), t.to_bits(), "{t}");
            let again: Status =
                serde_json::from_str(&serde_json::to_string(&got).unwrap()).unwrap();
            assert_eq!(again.supervisor.uptime_s.to_bits(), t.to_bits(), "{t}");
            server.await.unwrap();
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[tokio::test]
    async fn missing_socket_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.sock");
        let e = status(&path, Duration::from_secs(1)).await.unwrap_err();
        assert!(e.is_unavailable(), "{e}");
        assert_eq!(
            e.to_string(),
            format!("no supervisor running (socket {})", path.display())
        );
    }

    #[tokio::test]
    async fn refusals_garbage_and_silence_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");

        let l = UnixListener::bind(&path).unwrap();
        let t = tokio::spawn(serve_once(l, framed(br#"{"ok":false,"error":"busy"}"#)));
        let e = status(&path, Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(e, ClientError::Refused { ref message, .. } if message == "busy"),
            "{e}"
        );
        assert!(!e.is_unavailable());
        t.await.unwrap();

        std::fs::remove_file(&path).unwrap();
        let l = UnixListener::bind(&path).unwrap();
        let t = tokio::spawn(serve_once(l, b"\xff\xff\xff\xffjunk".to_vec()));
        let e = status(&path, Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(
                e,
                ClientError::Io {
                    cause: crate::FrameError::TooLarge { .. },
                    ..
                }
            ),
            "{e}"
        );
        t.await.unwrap();

        std::fs::remove_file(&path).unwrap();
        let l = UnixListener::bind(&path).unwrap();
        let t = tokio::spawn(serve_once(l, framed(br#"{"ok":true,"pid":3}"#)));
        let e = status(&path, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(e, ClientError::Protocol { .. }), "{e}");
        t.await.unwrap();

        std::fs::remove_file(&path).unwrap();
        let l = UnixListener::bind(&path).unwrap();
        let t = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(s);
        });
        let e = status(&path, Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
        assert!(e.is_unavailable());
        t.abort();
    }
}
