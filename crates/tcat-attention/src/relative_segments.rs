//! XLNet's relative segment encodings (Yang et al. 2019, "XLNet: Generalized Autoregressive
//! Pretraining for Language Understanding", §2.5).
//!
//! Instead of adding an absolute segment vector to each token, XLNet asks only whether two
//! positions lie in the same segment: the score of query `i` and key `j` gains
//! `(q_i + b)·s_ij`, where `s_ij` is `s_+` when their token types are equal and `s_−` otherwise
//! (both learned per head, `[heads, head_dim]`) and `b` is a learned bias. The term reads the
//! token types of the call from the mask ([`AttentionMask::with_token_types`]); without them it
//! adds nothing, as transformers' `XLNetModel` without `token_type_ids`.

use candle_core::{DType, Result, Tensor};

use crate::{AttentionMask, ScoreTerm};

/// XLNet's relative segment term (`seg_embed` and `r_s_bias` of a layer) as a [`ScoreTerm`].
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use tcat_attention::{AttentionMask, RelativeSegments, ScoreTerm};
/// let dev = Device::Cpu;
/// let bias = Tensor::zeros((1, 2), DType::F32, &dev).unwrap(); // 1 head of 2
/// let embeddings = Tensor::new(&[[[1f32, 0.]], [[0., 1.]]], &dev).unwrap(); // s+ then s-
/// let term = RelativeSegments::new(bias, embeddings).unwrap();
/// let q = Tensor::new(&[[[[2f32, 3.], [5., 7.]]]], &dev).unwrap(); // [1, 1, 2, 2]
/// let types = Tensor::new(&[[0u32, 1]], &dev).unwrap();
/// let mask = AttentionMask::none().with_token_types(types);
/// let bias = term.score_bias_in(&q, &q, 1.0, &mask).unwrap();
/// // same segment: q·s+ (the first feature); different: q·s- (the second)
/// assert_eq!(bias.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [2., 3., 7., 5.]);
/// ```
#[derive(Debug, Clone)]
pub struct RelativeSegments {
    bias: Tensor,
    embeddings: Tensor,
    heads: usize,
    head_dim: usize,
}

impl RelativeSegments {
    /// The term from the bias `b` (`r_s_bias`, `[heads, head_dim]`) and the segment
    /// embeddings (`seg_embed`, `[2, heads, head_dim]`: same segment, then different).
    pub fn new(bias: Tensor, embeddings: Tensor) -> Result<Self> {
        let (heads, head_dim) = bias.dims2()?;
        if embeddings.dims() != [2, heads, head_dim] {
            candle_core::bail!(
                "relative segments: the segment embeddings (seg_embed) are {:?}, expected [2, {heads}, {head_dim}]",
                embeddings.dims()
            );
        }
        Ok(Self { bias, embeddings, heads, head_dim })
    }

    /// The term for `types` (`[batch, kv_len]`; queries take the last `q_len` ids), times
    /// `scale`, `[batch, heads, q_len, kv_len]`.
    pub fn bias_for(&self, q: &Tensor, types: &Tensor, scale: f64) -> Result<Tensor> {
        let (batch, heads, q_len, head_dim) = q.dims4()?;
        if (heads, head_dim) != (self.heads, self.head_dim) {
            candle_core::bail!(
                "relative segments: queries have {heads} heads of {head_dim}, the term {} of {}",
                self.heads,
                self.head_dim
            );
        }
        let (type_rows, kv_len) = types.dims2()?;
        if type_rows != batch || kv_len < q_len {
            candle_core::bail!(
                "relative segments: token types {:?}, expected [{batch}, ≥ {q_len}] (one per key)",
                types.dims()
            );
        }
        let dtype = q.dtype();
        let shifted = q.broadcast_add(&self.bias.to_dtype(dtype)?.reshape((1, heads, 1, head_dim))?)?;
        // (q_i + b)·s for s in (s+, s-): [batch, heads, q_len, 2]
        let per_head = self.embeddings.to_dtype(dtype)?.permute((1, 2, 0))?.unsqueeze(0)?; // [1, h, d, 2]
        let scores = shifted.contiguous()?.broadcast_matmul(&per_head.contiguous()?)?;
        let shape = (batch, heads, q_len, kv_len);
        let same_score = scores.narrow(3, 0, 1)?.broadcast_as(shape)?;
        let other_score = scores.narrow(3, 1, 1)?.broadcast_as(shape)?;
        let types = types.to_dtype(DType::U32)?;
        let query_types = types.narrow(1, kv_len - q_len, q_len)?.unsqueeze(2)?; // [b, q, 1]
        let same = query_types.broadcast_eq(&types.unsqueeze(1)?)?.unsqueeze(1)?.broadcast_as(shape)?;
        same.where_cond(&same_score, &other_score)? * scale
    }
}

impl ScoreTerm for RelativeSegments {
    /// Without token types the term adds nothing.
    fn score_bias(&self, q: &Tensor, k: &Tensor, _scale: f64) -> Result<Tensor> {
        Tensor::zeros((1, self.heads, q.dim(2)?, k.dim(2)?), q.dtype(), q.device())
    }

    fn score_bias_in(&self, q: &Tensor, k: &Tensor, scale: f64, mask: &AttentionMask) -> Result<Tensor> {
        match mask.token_types() {
            Some(types) => self.bias_for(q, types, scale),
            None => self.score_bias(q, k, scale),
        }
    }
}
