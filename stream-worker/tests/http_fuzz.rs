//! Fuzzing of the real server's request handling: malformed request heads (random bytes, and
//! heads assembled from HTTP's own words with broken framing) and hostile query strings are
//! sent over real sockets to the real `billiards-stream-worker`. Every case must be answered
//! with a status the SPEC allows (never 500) or closed, promptly, and the server must stay up
//! and never panic. `PROPTEST_CASES=N` makes a longer run (`scripts/fuzz.sh`, docs/SECURITY.md).

mod common;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use common::*;

/// How long the server gets to answer or close one case. Incomplete heads are closed after
/// the (test-shortened) head deadline, so only a hung server comes near this.
const CASE_LIMIT: Duration = Duration::from_secs(15);

/// A server with a short head deadline, so incomplete heads end quickly.
fn start(dir: &std::path::Path) -> (Segment, billiards_stream_worker::feed::Feed, Server) {
    let mut setup = Setup::new(dir);
    setup.env = vec![(
        billiards_stream_worker::conn::HEAD_TIMEOUT_ENV.into(),
        "300".into(),
    )];
    setup.max_clients = 64;
    let seg = setup.frame_segment();
    let feed = seg.feed(30);
    let server = Server::start(&setup, dir);
    server.wait_health(200);
    (seg, feed, server)
}

fn runner() -> TestRunner {
    // Config::default() honours PROPTEST_CASES; no regression files for a process test.
    TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    })
}

/// What the server sent for one case.
struct Outcome {
    bytes: Vec<u8>,
    /// The server closed (or reset) the connection.
    closed: bool,
}

impl Outcome {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The first status code, if the server answered.
    fn status(&self) -> Option<u16> {
        let t = self.text();
        let line = t.lines().next()?;
        line.strip_prefix("HTTP/1.1 ")
            .or_else(|| line.strip_prefix("HTTP/1.0 "))?
            .get(..3)?
            .parse()
            .ok()
    }
}

/// Sends `bytes` on a fresh connection and reads until the server closes, or until a stream
/// response has started, or [`CASE_LIMIT`].
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Outcome {
    let mut s = TcpStream::connect(addr).unwrap();
    // The server may refuse mid-way (431, 400) and close: a failed write is part of the case.
    let _ = s.write_all(bytes);
    let deadline = Instant::now() + CASE_LIMIT;
    let mut out = Outcome {
        bytes: Vec::new(),
        closed: false,
    };
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => {
                out.closed = true;
                break;
            }
            Ok(n) => {
                out.bytes.extend_from_slice(&buf[..n]);
                // A video stream never ends by itself; its head is all this case needs.
                if out.text().contains("multipart/x-mixed-replace") || out.bytes.len() > 1 << 20 {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                out.closed = true;
                break;
            }
        }
    }
    out
}

/// The checks every case shares: an answer (or a close) in time, never a 500, no OS error
/// text, and the server still running.
fn check_common(server: &RefCell<Server>, out: &Outcome) -> Result<(), TestCaseError> {
    let status = out.status();
    prop_assert!(
        out.closed || status.is_some(),
        "neither answered nor closed within {CASE_LIMIT:?}; got {:?}",
        out.text()
    );
    if !out.bytes.is_empty() {
        prop_assert!(status.is_some(), "not an HTTP response: {:?}", out.text());
    }
    if let Some(code) = status {
        prop_assert!(
            (100..600).contains(&code) && code != 500 && code != 502,
            "status {code}: {:?}",
            out.text()
        );
    }
    prop_assert!(!out.text().contains("os error"), "{:?}", out.text());
    let mut server = server.borrow_mut();
    prop_assert!(
        server.running(),
        "the server exited; log:\n{}",
        server.log_text()
    );
    Ok(())
}

fn one_of(words: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(words).prop_map(str::to_string)
}

/// Request heads built from HTTP's words with broken framing: odd methods, targets, versions,
/// line endings, duplicated or malformed framing headers, control bytes, oversized parts,
/// trailing garbage; or plain random bytes.
fn request_head() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        one_of(&[
            "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PATCH", "get",
            "", " GET", "G\0T",
        ]),
        "[A-Za-z]{1,12}",
    ];
    let target = prop_oneof![
        one_of(&[
            "/",
            "/healthz",
            "/snapshot.jpg",
            "/stream/video",
            "/api/status",
            "/api/stream",
            "/api/detections",
            "/metrics",
            "*",
            "//",
            "/../../etc/passwd",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/%00",
            "/%",
            "/%zz",
            "http://evil.example/",
            "http://127.0.0.1/healthz",
            "localhost:80",
            "/snapshot.jpg?quality=%ff%fe&overlay=%",
            "/stream/video?fps=0",
            "/stream/video?fps=99999999999999999999",
        ]),
        "/[ -~]{0,64}",
        "/[\\x00-\\xff]{0,16}",
        (1usize..20_000).prop_map(|n| format!("/{}", "a".repeat(n))),
    ];
    let version = one_of(&[
        "HTTP/1.1",
        "HTTP/1.0",
        "HTTP/2.0",
        "HTTP/0.9",
        "HTTP/9.9",
        "HTTP/1.1 x",
        "http/1.1",
        "",
        "HTTP/",
        "HTTP/1.",
    ]);
    let header = prop_oneof![
        one_of(&[
            "Host: localhost",
            "Host: 127.0.0.1:8080",
            "Host: [::1]:8080",
            "Host: evil.example",
            "Host:",
            "Host: localhost:99999",
            "Host: [::1",
            "Content-Length: 0",
            "Content-Length: 5",
            "Content-Length: -1",
            "Content-Length: 99999999999999999999999",
            "Content-Length: 1, 2",
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: bogus",
            "Connection: close",
            "Connection: keep-alive",
            "Connection: upgrade",
            "Upgrade: websocket",
            "Expect: 100-continue",
            "Authorization: Bearer",
            "Authorization: Bearer x y",
            "Authorization: Basic Zm9vOmJhcg==",
            " folded: continuation",
            ": empty name",
            "no colon",
            "X: \0\x01\x7f",
        ]),
        ("[!-9;-~]{1,16}", "[ -~]{0,64}").prop_map(|(k, v)| format!("{k}: {v}")),
        (1usize..70_000).prop_map(|n| format!("X-Big: {}", "b".repeat(n))),
    ];
    let eol = one_of(&["\r\n", "\n", "\r", "\r\r\n"]);
    // Well-framed heads with hostile headers and targets, so cases get past the framing and
    // reach the Host check, auth and routing.
    let framed = (
        one_of(&["GET", "HEAD", "POST"]),
        target.clone(),
        proptest::collection::vec(header.clone(), 0..6),
    )
        .prop_map(|(m, t, headers)| {
            let mut head = format!("{m} {t} HTTP/1.1\r\n");
            for h in headers {
                head.push_str(&h);
                head.push_str("\r\n");
            }
            head.push_str("\r\n");
            head.into_bytes()
        });
    let assembled = (
        method,
        target,
        version,
        proptest::collection::vec(header, 0..8),
        eol,
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(m, t, v, headers, eol, complete, tail)| {
            let mut head = format!("{m} {t} {v}{eol}");
            for h in headers {
                head.push_str(&h);
                head.push_str(&eol);
            }
            if complete {
                head.push_str(&eol);
            }
            let mut bytes = head.into_bytes();
            bytes.extend(tail);
            bytes
        });
    prop_oneof![
        3 => framed,
        3 => assembled,
        1 => proptest::collection::vec(any::<u8>(), 0..4096),
    ]
}

#[test]
fn malformed_request_heads_are_answered_or_closed_and_never_crash_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (_seg, _feed, server) = start(dir.path());
    let addr = server.addr;
    let server = RefCell::new(server);
    let mut runner = runner();
    let cases = Cell::new(0u64);
    // Which answers the cases reached, printed so a run shows it explored more than one path.
    let seen = RefCell::new(BTreeMap::<String, u64>::new());
    let result = runner.run(&request_head(), |bytes| {
        cases.set(cases.get() + 1);
        let out = exchange(addr, &bytes);
        let key = match out.status() {
            Some(code) => code.to_string(),
            None => "closed".to_string(),
        };
        *seen.borrow_mut().entry(key).or_default() += 1;
        check_common(&server, &out)
    });
    let server = server.into_inner();
    if let Err(e) = result {
        panic!("{e}\nserver log:\n{}", server.log_text());
    }
    assert_eq!(
        get(addr, "/healthz").status,
        200,
        "the server stopped serving"
    );
    assert!(
        !server.log_text().contains("panicked"),
        "{}",
        server.log_text()
    );
    eprintln!(
        "http_fuzz heads: {} cases; answers: {:?}",
        cases.get(),
        seen.into_inner()
    );
}

/// One atom of a query key or value: safe characters, valid and invalid percent escapes
/// (including bytes that are not UTF-8), and the separators themselves.
fn query_atom() -> impl Strategy<Value = String> {
    prop_oneof![
        one_of(&[
            "quality",
            "fps",
            "overlay",
            "token",
            "_",
            "=",
            "&",
            "+",
            "%",
            "%2",
            "%zz",
            "%00",
            "%ff",
            "%fe%ff",
            "%e2%82%ac",
            "%2B",
            "%26",
            "%3D",
            "0",
            "1",
            "-1",
            "100",
            "101",
            "60",
            "61",
            "1e2",
            "0x10",
            "99999999999999999999",
            "true",
            "yes",
            " ",
            "\u{00e9}",
        ]),
        "[A-Za-z0-9._~!$'()*,;:@/?-]{1,8}",
        any::<u8>().prop_map(|b| format!("%{b:02X}")),
    ]
}

#[test]
fn hostile_query_strings_get_200_or_a_clear_400_and_never_crash_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (_seg, _feed, server) = start(dir.path());
    let addr = server.addr;
    let server = RefCell::new(server);
    let strategy = (
        one_of(&[
            "/snapshot.jpg",
            "/stream/video",
            "/api/detections",
            "/api/stream",
            "/healthz",
            "/metrics",
        ]),
        proptest::collection::vec(query_atom(), 0..24),
    );
    let mut runner = runner();
    let cases = Cell::new(0u64);
    let result = runner.run(&strategy, |(path, atoms)| {
        cases.set(cases.get() + 1);
        // Raw spaces and non-ASCII are not valid in a request target; send them escaped so
        // the case reaches our parser instead of hyper's.
        let query: String = atoms
            .concat()
            .replace(' ', "%20")
            .replace('\u{00e9}', "%C3%A9");
        // HEAD for the stream: its parameters are checked the same, and no stream starts.
        let method = if path == "/stream/video" {
            "HEAD"
        } else {
            "GET"
        };
        let req = format!(
            "{method} {path}?{query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        );
        let out = exchange(addr, req.as_bytes());
        check_common(&server, &out)?;
        let status = out.status();
        prop_assert!(status.is_some(), "no answer to {req:?}");
        let status = status.unwrap_or_default();
        match path.as_str() {
            "/snapshot.jpg" | "/stream/video" => {
                prop_assert!(
                    matches!(status, 200 | 400),
                    "{status} for {req:?}: {}",
                    out.text()
                )
            }
            "/api/detections" => prop_assert!(matches!(status, 200 | 503), "{status}"),
            _ => prop_assert_eq!(status, 200, "{:?}", out.text()),
        }
        // A HEAD answer has no body (HTTP), so only a GET's 400 can carry the error text.
        if status == 400 && method == "GET" {
            let text = out.text();
            prop_assert!(
                text.contains("{\"error\":\"query parameter "),
                "a 400 must name the parameter: {text}"
            );
        }
        Ok(())
    });
    let server = server.into_inner();
    if let Err(e) = result {
        panic!("{e}\nserver log:\n{}", server.log_text());
    }
    assert_eq!(
        get(addr, "/healthz").status,
        200,
        "the server stopped serving"
    );
    assert!(
        !server.log_text().contains("panicked"),
        "{}",
        server.log_text()
    );
    eprintln!("http_fuzz queries: {} cases", cases.get());
}
