//! The supervisor's own stdout and stderr, written without ever blocking the event loop.
//!
//! Workers' lines and the supervisor's log lines are queued (bounded) to one writer thread per
//! stream; that thread does the blocking writes. When the queue is full (whoever reads our
//! stderr has stopped), lines are dropped and counted, never waited for: a stalled log reader
//! must not stall the watchdog or the control socket. The count is written as a line once the
//! stream moves again, and [`dropped`] gives the total.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lines queued per stream before new ones are dropped (a line is at most 16 KiB).
const QUEUE_LINES: usize = 1024;

/// Which of our standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// File descriptor 1.
    Stdout,
    /// File descriptor 2.
    Stderr,
}

struct Sink {
    tx: SyncSender<Vec<u8>>,
    /// Lines queued and not yet written (for [`flush`]).
    pending: &'static AtomicUsize,
    /// Dropped since the last note about it was written.
    dropped_unreported: &'static AtomicU64,
}

/// Every line dropped on either stream since the start.
static DROPPED_TOTAL: AtomicU64 = AtomicU64::new(0);

fn sink(stream: Stream) -> &'static Sink {
    static OUT: OnceLock<Sink> = OnceLock::new();
    static ERR: OnceLock<Sink> = OnceLock::new();
    let cell = match stream {
        Stream::Stdout => &OUT,
        Stream::Stderr => &ERR,
    };
    cell.get_or_init(|| Sink::start(stream))
}

impl Sink {
    fn start(stream: Stream) -> Sink {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_LINES);
        let pending: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
        let dropped: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        let spawned = std::thread::Builder::new()
            .name(format!("{stream:?}-writer").to_lowercase())
            .spawn(move || {
                for line in rx {
                    let mut out: Box<dyn Write> = match stream {
                        Stream::Stdout => Box::new(io::stdout().lock()),
                        Stream::Stderr => Box::new(io::stderr().lock()),
                    };
                    // A closed stream loses the line; it must not end the supervisor.
                    let _ = out.write_all(&line);
                    // Relaxed: only a count; the line was written above either way.
                    let n = dropped.swap(0, Ordering::Relaxed);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "billiards-supervisor: dropped {n} output line(s): this stream was not read fast enough"
                        );
                    }
                    let _ = out.flush();
                    pending.fetch_sub(1, Ordering::Release);
                }
            });
        if let Err(e) = spawned {
            // Without a writer every line is dropped (and counted): better than blocking.
            let _ = writeln!(
                io::stderr(),
                "billiards-supervisor: cannot start the output writer thread: {e}"
            );
        }
        Sink {
            tx,
            pending,
            dropped_unreported: dropped,
        }
    }

    fn send(&self, line: Vec<u8>) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(_) => {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                self.dropped_unreported.fetch_add(1, Ordering::Relaxed);
                DROPPED_TOTAL.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Queues `line` (which should end with a newline) for `stream`; drops and counts it when the
/// queue is full. Never blocks.
pub fn write_line(stream: Stream, line: Vec<u8>) {
    sink(stream).send(line);
}

/// How many lines were dropped on either stream since the start.
pub fn dropped() -> u64 {
    DROPPED_TOTAL.load(Ordering::Relaxed)
}

/// Waits up to `timeout` for the queued lines to be written (at exit, so the last log lines
/// are not lost when the stream is read).
pub fn flush(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for stream in [Stream::Stdout, Stream::Stderr] {
        let s = sink(stream);
        // Acquire: pairs with the writer thread's Release decrement after its write.
        while s.pending.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A `tracing_subscriber` writer for the supervisor's own log: each event is gathered and
/// queued as one line on stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrLog;

/// One log event being formatted; queued when dropped.
#[derive(Debug, Default)]
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            write_line(Stream::Stderr, std::mem::take(&mut self.0));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrLog {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine::default()
    }
}
