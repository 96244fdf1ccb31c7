//! The stop flag: SIGTERM and SIGINT handlers that only record the request; the worker's loops
//! poll the flag.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static STOP: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: two atomic stores. Relaxed for the signal number: it
    // is read only after the flag was seen, and SeqCst on the flag orders the two.
    SIGNAL.store(sig, Ordering::Relaxed);
    STOP.store(true, Ordering::SeqCst);
}

/// What a system call blocked when the signal arrives does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockedCalls {
    /// Return with EINTR (no `SA_RESTART`): a capture call blocked in `select` returns, so the
    /// loop notices the stop sooner. For code that retries or reports EINTR itself.
    Interrupt,
    /// Resume (`SA_RESTART`): for loops whose blocking calls end by themselves soon (timed
    /// waits) and whose libraries do not expect EINTR.
    Restart,
}

/// Error of [`install`].
#[derive(Debug, thiserror::Error)]
#[error("cannot install the {signal} handler: {source}")]
pub struct InstallError {
    /// The signal whose handler could not be installed.
    pub signal: &'static str,
    /// Why.
    pub source: nix::Error,
}

/// Installs the SIGTERM and SIGINT handlers and returns the flag they set. Installing twice
/// is harmless (same handler, same flag).
pub fn install(blocked: BlockedCalls) -> Result<&'static AtomicBool, InstallError> {
    let flags = match blocked {
        BlockedCalls::Interrupt => SaFlags::empty(),
        BlockedCalls::Restart => SaFlags::SA_RESTART,
    };
    let act = SigAction::new(SigHandler::Handler(on_signal), flags, SigSet::empty());
    for (sig, name) in [(Signal::SIGTERM, "SIGTERM"), (Signal::SIGINT, "SIGINT")] {
        // SAFETY: the handler only performs atomic stores, which are async-signal-safe, and
        // replaces no handler that another part of the program relies on.
        unsafe { sigaction(sig, &act) }.map_err(|source| InstallError {
            signal: name,
            source,
        })?;
    }
    Ok(&STOP)
}

/// The name of the signal that asked us to stop, if any.
pub fn received() -> Option<&'static str> {
    match SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        libc::SIGTERM => Some("SIGTERM"),
        libc::SIGINT => Some("SIGINT"),
        _ => Some("a signal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigterm_sets_the_flag_and_names_itself() {
        let stop = install(BlockedCalls::Restart).expect("install");
        assert!(!stop.load(Ordering::SeqCst));
        assert_eq!(received(), None);
        nix::sys::signal::raise(Signal::SIGTERM).expect("raise");
        assert!(stop.load(Ordering::SeqCst));
        assert_eq!(received(), Some("SIGTERM"));
    }
}
