//! Transparent huge pages for large heap blocks only.
//!
//! Decoding streams every weight once per token, and streaming is faster through 2 MiB pages
//! than through 4 KiB ones (fewer TLB misses, and the hardware prefetchers stop at page
//! boundaries): SmolLM2's f32 decoding ran at 36–50 tokens/s with them and 29–35 with huge
//! pages disabled for the process (three interleaved runs on a loaded 2-core machine). An allocator
//! that asks for huge pages on all of its memory (mimalloc does by default, `MADV_HUGEPAGE` on
//! its arenas) also turns every partly used 2 MiB stretch of small objects into a whole
//! resident huge page: 17 MiB more peak memory for SmolLM2's 94 MiB Q4_1 file.
//!
//! [`HugePages`] wraps an allocator that does not advise huge pages itself (mimalloc built with
//! its `no_thp` feature, as the workspace does) and advises them (`madvise(MADV_HUGEPAGE)`,
//! Linux only) on the whole 2 MiB pages inside each block of at least [`HUGE_BLOCK`] bytes:
//! weights, activations and caches, which are used whole. Small objects stay on 4 KiB pages.
//! Elsewhere it only forwards.
//!
//! ```
//! use tcat_bench::huge_pages::{HugePages, aligned_interior};
//! #[global_allocator]
//! static GLOBAL: HugePages<std::alloc::System> = HugePages::new(std::alloc::System);
//!
//! let weights = vec![1f32; 1 << 22]; // 16 MiB
//! assert_eq!(weights.iter().sum::<f32>(), (1 << 22) as f32);
//! // The advised part of a block: its whole 2 MiB pages.
//! assert_eq!(aligned_interior(3 << 20, 6 << 20), Some((4 << 20, 8 << 20)));
//! assert_eq!(aligned_interior(3 << 20, 2 << 20), None);
//! ```

use std::alloc::{GlobalAlloc, Layout};

/// Size of a transparent huge page on x86-64 and most aarch64 kernels.
pub const HUGE_PAGE: usize = 2 << 20;

/// Blocks of at least this many bytes get their whole huge pages advised.
pub const HUGE_BLOCK: usize = HUGE_PAGE;

/// An allocator that advises transparent huge pages on large blocks of `A`'s.
#[derive(Debug, Default)]
pub struct HugePages<A> {
    inner: A,
}

impl<A> HugePages<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

/// The whole [`HUGE_PAGE`]s inside the block `[start, start + len)`, as `(first, end)`
/// addresses, or `None` when the block holds none.
pub fn aligned_interior(start: usize, len: usize) -> Option<(usize, usize)> {
    let first = start.checked_add(HUGE_PAGE - 1)? & !(HUGE_PAGE - 1);
    let end = start.checked_add(len)? & !(HUGE_PAGE - 1);
    (end > first).then_some((first, end))
}

/// Advises huge pages on the whole huge pages of a fresh block (a hint: errors are ignored).
fn advise(ptr: *mut u8, len: usize) {
    if len < HUGE_BLOCK || ptr.is_null() {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Some((first, end)) = aligned_interior(ptr as usize, len) {
        // SAFETY: the range lies inside a block the allocator just handed out (so it is mapped
        // and ours), and MADV_HUGEPAGE changes no contents, only how future faults are served.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    }
}

// SAFETY: every call is forwarded unchanged to `inner`, which upholds the `GlobalAlloc`
// contract; the advice only changes the page size backing the returned block.
unsafe impl<A: GlobalAlloc> GlobalAlloc for HugePages<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout as our caller's.
        let ptr = unsafe { self.inner.alloc(layout) };
        advise(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        advise(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `inner` (through us) with `layout`.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s preconditions.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if new_size > layout.size() {
            advise(new, new_size);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interiors_are_whole_aligned_pages_inside_the_block() {
        let mb = 1 << 20;
        for (start, len) in [(0, 4 * mb), (1, 4 * mb), (3 * mb, 6 * mb), (2 * mb, 2 * mb), (5, 3), (usize::MAX - 5, 9)]
        {
            match aligned_interior(start, len) {
                Some((first, end)) => {
                    assert!(first >= start && end <= start + len, "{start} {len}");
                    assert!(first.is_multiple_of(HUGE_PAGE) && end.is_multiple_of(HUGE_PAGE) && end > first);
                    // Nothing whole was left out at either side.
                    assert!(first - start < HUGE_PAGE && start + len - end < HUGE_PAGE, "{start} {len}");
                }
                None => {
                    // No whole page fits (or the block wraps the address space).
                    let fits = (start..=start.saturating_add(len)).step_by(mb / 2).any(|a| {
                        a.is_multiple_of(HUGE_PAGE) && a.checked_add(HUGE_PAGE).is_some_and(|e| e <= start + len)
                    });
                    assert!(!fits || start.checked_add(len).is_none(), "{start} {len}");
                }
            }
        }
        assert_eq!(aligned_interior(0, 4 * mb), Some((0, 4 * mb)));
        assert_eq!(aligned_interior(1, 4 * mb), Some((2 * mb, 4 * mb)));
    }

    #[test]
    fn blocks_through_the_wrapper_hold_their_values() {
        let alloc = HugePages::new(std::alloc::System);
        for size in [16, HUGE_BLOCK - 1, HUGE_BLOCK, 5 * HUGE_PAGE + 123] {
            let layout = Layout::from_size_align(size, 64).unwrap();
            // SAFETY: a valid non-zero layout; the block is written within bounds, then freed
            // with the same layout.
            unsafe {
                let p = alloc.alloc_zeroed(layout);
                assert!(!p.is_null());
                assert!((0..size).step_by(4096).all(|i| *p.add(i) == 0));
                *p.add(size - 1) = 7;
                let q = alloc.realloc(p, layout, size * 2);
                assert_eq!(*q.add(size - 1), 7);
                alloc.dealloc(q, Layout::from_size_align(size * 2, 64).unwrap());
            }
        }
    }
}
