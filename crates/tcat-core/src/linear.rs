//! The affine projection `y = x Wᵀ + b` used by every block, loaded in either of the two layouts
//! checkpoints store, dense or quantized (GGUF blocks: tcat's own CPU kernels for Q4_0, Q4_1 and
//! Q8_0, candle's quantized matmul for the other formats and devices). Dense f32/f16/bf16 weights
//! on the CPU meet a few input rows (decoding) with tcat's [`gemv`](crate::gemv) kernels, more
//! rows with candle's matmul.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use crate::gemv::{Kernel, Matrix, Weights};
use crate::quantized::BlockMatrix;

/// How a checkpoint stores a projection's weight matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightLayout {
    /// `[out_features, in_features]`, as `torch.nn.Linear` stores it.
    #[default]
    OutIn,
    /// `[in_features, out_features]`, as GPT-2's `Conv1D` stores it; transposed once at load.
    InOut,
}

/// A linear projection that flattens leading dimensions into one matmul.
///
/// candle's broadcasted 3-D matmul is about 10% slower on CPU than one 2-D matmul over the
/// flattened rows, so `forward` reshapes `[.., in]` to `[rows, in]` and back.
///
/// ```
/// use candle_core::{Device, Module, Tensor};
/// let w = Tensor::new(&[[1f32, 0.], [0., 2.], [1., 1.]], &Device::Cpu).unwrap(); // [out=3, in=2]
/// let lin = tcat_core::Linear::new(w, None);
/// let x = Tensor::new(&[[[1f32, 2.]]], &Device::Cpu).unwrap();
/// assert_eq!(lin.forward(&x).unwrap().to_vec3::<f32>().unwrap(), [[[1., 4., 3.]]]);
/// ```
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    shape: (usize, usize),
}

/// Inputs with at least this many rows multiply a dequantized copy of a quantized weight.
const DEQUANTIZE_FROM_ROWS: usize = 16;

/// Weight rows dequantized at a time when many input rows meet a large f32-input block matrix
/// (a tied LM head over a prompt): the dense copy stays a few MB instead of the whole table.
const DEQUANTIZE_CHUNK_ROWS: usize = 4096;

/// Inputs with at most this many rows multiply a dense f32/f16/bf16 CPU weight by
/// [`crate::gemv`] (weights streamed once, f32 accumulation); more rows go to candle's matmul.
/// Measured on SmolLM2's shapes (`benches/quantized.rs`, 2 threads): at 8 rows the kernels take
/// a third to a half of candle's time in f32 and a fifth to a tenth in f16/bf16; at 16 rows f32
/// is even on the [1536, 576] projection.
const GEMV_MAX_ROWS: usize = 8;

/// How the weight matrix is held.
#[derive(Debug, Clone)]
enum Weight {
    Dense(Tensor),
    /// Blocks run by [`crate::quantized`] (CPU, Q4_0 / Q4_1 / Q8_0).
    Blocks(Arc<BlockMatrix>),
    /// Blocks multiplied with f32 inputs ([`BlockMatrix::matmul_f32`]): tied LM heads.
    BlocksF32Inputs(Arc<BlockMatrix>),
    Quantized(QMatMul),
}

impl Linear {
    /// A projection from a `[out, in]` weight and an optional `[out]` bias.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        let dims = weight.dims();
        let shape = (dims[0], dims.get(1).copied().unwrap_or(1));
        Self { weight: Weight::Dense(weight), bias, shape }
    }

    /// A projection from a quantized `[out, in]` weight (e.g. a GGUF tensor), multiplied without
    /// dequantizing it: by [`crate::quantized`]'s kernels where they cover the format and device,
    /// else by candle's quantized matmul.
    pub fn quantized(weight: Arc<QTensor>, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let (out_features, in_features) = weight.shape().dims2()?;
        let weight = match BlockMatrix::from_qtensor(&weight)? {
            Some(blocks) => Weight::Blocks(Arc::new(blocks)),
            None => Weight::Quantized(QMatMul::from_arc(weight)?),
        };
        Ok(Self { weight, bias, shape: (out_features, in_features) })
    }

    /// A projection from raw GGUF blocks already in memory (read straight from a file, with no
    /// intermediate `QTensor`): the inputs are quantized to 8 bits as in [`quantized`]
    /// (Self::quantized), or kept in f32 when `f32_inputs` (see [`quantized_f32_inputs`]
    /// (Self::quantized_f32_inputs)).
    pub fn from_blocks(weight: BlockMatrix, bias: Option<Tensor>, f32_inputs: bool) -> Self {
        let shape = weight.dims();
        let weight = Arc::new(weight);
        let weight = if f32_inputs { Weight::BlocksF32Inputs(weight) } else { Weight::Blocks(weight) };
        Self { weight, bias, shape }
    }

    /// A projection from a quantized `[out, in]` weight that multiplies f32 inputs as they are
    /// (a tied LM head and token table: see [`BlockMatrix::matmul_f32`]); [`weight_rows`]
    /// (Self::weight_rows) then dequantizes only the rows it looks up. Formats and devices the
    /// block kernels do not cover are dequantized to a dense f32 weight.
    pub fn quantized_f32_inputs(weight: &QTensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let (out_features, in_features) = weight.shape().dims2()?;
        let weight = match BlockMatrix::from_qtensor(weight)? {
            Some(blocks) => Weight::BlocksF32Inputs(Arc::new(blocks)),
            None => Weight::Dense(weight.dequantize(&weight.device())?.to_dtype(DType::F32)?),
        };
        Ok(Self { weight, bias, shape: (out_features, in_features) })
    }

    /// The same projection with `bias` (e.g. a tied head with its own bias).
    pub fn with_bias(mut self, bias: Option<Tensor>) -> Self {
        self.bias = bias;
        self
    }

    /// Rows `ids` of the `[out, in]` weight as a dense `[ids, in]` tensor: the token-embedding
    /// lookup of a table shared with a tied head. Block weights dequantize only these rows (to
    /// f32); ids outside the table are an error.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// let w = Tensor::new(&[[1f32, 2.], [3., 4.], [5., 6.]], &Device::Cpu).unwrap();
    /// let ids = Tensor::new(&[2u32, 0], &Device::Cpu).unwrap();
    /// let rows = tcat_core::Linear::new(w, None).weight_rows(&ids).unwrap();
    /// assert_eq!(rows.to_vec2::<f32>().unwrap(), [[5., 6.], [1., 2.]]);
    /// ```
    pub fn weight_rows(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let ids = ids.flatten_all()?;
        match &self.weight {
            Weight::Dense(w) => w.index_select(&ids, 0),
            Weight::Blocks(b) | Weight::BlocksF32Inputs(b) => {
                let list = ids.to_dtype(DType::U32)?.to_vec1::<u32>()?;
                let mut out = vec![0f32; list.len() * self.in_features()];
                b.dequantize_rows(&list, &mut out)?;
                Tensor::from_vec(out, (list.len(), self.in_features()), ids.device())
            }
            Weight::Quantized(q) => {
                let dense = match q {
                    QMatMul::QTensor(q) => q.dequantize(&q.device())?,
                    QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.to_dtype(DType::F32)?,
                };
                dense.index_select(&ids, 0)
            }
        }
    }

    /// The device the weight is on (block weights live on the CPU).
    pub fn device(&self) -> Device {
        match &self.weight {
            Weight::Dense(w) => w.device().clone(),
            Weight::Blocks(_) | Weight::BlocksF32Inputs(_) => Device::Cpu,
            Weight::Quantized(QMatMul::QTensor(q)) => q.device(),
            Weight::Quantized(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => t.device().clone(),
        }
    }

    /// The dtype outputs and looked-up rows come in: the dense weight's, f32 for quantized
    /// weights.
    pub fn dtype(&self) -> DType {
        match &self.weight {
            Weight::Dense(w) => w.dtype(),
            _ => DType::F32,
        }
    }

    /// One projection computing `parts` side by side: its output is their outputs concatenated
    /// (e.g. `[q | k | v]`), from one matmul that reads the input once. The parts must share
    /// `in_features` and be held alike (all dense, or all blocks of one format); a missing bias
    /// counts as zeros when another part has one.
    ///
    /// ```
    /// use candle_core::{Device, Module, Tensor};
    /// use tcat_core::Linear;
    /// let dev = Device::Cpu;
    /// let a = Linear::new(Tensor::new(&[[1f32, 0.]], &dev).unwrap(), None);
    /// let b = Linear::new(Tensor::new(&[[0f32, 1.], [1., 1.]], &dev).unwrap(), Some(Tensor::new(&[5f32, 6.], &dev).unwrap()));
    /// let both = Linear::stack_outputs(&[a, b]).unwrap();
    /// let y = both.forward(&Tensor::new(&[[2f32, 3.]], &dev).unwrap()).unwrap();
    /// assert_eq!(y.to_vec2::<f32>().unwrap(), [[2., 8., 11.]]);
    /// ```
    pub fn stack_outputs(parts: &[Linear]) -> candle_core::Result<Self> {
        let Some(first) = parts.first() else { candle_core::bail!("stack_outputs: no projections to stack") };
        let in_features = first.in_features();
        if let Some(p) = parts.iter().find(|p| p.in_features() != in_features) {
            candle_core::bail!("stack_outputs: in_features {} and {} differ", in_features, p.in_features());
        }
        let out_features = parts.iter().map(Linear::out_features).sum();
        let weight = match &first.weight {
            Weight::Dense(_) => {
                let dense: Option<Vec<&Tensor>> = parts.iter().map(Linear::weight).collect();
                let Some(dense) = dense else { candle_core::bail!("stack_outputs: dense and quantized parts mixed") };
                Weight::Dense(Tensor::cat(&dense, 0)?)
            }
            Weight::Blocks(_) => {
                let blocks: Option<Vec<&BlockMatrix>> = parts
                    .iter()
                    .map(|p| match &p.weight {
                        Weight::Blocks(b) => Some(b.as_ref()),
                        _ => None,
                    })
                    .collect();
                let Some(blocks) = blocks else { candle_core::bail!("stack_outputs: block and other parts mixed") };
                Weight::Blocks(Arc::new(BlockMatrix::stack_rows(&blocks)?))
            }
            Weight::Quantized(_) | Weight::BlocksF32Inputs(_) => {
                candle_core::bail!("stack_outputs: candle-quantized and f32-input projections cannot be stacked")
            }
        };
        let bias = match parts.iter().find_map(Linear::bias) {
            None => None,
            Some(like) => {
                let biases = parts
                    .iter()
                    .map(|p| match p.bias() {
                        Some(b) => Ok(b.clone()),
                        None => Tensor::zeros(p.out_features(), like.dtype(), like.device()),
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Some(Tensor::cat(&biases, 0)?)
            }
        };
        Ok(Self { weight, bias, shape: (out_features, in_features) })
    }

    /// Loads `weight` (and `bias` when `bias` is true) under `vb`.
    pub fn load(
        vb: VarBuilder,
        in_features: usize,
        out_features: usize,
        bias: bool,
        layout: WeightLayout,
    ) -> candle_core::Result<Self> {
        let weight = match layout {
            WeightLayout::OutIn => vb.get((out_features, in_features), "weight")?,
            WeightLayout::InOut => vb.get((in_features, out_features), "weight")?.t()?.contiguous()?,
        };
        let bias = if bias { Some(vb.get(out_features, "bias")?) } else { None };
        Ok(Self::new(weight, bias))
    }

    /// The `[out, in]` weight of a dense projection (`None` when quantized).
    pub fn weight(&self) -> Option<&Tensor> {
        match &self.weight {
            Weight::Dense(w) => Some(w),
            Weight::Blocks(_) | Weight::BlocksF32Inputs(_) | Weight::Quantized(_) => None,
        }
    }

    /// Whether the weight is held quantized (GGUF blocks), not as a dense tensor.
    pub fn is_quantized(&self) -> bool {
        self.weight().is_none()
    }

    /// The `[out]` bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.shape.1
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.shape.0
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let (in_features, lead) = match dims.split_last() {
            Some((&last, lead)) => (last, lead),
            None => candle_core::bail!("linear: input must have at least one dimension"),
        };
        let rows: usize = lead.iter().product();
        let x2 = x.reshape((rows, in_features))?;
        let y = match &self.weight {
            Weight::Dense(w) if rows <= GEMV_MAX_ROWS && fits_gemv(w, &x2) => {
                return dense_gemv(w, self.bias.as_ref(), &x2)?.reshape(self.output_dims(lead));
            }
            Weight::Dense(w) if self.bias.is_some() && widens_bf16(&x2) => {
                return affine_in_f32(&x2, w, self.bias.as_ref())?.reshape(self.output_dims(lead));
            }
            Weight::Dense(w) => x2.matmul(&w.t()?)?,
            Weight::Blocks(b) if rows >= DEQUANTIZE_FROM_ROWS => {
                let (out, inp) = b.dims();
                let w = Tensor::from_vec(b.dequantize(), (out, inp), x2.device())?;
                x2.matmul(&w.to_dtype(x2.dtype())?.t()?)?
            }
            Weight::Blocks(b) => blocks_matmul(b, &x2)?,
            Weight::BlocksF32Inputs(b) if rows >= DEQUANTIZE_FROM_ROWS => {
                let (out, inp) = b.dims();
                let chunks = (0..out)
                    .step_by(DEQUANTIZE_CHUNK_ROWS)
                    .map(|first| {
                        let count = DEQUANTIZE_CHUNK_ROWS.min(out - first);
                        let w = Tensor::from_vec(b.dequantize_range(first, count)?, (count, inp), x2.device())?;
                        x2.matmul(&w.to_dtype(x2.dtype())?.t()?)
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::cat(&chunks, 1)?
            }
            Weight::BlocksF32Inputs(b) => blocks_matmul_f32(b, &x2)?,
            // Many rows (a prompt): dequantizing once and running the dense matmul is far faster
            // than candle's per-row quantized dot products; one row (decoding): stay quantized.
            Weight::Quantized(QMatMul::QTensor(q)) if rows >= DEQUANTIZE_FROM_ROWS => {
                x2.matmul(&q.dequantize(x2.device())?.to_dtype(x2.dtype())?.t()?)?
            }
            Weight::Quantized(q) => q.forward(&x2)?,
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        y.reshape(self.output_dims(lead))
    }
}

/// A projection without bias from a `[out, in]` weight.
impl From<Tensor> for Linear {
    fn from(weight: Tensor) -> Self {
        Self::new(weight, None)
    }
}

/// A projection without bias from a `[out, in]` weight (the tensor is shared, not copied).
impl From<&Tensor> for Linear {
    fn from(weight: &Tensor) -> Self {
        Self::new(weight.clone(), None)
    }
}

impl Linear {
    fn output_dims(&self, lead: &[usize]) -> Vec<usize> {
        let mut dims = lead.to_vec();
        dims.push(self.out_features());
        dims
    }
}

/// `x Wᵀ` by the block kernels, in f32, returned in `x`'s dtype.
fn blocks_matmul(w: &BlockMatrix, x: &Tensor) -> candle_core::Result<Tensor> {
    let (rows, _) = x.dims2()?;
    let (out, _) = w.dims();
    // `x` is on the CPU (block matrices exist only there): this copies, it does not transfer.
    let input = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut y = vec![0f32; rows * out];
    w.matmul(&input, rows, &mut y)?;
    Tensor::from_vec(y, (rows, out), x.device())?.to_dtype(x.dtype())
}

/// `x Wᵀ` by the f32-input block kernels, returned in `x`'s dtype.
fn blocks_matmul_f32(w: &BlockMatrix, x: &Tensor) -> candle_core::Result<Tensor> {
    let (rows, _) = x.dims2()?;
    let (out, _) = w.dims();
    let input = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut y = vec![0f32; rows * out];
    w.matmul_f32(&input, rows, &mut y)?;
    Tensor::from_vec(y, (rows, out), x.device())?.to_dtype(x.dtype())
}

/// Whether `x Wᵀ` can run on [`crate::gemv`]: a SIMD kernel runs on this CPU (the scalar
/// reference would be slower than candle's matmul), both operands are on the CPU in one dtype
/// of f32, f16 and bf16, the weight a contiguous `[out, in]` matrix (GPT-2's `InOut` weights
/// are transposed to a contiguous copy at load; a transposed view goes to candle's matmul).
fn fits_gemv(w: &Tensor, x: &Tensor) -> bool {
    Kernel::detect() != Kernel::Reference
        && w.device().is_cpu()
        && x.device().is_cpu()
        && w.dtype() == x.dtype()
        && matches!(w.dtype(), DType::F32 | DType::F16 | DType::BF16)
        && w.rank() == 2
        && w.is_contiguous()
}

/// `x Wᵀ + b` by [`crate::gemv`] on the weight's own storage (no copy): the few input rows are
/// widened to f32, the product and the bias summed in f32 and rounded to `x`'s dtype once (as
/// [`affine_in_f32`] does for bf16).
fn dense_gemv(w: &Tensor, b: Option<&Tensor>, x: &Tensor) -> candle_core::Result<Tensor> {
    use candle_core::{CpuStorage, Storage};
    let (rows, _) = x.dims2()?;
    let (out, inp) = w.dims2()?;
    let input = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut y = vec![0f32; rows * out];
    {
        let (storage, layout) = w.storage_and_layout();
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("gemv: the weight is not contiguous")
        };
        let weights = match &*storage {
            Storage::Cpu(CpuStorage::F32(v)) => Weights::F32(&v[start..end]),
            Storage::Cpu(CpuStorage::F16(v)) => Weights::F16(&v[start..end]),
            Storage::Cpu(CpuStorage::BF16(v)) => Weights::BF16(&v[start..end]),
            _ => candle_core::bail!("gemv: a {:?} weight on {:?}", w.dtype(), w.device()),
        };
        Matrix::new(weights, out, inp)?.gemv(&input, rows, &mut y)?;
    }
    let y = Tensor::from_vec(y, (rows, out), x.device())?;
    let y = match b {
        Some(b) => y.broadcast_add(&b.to_dtype(DType::F32)?)?,
        None => y,
    };
    y.to_dtype(x.dtype())
}

/// Whether `x` is bf16 on the CPU, where candle has no bf16 matmul kernel and widens both operands
/// to f32 for every product anyway.
fn widens_bf16(x: &Tensor) -> bool {
    x.dtype() == DType::BF16 && x.device().is_cpu()
}

/// `x Wᵀ + b` computed in f32 and rounded to `x`'s dtype once, as PyTorch's `addmm` does; rounding
/// the product before adding the bias doubles the rounding noise of every biased projection
/// (measured on the RoBERTa fixture: 1.04e-2 against 8.7e-3 relative error to f32).
fn affine_in_f32(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let y = x.to_dtype(DType::F32)?.matmul(&w.to_dtype(DType::F32)?.t()?)?;
    let y = match b {
        Some(b) => y.broadcast_add(&b.to_dtype(DType::F32)?)?,
        None => y,
    };
    y.to_dtype(x.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use std::collections::HashMap;

    #[test]
    fn in_out_layout_is_transposed_on_load() {
        let dev = Device::Cpu;
        let w = Tensor::arange(0f32, 6., &dev).unwrap().reshape((2, 3)).unwrap(); // [in=2, out=3]
        let b = Tensor::new(&[1f32, 2., 3.], &dev).unwrap();
        let vb = VarBuilder::from_tensors(
            HashMap::from([("weight".to_string(), w.clone()), ("bias".to_string(), b.clone())]),
            DType::F32,
            &dev,
        );
        let lin = Linear::load(vb, 2, 3, true, WeightLayout::InOut).unwrap();
        let x = Tensor::new(&[[1f32, -1.], [2., 0.5]], &dev).unwrap();
        let expected = x.matmul(&w).unwrap().broadcast_add(&b).unwrap();
        let got = lin.forward(&x).unwrap();
        assert_eq!(got.to_vec2::<f32>().unwrap(), expected.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn leading_dims_are_kept() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (5, 4), &dev).unwrap();
        let lin = Linear::new(w.clone(), None);
        let x = Tensor::randn(0f32, 1., (2, 3, 4), &dev).unwrap();
        let got = lin.forward(&x).unwrap();
        assert_eq!(got.dims(), &[2, 3, 5]);
        let reference = x.broadcast_matmul(&w.t().unwrap()).unwrap();
        let diff = (got - reference).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn quantized_weights_match_their_dequantized_matmul() {
        use candle_core::quantized::GgmlDType;
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (8, 64), &dev).unwrap();
        let q = Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap());
        let dense = Linear::new(q.dequantize(&dev).unwrap(), None);
        let quant = Linear::quantized(q, None).unwrap();
        assert_eq!((quant.in_features(), quant.out_features()), (64, 8));
        let x = Tensor::randn(0f32, 1., (2, 3, 64), &dev).unwrap();
        let want = dense.forward(&x).unwrap();
        let d = (quant.forward(&x).unwrap() - &want).unwrap();
        // Q8_0 also quantizes the activations to 8 bits: allow that rounding, relative to the
        // output's scale (a wrong layout or transpose would be off by about 100%).
        let d: f32 = d.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        let scale: f32 = want.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert!(d < 0.03 * scale, "{d} vs scale {scale}");
        // A prompt-sized input multiplies the dequantized weight: exact up to f32 rounding.
        let x = Tensor::randn(0f32, 1., (2, DEQUANTIZE_FROM_ROWS, 64), &dev).unwrap();
        let d = (quant.forward(&x).unwrap() - dense.forward(&x).unwrap()).unwrap();
        let d: f32 = d.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert!(d < 1e-4, "{d}");
    }

    /// The f32-input head equals the dense product of its dequantized weight (no 8-bit input
    /// rounding), one row and many (chunked dequantization); its looked-up rows are the
    /// dequantized rows, and ids past the table are errors.
    #[test]
    fn f32_input_weights_match_their_dequantized_matmul() {
        use candle_core::quantized::GgmlDType;
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (DEQUANTIZE_CHUNK_ROWS + 40, 64), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let dense_w = q.dequantize(&dev).unwrap();
        let dense = Linear::new(dense_w.clone(), None);
        let quant = Linear::quantized_f32_inputs(&q, None).unwrap();
        assert!(quant.is_quantized());
        assert_eq!((quant.dtype(), quant.device().is_cpu()), (DType::F32, true));
        for rows in [1, 3, DEQUANTIZE_FROM_ROWS + 1] {
            let x = Tensor::randn(0f32, 1., (1, rows, 64), &dev).unwrap();
            let want = dense.forward(&x).unwrap();
            let d = (quant.forward(&x).unwrap() - &want).unwrap();
            let d: f32 = d.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
            assert!(d < 1e-4, "{rows} rows: {d}");
        }
        let ids = Tensor::new(&[[5u32, DEQUANTIZE_CHUNK_ROWS as u32 + 39]], &dev).unwrap();
        let got = quant.weight_rows(&ids).unwrap();
        let want = dense.weight_rows(&ids).unwrap();
        assert_eq!(got.to_vec2::<f32>().unwrap(), want.to_vec2::<f32>().unwrap());
        let past = Tensor::new(&[DEQUANTIZE_CHUNK_ROWS as u32 + 40], &dev).unwrap();
        assert!(quant.weight_rows(&past).is_err());
        let b = Tensor::ones(DEQUANTIZE_CHUNK_ROWS + 40, DType::F32, &dev).unwrap();
        let biased = quant.with_bias(Some(b));
        let x = Tensor::zeros((1, 64), DType::F32, &dev).unwrap();
        assert_eq!(biased.forward(&x).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(), 4136.0);
        // Formats the kernels do not cover are held dense.
        let k = QTensor::quantize(&Tensor::randn(0f32, 1., (4, 256), &dev).unwrap(), GgmlDType::Q4K).unwrap();
        assert!(!Linear::quantized_f32_inputs(&k, None).unwrap().is_quantized());
    }

    #[test]
    fn stacked_outputs_equal_the_parts_side_by_side() {
        use candle_core::quantized::GgmlDType;
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (3, 64), &dev).unwrap();
        let w: Vec<Tensor> = [8, 4, 4].iter().map(|&o| Tensor::randn(0f32, 1., (o, 64), &dev).unwrap()).collect();
        let dense: Vec<Linear> = w.iter().map(|w| Linear::new(w.clone(), None)).collect();
        let blocks: Vec<Linear> = w
            .iter()
            .map(|w| Linear::quantized(Arc::new(QTensor::quantize(w, GgmlDType::Q4_1).unwrap()), None).unwrap())
            .collect();
        for parts in [dense, blocks] {
            let stacked = Linear::stack_outputs(&parts).unwrap();
            assert_eq!((stacked.in_features(), stacked.out_features()), (64, 16));
            let want = Tensor::cat(&parts.iter().map(|p| p.forward(&x).unwrap()).collect::<Vec<_>>(), 1).unwrap();
            let d: f32 =
                (stacked.forward(&x).unwrap() - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
            assert!(d < 1e-5, "{d}");
        }
        let mixed = [Linear::new(w[0].clone(), None), Linear::new(w[1].narrow(1, 0, 32).unwrap(), None)];
        assert!(Linear::stack_outputs(&mixed).unwrap_err().to_string().contains("in_features 64 and 32"));
        assert!(Linear::stack_outputs(&[]).is_err());
    }

    /// Dense f32/f16/bf16 projections of 1 to 9 rows (the GEMV kernels up to `GEMV_MAX_ROWS`,
    /// candle's matmul beyond), 2-D and 3-D, with and without bias, against the f64 product of
    /// the same stored values. Through the kernels the result is the exact value rounded once to
    /// the dtype, up to f32 accumulation: within `u |exact| + (1.1 n + 24) 2⁻²⁴ Σ|wx| + |b|`
    /// terms (`u` the dtype's unit roundoff); candle's path may round the product and the bias
    /// separately (3 `u`). For the kernel path the output is also bit-identical to the kernel's
    /// own f32 result plus bias, rounded: the route is taken.
    #[test]
    fn dense_projections_match_the_f64_product() {
        let dev = Device::Cpu;
        let (out, inp) = (37, 65);
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let u = match dtype {
                DType::F32 => 2f64.powi(-24),
                DType::F16 => 2f64.powi(-11),
                _ => 2f64.powi(-8),
            };
            let w = (Tensor::randn(0f32, 1., (out, inp), &dev).unwrap() + 0.2).unwrap().to_dtype(dtype).unwrap();
            let b = Tensor::randn(0f32, 2., out, &dev).unwrap().to_dtype(dtype).unwrap();
            let f64s = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
            for bias in [None, Some(b.clone())] {
                let lin = Linear::new(w.clone(), bias.clone());
                for rows in 1..=9 {
                    for shape in [vec![rows, inp], vec![1, rows, inp], vec![rows, 1, inp]] {
                        let x = Tensor::randn(0f32, 1., shape.as_slice(), &dev).unwrap().to_dtype(dtype).unwrap();
                        let got = lin.forward(&x).unwrap();
                        let mut want_dims = shape.clone();
                        *want_dims.last_mut().unwrap() = out;
                        assert_eq!(got.dims(), want_dims.as_slice());
                        assert_eq!(got.dtype(), dtype);
                        let x2 = f64s(&x).reshape((rows, inp)).unwrap();
                        let product = x2.matmul(&f64s(&w).t().unwrap()).unwrap();
                        let sum_abs = x2.abs().unwrap().matmul(&f64s(&w).abs().unwrap().t().unwrap()).unwrap();
                        let exact = match &bias {
                            Some(b) => product.broadcast_add(&f64s(b)).unwrap(),
                            None => product.clone(),
                        };
                        let got = f64s(&got).reshape((rows, out)).unwrap().to_vec2::<f64>().unwrap();
                        let (exact, sum_abs) = (exact.to_vec2::<f64>().unwrap(), sum_abs.to_vec2::<f64>().unwrap());
                        let product = product.to_vec2::<f64>().unwrap();
                        for i in 0..rows {
                            for r in 0..out {
                                let (g, e, a) = (got[i][r], exact[i][r], sum_abs[i][r]);
                                // One rounding of the exact value; candle's path may also round
                                // the product (to within `u |product|`) before adding the bias.
                                let rounding = if rows <= GEMV_MAX_ROWS && Kernel::detect() != Kernel::Reference {
                                    u * e.abs()
                                } else {
                                    2.0 * u * (e.abs() + product[i][r].abs())
                                };
                                let tol = rounding * (1.0 + 2f64.powi(-20))
                                    + (1.1 * inp as f64 + 26.0) * 2f64.powi(-24) * (a + e.abs());
                                assert!(
                                    (g - e).abs() <= tol,
                                    "{dtype:?} rows {rows} {shape:?} bias {}: ({i}, {r}) {g} vs {e} (tol {tol})",
                                    bias.is_some()
                                );
                            }
                        }
                        if rows <= GEMV_MAX_ROWS && Kernel::detect() != Kernel::Reference {
                            let xs = x.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                            let mut y = vec![0f32; rows * out];
                            let ws = w.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                            let (wf16, wbf16): (Vec<half::f16>, Vec<half::bf16>) = (
                                ws.iter().map(|&v| half::f16::from_f32(v)).collect(),
                                ws.iter().map(|&v| half::bf16::from_f32(v)).collect(),
                            );
                            let weights = match dtype {
                                DType::F32 => Weights::F32(&ws),
                                DType::F16 => Weights::F16(&wf16),
                                _ => Weights::BF16(&wbf16),
                            };
                            Matrix::new(weights, out, inp).unwrap().gemv(&xs, rows, &mut y).unwrap();
                            let mut y = Tensor::from_vec(y, (rows, out), &dev).unwrap();
                            if let Some(b) = &bias {
                                y = y.broadcast_add(&b.to_dtype(DType::F32).unwrap()).unwrap();
                            }
                            let want =
                                y.to_dtype(dtype).unwrap().to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
                            assert_eq!(got, want, "{dtype:?} rows {rows}: the GEMV route");
                        }
                    }
                }
            }
        }
    }

    /// A weight that is a transposed view (not contiguous) or on another dtype than the input
    /// takes candle's path: the same values, and candle's dtype error.
    #[test]
    fn strided_weights_and_mixed_dtypes_keep_candles_path() {
        let dev = Device::Cpu;
        let w_in_out = Tensor::randn(0f32, 1., (65, 37), &dev).unwrap().to_dtype(DType::BF16).unwrap();
        let view = Linear::new(w_in_out.t().unwrap(), None);
        let copy = Linear::new(w_in_out.t().unwrap().contiguous().unwrap(), None);
        let x = Tensor::randn(0f32, 1., (1, 65), &dev).unwrap().to_dtype(DType::BF16).unwrap();
        let f32 = |t: Tensor| t.to_dtype(DType::F32).unwrap();
        let d: f32 = f32((view.forward(&x).unwrap() - copy.forward(&x).unwrap()).unwrap())
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(d < 0.05, "{d}");
        assert!(copy.forward(&x.to_dtype(DType::F32).unwrap()).is_err(), "mixed dtypes stay an error");
    }

    #[test]
    fn bf16_projection_with_bias_rounds_once() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (64, 48), &dev).unwrap().to_dtype(DType::BF16).unwrap();
        let b = Tensor::randn(0f32, 3., 64, &dev).unwrap().to_dtype(DType::BF16).unwrap();
        let x = Tensor::randn(0f32, 1., (2, 5, 48), &dev).unwrap().to_dtype(DType::BF16).unwrap();
        let got = Linear::new(w.clone(), Some(b.clone())).forward(&x).unwrap();
        let f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let exact = f32(&x).broadcast_matmul(&f32(&w).t().unwrap()).unwrap().broadcast_add(&f32(&b)).unwrap();
        let want = exact.to_dtype(DType::BF16).unwrap();
        let diff: f32 = f32(&(got - want).unwrap()).abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert_eq!(diff, 0.0, "the product and bias must be rounded to bf16 once, together");
    }
}
