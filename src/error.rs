//! The errors `main` decides exit codes by, and the interrupt flag: a usage mistake (exit 2),
//! a transient remote failure (exit 75), an interrupt (SIGINT/SIGTERM, exit 130). Everything else is a failed conversion (exit 1),
//! except a closed output pipe, which `main` finds in the error chain and ends quietly with 0.
//! Long loops anywhere call [`check_interrupted`].

use anyhow::{anyhow, Result};

/// Set when SIGINT or SIGTERM arrives; conversions stop at the next chunk, and the normal error
/// path removes their temporary files.
static INTERRUPT: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::OnceLock::new();

/// Installs the SIGINT / SIGTERM handlers (once).
pub fn watch_interrupts() {
    let flag = INTERRUPT.get_or_init(Default::default);
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the first is being handled ends the process at once.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone());
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
}

/// The flag SIGINT and SIGTERM set, for a host that watches signals itself and installs no
/// handler here (the Python module sets it on Ctrl-C, and clears it once the call is over).
pub fn interrupt_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    INTERRUPT.get_or_init(Default::default).clone()
}

/// The error a conversion stops with after SIGINT or SIGTERM.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted; the partial output was removed")
    }
}

impl std::error::Error for Interrupted {}

/// Fails with [`Interrupted`] once SIGINT or SIGTERM has arrived, and with [`Cancelled`] once
/// this thread's work was called off (another `--jobs` worker failed).
pub fn check_interrupted() -> Result<()> {
    match INTERRUPT.get() {
        Some(flag) if flag.load(std::sync::atomic::Ordering::Relaxed) => Err(anyhow!(Interrupted)),
        _ if CANCEL.with(|c| {
            c.borrow()
                .as_ref()
                .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
        }) =>
        {
            Err(anyhow!(Cancelled))
        }
        _ => Ok(()),
    }
}

thread_local! {
    static CANCEL: std::cell::RefCell<Option<std::sync::Arc<std::sync::atomic::AtomicBool>>> =
        const { std::cell::RefCell::new(None) };
}

/// Makes [`check_interrupted`] on this thread fail with [`Cancelled`] once `flag` is set (the
/// `--jobs` pool's "a worker failed"); `None` ends that.
pub fn cancel_on(flag: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>) {
    CANCEL.with(|c| *c.borrow_mut() = flag);
}

/// The work of this thread was called off because another failed; that other error is the one
/// reported.
#[derive(Debug)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("called off after another failure")
    }
}

impl std::error::Error for Cancelled {}

/// A failure that may pass when the command is run again (a refused, reset or timed-out
/// connection, throttling, a server error after the retries): exit status 75 (`EX_TEMPFAIL`),
/// so that a batch engine retries it and not a missing object or a corrupt input.
#[derive(Debug)]
pub struct Transient(pub String);

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Transient {}

/// Whether `e` is a [`Transient`] failure (anywhere in its chain of contexts), or an I/O error
/// of a kind that says the same (a timed-out, refused or reset connection). The Python
/// module's `TransientError` is exactly this.
pub fn is_transient(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind as K;
    e.downcast_ref::<Transient>().is_some()
        || e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    K::TimedOut
                        | K::ConnectionRefused
                        | K::ConnectionReset
                        | K::ConnectionAborted
                        | K::NotConnected
                        | K::WouldBlock
                )
            })
        })
}

/// A command-line mistake: exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow!(UsageError(msg.into()))
}
