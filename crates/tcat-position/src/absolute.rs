//! Absolute position embeddings: a table of one vector per position, learned (BERT, Devlin et
//! al. 2018, §3; GPT-2) or fixed sinusoids (CTRL; see [`sinusoidal_table`](crate::sinusoidal_table)).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// A table of `max_positions` vectors, looked up by position id.
///
/// Position `p` reads row `p + offset`: OPT and BART store two extra leading rows and offset by
/// 2. RoBERTa instead folds its padding offset into the position ids
/// ([`padding_aware_position_ids`](crate::padding_aware_position_ids)) and uses offset 0.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let table = Tensor::arange(0f32, 8., &Device::Cpu).unwrap().reshape((4, 2)).unwrap();
/// let positions = tcat_position::AbsolutePositions::new(table, 1);
/// let ids = Tensor::new(&[[0u32, 2]], &Device::Cpu).unwrap();
/// assert_eq!(positions.forward(&ids).unwrap().to_vec3::<f32>().unwrap(), [[[2., 3.], [6., 7.]]]);
/// assert_eq!(positions.max_positions(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct AbsolutePositions {
    table: Tensor,
    offset: usize,
}

impl AbsolutePositions {
    /// A table `[rows, dim]` read at `position + offset`.
    pub fn new(table: Tensor, offset: usize) -> Self {
        Self { table, offset }
    }

    /// Loads `weight` `[rows, dim]` under `vb`.
    pub fn load(vb: VarBuilder, rows: usize, dim: usize, offset: usize) -> Result<Self> {
        Ok(Self::new(vb.get((rows, dim), "weight")?, offset))
    }

    /// The largest number of distinct positions (rows minus the offset).
    pub fn max_positions(&self) -> usize {
        self.table.dims()[0].saturating_sub(self.offset)
    }

    /// Embeddings of `position_ids` (`[batch, seq]`, integer), `[batch, seq, dim]`.
    pub fn forward(&self, position_ids: &Tensor) -> Result<Tensor> {
        let ids = if self.offset == 0 {
            position_ids.clone()
        } else {
            (position_ids.to_dtype(candle_core::DType::I64)? + self.offset as f64)?
        };
        let (b, s) = ids.dims2()?;
        let flat = self.table.index_select(&ids.flatten_all()?, 0)?;
        flat.reshape((b, s, ()))
    }
}
