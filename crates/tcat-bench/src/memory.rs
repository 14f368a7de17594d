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

/// Whether a run fits in the memory available, judged before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// The estimate is below the memory available.
    Fits,
    /// The memory available is unknown (not Linux, or not the CPU): run and see.
    Unknown,
    /// The estimate exceeds the memory available: skip the run.
    TooLarge {
        /// Estimated bytes the run allocates above its inputs.
        needed: usize,
        /// Bytes available to this process.
        available: usize,
    },
}

/// Bytes this process may still allocate: the lower of the kernel's `MemAvailable`
/// (`/proc/meminfo`) and the room left under a cgroup v2 limit (`memory.max − memory.current`);
/// `None` where neither can be read.
pub fn available_bytes() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
            .map(|kib| kib.saturating_mul(1024))
    });
    let read = |name: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{name}")).ok();
    let cgroup = match (read("memory.max"), read("memory.current")) {
        (Some(max), Some(current)) => match (max.trim().parse::<usize>(), current.trim().parse::<usize>()) {
            (Ok(max), Ok(current)) => Some(max.saturating_sub(current)),
            _ => None, // "max": no limit
        },
        _ => None,
    };
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether `variant` on `shape` fits in the memory available on `device` (CPU only: GPU memory
/// is not counted, [`Fit::Unknown`]).
///
/// ```
/// use candle_core::Device;
/// use tcat_bench::memory::{Fit, fits};
/// use tcat_bench::{Shape, Variant};
/// let huge = Shape { batch: 64, heads: 64, seq: 1 << 20, head_dim: 64 };
/// assert!(matches!(fits(Variant::Dense, huge, &Device::Cpu), Fit::TooLarge { .. } | Fit::Unknown));
/// let tiny = Shape { batch: 1, heads: 1, seq: 8, head_dim: 8 };
/// assert!(matches!(fits(Variant::Dense, tiny, &Device::Cpu), Fit::Fits | Fit::Unknown));
/// ```
pub fn fits(variant: crate::Variant, shape: crate::Shape, device: &candle_core::Device) -> Fit {
    if !device.is_cpu() {
        return Fit::Unknown;
    }
    let needed = variant.estimated_bytes(shape);
    match available_bytes() {
        None => Fit::Unknown,
        Some(available) if needed > available => Fit::TooLarge { needed, available },
        Some(_) => Fit::Fits,
    }
}

/// The line to print instead of running `variant` on `shape` when it would not fit
/// ([`fits`] says [`Fit::TooLarge`]), or `None` when it may run:
/// `"dense at seq 16384: skipped, it would need about 24.0 GiB above its inputs and 7.1 GiB is available"`.
pub fn skip_reason(variant: crate::Variant, shape: crate::Shape, device: &candle_core::Device) -> Option<String> {
    match fits(variant, shape, device) {
        Fit::TooLarge { needed, available } => Some(format!(
            "{variant} at seq {}: skipped, it would need about {} above its inputs and {} is available",
            shape.seq,
            crate::report::format_bytes(needed),
            crate::report::format_bytes(available)
        )),
        Fit::Fits | Fit::Unknown => None,
    }
}
