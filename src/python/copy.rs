//! Planned tensors that are unconverted byte ranges of local files (what
//! `pipeline::copy_member` copies: a float32 safetensors tensor, say), read straight into their
//! NumPy arrays by several threads at once, a piece at a time. Faulting in an array's fresh
//! pages (the kernel zeroes each one) costs more than the copy itself, and it is spread over
//! the threads with the copy; there is no buffer between the file and the array, so memory is
//! the arrays alone. `arrays.rs` decides which tensors come here; errors name the input and the
//! tensor, as the pipeline's do.

use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::input::FileRange;

/// Bytes read at a time, between two checks for Ctrl-C (the step of `ArrayMember::copy`).
const PIECE: usize = 8 << 20;

/// One tensor: its bytes in the input, its array's memory, and what an error names.
pub struct Copy<'a> {
    pub range: FileRange,
    pub buf: &'a mut [u8],
    /// `<input>: tensor '<name>'`.
    pub context: String,
}

/// How many threads read at once: the command's `--jobs` default.
pub fn threads() -> usize {
    crate::jobs::default_threads()
}

/// A piece of one tensor.
struct Piece<'a> {
    tensor: usize,
    at: u64,
    buf: &'a mut [u8],
}

/// Reads each copy's range into its memory on up to `threads` threads (the calling one among
/// them; one piece or one thread reads on the calling thread alone). Pieces are taken in
/// tensor order, and after a failure no new one is; the failure returned is that of the first
/// tensor that failed.
pub fn read_all(copies: Vec<Copy<'_>>, threads: usize) -> Result<()> {
    let mut ranges = Vec::with_capacity(copies.len());
    let mut contexts = Vec::with_capacity(copies.len());
    let mut pieces = Vec::new();
    for (t, c) in copies.into_iter().enumerate() {
        if c.range.len() != c.buf.len() as u64 {
            bail!(
                "internal: {}: {} bytes for an array of {}",
                c.context,
                c.range.len(),
                c.buf.len()
            );
        }
        for (k, buf) in c.buf.chunks_mut(PIECE).enumerate() {
            let at = (k * PIECE) as u64;
            pieces.push(Piece { tensor: t, at, buf });
        }
        ranges.push(c.range);
        contexts.push(c.context);
    }
    let threads = threads.clamp(1, pieces.len().max(1));
    let queue = Mutex::new(pieces.into_iter());
    let failed: Mutex<Option<(usize, anyhow::Error)>> = Mutex::new(None);
    let work = || loop {
        if failed.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return;
        }
        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
        let Some(p) = next else { return };
        let read = crate::error::check_interrupted()
            .and_then(|()| ranges[p.tensor].read_at(p.at, p.buf))
            .with_context(|| contexts[p.tensor].clone());
        if let Err(e) = read {
            let mut failed = failed.lock().unwrap_or_else(|p| p.into_inner());
            if failed.as_ref().is_none_or(|(t, _)| p.tensor < *t) {
                *failed = Some((p.tensor, e));
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            // Where no thread can be started (an address-space limit), fewer read.
            if std::thread::Builder::new().spawn_scoped(s, work).is_err() {
                break;
            }
        }
        work();
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}
