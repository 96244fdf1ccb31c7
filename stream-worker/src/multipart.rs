//! MJPEG framing: `multipart/x-mixed-replace` parts, as browsers, ffmpeg and OpenCV parse them.
//!
//! A part is built once per encoded frame and shared (reference-counted) by every client of
//! that variant, so sending it costs no copy and no formatting per client:
//!
//! ```text
//! --frame\r\n
//! Content-Type: image/jpeg\r\n
//! Content-Length: <n>\r\n
//! X-Frame-Number: <frame number>\r\n
//! X-Timestamp: <capture time, CLOCK_MONOTONIC seconds>\r\n
//! \r\n
//! <n bytes of JPEG>\r\n
//! ```
//!
//! The CRLF after the JPEG begins the next delimiter (`\r\n--frame`), per RFC 2046.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

/// The multipart boundary.
pub const BOUNDARY: &str = "frame";

/// `Content-Type` of `/stream/video`.
pub const CONTENT_TYPE: &str = "multipart/x-mixed-replace; boundary=frame";

/// One part, ready to send, and where its JPEG lies inside it (for `/snapshot.jpg`).
#[derive(Debug, Clone)]
pub struct Part {
    /// Headers, JPEG and trailing CRLF.
    pub bytes: Bytes,
    /// The JPEG inside `bytes`.
    pub jpeg: Range<usize>,
}

impl Part {
    /// The JPEG alone, sharing the part's memory.
    pub fn jpeg(&self) -> Bytes {
        self.bytes.slice(self.jpeg.clone())
    }
}

/// Builds the part of one JPEG.
pub fn part(jpeg: &[u8], frame_number: u64, capture_ns: u64) -> Part {
    let header = format!(
        "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Frame-Number: {frame_number}\r\nX-Timestamp: {}.{:06}\r\n\r\n",
        jpeg.len(),
        capture_ns / 1_000_000_000,
        (capture_ns % 1_000_000_000) / 1_000,
    );
    let mut buf = BytesMut::with_capacity(header.len() + jpeg.len() + 2);
    buf.put_slice(header.as_bytes());
    let start = buf.len();
    buf.put_slice(jpeg);
    let end = buf.len();
    buf.put_slice(b"\r\n");
    Part {
        bytes: buf.freeze(),
        jpeg: start..end,
    }
}

/// Why a multipart body could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The bytes where a delimiter belongs are something else.
    #[error("expected the delimiter {expected:?}, found {found:?}")]
    BadDelimiter {
        /// The delimiter line.
        expected: String,
        /// What was there (at most 40 bytes).
        found: String,
    },
    /// A part's headers are not `Name: value` lines, or are too long.
    #[error("bad part headers: {0}")]
    BadHeaders(String),
    /// A part has no usable `Content-Length`.
    #[error("part without a valid Content-Length")]
    NoContentLength,
    /// A part's body is not followed by CRLF.
    #[error("part body of {0} bytes is not followed by CRLF")]
    MissingCrlf(usize),
}

/// One part as a client sees it.
#[derive(Debug, Clone)]
pub struct ParsedPart {
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (the JPEG).
    pub body: Bytes,
}

impl ParsedPart {
    /// The value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An incremental, strict client-side parser of a `multipart/x-mixed-replace` body whose
/// parts carry `Content-Length` (as this server's do), for the load generator and tests.
/// It checks the framing exactly: delimiter line, header syntax, length, trailing CRLF.
#[derive(Debug)]
pub struct Parser {
    buf: BytesMut,
    delimiter: Vec<u8>,
}

/// Longest header block accepted.
const MAX_HEADERS: usize = 16 * 1024;

impl Parser {
    /// A parser for parts separated by `--boundary`.
    pub fn new(boundary: &str) -> Parser {
        Parser {
            buf: BytesMut::new(),
            delimiter: format!("--{boundary}\r\n").into_bytes(),
        }
    }

    /// Adds received body bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet parsed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete part, `Ok(None)` when more bytes are needed.
    pub fn next_part(&mut self) -> Result<Option<ParsedPart>, ParseError> {
        // A preamble of empty lines is allowed before a delimiter.
        while self.buf.starts_with(b"\r\n") {
            let _ = self.buf.split_to(2);
        }
        let d = self.delimiter.len();
        let have = self.buf.len().min(d);
        if self.buf[..have] != self.delimiter[..have] {
            return Err(ParseError::BadDelimiter {
                expected: String::from_utf8_lossy(&self.delimiter).into_owned(),
                found: String::from_utf8_lossy(&self.buf[..self.buf.len().min(40)]).into_owned(),
            });
        }
        if self.buf.len() < d {
            return Ok(None);
        }
        let Some(end) = find(&self.buf[d..], b"\r\n\r\n") else {
            if self.buf.len() > MAX_HEADERS {
                return Err(ParseError::BadHeaders(format!(
                    "no blank line within {MAX_HEADERS} bytes"
                )));
            }
            return Ok(None);
        };
        let header_text = std::str::from_utf8(&self.buf[d..d + end])
            .map_err(|_| ParseError::BadHeaders("not UTF-8".into()))?;
        let mut headers = Vec::new();
        for line in header_text.split("\r\n") {
            let (name, value) = line.split_once(':').ok_or_else(|| {
                ParseError::BadHeaders(format!("line {line:?} is not `Name: value`"))
            })?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or(ParseError::NoContentLength)?;
        let body_start = d + end + 4;
        if self.buf.len() < body_start + len + 2 {
            return Ok(None);
        }
        if &self.buf[body_start + len..body_start + len + 2] != b"\r\n" {
            return Err(ParseError::MissingCrlf(len));
        }
        let mut part = self.buf.split_to(body_start + len + 2).freeze();
        let body = part.split_off(body_start).slice(..len);
        Ok(Some(ParsedPart { headers, body }))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_has_boundary_headers_jpeg_and_crlf() {
        let jpeg = b"\xff\xd8hello\xff\xd9";
        let p = part(jpeg, 42, 3_000_123_456);
        let text = String::from_utf8_lossy(&p.bytes);
        assert!(
            text.starts_with("--frame\r\nContent-Type: image/jpeg\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nContent-Length: 9\r\n"), "{text}");
        assert!(text.contains("\r\nX-Frame-Number: 42\r\n"), "{text}");
        assert!(text.contains("\r\nX-Timestamp: 3.000123\r\n"), "{text}");
        let header_end = p.bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(p.jpeg, header_end..header_end + jpeg.len());
        assert_eq!(&p.jpeg()[..], jpeg);
        assert!(p.bytes.ends_with(b"\xff\xd9\r\n"));
        assert_eq!(p.bytes.len(), header_end + jpeg.len() + 2);
    }

    #[test]
    fn parser_reads_parts_split_anywhere() {
        let mut stream = Vec::new();
        for n in 1..=3u64 {
            stream.extend_from_slice(&part(format!("jpeg-{n}").as_bytes(), n, n * 1000).bytes);
        }
        for chunk in [1usize, 7, 100, 10_000] {
            let mut p = Parser::new(BOUNDARY);
            let mut got = Vec::new();
            for c in stream.chunks(chunk) {
                p.push(c);
                while let Some(part) = p.next_part().unwrap() {
                    got.push(part);
                }
            }
            assert_eq!(got.len(), 3, "chunk {chunk}");
            assert_eq!(&got[1].body[..], b"jpeg-2");
            assert_eq!(got[1].header("x-frame-number"), Some("2"));
            assert_eq!(got[1].header("content-type"), Some("image/jpeg"));
            assert_eq!(p.buffered(), 0);
        }
    }

    #[test]
    fn parser_rejects_bad_framing() {
        let mut p = Parser::new(BOUNDARY);
        p.push(b"--other\r\n");
        assert!(matches!(
            p.next_part(),
            Err(ParseError::BadDelimiter { .. })
        ));
        let mut p = Parser::new(BOUNDARY);
        p.push(b"--frame\r\nContent-Type: image/jpeg\r\n\r\nxx");
        assert_eq!(p.next_part().unwrap_err(), ParseError::NoContentLength);
        let mut p = Parser::new(BOUNDARY);
        p.push(b"--frame\r\nContent-Length: 2\r\n\r\nxxyy");
        assert_eq!(p.next_part().unwrap_err(), ParseError::MissingCrlf(2));
        let mut p = Parser::new(BOUNDARY);
        p.push(b"--frame\r\nbroken\r\n\r\n");
        assert!(matches!(p.next_part(), Err(ParseError::BadHeaders(_))));
    }

    #[test]
    fn content_type_names_the_boundary() {
        assert!(CONTENT_TYPE.ends_with(&format!("boundary={BOUNDARY}")));
    }
}
