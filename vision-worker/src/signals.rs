//! SIGTERM/SIGINT handling: the handler only records the request; the loop polls the flag
//! (at least every 100 ms, while it waits for frames).

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only async-signal-safe work here: one atomic store.
    STOP.store(true, Ordering::SeqCst);
}

/// Installs the SIGTERM and SIGINT handlers and returns the flag they set.
pub fn install() -> Result<&'static AtomicBool, nix::Error> {
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only performs an atomic store, which is async-signal-safe, and
        // replaces no handler that another part of the program relies on.
        unsafe { sigaction(sig, &act) }?;
    }
    Ok(&STOP)
}
