//! DALL-E's position embeddings for text followed by an image (Ramesh et al. 2021, "Zero-Shot
//! Text-to-Image Generation", §2.2 and Appendix B.1): text tokens take rows of their own learned
//! table, the image token in grid row `r` and column `c` (raster order) takes
//! `row[r] + col[c]` from two factorised tables.

use candle_core::{Result, Tensor};

/// One `[text + rows · cols, dim]` table for [`AbsolutePositions`](crate::AbsolutePositions):
/// `text` `[text_len, dim]`, then `row[p / cols] + col[p % cols]` for each image position `p`,
/// from `row` `[rows, dim]` and `col` `[cols, dim]`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let dev = Device::Cpu;
/// let text = Tensor::new(&[[9f32]], &dev).unwrap();
/// let row = Tensor::new(&[[0f32], [10.]], &dev).unwrap();
/// let col = Tensor::new(&[[1f32], [2.], [3.]], &dev).unwrap();
/// let t = tcat_position::image_grid_table(&text, &row, &col).unwrap();
/// assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [9., 1., 2., 3., 11., 12., 13.]);
/// ```
pub fn image_grid_table(text: &Tensor, row: &Tensor, col: &Tensor) -> Result<Tensor> {
    let (rows, dim) = row.dims2()?;
    let (cols, col_dim) = col.dims2()?;
    let (_, text_dim) = text.dims2()?;
    if col_dim != dim || text_dim != dim {
        candle_core::bail!(
            "image grid positions: text, row and column tables are {text_dim}, {dim} and {col_dim} wide, expected one width"
        );
    }
    let cells = rows.checked_mul(cols).filter(|&n| n <= u32::MAX as usize).ok_or_else(|| {
        candle_core::Error::Msg(format!("image grid positions: {rows} × {cols} image tokens overflow"))
    })?;
    let row_ids: Vec<u32> = (0..cells).map(|p| (p / cols) as u32).collect();
    let col_ids: Vec<u32> = (0..cells).map(|p| (p % cols) as u32).collect();
    let device = row.device();
    let image = (row.index_select(&Tensor::new(row_ids, device)?, 0)?
        + col.index_select(&Tensor::new(col_ids, device)?, 0)?)?;
    Tensor::cat(&[text, &image.to_dtype(text.dtype())?], 0)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    /// The table equals the rule written out position by position.
    #[test]
    fn image_grid_table_follows_the_rule() {
        let dev = Device::Cpu;
        let (text_len, rows, cols, dim) = (3, 4, 5, 6);
        let text = Tensor::randn(0f32, 1., (text_len, dim), &dev).unwrap();
        let row = Tensor::randn(0f32, 1., (rows, dim), &dev).unwrap();
        let col = Tensor::randn(0f32, 1., (cols, dim), &dev).unwrap();
        let got: Vec<Vec<f32>> = super::image_grid_table(&text, &row, &col).unwrap().to_vec2().unwrap();
        let rows_of = |t: &Tensor| -> Vec<Vec<f32>> { t.to_vec2().unwrap() };
        let (text, row, col) = (rows_of(&text), rows_of(&row), rows_of(&col));
        assert_eq!(got.len(), text_len + rows * cols);
        for (p, got_row) in got.iter().enumerate() {
            for (d, g) in got_row.iter().enumerate() {
                let want = if p < text_len {
                    text[p][d]
                } else {
                    let i = p - text_len;
                    row[i / cols][d] + col[i % cols][d]
                };
                assert_eq!(*g, want, "position {p}, feature {d}");
            }
        }
    }
}
