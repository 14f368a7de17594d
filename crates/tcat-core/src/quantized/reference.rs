//! The block formats written out plainly: what the SIMD kernels must reproduce, and what a
//! reader reads to learn the layouts.
//!
//! A Q4_0 block is `[d: f16][16 bytes]`, a Q4_1 block `[d: f16][m: f16][16 bytes]`; byte `j`
//! holds value `j` in its low nibble and value `j + 16` in its high nibble. A Q8_0 block is
//! `[d: f16][32 × i8]`.

use super::{BLOCK, BlockFormat, InputBlock, f16_at};

/// The 4-bit values of a block's 16 bytes, in order.
fn nibbles(qs: &[u8]) -> [i32; BLOCK] {
    std::array::from_fn(|i| if i < 16 { (qs[i] & 0x0f) as i32 } else { (qs[i - 16] >> 4) as i32 })
}

/// One weight block's contribution to `x · w`.
pub fn block_dot(format: BlockFormat, block: &[u8], x: &InputBlock) -> f32 {
    let int_dot = |q: &[i32; BLOCK]| q.iter().zip(&x.qs).map(|(q, p)| q * *p as i32).sum::<i32>();
    match format {
        BlockFormat::Q4_0 => {
            let d = f16_at(block, 0);
            let q = nibbles(&block[2..18]);
            d * x.d * (int_dot(&q) - 8 * x.sum) as f32
        }
        BlockFormat::Q4_1 => {
            let (d, m) = (f16_at(block, 0), f16_at(block, 2));
            let q = nibbles(&block[4..20]);
            d * x.d * int_dot(&q) as f32 + m * x.d * x.sum as f32
        }
        BlockFormat::Q8_0 => {
            let d = f16_at(block, 0);
            let q: [i32; BLOCK] = std::array::from_fn(|i| block[2 + i] as i8 as i32);
            d * x.d * int_dot(&q) as f32
        }
    }
}

/// The dot product of one weight row (its blocks, as stored) with a quantized input row.
pub fn dot(format: BlockFormat, row: &[u8], x: &[InputBlock]) -> f32 {
    row.chunks_exact(format.block_bytes()).zip(x).map(|(block, x)| block_dot(format, block, x)).sum()
}

/// Expands one weight row to f32.
pub fn dequantize_row(format: BlockFormat, row: &[u8], out: &mut [f32]) {
    for (block, out) in row.chunks_exact(format.block_bytes()).zip(out.chunks_exact_mut(BLOCK)) {
        match format {
            BlockFormat::Q4_0 => {
                let d = f16_at(block, 0);
                for (o, q) in out.iter_mut().zip(nibbles(&block[2..18])) {
                    *o = d * (q - 8) as f32;
                }
            }
            BlockFormat::Q4_1 => {
                let (d, m) = (f16_at(block, 0), f16_at(block, 2));
                for (o, q) in out.iter_mut().zip(nibbles(&block[4..20])) {
                    *o = d * q as f32 + m;
                }
            }
            BlockFormat::Q8_0 => {
                let d = f16_at(block, 0);
                for (o, q) in out.iter_mut().zip(&block[2..2 + BLOCK]) {
                    *o = d * *q as i8 as f32;
                }
            }
        }
    }
}

/// The dot product of one weight row with an f32 input row left unquantized: each block's
/// `Σ wᵢ xᵢ` over its dequantized weights. The LM head uses this form (8-bit inputs change
/// greedy answers there).
pub fn dot_f32(format: BlockFormat, row: &[u8], x: &[f32]) -> f32 {
    let mut w = [0f32; BLOCK];
    let mut total = 0f32;
    for (block, x) in row.chunks_exact(format.block_bytes()).zip(x.chunks_exact(BLOCK)) {
        dequantize_row(format, block, &mut w);
        total += w.iter().zip(x).map(|(w, x)| w * x).sum::<f32>();
    }
    total
}
