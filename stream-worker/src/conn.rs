//! Per-connection limits that keep hostile or broken clients from holding the server's
//! connection slots (SPEC "HTTP hardening"): the deadlines every connection gets, a socket
//! wrapper that fails writes which make no progress, and the per-peer-address cap.
//!
//! The request-head deadline (which also closes idle keep-alive connections) is enforced by
//! hyper's `header_read_timeout`, whose timer starts whenever hyper waits for a new request
//! head; this module only decides its length.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The SPEC's deadline for a complete request head, and for the next head on an idle
/// keep-alive connection.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Test hook: milliseconds that replace [`HEAD_TIMEOUT`], so process tests need not wait
/// 10 s. Only a shorter deadline is accepted; anything else is ignored, so the variable can
/// never weaken the server.
pub const HEAD_TIMEOUT_ENV: &str = "BILLIARDS_STREAM_TEST_HEAD_TIMEOUT_MS";

/// The deadlines of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// For a complete request head, counted from when the server starts waiting for it
    /// (connection accepted, or the previous response finished on a keep-alive connection).
    pub head: Duration,
    /// For write progress: a connection whose socket accepts no byte for this long, while
    /// the server has something to send, is closed (`stream.client_stall_sec`).
    pub stall: Duration,
}

impl Deadlines {
    /// The deadlines of `config`, with the head deadline shortened by [`HEAD_TIMEOUT_ENV`]
    /// when that is set to a valid smaller value.
    pub fn from_config(config: &config::StreamConfig) -> Deadlines {
        let head = std::env::var(HEAD_TIMEOUT_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .filter(|d| !d.is_zero() && *d < HEAD_TIMEOUT)
            .unwrap_or(HEAD_TIMEOUT);
        Deadlines {
            head,
            // Validated by the config crate to (0, 86400].
            stall: Duration::from_secs_f64(config.client_stall_sec.clamp(0.001, 86_400.0)),
        }
    }
}

/// A socket whose writes fail with `TimedOut` once they have been blocked (the peer not
/// reading) for longer than the stall limit. Progress of a single byte restarts the clock, so
/// a slow but reading client is never cut off. Because the limit lives in the socket, it
/// covers every response (heads, bodies, streams, pipelined answers, upgraded connections)
/// without any handler having to know about it.
#[derive(Debug)]
pub struct StallLimited<T> {
    inner: T,
    limit: Duration,
    /// Fires `limit` after the first write that found the socket full; only polled while
    /// `blocked` is set.
    timer: Pin<Box<Sleep>>,
    blocked: bool,
}

impl<T> StallLimited<T> {
    /// Wraps `inner`; writes blocked for longer than `limit` fail.
    pub fn new(inner: T, limit: Duration) -> StallLimited<T> {
        StallLimited {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            blocked: false,
        }
    }

    /// The wrapped socket.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Passes a finished write through and restarts the clock; on a blocked write, starts the
    /// clock (first time) and turns the blocked write into an error once it has run out. The
    /// timer is polled with the same waker, so the task wakes at the deadline even when the
    /// socket never becomes writable.
    fn watch<R>(&mut self, cx: &mut Context<'_>, res: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match res {
            Poll::Pending => {
                if !self.blocked {
                    self.blocked = true;
                    let deadline = Instant::now() + self.limit;
                    self.timer.as_mut().reset(deadline);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the client read nothing for {:.1} s (stream.client_stall_sec)",
                            self.limit.as_secs_f64()
                        ),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            done => {
                self.blocked = false;
                done
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallLimited<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallLimited<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, res)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, res)
    }
}

/// Open connections per peer address, capped at `stream.max_connections_per_ip`.
#[derive(Debug)]
pub struct PerIpLimit {
    max: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One admitted connection of a peer; frees its place when dropped.
#[derive(Debug)]
pub struct IpSlot {
    limit: Arc<PerIpLimit>,
    ip: IpAddr,
}

impl PerIpLimit {
    /// A cap of `max` connections per address; 0 = no limit.
    pub fn new(max: u32) -> Arc<PerIpLimit> {
        Arc::new(PerIpLimit {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Admits one more connection from `ip`: `Some(None)` when there is no limit,
    /// `Some(Some(slot))` when under the limit, `None` when `ip` already has `max` open.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Option<IpSlot>> {
        if self.max == 0 {
            return Some(None);
        }
        // An IPv4 client of a dual-stack socket shows up as ::ffff:a.b.c.d; count it as itself.
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Some(IpSlot {
            limit: self.clone(),
            ip,
        }))
    }

    /// Connections open from `ip` (for tests and diagnostics).
    pub fn open(&self, ip: IpAddr) -> u32 {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.limit.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // Keeps the table as small as the set of connected peers.
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn per_ip_limit_counts_each_address_and_frees_on_drop() {
        let limit = PerIpLimit::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let s1 = limit.admit(a).unwrap();
        let _s2 = limit.admit(mapped).unwrap();
        assert!(
            limit.admit(a).is_none(),
            "the mapped address is the same peer"
        );
        let _s3 = limit.admit(b).unwrap();
        assert_eq!(limit.open(a), 2);
        drop(s1);
        assert_eq!(limit.open(a), 1);
        assert!(limit.admit(a).is_some());
    }

    #[test]
    fn zero_means_no_per_ip_limit() {
        let limit = PerIpLimit::new(0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let slots: Vec<_> = (0..1000).map(|_| limit.admit(a).unwrap()).collect();
        assert!(slots.iter().all(Option::is_none));
        assert_eq!(limit.open(a), 0);
    }

    #[test]
    fn head_deadline_is_the_spec_value_unless_the_hook_shortens_it() {
        let c = config::StreamConfig::default();
        // The hook is read from the environment; this test owns that variable.
        std::env::remove_var(HEAD_TIMEOUT_ENV);
        let d = Deadlines::from_config(&c);
        assert_eq!(d.head, HEAD_TIMEOUT);
        assert_eq!(d.stall, Duration::from_secs(10));
        for (value, want) in [
            ("300", Duration::from_millis(300)),
            ("60000", HEAD_TIMEOUT),
            ("0", HEAD_TIMEOUT),
            ("x", HEAD_TIMEOUT),
        ] {
            std::env::set_var(HEAD_TIMEOUT_ENV, value);
            assert_eq!(Deadlines::from_config(&c).head, want, "{value}");
        }
        std::env::remove_var(HEAD_TIMEOUT_ENV);
    }

    #[tokio::test]
    async fn a_write_blocked_beyond_the_limit_fails_and_progress_restarts_the_clock() {
        // A real socket pair with small buffers: the peer's reading decides progress.
        let (a, mut b) = tokio::net::UnixStream::pair().unwrap();
        let mut w = StallLimited::new(a, Duration::from_millis(300));
        let chunk = vec![7u8; 64 * 1024];
        // Fill the buffers while the peer reads nothing.
        let started = std::time::Instant::now();
        let err = loop {
            if let Err(e) = w.write_all(&chunk).await {
                break e;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the blocked write never failed"
            );
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("client_stall_sec"), "{err}");

        // A peer that keeps reading, slowly, is never cut off.
        let (a, mut b2) = tokio::net::UnixStream::pair().unwrap();
        let mut w = StallLimited::new(a, Duration::from_millis(300));
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut total = 0usize;
            while total < 4 * 1024 * 1024 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                match b2.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
            total
        });
        for _ in 0..64 {
            w.write_all(&chunk)
                .await
                .expect("a reading peer makes progress");
        }
        drop(w);
        assert_eq!(reader.await.unwrap(), 4 * 1024 * 1024);
        let _ = b.read(&mut [0u8; 1]).await;
    }
}
