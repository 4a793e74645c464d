//! Errors as Python exceptions, and Ctrl-C. A failure becomes one of the exception classes of
//! `tensor2npy/_errors.py`, chosen the way the command chooses its exit status (`error.rs`:
//! a usage mistake is 2, anything else 1) and refined for Python: `UsageError` (exit 2),
//! `UnsupportedInputError` (an input or a dtype tensor2npy does not read), `TransientError`
//! (a remote read that may succeed when retried: timeouts, refused or reset connections,
//! throttling: exactly the failures the command exits 75 for), `CorruptInputError` (everything
//! else about the input), `InputNotFoundError` (also a `FileNotFoundError`), and the base
//! `Tensor2NpyError` for other failures outside the input (access denied, a full disk). The message is the command's, without its `tensor2npy: error:`.
//!
//! Long work runs off the interpreter lock. On the main thread it runs in a helper thread while
//! the main thread checks Python's signals every 20 ms: Ctrl-C sets the interrupt flag that
//! SIGINT sets for the command (`error::interrupt_flag`, checked by every conversion thread),
//! the work stops at its next chunk (removing any partial output, as the command does), the
//! flag is cleared, and the `KeyboardInterrupt` is raised.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// What a failure is, for Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Usage,
    Unsupported,
    Transient,
    Corrupt,
    NotFound,
    Other,
}

impl Class {
    fn python_name(self) -> &'static str {
        match self {
            Class::Usage => "UsageError",
            Class::Unsupported => "UnsupportedInputError",
            Class::Transient => "TransientError",
            Class::Corrupt => "CorruptInputError",
            Class::NotFound => "InputNotFoundError",
            Class::Other => "Tensor2NpyError",
        }
    }
}

/// Phrases of the readers' messages that say "not read by tensor2npy" rather than "damaged".
const UNSUPPORTED: &[&str] = &[
    "not supported",
    "unsupported",
    "has no numpy form",
    "which has no numpy form",
    "unrecognised input",
    "not one tensor2npy reads",
    "is not allowed",
    "unknown format",
    "built without",
];

/// Decides the class of `e` from its chain: typed causes first, then the words of the message.
pub fn classify(e: &anyhow::Error) -> Class {
    use std::io::ErrorKind as K;
    if e.downcast_ref::<crate::error::UsageError>().is_some() {
        return Class::Usage;
    }
    // Exactly what the command exits 75 for.
    if crate::error::is_transient(e) {
        return Class::Transient;
    }
    for cause in e.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                K::NotFound => return Class::NotFound,
                K::PermissionDenied | K::StorageFull => return Class::Other,
                _ => {}
            }
        }
        if cause.downcast_ref::<crate::sink::WriteError>().is_some() {
            return Class::Other;
        }
        #[cfg(feature = "remote")]
        if let Some(os) = cause.downcast_ref::<object_store::Error>() {
            // NotFound and access errors are said plainly by remote/ before they get here;
            // transient ones were marked by it (above); what is left is permanent.
            return match os {
                object_store::Error::NotFound { .. } => Class::NotFound,
                _ => Class::Other,
            };
        }
    }
    let text = format!("{e:#}").to_lowercase();
    if text.contains("no such object")
        || text.contains("no such file or directory")
        || text.contains("does not exist")
    {
        return Class::NotFound;
    }
    if text.contains("access denied") || text.contains("no space left") {
        return Class::Other;
    }
    if UNSUPPORTED.iter().any(|p| text.contains(p)) {
        return Class::Unsupported;
    }
    Class::Corrupt
}

/// The error of a read after `close()`: Python's `ValueError`, as for a closed file.
#[derive(Debug)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("I/O operation on closed file")
    }
}

impl std::error::Error for Closed {}

/// The Python exception for `e`, with the command's message.
pub fn raise(py: Python<'_>, e: anyhow::Error) -> PyErr {
    if e.downcast_ref::<Closed>().is_some() {
        return PyValueError::new_err(Closed.to_string());
    }
    if e.downcast_ref::<crate::error::Interrupted>().is_some() {
        // Ctrl-C caught by another call's watch (see `run`).
        return PyKeyboardInterrupt::new_err(());
    }
    let class = classify(&e);
    let message = crate::sink::names::shown(&format!("{e:#}")).into_owned();
    let ty = py
        .import("tensor2npy._errors")
        .and_then(|m| m.getattr(class.python_name()));
    match ty {
        Ok(ty) => match ty.call1((message,)) {
            Ok(obj) => PyErr::from_value(obj),
            Err(err) => err,
        },
        Err(err) => err,
    }
}

/// Whether the calling thread is Python's main thread (the one signal handlers run on).
fn on_main_thread(py: Python<'_>) -> PyResult<bool> {
    let threading = py.import("threading")?;
    let current = threading.call_method0("current_thread")?;
    let main = threading.call_method0("main_thread")?;
    Ok(current.is(&main))
}

/// Runs `work` without the interpreter lock, so that other Python threads go on; on the main
/// thread, interruptible by Ctrl-C (see the module comment). Errors become exceptions.
pub fn run<T: Send>(
    py: Python<'_>,
    interruptible: bool,
    work: impl FnOnce() -> anyhow::Result<T> + Send,
) -> PyResult<T> {
    if !interruptible || !on_main_thread(py)? {
        return py.detach(work).map_err(|e| raise(py, e));
    }
    // The flag every conversion thread checks (the `--jobs` workers too), as SIGINT sets it
    // for the command.
    let flag = crate::error::interrupt_flag();
    let mut pending: Option<PyErr> = None;
    let joined = py.detach(|| {
        std::thread::scope(|s| {
            let (done, finished) = mpsc::channel::<()>();
            let worker = s.spawn(move || {
                let result = work();
                let _ = done.send(());
                result
            });
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                finished.recv_timeout(Duration::from_millis(20))
            {
                if pending.is_none() {
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        pending = Some(e);
                        flag.store(true, Ordering::Relaxed);
                    }
                }
            }
            worker.join()
        })
    });
    if pending.is_some() {
        flag.store(false, Ordering::Relaxed);
    }
    if let Some(e) = pending {
        return Err(e);
    }
    match joined {
        Ok(result) => result.map_err(|e| raise(py, e)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(PyRuntimeError::new_err(format!(
                "tensor2npy: internal error (a panic): {what}"
            )))
        }
    }
}
