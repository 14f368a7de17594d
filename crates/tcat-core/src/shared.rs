//! A mutable slice that candle's worker pool fills at disjoint ranges.

/// A mutable slice written by several workers at disjoint ranges.
pub(crate) struct SharedSlice {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the workers write disjoint ranges (each caller states why), never the same element.
unsafe impl Sync for SharedSlice {}

impl SharedSlice {
    pub(crate) fn new(slice: &mut [f32]) -> Self {
        Self { ptr: slice.as_mut_ptr(), len: slice.len() }
    }

    /// # Safety
    /// No other live reference may overlap `start..start + len`.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn range(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.len, "range {start}+{len} past {}", self.len);
        // SAFETY: in bounds (checked above); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}
