//! The AVX2 kernels: four weight rows against one quantized input row, block by block.
//!
//! Per block, the 4-bit values are widened to 32 unsigned bytes (low nibbles, then high ones),
//! multiplied with the input's signed bytes by `vpmaddubsw` (pairs summed to i16, which cannot
//! overflow: |15 · 128 · 2| < 2¹⁵), summed to eight i32 by `vpmaddwd`, converted and scaled with
//! one FMA. Q8_0's signed weights use the usual sign trick (`|w| · sign(p, w)`). The scalar
//! terms of Q4_0 and Q4_1 (`−8 d dₓ Σp` and `m dₓ Σp`) are accumulated beside.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::{BlockFormat, InputBlock};

/// Whether this CPU runs these kernels.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// Whether this CPU also has `vpdpbusd` on 256-bit registers (AVX-512 VNNI and VL) and
/// 512-bit registers (AVX-512F, used by the f32-input kernel).
pub(super) fn vnni_available() -> bool {
    is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") && avx512_available()
}

/// Bytes ahead of the current block that are prefetched.
const PREFETCH_AHEAD: usize = 3072;

const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q8_0: u8 = 2;

/// Dot products of `input` with four weight rows, by `vpdpbusd` when `vnni`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C (and AVX-512 VNNI and VL when `vnni`), and each row
/// must hold `input.len()` blocks.
pub(super) unsafe fn dot4(format: BlockFormat, rows: [&[u8]; 4], input: &[InputBlock], vnni: bool) -> [f32; 4] {
    for row in rows {
        assert!(row.len() >= input.len() * format.block_bytes(), "weight row shorter than the input");
    }
    // SAFETY: lengths checked above; the features are the caller's contract.
    unsafe {
        match (format, vnni) {
            (BlockFormat::Q4_0, false) => dot4_avx2::<Q4_0>(rows, input),
            (BlockFormat::Q4_1, false) => dot4_avx2::<Q4_1>(rows, input),
            (BlockFormat::Q8_0, false) => dot4_avx2::<Q8_0>(rows, input),
            (BlockFormat::Q4_0, true) => dot4_vnni::<Q4_0>(rows, input),
            (BlockFormat::Q4_1, true) => dot4_vnni::<Q4_1>(rows, input),
            (BlockFormat::Q8_0, true) => dot4_vnni::<Q8_0>(rows, input),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4_avx2<const F: u8>(rows: [&[u8]; 4], input: &[InputBlock]) -> [f32; 4] {
    // SAFETY: the caller's contract, passed on.
    unsafe { dot4_format::<F, false>(rows, input) }
}

#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
unsafe fn dot4_vnni<const F: u8>(rows: [&[u8]; 4], input: &[InputBlock]) -> [f32; 4] {
    // SAFETY: the caller's contract, passed on.
    unsafe { dot4_format::<F, true>(rows, input) }
}

/// The kernel's body, compiled into each of the two feature sets above.
#[inline(always)]
unsafe fn dot4_format<const F: u8, const VNNI: bool>(rows: [&[u8]; 4], input: &[InputBlock]) -> [f32; 4] {
    // SAFETY: the caller's features; `x.qs` is 32 bytes and the block pointers stay inside
    // their rows (checked by `dot4`).
    unsafe {
        let bytes = match F {
            Q4_0 => BlockFormat::Q4_0.block_bytes(),
            Q4_1 => BlockFormat::Q4_1.block_bytes(),
            _ => BlockFormat::Q8_0.block_bytes(),
        };
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut offsets = [0f32; 4];
        for (b, x) in input.iter().enumerate() {
            let p = _mm256_loadu_si256(x.qs.as_ptr().cast());
            for r in 0..4 {
                let block = rows[r].as_ptr().add(b * bytes);
                // The rows of a group lie back to back: fetch ahead of the stream.
                _mm_prefetch::<_MM_HINT_T0>(block.wrapping_add(PREFETCH_AHEAD).cast());
                let dw = f16_to_f32(block);
                // Unsigned weight bytes and the signed input bytes they multiply.
                let (w, p) = match F {
                    Q4_0 => {
                        offsets[r] -= 8.0 * dw * x.d_sum;
                        (nibbles(block.add(2)), p)
                    }
                    Q4_1 => {
                        offsets[r] += f16_to_f32(block.add(2)) * x.d_sum;
                        (nibbles(block.add(4)), p)
                    }
                    _ => {
                        let w = _mm256_loadu_si256(block.add(2).cast());
                        (_mm256_sign_epi8(w, w), _mm256_sign_epi8(p, w))
                    }
                };
                let sums = if VNNI {
                    _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, p)
                } else {
                    _mm256_madd_epi16(_mm256_maddubs_epi16(w, p), ones)
                };
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(dw * x.d), acc[r]);
            }
        }
        std::array::from_fn(|r| horizontal_sum(acc[r]) + offsets[r])
    }
}

/// The 32 4-bit values of the 16 bytes at `qs`, as unsigned bytes in value order.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn nibbles(qs: *const u8) -> __m256i {
    // SAFETY: the caller points at 16 readable bytes.
    let packed = unsafe { _mm_loadu_si128(qs.cast()) };
    let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// The little-endian f16 at `at`, widened.
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn f16_to_f32(at: *const u8) -> f32 {
    // SAFETY: the caller points at two readable bytes.
    let bits = unsafe { at.cast::<u16>().read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[target_feature(enable = "avx2")]
#[inline]
fn horizontal_sum(v: __m256) -> f32 {
    let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
    _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
}

/// Dot products of the f32 row `x` with four Q8_0 weight rows, the input left unquantized: per
/// block, the 32 weights are widened to f32 (`vpmovsxbd`, `vcvtdq2ps`), multiplied with the
/// input by FMA and the block's sum scaled by its `d` with one more FMA. With `avx512`, 16
/// values per instruction on 512-bit registers.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C (and AVX-512F when `avx512`); each row must hold
/// `x.len() / 32` blocks and `x.len()` must be a multiple of 32.
pub(super) unsafe fn dot4_q8_0_f32(rows: [&[u8]; 4], x: &[f32], avx512: bool) -> [f32; 4] {
    assert!(x.len().is_multiple_of(super::BLOCK), "input not a whole number of blocks");
    for row in rows {
        assert!(row.len() >= x.len() / super::BLOCK * 34, "weight row shorter than the input");
    }
    // SAFETY: lengths checked above; the features are the caller's contract.
    unsafe { if avx512 { dot4_q8_0_f32_avx512(rows, x) } else { dot4_q8_0_f32_avx2(rows, x) } }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4_q8_0_f32_avx2(rows: [&[u8]; 4], x: &[f32]) -> [f32; 4] {
    // SAFETY: `x` holds whole blocks and every row as many 34-byte blocks (checked by the caller).
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        for b in 0..x.len() / super::BLOCK {
            let xp = x.as_ptr().add(b * super::BLOCK);
            let xs = [
                _mm256_loadu_ps(xp),
                _mm256_loadu_ps(xp.add(8)),
                _mm256_loadu_ps(xp.add(16)),
                _mm256_loadu_ps(xp.add(24)),
            ];
            for r in 0..4 {
                let block = rows[r].as_ptr().add(b * 34);
                _mm_prefetch::<_MM_HINT_T0>(block.wrapping_add(PREFETCH_AHEAD).cast());
                let d = _mm256_set1_ps(f16_to_f32(block));
                let q = block.add(2);
                let w = |k: usize| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(q.add(8 * k).cast())));
                let mut s = _mm256_mul_ps(w(0), xs[0]);
                s = _mm256_fmadd_ps(w(1), xs[1], s);
                s = _mm256_fmadd_ps(w(2), xs[2], s);
                s = _mm256_fmadd_ps(w(3), xs[3], s);
                acc[r] = _mm256_fmadd_ps(d, s, acc[r]);
            }
        }
        std::array::from_fn(|r| horizontal_sum(acc[r]))
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn dot4_q8_0_f32_avx512(rows: [&[u8]; 4], x: &[f32]) -> [f32; 4] {
    // SAFETY: as in `dot4_q8_0_f32_avx2`.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); 4];
        for b in 0..x.len() / super::BLOCK {
            let xp = x.as_ptr().add(b * super::BLOCK);
            let (x0, x1) = (_mm512_loadu_ps(xp), _mm512_loadu_ps(xp.add(16)));
            for r in 0..4 {
                let block = rows[r].as_ptr().add(b * 34);
                _mm_prefetch::<_MM_HINT_T0>(block.wrapping_add(PREFETCH_AHEAD).cast());
                let d = _mm512_set1_ps(f16_to_f32(block));
                let q = block.add(2);
                let w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q.cast())));
                let w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q.add(16).cast())));
                let s = _mm512_fmadd_ps(w1, x1, _mm512_mul_ps(w0, x0));
                acc[r] = _mm512_fmadd_ps(d, s, acc[r]);
            }
        }
        std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]))
    }
}

/// Whether this CPU has AVX-512F (512-bit registers) beside AVX2.
pub(super) fn avx512_available() -> bool {
    is_x86_feature_detected!("avx512f")
}
