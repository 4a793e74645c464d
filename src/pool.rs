//! The size of rayon's global pool, on which readers split the work of one input or tensor
//! (the chunks of one zarr array or HDF5 dataset decoded side by side, Example record ranges
//! walked side by side), and the ordered window of tasks those chunk readers share. `cmd/convert` says how many threads it may have (the `--jobs` workers); a reader calls
//! [`ready`] just before it first uses the pool, so the pool is built only by the inputs that use
//! it: an idle pool's threads each take a malloc arena (64 MiB of address space in glibc), which
//! inputs that never split their work should not pay under an address-space limit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Once;

use anyhow::{anyhow, Result};

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

/// How many tasks to keep in flight on the pool, each holding about `each` bytes, for `tasks`
/// tasks in all, within `budget` bytes: `None` when the work is better done one task at a time
/// on this thread (a pool of one thread, `--jobs 1`; fewer than two tasks fit or exist; or this
/// is a thread of the pool itself, where waiting for the pool could wait for this very thread).
/// Builds the pool only when it will be used.
pub fn window(each: u64, tasks: u64, budget: u64) -> Option<usize> {
    let fit = (budget / each.max(1)).min(tasks);
    if fit < 2 || rayon::current_thread_index().is_some() {
        return None;
    }
    ready();
    let threads = rayon::current_num_threads() as u64;
    (threads > 1).then_some((2 * threads).min(fit) as usize)
}

/// Tasks run on the pool, at most a window of them at once, whose results are taken back in the
/// order they were queued: the readers that decode the chunks of one array side by side (zarr,
/// HDF5) write them in order on the calling thread while the pool decodes the next ones.
pub struct InOrder<T> {
    queue: VecDeque<Receiver<T>>,
    window: usize,
}

impl<T: Send + 'static> InOrder<T> {
    pub fn new(window: usize) -> Self {
        InOrder {
            queue: VecDeque::with_capacity(window),
            window,
        }
    }

    /// Queues `task` on the pool; once the window is full, waits for the oldest task and
    /// returns its result.
    pub fn push(&mut self, task: impl FnOnce() -> T + Send + 'static) -> Result<Option<T>> {
        let (tx, done) = sync_channel(1);
        rayon::spawn(move || {
            // The receiver is gone only when an earlier result failed and the caller stopped.
            let _ = tx.send(task());
        });
        self.queued(done)
    }

    /// Queues a result already at hand (a chunk that needs no decoding), in its turn.
    pub fn push_ready(&mut self, t: T) -> Result<Option<T>> {
        let (tx, done) = sync_channel(1);
        let _ = tx.send(t);
        self.queued(done)
    }

    fn queued(&mut self, done: Receiver<T>) -> Result<Option<T>> {
        self.queue.push_back(done);
        if self.queue.len() >= self.window {
            return self.pop();
        }
        Ok(None)
    }

    /// Waits for the oldest task left and returns its result; `None` when none is left.
    pub fn pop(&mut self) -> Result<Option<T>> {
        match self.queue.pop_front() {
            None => Ok(None),
            Some(done) => done
                .recv()
                .map(Some)
                .map_err(|_| anyhow!("a thread of the pool stopped before its result")),
        }
    }
}
