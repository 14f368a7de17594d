//! What tcat's CPU kernels share: a mutable slice the worker pool fills at disjoint ranges, the
//! check of a matrix product's operand sizes, and (in tests) a seeded random source.

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

/// Checks that `x` holds `m` input rows and `y` `m` output rows of a `[rows, cols]` matrix;
/// the error names the kernel (`what`) and every size.
pub(crate) fn check_operands(
    what: &str,
    x: &[f32],
    m: usize,
    y: &[f32],
    rows: usize,
    cols: usize,
) -> candle_core::Result<()> {
    if Some(x.len()) != m.checked_mul(cols) || Some(y.len()) != m.checked_mul(rows) {
        return Err(candle_core::Error::Msg(format!(
            "{what}: input of {} values and output of {} for {m} rows of a [{rows}, {cols}] matrix",
            x.len(),
            y.len()
        )));
    }
    Ok(())
}

/// `n` values uniform in `[-1, 1)` from a fixed seed (SplitMix64), for the kernels' tests.
#[cfg(test)]
pub(crate) fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
