//! Peak heap memory, counted by a wrapping global allocator.
//!
//! [`CountingAllocator`] wraps another allocator (mimalloc in the `tcat` binary and the
//! criterion bench, `System` in tests) and keeps two process-wide counters: the bytes currently
//! allocated through it and the highest value since the last [`reset_peak`]. [`track_peak`]
//! runs a closure and reports the peak above the bytes that were live when it started, so the
//! inputs already built are not counted but every intermediate and the output are.
//!
//! What it counts: every heap allocation made through Rust's global allocator by any thread,
//! which is where candle's CPU tensors live (their storage is a `Vec`). It does not count GPU
//! memory, memory-mapped files, thread stacks, or pages an allocator keeps cached after a free;
//! it counts requested sizes, not the allocator's rounding. Numbers are only available when the
//! program installed the allocator with `#[global_allocator]` ([`is_counting`]).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

/// A global allocator that forwards to `A` and counts live and peak bytes.
///
/// Install it once per program; the counters are process-wide:
///
/// ```
/// use tcat_bench::memory::{CountingAllocator, track_peak};
/// #[global_allocator]
/// static GLOBAL: CountingAllocator<std::alloc::System> = CountingAllocator::new(std::alloc::System);
///
/// let (len, peak) = track_peak(|| vec![0u8; 1 << 20].len());
/// assert_eq!(len, 1 << 20);
/// assert!(peak.unwrap() >= 1 << 20);
/// ```
#[derive(Debug, Default)]
pub struct CountingAllocator<A> {
    inner: A,
}

impl<A> CountingAllocator<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

fn grow(bytes: usize) {
    if !COUNTING.load(Ordering::Relaxed) {
        COUNTING.store(true, Ordering::Relaxed);
    }
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrink(bytes: usize) {
    CURRENT.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `inner`, which upholds the `GlobalAlloc`
// contract; the counters only observe sizes.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout as our caller's, which satisfies `alloc`'s preconditions.
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            grow(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grow(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `inner` (through us) with `layout`.
        unsafe { self.inner.dealloc(ptr, layout) };
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s preconditions.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                grow(new_size - layout.size());
            } else {
                shrink(layout.size() - new_size);
            }
        }
        new
    }
}

/// Whether a [`CountingAllocator`] is this program's global allocator (it has seen an
/// allocation).
pub fn is_counting() -> bool {
    COUNTING.load(Ordering::Relaxed)
}

/// Bytes currently allocated through the counting allocator (0 when it is not installed).
pub fn current_bytes() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// The highest [`current_bytes`] since the last [`reset_peak`].
pub fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Starts a new peak at the bytes allocated now.
pub fn reset_peak() {
    PEAK.store(CURRENT.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Runs `f` and returns its result with the peak bytes allocated above those live when it
/// started (`None` when no [`CountingAllocator`] is installed).
///
/// Allocations by other threads during `f` count too: run one measurement at a time.
pub fn track_peak<T>(f: impl FnOnce() -> T) -> (T, Option<usize>) {
    let baseline = current_bytes();
    reset_peak();
    let out = f();
    let peak = is_counting().then(|| peak_bytes().saturating_sub(baseline));
    (out, peak)
}
