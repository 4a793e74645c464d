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
    e.downcast_ref::<Transient>().is_some()
        || e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>().is_some_and(|io| {
                lost_connection(io.kind()) || io.kind() == std::io::ErrorKind::WouldBlock
            })
        })
}

/// Whether an I/O error of this kind says a connection was lost or never made (timed out,
/// refused, reset, aborted, not connected).
pub fn lost_connection(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        kind,
        K::TimedOut
            | K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
    )
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

/// An error printed as one message: the text of its whole chain, each part once (see
/// [`chain_text`]). The error is kept, typed, in `inner`; its chain is not printed again.
#[derive(Debug)]
pub struct Quoted<E> {
    pub text: String,
    pub inner: E,
}

impl<E> std::fmt::Display for Quoted<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl<E: std::fmt::Debug> std::error::Error for Quoted<E> {}

/// The messages of `e` and its causes, each part once, without URLs: object_store's errors
/// repeat their source's text at every level (a refused connection read "HTTP error: error
/// sending request" four times) and name the request URL, which the caller names already.
/// Parts are the messages split at ": " and " - "; a part seen before is dropped.
pub fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        for part in c.to_string().split(": ").flat_map(|p| p.split(" - ")) {
            let words: Vec<&str> = part
                .split_whitespace()
                .filter(|w| !w.starts_with("http://") && !w.starts_with("https://"))
                .collect();
            let part = words.join(" ");
            if !part.is_empty() && !parts.contains(&part) {
                parts.push(part);
            }
        }
        cause = c.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod chain_tests {
    use super::chain_text;

    #[derive(Debug)]
    struct Level(String, Option<Box<Level>>);
    impl std::fmt::Display for Level {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Level {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn each_cause_is_said_once_and_urls_are_left_to_the_caller() {
        // The shape of object_store's message for a refused connection.
        let root = Level(
            "tcp connect error: Connection refused (os error 111)".into(),
            None,
        );
        let http = Level(
            format!("HTTP error: error sending request: {root}"),
            Some(Box::new(root)),
        );
        let retry = Level(
            format!(
                "Error performing HEAD http://127.0.0.1:9/b/x in 5ms, after 4 retries - {http}"
            ),
            Some(Box::new(http)),
        );
        let top = Level(format!("Generic S3 error: {retry}"), Some(Box::new(retry)));
        assert_eq!(
            chain_text(&top),
            "Generic S3 error: Error performing HEAD in 5ms, after 4 retries: HTTP error: error sending request: tcp connect error: Connection refused (os error 111)"
        );
    }
}
