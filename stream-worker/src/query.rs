//! Query-string parsing and validation of the HTTP endpoints' parameters.
//!
//! Only the parameters an endpoint knows are validated; others (`token`, cache busters such as
//! `_=`) are ignored, the way browsers and proxies expect. A bad value names the parameter,
//! the allowed range and what was given.

use std::fmt;

/// Highest `fps` a client may ask for (SPEC: `fps=1..60`).
pub const MAX_FPS_PARAM: u32 = 60;

/// A query parameter with a value outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query parameter {name}={value:?} is invalid: {rule}")]
pub struct QueryError {
    /// The parameter.
    pub name: &'static str,
    /// What was given (percent-decoded).
    pub value: String,
    /// The allowed values, e.g. `must be an integer from 1 to 100`.
    pub rule: String,
}

/// Defaults for parameters a client leaves out (from `[stream]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    /// `stream.jpeg_quality`.
    pub quality: u8,
    /// `stream.max_fps`: both the default and the ceiling of `fps`.
    pub max_fps: u32,
}

/// Parameters of `GET /stream/video`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamParams {
    /// JPEG quality 1..=100.
    pub quality: u8,
    /// Frames per second actually sent: the asked value capped at `stream.max_fps`.
    pub fps: u32,
    /// Draw the detections overlay.
    pub overlay: bool,
}

/// Parameters of `GET /snapshot.jpg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotParams {
    /// JPEG quality 1..=100.
    pub quality: u8,
    /// Draw the detections overlay.
    pub overlay: bool,
}

/// Decoded `name=value` pairs of a query string, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Splits and percent-decodes a raw query string (`None` = no `?`).
    pub fn parse(raw: Option<&str>) -> Query {
        let Some(raw) = raw else {
            return Query::default();
        };
        let pairs = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (percent_decode(k), percent_decode(v)),
                None => (percent_decode(p), String::new()),
            })
            .collect();
        Query(pairs)
    }

    /// The last value given for `name` (later values override earlier ones, like most servers).
    /// An empty value (`quality=`) counts as not given, so the SPEC's
    /// `/snapshot.jpg?quality=&overlay=` and a form left blank mean the defaults.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Parameters of `/stream/video`.
    pub fn stream_params(&self, d: Defaults) -> Result<StreamParams, QueryError> {
        let quality = self.quality(d)?;
        let fps = match self.get("fps") {
            None => d.max_fps,
            Some(v) => int_in_range("fps", v, 1, MAX_FPS_PARAM)?.min(d.max_fps),
        };
        let overlay = self.overlay()?;
        Ok(StreamParams {
            quality,
            fps,
            overlay,
        })
    }

    /// Parameters of `/snapshot.jpg`.
    pub fn snapshot_params(&self, d: Defaults) -> Result<SnapshotParams, QueryError> {
        Ok(SnapshotParams {
            quality: self.quality(d)?,
            overlay: self.overlay()?,
        })
    }

    fn quality(&self, d: Defaults) -> Result<u8, QueryError> {
        match self.get("quality") {
            None => Ok(d.quality),
            // The range check makes the narrowing exact.
            Some(v) => int_in_range("quality", v, 1, 100).map(|q| q as u8),
        }
    }

    fn overlay(&self) -> Result<bool, QueryError> {
        match self.get("overlay") {
            None => Ok(false),
            Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(v) => Err(QueryError {
                name: "overlay",
                value: v.to_string(),
                rule: "must be 0 or 1".into(),
            }),
        }
    }
}

fn int_in_range(name: &'static str, value: &str, lo: u32, hi: u32) -> Result<u32, QueryError> {
    let err = || QueryError {
        name,
        value: value.to_string(),
        rule: format!("must be an integer from {lo} to {hi}"),
    };
    // Only plain decimal digits: "+5", " 5" or "5.0" are rejected rather than guessed at.
    if value.is_empty() || value.len() > 9 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let n: u32 = value.parse().map_err(|_| err())?;
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        Err(err())
    }
}

/// Decodes `%XX` escapes and `+` (space) of `application/x-www-form-urlencoded`; a malformed
/// escape is kept as is, and invalid UTF-8 is replaced, so decoding never fails.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for StreamParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "quality={} fps={} overlay={}",
            self.quality,
            self.fps,
            u8::from(self.overlay)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Defaults = Defaults {
        quality: 85,
        max_fps: 30,
    };

    fn stream(q: &str) -> Result<StreamParams, QueryError> {
        Query::parse(Some(q)).stream_params(D)
    }

    #[test]
    fn defaults_apply_when_parameters_are_missing() {
        let p = Query::parse(None).stream_params(D).unwrap();
        assert_eq!(
            p,
            StreamParams {
                quality: 85,
                fps: 30,
                overlay: false
            }
        );
        let s = Query::parse(Some("")).snapshot_params(D).unwrap();
        assert_eq!(s.quality, 85);
        assert!(!s.overlay);
    }

    #[test]
    fn valid_values_are_taken_and_fps_is_capped_at_max_fps() {
        let p = stream("quality=50&fps=5&overlay=1").unwrap();
        assert_eq!((p.quality, p.fps, p.overlay), (50, 5, true));
        assert_eq!(stream("fps=60").unwrap().fps, 30);
        assert_eq!(stream("quality=1").unwrap().quality, 1);
        assert_eq!(stream("quality=100").unwrap().quality, 100);
    }

    #[test]
    fn out_of_range_and_garbage_values_name_the_parameter_and_the_range() {
        for (q, name) in [
            ("quality=0", "quality"),
            ("quality=101", "quality"),
            ("quality=abc", "quality"),
            ("quality=-5", "quality"),
            ("quality=+5", "quality"),
            ("quality=5.0", "quality"),
            ("quality=99999999999999999999", "quality"),
            ("fps=0", "fps"),
            ("fps=61", "fps"),
            ("fps=%20", "fps"),
            ("overlay=2", "overlay"),
            ("overlay=true", "overlay"),
        ] {
            let e = stream(q).unwrap_err();
            assert_eq!(e.name, name, "{q}");
            let msg = e.to_string();
            assert!(msg.contains(name), "{msg}");
            assert!(msg.contains("must be"), "{msg}");
        }
        assert!(stream("quality=0")
            .unwrap_err()
            .to_string()
            .contains("from 1 to 100"));
        assert!(stream("fps=99")
            .unwrap_err()
            .to_string()
            .contains("from 1 to 60"));
    }

    #[test]
    fn empty_values_mean_the_defaults() {
        let p = stream("quality=&fps=&overlay=").unwrap();
        assert_eq!((p.quality, p.fps, p.overlay), (85, 30, false));
    }

    #[test]
    fn unknown_parameters_are_ignored_and_the_last_value_wins() {
        let p = stream("token=x&_=123&quality=10&quality=20").unwrap();
        assert_eq!(p.quality, 20);
    }

    #[test]
    fn percent_decoding_handles_escapes_plus_and_malformed_input() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%41%62"), "Ab");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        let q = Query::parse(Some("token=a%2Bb%3D&x"));
        assert_eq!(q.get("token"), Some("a+b="));
        assert_eq!(
            q.get("x"),
            None,
            "a bare name without a value counts as not given"
        );
    }
}
