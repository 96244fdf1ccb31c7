//! Classifying how a worker process ended, in the words of `last_exit.reason`.

use config::exit_codes;
use config::{SourceConfig, SourceKind};

use crate::worker::WorkerName;

/// How a process ended, as `waitpid` told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code, when it exited by itself.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// Whether it dumped core.
    pub core_dumped: bool,
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(s: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        ExitStatus {
            code: s.code(),
            signal: s.signal(),
            core_dumped: s.core_dumped(),
        }
    }
}

/// What an exit means for the restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// The video worker reached the end of a non-looping file: done, not restarted.
    Finished,
    /// The camera or file could not be opened or stopped delivering (exit code 10).
    SourceUnavailable,
    /// Any other exit by itself, 0 included (a worker is not supposed to end on its own).
    Code(i32),
    /// Ended by a signal.
    Signal(i32),
}

/// An exit, classified and explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// What it means.
    pub kind: ExitKind,
    /// Why, in words.
    pub reason: String,
    /// What the worker added to the reason, if anything (see [`classify`]).
    pub detail: Option<String>,
}

/// The name of a signal (`SIGKILL`), or `signal N` when unknown.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// How a process ended, plainly: `exited with code N` or `killed by SIGX`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code, status.signal) {
        (_, Some(sig)) => format!("killed by {}", signal_name(sig)),
        (Some(code), None) => format!("exited with code {code}"),
        (None, None) => "ended in an unknown way".to_string(),
    }
}

/// Classifies an unexpected exit of `worker`. `exit_reason` is the text after
/// [`exit_codes::EXIT_REASON_TAG`] of the last such line the worker printed, if any.
pub fn classify(
    worker: WorkerName,
    status: ExitStatus,
    exit_reason: Option<&str>,
    source: &SourceConfig,
) -> Classified {
    let given = exit_reason.map(str::trim).filter(|r| !r.is_empty());
    if let Some(sig) = status.signal {
        let core = if status.core_dumped {
            " (core dumped)"
        } else {
            ""
        };
        return Classified {
            kind: ExitKind::Signal(sig),
            reason: format!("killed by {}{core}", signal_name(sig)),
            detail: None,
        };
    }
    let code = status.code.unwrap_or(-1);
    if worker == WorkerName::Video
        && code == exit_codes::OK
        && source.kind == SourceKind::File
        && !source.looping
    {
        return Classified {
            kind: ExitKind::Finished,
            reason: format!("video file ended: {}", source.path),
            detail: None,
        };
    }
    if worker == WorkerName::Video && code == exit_codes::SOURCE_UNAVAILABLE {
        // The reason is always the SPEC's `camera unavailable: /dev/video9` form, so scripts
        // can match it; what the worker said beyond it (`no such device`) is the detail.
        let reason = match source.kind {
            SourceKind::Camera => format!("camera unavailable: {}", source.camera_device()),
            SourceKind::File => format!("video file unavailable: {}", source.path),
            SourceKind::Synthetic => "video source unavailable".to_string(),
        };
        let detail = given.filter(|g| *g != reason).map(|g| {
            g.strip_prefix(reason.as_str())
                .and_then(|rest| rest.strip_prefix(": "))
                .filter(|rest| !rest.trim().is_empty())
                .unwrap_or(g)
                .to_string()
        });
        return Classified {
            kind: ExitKind::SourceUnavailable,
            reason,
            detail,
        };
    }
    let reason = match given {
        Some(r) => r.to_string(),
        None => match code {
            exit_codes::OK => "exited with code 0 without being asked to stop".to_string(),
            exit_codes::VIDEO_NOT_AVAILABLE => {
                "exited with code 11: the frame segment did not appear".to_string()
            }
            exit_codes::SEGMENT_INVALID => {
                "exited with code 12: the shared-memory segment is invalid".to_string()
            }
            exit_codes::USAGE => "exited with code 2: bad configuration or usage".to_string(),
            c => format!("exited with code {c}"),
        },
    };
    Classified {
        kind: ExitKind::Code(code),
        reason,
        detail: None,
    }
}

/// Keeps the text after the exit-reason tag of the last line that has it.
#[derive(Debug, Default, Clone)]
pub struct ExitReasonScanner {
    last: Option<String>,
}

impl ExitReasonScanner {
    /// Looks at one output line of the worker.
    pub fn line(&mut self, line: &str) {
        if let Some(pos) = line.find(exit_codes::EXIT_REASON_TAG) {
            let text = strip_ansi(&line[pos + exit_codes::EXIT_REASON_TAG.len()..]);
            let text = text.trim().trim_matches('"').trim();
            if !text.is_empty() {
                self.last = Some(text.to_string());
            }
        }
    }

    /// The last reason seen.
    pub fn take(self) -> Option<String> {
        self.last
    }
}

/// Removes ANSI escape sequences (a worker's log line may be coloured).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(c: i32) -> ExitStatus {
        ExitStatus {
            code: Some(c),
            signal: None,
            core_dumped: false,
        }
    }

    fn camera() -> SourceConfig {
        SourceConfig {
            kind: SourceKind::Camera,
            path: "/dev/video99".into(),
            ..SourceConfig::default()
        }
    }

    #[test]
    fn signals_are_named() {
        let s = ExitStatus {
            code: None,
            signal: Some(9),
            core_dumped: false,
        };
        let c = classify(WorkerName::Vision, s, None, &SourceConfig::default());
        assert_eq!(c.kind, ExitKind::Signal(9));
        assert_eq!(c.reason, "killed by SIGKILL");
        let s = ExitStatus {
            code: None,
            signal: Some(11),
            core_dumped: true,
        };
        let c = classify(
            WorkerName::Video,
            s,
            Some("ignored"),
            &SourceConfig::default(),
        );
        assert_eq!(c.reason, "killed by SIGSEGV (core dumped)");
        assert_eq!(signal_name(99), "signal 99");
    }

    #[test]
    fn camera_failure_keeps_the_workers_reason() {
        let c = classify(
            WorkerName::Video,
            code(10),
            Some("camera unavailable: /dev/video99: cannot open device"),
            &camera(),
        );
        assert_eq!(c.kind, ExitKind::SourceUnavailable);
        assert_eq!(c.reason, "camera unavailable: /dev/video99");
        assert_eq!(c.detail.as_deref(), Some("cannot open device"));
        let c = classify(WorkerName::Video, code(10), None, &camera());
        assert_eq!(c.reason, "camera unavailable: /dev/video99");
        assert_eq!(c.detail, None);
        // A worker's text in another form is kept whole as the detail.
        let c = classify(
            WorkerName::Video,
            code(10),
            Some("cannot open /dev/video99 (busy)"),
            &camera(),
        );
        assert_eq!(c.reason, "camera unavailable: /dev/video99");
        assert_eq!(c.detail.as_deref(), Some("cannot open /dev/video99 (busy)"));
    }

    #[test]
    fn end_of_a_non_looping_file_is_finished() {
        let file = SourceConfig {
            kind: SourceKind::File,
            path: "clip.mp4".into(),
            looping: false,
            ..SourceConfig::default()
        };
        let c = classify(WorkerName::Video, code(0), None, &file);
        assert_eq!(c.kind, ExitKind::Finished);
        assert_eq!(c.reason, "video file ended: clip.mp4");
        // A looping file ending with 0 is unexpected: restarted.
        let looping = SourceConfig {
            looping: true,
            ..file
        };
        assert_eq!(
            classify(WorkerName::Video, code(0), None, &looping).kind,
            ExitKind::Code(0)
        );
    }

    #[test]
    fn other_codes_use_the_reason_or_say_the_code() {
        let s = SourceConfig::default();
        let c = classify(WorkerName::Stream, code(11), None, &s);
        assert_eq!(c.kind, ExitKind::Code(11));
        assert!(c.reason.contains("code 11"), "{}", c.reason);
        let c = classify(
            WorkerName::Stream,
            code(1),
            Some("cannot bind 127.0.0.1:8080: address in use"),
            &s,
        );
        assert_eq!(c.reason, "cannot bind 127.0.0.1:8080: address in use");
        assert_eq!(
            classify(WorkerName::Stream, code(42), None, &s).reason,
            "exited with code 42"
        );
    }

    #[test]
    fn scanner_keeps_the_last_tagged_line() {
        let mut s = ExitReasonScanner::default();
        s.line("2025-01-01T00:00:00Z INFO worker=video starting");
        s.line("\u{1b}[31mERROR\u{1b}[0m exit-reason: first");
        s.line("ERROR worker=video exit-reason: camera unavailable: /dev/video9: no such device\u{1b}[0m");
        s.line("plain line");
        assert_eq!(
            s.take().as_deref(),
            Some("camera unavailable: /dev/video9: no such device")
        );
        assert_eq!(ExitReasonScanner::default().take(), None);
    }
}
