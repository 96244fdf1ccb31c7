//! What a client asks and what the supervisor answers: the JSON of each message.

use serde::{Deserialize, Serialize};

use crate::status::Status;
use crate::worker::WorkerName;

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
}
