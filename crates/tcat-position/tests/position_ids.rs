//! Position ids from attention masks against a running count, on masks long enough to cross
//! the prefix-sum blocks.

mod common;

use candle_core::Tensor;
use common::device;
use tcat_position::positions_from_attention_mask;

#[test]
fn positions_count_the_real_tokens_before_each_one() {
    for len in [1, 7, 256, 300, 1000] {
        // Row 0 left-padded by a third, row 1 with holes every 7th token, row 2 unpadded.
        let rows: Vec<Vec<u32>> = vec![
            (0..len).map(|j| u32::from(j >= len / 3)).collect(),
            (0..len).map(|j| u32::from(j % 7 != 3)).collect(),
            vec![1; len],
        ];
        let mask = Tensor::new(rows.clone(), &device()).unwrap();
        let got: Vec<Vec<u32>> = positions_from_attention_mask(&mask).unwrap().to_vec2().unwrap();
        for (row, got) in rows.iter().zip(&got) {
            let mut seen = 0u32;
            for (j, (&m, &g)) in row.iter().zip(got).enumerate() {
                let want = if m == 1 { seen } else { 0 };
                seen += m;
                assert_eq!(g, want, "len {len}, column {j}");
            }
        }
    }
}
