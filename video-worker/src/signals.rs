//! SIGTERM/SIGINT handling: the handler only records the signal; the capture loop and the
//! shutdown guard poll the flag.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static STOP: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: two atomic stores.
    SIGNAL.store(sig, Ordering::Relaxed);
    STOP.store(true, Ordering::SeqCst);
}

/// Installs the SIGTERM and SIGINT handlers and returns the flag they set.
///
/// No `SA_RESTART`: a capture call blocked in a system call (a camera's `select`) returns
/// with EINTR, so the loop notices the stop sooner.
pub fn install() -> Result<&'static AtomicBool, nix::Error> {
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only performs atomic stores, which are async-signal-safe, and
        // replaces no handler that another part of the program relies on.
        unsafe { sigaction(sig, &act) }?;
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
