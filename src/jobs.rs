//! `--jobs`: the worker pool that converts the large tensors of one output in parallel. The
//! output stays byte for byte what one thread writes: the sink sets each large tensor's room
//! aside in its turn ([`crate::sink::Sink::reserve`], a stored `.npz` in a file) and a worker
//! fills it in place, while the calling thread goes on with the tensors after it (small ones it
//! writes itself). Memory stays bounded: at most `workers` tensors are in flight, each worker
//! with its own chunk buffers, and a full queue makes the caller wait.
//!
//! A worker reads from a copy of the input opened for it ([`Reopen`]; readers are positioned,
//! so copies never disturb each other), or copies an unconverted range inside the kernel with
//! no reader at all. It converts on the host with a device stage of its own, whose per-tensor
//! statistics go back in tensor order. The first failure (in tensor order) is the one reported,
//! naming the input and the tensor; the others stop taking work.
//!
//! Talks to: `cmd/execute.rs` (which hands it what `cmd/members.rs` places with a worker),
//! [`crate::pipeline`] (which writes a tensor), [`crate::device`] (statistics) and
//! [`crate::report`] (progress, shared).

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Error, Result};

use crate::device::{DeviceStage, TensorStats};
use crate::dtype::DtypePolicy;
use crate::pipeline::{copy_member, fill, Prepared, WriteOptions};
use crate::report::Reporter;
use crate::sink::{Member, MemberWriter};
use crate::tensor::Source;

/// Tensors whose output is at least this long go to a worker; smaller ones cost less written
/// in turn than handed over (a hand-over costs about two futex calls and a wake-up on each
/// side: 20,000 one-element tensors sent to workers took 6x the CPU). 256 KiB puts the storages
/// of a `Linear(256, 256)`, the bulk of TorchScript, `.pt2` and whole-module files, on the
/// workers, and no tensor of the many-tiny-tensor inputs (benches/NOTES.md, round 9).
pub const PARALLEL_MIN: u64 = 256 << 10;
/// [`PARALLEL_MIN`], or the byte count in `T2N_JOBS_MIN_BYTES`: the test suite sets it to 0 to
/// send every tensor of its small fixtures through the workers.
pub fn parallel_min() -> u64 {
    std::env::var("T2N_JOBS_MIN_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PARALLEL_MIN)
}

/// Buffer bytes shared by all workers together (see [`worker_chunk`]), so that more workers do
/// not mean more memory.
const WORKER_MEMORY: usize = 32 << 20;
/// The chunk size of each of `workers` threads: a third of their share of [`WORKER_MEMORY`]
/// (a worker holds the chunk read, its conversion, up to twice as large when widening, and
/// its write buffer), at most the `--chunk-size` and at least 64 KiB (or the `--chunk-size`,
/// when smaller). Measured: bf16 widened with 8 workers took 113 MiB with the whole share as
/// the chunk.
fn worker_chunk(workers: usize, chunk: usize) -> usize {
    (WORKER_MEMORY / (3 * workers.max(1)))
        .min(chunk)
        .max(chunk.min(64 << 10))
}

/// Inputs of more tensors than this are not opened again for the workers (their metadata, a
/// safetensors header of 200,000 entries say, would be held once per worker); their unconverted
/// tensors still go to workers, which copy them without a reader.
pub const MAX_REOPENED_TENSORS: usize = 10_000;

/// At most this many workers, whatever `--jobs` says: beyond it the disk is the limit.
pub const MAX_WORKERS: usize = 8;

/// The number of threads that work side by side when nobody says: the cores, at most
/// [`MAX_WORKERS`] (`--jobs`'s default, and the Python module's readers).
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKERS)
}

/// Opens a second copy of input `s` for a worker.
pub type Reopen<'a> = dyn Fn(usize) -> Result<Box<dyn Source>> + Sync + 'a;

/// One tensor for a worker: where it comes from, and the room reserved for it.
pub struct Task {
    /// Position among the output's tensors: errors and statistics are ordered by it.
    pub order: usize,
    pub input: usize,
    pub index: usize,
    /// The tensor as the input names it, and its output name.
    pub tensor: String,
    pub name: String,
    /// The input as the user named it, for errors.
    pub path: String,
    pub prepared: Prepared,
    pub member: Box<dyn MemberWriter + Send>,
}

/// What the workers share with the thread that feeds them.
struct Shared {
    /// Set at the first failure; every thread's `check_interrupted` then fails with `Cancelled`.
    failed: Arc<AtomicBool>,
    errors: Mutex<Vec<(usize, Error)>>,
    stats: Mutex<Vec<(usize, TensorStats)>>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            failed: Arc::new(AtomicBool::new(false)),
            errors: Mutex::new(Vec::new()),
            stats: Mutex::new(Vec::new()),
        }
    }

    /// Files the per-tensor statistics a stage recorded for tensor (or output) `order` (its
    /// entries from `from` on; a stage keeps none without `--stats`), so that they come out in
    /// order.
    fn file_stats(&self, order: usize, device: &mut DeviceStage, from: usize) {
        if device.stats.len() > from {
            let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            stats.extend(device.stats.drain(from..).map(|s| (order, s)));
        }
    }

    /// Records the failure of tensor (or output) `order`; an error that is only the call-off
    /// of another failure is dropped, that other one being the cause.
    fn fail(&self, order: usize, e: Error) {
        if e.chain().any(|c| c.is::<crate::error::Cancelled>()) {
            return;
        }
        self.failed.store(true, Ordering::Relaxed);
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((order, e));
    }
}

/// The feeding side of the pool, handed to the body of [`run`].
pub struct Pool<'a> {
    tx: SyncSender<Task>,
    shared: &'a Shared,
}

impl Pool<'_> {
    /// Hands `task` to the next free worker, waiting while all are busy and the queue is full.
    pub fn submit(&self, task: Task) -> Result<()> {
        self.tx
            .send(task)
            .map_err(|_| anyhow::anyhow!("internal: every --jobs worker has stopped"))
    }

    /// Whether a worker has failed: the caller stops feeding and returns.
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Files the per-tensor statistics the calling thread recorded for tensor `order` (the
    /// entries of `device.stats` from `from` on), so that they come out in tensor order.
    pub fn inline_stats(&self, order: usize, device: &mut DeviceStage, from: usize) {
        self.shared.file_stats(order, device, from);
    }

    /// Records a failure of the calling thread at tensor `order`.
    pub fn fail(&self, order: usize, e: Error) {
        self.shared.fail(order, e);
    }
}

/// Runs `body` with `workers` threads taking the tasks it submits; returns the first error in
/// tensor order, and moves every worker's statistics into `opts.device` (per tensor, in order,
/// after the first `stats_from` entries, which are untouched).
pub fn run(
    workers: usize,
    reopen: &Reopen,
    opts: &WriteOptions,
    stats_from: usize,
    body: impl FnOnce(&Pool) -> Result<()>,
) -> Result<()> {
    let keep_stats = opts.device.borrow().keep_per_tensor;
    let shared = Shared::new();
    let chunk = worker_chunk(workers, opts.chunk);
    let (policy, report) = (opts.policy, opts.report);
    let (tx, rx) = sync_channel::<Task>(workers);
    let rx = Mutex::new(rx);
    let totals = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (rx, shared) = (&rx, &shared);
                scope.spawn(move || {
                    crate::error::cancel_on(Some(shared.failed.clone()));
                    let mut source: Option<(usize, Box<dyn Source>)> = None;
                    // After a failure anywhere the tasks are taken and dropped unfilled (the
                    // output is discarded anyway), so that the feeding thread never waits.
                    let next = || loop {
                        let task = rx.lock().unwrap_or_else(|e| e.into_inner()).recv().ok()?;
                        if !shared.failed.load(Ordering::Relaxed) {
                            return Some((task.order, task));
                        }
                    };
                    let fill = |task: Task, opts: &WriteOptions| {
                        let (path, name) = (task.path.clone(), task.tensor.clone());
                        let what = move || format!("{path}: tensor '{name}'");
                        let done =
                            catch_unwind(AssertUnwindSafe(|| one(task, &mut source, reopen, opts)))
                                .unwrap_or_else(|p| Err(panicked(p)));
                        done.with_context(what)
                    };
                    serve(
                        shared,
                        (policy, report, chunk, keep_stats),
                        next,
                        fill,
                        |_| {},
                        false,
                    )
                })
            })
            .collect();
        let pool = Pool {
            tx,
            shared: &shared,
        };
        crate::error::cancel_on(Some(shared.failed.clone()));
        if let Err(e) = body(&pool) {
            shared.fail(usize::MAX, e);
        }
        crate::error::cancel_on(None);
        drop(pool); // closes the queue: the workers finish what they hold and return
        handles
            .into_iter()
            .map(|h| h.join().expect("a --jobs worker panicked"))
            .collect::<Vec<_>>()
    });
    finish(opts, totals, shared, stats_from)
}

/// What each worker's own [`WriteOptions`] is made of: the dtype policy, the progress
/// report, the chunk size, and whether per-tensor statistics are kept (`--stats`).
type Base<'a> = (&'a DtypePolicy, &'a Reporter, usize, bool);

/// The one worker loop of both pools ([`run`]: the tensors of one output; [`run_each`]: the
/// outputs of a batch). Takes `(order, item)` from `next` until it gives none, and converts each
/// with `f` on the worker's own host device stage; `done(order)` is told of each success, and a
/// failure (a panic too) is recorded under its order, which then stops the others taking work.
/// The statistics of each item are filed under its order (of a failed one, only when
/// `stats_of_failures`).
fn serve<T>(
    shared: &Shared,
    (policy, report, chunk, keep_stats): Base,
    mut next: impl FnMut() -> Option<(usize, T)>,
    mut f: impl FnMut(T, &WriteOptions) -> Result<()>,
    done: impl Fn(usize),
    stats_of_failures: bool,
) -> DeviceStage {
    let device = host_stage(keep_stats);
    let opts = WriteOptions {
        policy,
        chunk,
        report,
        device: &device,
    };
    while let Some((order, item)) = next() {
        let result =
            catch_unwind(AssertUnwindSafe(|| f(item, &opts))).unwrap_or_else(|p| Err(panicked(p)));
        let failed = result.is_err();
        match result {
            Ok(()) => done(order),
            Err(e) => shared.fail(order, e),
        }
        if !failed || stats_of_failures {
            shared.file_stats(order, &mut device.borrow_mut(), 0);
        }
    }
    device.into_inner()
}

/// Fills one reserved member: a kernel copy, or a conversion read from the worker's own copy
/// of the input (opened on first use, kept while the tasks come from the same input).
fn one(
    task: Task,
    source: &mut Option<(usize, Box<dyn Source>)>,
    reopen: &Reopen,
    opts: &WriteOptions,
) -> Result<()> {
    let member = Member::reserved(task.member, task.prepared.data_len);
    if let Some(range) = &task.prepared.copy {
        return copy_member(range, &task.name, member, opts);
    }
    if source.as_ref().is_none_or(|(s, _)| *s != task.input) {
        *source = None; // one copy open at a time
        *source = Some((task.input, reopen(task.input)?));
    }
    let (_, src) = source.as_mut().expect("opened above");
    fill(
        src.as_mut(),
        task.index,
        &task.name,
        &task.prepared,
        member,
        opts,
    )
}

/// Runs `f` on every item with `workers` threads, each converting on the host with a device
/// stage of its own: the outputs of a batch. Items start in order, and none starts after a
/// failure; the items other workers are converting when one fails are completed (they are not
/// called off: each output is whole and correct, as the README promises). Returns whether each item was done (in item order), and the first error in item
/// order; the statistics go into `opts.device` in item order.
pub fn run_each<T: Send>(
    workers: usize,
    items: Vec<T>,
    opts: &WriteOptions,
    f: impl Fn(T, &WriteOptions) -> Result<()> + Sync,
) -> (Vec<bool>, Result<()>) {
    let keep_stats = opts.device.borrow().keep_per_tensor;
    let shared = Shared::new();
    let n = items.len();
    let queue = Mutex::new(items.into_iter().enumerate());
    let done = Mutex::new(vec![false; n]);
    let (policy, report) = (opts.policy, opts.report);
    let chunk = worker_chunk(workers.min(n), opts.chunk);
    let totals = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.min(n))
            .map(|_| {
                let (queue, shared, done, f) = (&queue, &shared, &done, &f);
                scope.spawn(move || {
                    // No `cancel_on`: a failure stops new items, not the ones in progress.
                    let next = || match shared.failed.load(Ordering::Relaxed) {
                        true => None,
                        false => queue.lock().unwrap_or_else(|e| e.into_inner()).next(),
                    };
                    let mark = |k: usize| done.lock().unwrap_or_else(|e| e.into_inner())[k] = true;
                    serve(
                        shared,
                        (policy, report, chunk, keep_stats),
                        next,
                        f,
                        mark,
                        true,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a --jobs worker panicked"))
            .collect::<Vec<_>>()
    });
    let result = finish(opts, totals, shared, usize::MAX);
    (done.into_inner().unwrap_or_else(|e| e.into_inner()), result)
}

/// Moves the workers' statistics into `opts.device` (per tensor in order, after its first
/// `from` entries, which stay first; `usize::MAX`: none of its entries move), and returns the
/// first error in order.
fn finish(
    opts: &WriteOptions,
    totals: Vec<DeviceStage>,
    shared: Shared,
    from: usize,
) -> Result<()> {
    let mut device = opts.device.borrow_mut();
    for t in &totals {
        device.absorb_totals(t);
    }
    // Without --stats no stage keeps per-tensor entries, and this moves nothing.
    let mut stats = shared.stats.into_inner().unwrap_or_else(|e| e.into_inner());
    let from = from.min(device.stats.len());
    stats.extend(device.stats.drain(from..).map(|s| (usize::MAX, s)));
    stats.sort_by_key(|(order, _)| *order);
    device.stats.extend(stats.into_iter().map(|(_, s)| s));
    let mut errors = shared
        .errors
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    errors.sort_by_key(|(order, _)| *order);
    match errors.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// A worker's own host device stage, keeping per-tensor statistics when `--stats` asked.
fn host_stage(keep_stats: bool) -> RefCell<DeviceStage> {
    let mut stage = DeviceStage::cpu();
    stage.keep_per_tensor = keep_stats;
    RefCell::new(stage)
}

/// A worker's panic as an error (a bug: the message says so), so that the run still ends with
/// exit 1 naming the tensor instead of hanging or aborting.
fn panicked(payload: Box<dyn std::any::Any + Send>) -> Error {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    anyhow::anyhow!("internal error (a bug; please report it): {what}")
}
