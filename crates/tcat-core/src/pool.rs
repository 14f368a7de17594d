//! The worker pool of tcat's CPU kernels: chunks of work claimed by whoever is running, waits
//! that spin, then yield, then sleep.
//!
//! candle's barrier pool hands every worker the job and the caller waits, spinning, until each
//! worker has checked in. When other processes share the cores, a descheduled worker keeps the
//! caller spinning for the rest of its time slice (measured on SmolLM2 decoding with builds
//! running: 83% of the samples in the two spin loops). Here the caller and the workers claim
//! chunks from one atomic counter, so a worker that is not running simply claims nothing and
//! the caller does its share; the caller waits only for chunks already claimed, and every wait
//! spins briefly, then yields its time slice (so a descheduled worker on the same core can
//! finish), and idle workers park after a while.
//!
//! The claim counter packs the job's generation, its chunk count and the next chunk into one
//! `u64`, so a claim is valid only for the job it was made in: a late worker cannot take a
//! chunk of a job that has already ended.

use std::cell::{Cell, UnsafeCell};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;

/// Spins of a waiting thread before it starts yielding.
const SPINS: u32 = 4_000;
/// Yields of an idle worker before it parks.
const YIELDS: u32 = 2_000;
/// Chunks per thread: enough for a stalled thread's share to be taken over in pieces.
const CHUNKS_PER_THREAD: usize = 8;
/// The most chunks of one job (the width of the chunk fields in the claim counter).
const MAX_CHUNKS: usize = 0xffff;

thread_local! {
    /// Whether this thread is one of the pool's workers (nested jobs then run inline).
    static IN_POOL: Cell<bool> = const { Cell::new(false) };
}

/// What a job runs: `call(data, range)` calls the caller's closure on a range of items.
struct Job {
    call: unsafe fn(*const (), Range<usize>),
    data: *const (),
    items: usize,
    chunk: usize,
}

/// The pool: `threads − 1` workers beside the calling thread.
pub(crate) struct Pool {
    /// `generation << 32 | chunks << 16 | next chunk`.
    claims: AtomicU64,
    /// Chunks of the current job finished.
    done: AtomicUsize,
    /// Whether a chunk of the current job panicked.
    panicked: AtomicBool,
    /// The current job, written by the submitting thread before it publishes the generation.
    job: UnsafeCell<Job>,
    /// One job at a time; a second caller runs its work inline.
    submit: Mutex<()>,
    workers: OnceLock<Vec<Thread>>,
    threads: usize,
}

// SAFETY: `job` is written only by the thread holding `submit`, before the release store that
// publishes its generation, and read only by threads that claimed a chunk of that generation
// (an acquire compare-exchange), while the job cannot change (its submitter waits for every
// claimed chunk). The closure behind `data` is `Sync`.
unsafe impl Sync for Pool {}
// SAFETY: the raw pointer in `job` is only dereferenced under the protocol above; the pool
// owns nothing tied to a thread.
unsafe impl Send for Pool {}

fn pack(generation: u64, chunks: usize, next: usize) -> u64 {
    (generation << 32) | ((chunks as u64) << 16) | next as u64
}

impl Pool {
    fn new(threads: usize) -> Self {
        Self {
            claims: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            job: UnsafeCell::new(Job { call: |_, _| {}, data: std::ptr::null(), items: 0, chunk: 1 }),
            submit: Mutex::new(()),
            workers: OnceLock::new(),
            threads: threads.max(1),
        }
    }

    /// Claims the next chunk of job `generation`, if any is left.
    fn claim(&self, generation: u64) -> Option<usize> {
        let mut state = self.claims.load(Ordering::Acquire);
        loop {
            let (chunks, next) = ((state >> 16) as usize & MAX_CHUNKS, state as usize & MAX_CHUNKS);
            if state >> 32 != generation || next >= chunks {
                return None;
            }
            match self.claims.compare_exchange_weak(state, state + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(next),
                Err(now) => state = now,
            }
        }
    }

    /// Runs chunk `index` of the current job and counts it done.
    fn run(&self, index: usize) {
        // SAFETY: the caller claimed `index` of the current job, which stays as written until
        // this chunk is counted done (see `Sync` above).
        let job = unsafe { &*self.job.get() };
        let start = index * job.chunk;
        let range = start..job.items.min(start + job.chunk);
        // SAFETY: `call` and `data` are the trampoline and closure of the same job.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (job.call)(job.data, range) }));
        if result.is_err() {
            self.panicked.store(true, Ordering::Relaxed);
        }
        self.done.fetch_add(1, Ordering::Release);
    }

    fn worker(&'static self) {
        IN_POOL.with(|p| p.set(true));
        let mut seen = 0u64;
        loop {
            let mut waited = 0u32;
            let generation = loop {
                let generation = self.claims.load(Ordering::Acquire) >> 32;
                if generation != seen {
                    break generation;
                }
                waited = waited.saturating_add(1);
                if waited < SPINS {
                    std::hint::spin_loop();
                } else if waited < SPINS + YIELDS {
                    std::thread::yield_now();
                } else {
                    // A job published after the check above unparks this thread, and an
                    // unpark before the park makes it return at once.
                    std::thread::park();
                    waited = SPINS;
                }
            };
            seen = generation;
            while let Some(index) = self.claim(generation) {
                self.run(index);
            }
        }
    }

    fn start_workers(&'static self) -> &'static [Thread] {
        self.workers.get_or_init(|| {
            (1..self.threads)
                .filter_map(|i| {
                    std::thread::Builder::new()
                        .name(format!("tcat-worker-{i}"))
                        .spawn(move || self.worker())
                        .ok()
                        .map(|handle| handle.thread().clone())
                })
                .collect()
        })
    }

    /// Calls `f` on disjoint ranges covering `0..items`, on this thread and the workers.
    pub(crate) fn execute_chunked<F: Fn(Range<usize>) + Sync>(&'static self, items: usize, f: F) {
        if items == 0 {
            return;
        }
        let guard = match self.submit.try_lock() {
            Ok(guard) if self.threads > 1 && items > 1 && !IN_POOL.with(Cell::get) => guard,
            // One thread, one item, a job inside a job, or another caller's job running.
            _ => return f(0..items),
        };
        let workers = self.start_workers();
        let chunks = items.min(self.threads * CHUNKS_PER_THREAD).min(MAX_CHUNKS);
        let chunk = items.div_ceil(chunks);
        let chunks = items.div_ceil(chunk);

        unsafe fn trampoline<F: Fn(Range<usize>)>(data: *const (), range: Range<usize>) {
            // SAFETY: `data` is the `&F` of the job being run.
            unsafe { (*data.cast::<F>())(range) }
        }
        let generation = (self.claims.load(Ordering::Relaxed) >> 32).wrapping_add(1) & 0xffff_ffff;
        let generation = generation.max(1);
        // SAFETY: this thread holds `submit`, and the previous job's chunks are all done (its
        // submitter waited for them), so no one reads `job` now.
        unsafe {
            *self.job.get() = Job { call: trampoline::<F>, data: (&f as *const F).cast(), items, chunk };
        }
        self.done.store(0, Ordering::Relaxed);
        self.panicked.store(false, Ordering::Relaxed);
        self.claims.store(pack(generation, chunks, 0), Ordering::Release);
        for worker in workers {
            worker.unpark();
        }
        while let Some(index) = self.claim(generation) {
            self.run(index);
        }
        // Only chunks claimed by workers can still be running.
        let mut waited = 0u32;
        while self.done.load(Ordering::Acquire) < chunks {
            waited = waited.saturating_add(1);
            if waited < SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let panicked = self.panicked.load(Ordering::Relaxed);
        drop(guard);
        assert!(!panicked, "a chunk of a tcat kernel panicked on a worker thread");
    }
}

/// The pool, sized by candle's thread count (`RAYON_NUM_THREADS`, else the cores), started on
/// first use.
pub(crate) fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool::new(candle_core::utils::get_num_threads()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every item is visited exactly once, for many jobs in a row, of sizes around the chunking,
    /// from several submitting threads at once (the losers run inline).
    #[test]
    fn every_item_once() {
        static POOL: OnceLock<Pool> = OnceLock::new();
        let pool = POOL.get_or_init(|| Pool::new(3));
        std::thread::scope(|s| {
            for t in 0..3 {
                s.spawn(move || {
                    for round in 0..300 {
                        let items = (round * 7 + t) % 97;
                        let seen: Vec<AtomicUsize> = (0..items).map(|_| AtomicUsize::new(0)).collect();
                        pool.execute_chunked(items, |range| {
                            for i in range {
                                seen[i].fetch_add(1, Ordering::Relaxed);
                            }
                        });
                        assert!(seen.iter().all(|c| c.load(Ordering::Relaxed) == 1), "items {items}");
                    }
                });
            }
        });
        // Nested jobs run inline.
        let total = AtomicUsize::new(0);
        pool.execute_chunked(10, |outer| {
            for _ in outer {
                pool.execute_chunked(5, |inner| {
                    total.fetch_add(inner.len(), Ordering::Relaxed);
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 50);
    }
}
