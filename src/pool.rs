//! The size of rayon's global pool, on which readers split the work of one input or tensor
//! (HDF5 chunks inflated side by side inside hdf5-reader, Example record ranges walked side by
//! side). `cmd/convert` says how many threads it may have (the `--jobs` workers); a reader calls
//! [`ready`] just before it first uses the pool, so the pool is built only by the inputs that use
//! it: an idle pool's threads each take a malloc arena (64 MiB of address space in glibc), which
//! inputs that never split their work should not pay under an address-space limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

/// Threads the pool may have; 0 means rayon's default (the number of cores).
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets the pool's size to `workers` threads (so that `--jobs 1` keeps a conversion on one
/// thread). Takes effect at the first [`ready`]; later calls after that change nothing.
pub fn size(workers: usize) {
    THREADS.store(workers.max(1), Ordering::Relaxed);
}

/// Builds the global pool at the size [`size`] set, once per process; call before using it.
pub fn ready() {
    static BUILT: Once = Once::new();
    BUILT.call_once(|| {
        let n = THREADS.load(Ordering::Relaxed);
        if n > 0 {
            // Fails only when the pool already exists (built by another path): keep that one.
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global();
        }
    });
}
