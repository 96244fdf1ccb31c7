//! systemd's notify protocol (`sd_notify`), without libsystemd: one datagram per message to
//! the socket named by `$NOTIFY_SOCKET`.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Environment variables of the notify protocol; they are not passed on to workers.
pub const NOTIFY_ENV: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Where to send notifications, when started by systemd with `Type=notify`.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    target: Target,
    watchdog: Option<Duration>,
}

#[derive(Debug, Clone)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`/`$WATCHDOG_PID`; `None` when not under
    /// systemd (or the variable is unusable).
    pub fn from_env() -> Option<Notifier> {
        let sock = std::env::var_os("NOTIFY_SOCKET")?;
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        Notifier::new(sock.as_encoded_bytes(), watchdog).ok()
    }

    /// A notifier for the socket `addr` (a path, or `@name` for the abstract namespace);
    /// `watchdog` is the full `WATCHDOG_USEC` period.
    pub fn new(addr: &[u8], watchdog: Option<Duration>) -> io::Result<Notifier> {
        let target = match addr.split_first() {
            Some((b'@', name)) => Target::Abstract(name.to_vec()),
            Some((b'/', _)) => {
                use std::os::unix::ffi::OsStrExt;
                Target::Path(PathBuf::from(std::ffi::OsStr::from_bytes(addr)))
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "NOTIFY_SOCKET must be a path or @name",
                ))
            }
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            target,
            watchdog,
        })
    }

    /// How often to send `WATCHDOG=1`: half of the watchdog period, if systemd set one for us.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// Sends one notification (`READY=1`, `STATUS=...`, ...). Failures are logged, not fatal:
    /// the tree works the same without systemd listening.
    pub fn send(&self, message: &str) {
        if let Err(e) = self.try_send(message) {
            tracing::warn!("cannot notify systemd ({message:?}): {e}");
        }
    }

    fn try_send(&self, message: &str) -> io::Result<usize> {
        match &self.target {
            Target::Path(p) => self.socket.send_to(message.as_bytes(), p),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                self.socket.send_to_addr(message.as_bytes(), &addr)
            }
        }
    }
}

/// The watchdog period from `WATCHDOG_USEC`, when `WATCHDOG_PID` is absent or names us.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(p) = pid {
        if p.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_period_respects_watchdog_pid() {
        assert_eq!(
            watchdog_interval(Some("2000000"), None, 5),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            watchdog_interval(Some("2000000"), Some("5"), 5),
            Some(Duration::from_secs(2))
        );
        assert_eq!(watchdog_interval(Some("2000000"), Some("6"), 5), None);
        assert_eq!(watchdog_interval(Some("0"), None, 5), None);
        assert_eq!(watchdog_interval(Some("x"), None, 5), None);
        assert_eq!(watchdog_interval(None, None, 5), None);
    }

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(
            path.as_os_str().as_encoded_bytes(),
            Some(Duration::from_secs(4)),
        )
        .unwrap();
        assert_eq!(n.watchdog_every(), Some(Duration::from_secs(2)));
        n.send("READY=1");
        n.send("STATUS=3/3 workers running");
        let mut buf = [0u8; 128];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=3/3 workers running");
    }

    #[test]
    fn sends_datagrams_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("billiards-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::new(format!("@{name}").as_bytes(), None).unwrap();
        assert_eq!(n.watchdog_every(), None);
        n.send("WATCHDOG=1");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn rejects_relative_addresses() {
        assert!(Notifier::new(b"relative.sock", None).is_err());
        assert!(Notifier::new(b"", None).is_err());
    }
}
