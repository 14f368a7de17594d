//! ERNIE's information fusion layer (Zhang et al. 2019, "ERNIE: Enhanced Language
//! Representation with Informative Entities", §3.3, eq. 4–5): token and entity streams mixed
//! through one hidden state per token.
//!
//! In each layer of ERNIE's knowledgeable encoder, the tokens and the entities first attend
//! among themselves (two ordinary multi-head attentions, `tcat_attention::MultiHeadAttention`),
//! giving `w̃_j` and `ẽ_k`; then, for a token `w_j` aligned to entity `e_k` (the entity sits on
//! the first token of its mention),
//!
//! ```text
//! h_j = σ(W̃_t w̃_j + W̃_e ẽ_k + b̃),   w_j = σ(W_t h_j + b_t),   e_k = σ(W_e h_j + b_e)
//! ```
//!
//! and for a token without an entity `h_j = σ(W̃_t w̃_j + b̃)`, `w_j = σ(W_t h_j + b_t)`. `σ` is
//! GELU in the paper.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use tcat_core::{Linear, WeightLayout};

use crate::{Activation, Norm};

/// How [`EntityFusion`] turns the fused state `h_j` into the two outputs.
#[derive(Debug, Clone)]
pub enum FusionOutput {
    /// The paper's eq. 5: `w_j = σ(W_t h_j + b_t)`, `e_k = σ(W_e h_j + b_e)`.
    Activated,
    /// The released ERNIE code's reading (BERT's output sub-layer): no activation, a residual
    /// and a LayerNorm per stream, `w_j = LN_t(W_t h_j + b_t + w̃_j)`,
    /// `e_k = LN_e(W_e h_j + b_e + ẽ_k)`.
    ResidualNorm {
        /// The token stream's norm (width `hidden`).
        token_norm: Norm,
        /// The entity stream's norm (width `entity_dim`).
        entity_norm: Norm,
    },
}

/// ERNIE's information fusion layer (Zhang et al. 2019, "ERNIE: Enhanced Language
/// Representation with Informative Entities", §3.3, eq. 4–5): for a token `w_j` aligned to
/// entity `e_k`, `h_j = σ(W̃_t w̃_j + W̃_e ẽ_k + b̃)`, `w_j = σ(W_t h_j + b_t)`,
/// `e_k = σ(W_e h_j + b_e)`; for a token without an entity `h_j = σ(W̃_t w̃_j + b̃)`. `σ` is GELU
/// in the paper. The attentions over tokens and entities before it are ordinary
/// `tcat_attention::MultiHeadAttention`s.
///
/// Inputs are the token states `w̃` `[batch, seq, hidden]`, the entity states `ẽ`
/// `[batch, seq, entity_dim]` already placed on the first token of their mention, and the
/// entity mask `[batch, seq]` (non-zero where a token has an entity). The outputs are the new
/// token states `[batch, seq, hidden]` and entity states `[batch, seq, entity_dim]`, the latter
/// zero where the mask is zero (no entity there).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use tcat_blocks::{Activation, EntityFusion};
/// use tcat_core::Linear;
/// let dev = Device::Cpu;
/// let lin = |o, i| Linear::new(Tensor::randn(0f32, 0.3, (o, i), &dev).unwrap(), Some(Tensor::zeros(o, DType::F32, &dev).unwrap()));
/// // hidden 8, entity_dim 4, fused width 16
/// let fusion = EntityFusion::new(lin(16, 8), lin(16, 4), lin(8, 16), lin(4, 16), Activation::Gelu).unwrap();
/// let tokens = Tensor::randn(0f32, 1., (1, 5, 8), &dev).unwrap();
/// let entities = Tensor::randn(0f32, 1., (1, 5, 4), &dev).unwrap();
/// let mask = Tensor::new(&[[0u32, 1, 0, 0, 1]], &dev).unwrap(); // entities on tokens 1 and 4
/// let (w, e) = fusion.forward(&tokens, &entities, &mask).unwrap();
/// assert_eq!((w.dims(), e.dims()), (&[1, 5, 8][..], &[1, 5, 4][..]));
/// assert_eq!(e.get(0).unwrap().get(0).unwrap().to_vec1::<f32>().unwrap(), [0.; 4]); // no entity on token 0
/// ```
#[derive(Debug, Clone)]
pub struct EntityFusion {
    token_in: Linear,
    entity_in: Linear,
    token_out: Linear,
    entity_out: Linear,
    activation: Activation,
    output: FusionOutput,
}

impl EntityFusion {
    /// The layer from `W̃_t` with `b̃` (`hidden → fused`), `W̃_e` (`entity_dim → fused`; a bias of
    /// its own, as the released code has, is added only where there is an entity), `W_t`, `b_t`
    /// (`fused → hidden`), `W_e`, `b_e` (`fused → entity_dim`) and `σ`, with the paper's
    /// [`FusionOutput::Activated`] outputs. Fails, naming the projection, when the widths do
    /// not chain.
    pub fn new(
        token_in: Linear,
        entity_in: Linear,
        token_out: Linear,
        entity_out: Linear,
        activation: Activation,
    ) -> Result<Self> {
        let fused = token_in.out_features();
        let checks = [
            ("entity_in (W̃_e) output", entity_in.out_features(), fused),
            ("token_out (W_t) input", token_out.in_features(), fused),
            ("entity_out (W_e) input", entity_out.in_features(), fused),
            ("token_out (W_t) output", token_out.out_features(), token_in.in_features()),
            ("entity_out (W_e) output", entity_out.out_features(), entity_in.in_features()),
        ];
        for (what, found, expected) in checks {
            if found != expected {
                candle_core::bail!("entity fusion: {what} has width {found}, expected {expected}");
            }
        }
        Ok(Self { token_in, entity_in, token_out, entity_out, activation, output: FusionOutput::Activated })
    }

    /// Loads the layer as the released ERNIE code names it under `vb` (a knowledgeable-encoder
    /// layer): `intermediate.dense` (`W̃_t`, `b̃`), `intermediate.dense_ent` (`W̃_e` with its
    /// bias), `output.dense` (`W_t`, `b_t`), `output_ent.dense` (`W_e`, `b_e`), all `[out, in]`
    /// with biases, and the code's outputs ([`FusionOutput::ResidualNorm`] with
    /// `output.LayerNorm` and `output_ent.LayerNorm`, ε = `eps`); `σ` is GELU. `fused` is the
    /// intermediate width.
    ///
    /// ```
    /// use candle_core::{DType, Device};
    /// use candle_nn::VarBuilder;
    /// use tcat_blocks::EntityFusion;
    /// let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    /// let fusion = EntityFusion::load_ernie(vb.pp("encoder.layer.5"), 768, 100, 3072, 1e-12).unwrap();
    /// assert_eq!((fusion.hidden_size(), fusion.entity_dim()), (768, 100));
    /// ```
    pub fn load_ernie(vb: VarBuilder, hidden: usize, entity_dim: usize, fused: usize, eps: f64) -> Result<Self> {
        let lin = |name: &str, i, o| Linear::load(vb.pp(name), i, o, true, WeightLayout::OutIn);
        let fusion = Self::new(
            lin("intermediate.dense", hidden, fused)?,
            lin("intermediate.dense_ent", entity_dim, fused)?,
            lin("output.dense", fused, hidden)?,
            lin("output_ent.dense", fused, entity_dim)?,
            Activation::Gelu,
        )?;
        let token_norm = Norm::load_layer_norm(vb.pp("output.LayerNorm"), hidden, eps)?;
        let entity_norm = Norm::load_layer_norm(vb.pp("output_ent.LayerNorm"), entity_dim, eps)?;
        Ok(fusion.with_output(FusionOutput::ResidualNorm { token_norm, entity_norm }))
    }

    /// Chooses how the outputs are formed (default [`FusionOutput::Activated`], the paper's).
    pub fn with_output(mut self, output: FusionOutput) -> Self {
        self.output = output;
        self
    }

    /// Width of the token states.
    pub fn hidden_size(&self) -> usize {
        self.token_in.in_features()
    }

    /// Width of the entity states.
    pub fn entity_dim(&self) -> usize {
        self.entity_in.in_features()
    }

    /// Fuses `tokens` `[batch, seq, hidden]` with the aligned `entities` `[batch, seq,
    /// entity_dim]` where `entity_mask` `[batch, seq]` is non-zero; returns the new token and
    /// entity states.
    pub fn forward(&self, tokens: &Tensor, entities: &Tensor, entity_mask: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, s, hidden) = tokens.dims3()?;
        if hidden != self.hidden_size() {
            candle_core::bail!(
                "entity fusion: tokens are {:?}, expected [batch, seq, hidden={}]",
                tokens.dims(),
                self.hidden_size()
            );
        }
        if entities.dims() != [b, s, self.entity_dim()] {
            candle_core::bail!(
                "entity fusion: entities are {:?}, expected [batch={b}, seq={s}, entity_dim={}]",
                entities.dims(),
                self.entity_dim()
            );
        }
        if entity_mask.dims() != [b, s] {
            candle_core::bail!("entity fusion: entity mask is {:?}, expected [batch={b}, seq={s}]", entity_mask.dims());
        }
        let aligned = entity_mask.ne(&entity_mask.zeros_like()?)?.to_dtype(tokens.dtype())?.unsqueeze(D::Minus1)?;
        // W̃_e ẽ_k (+ its bias) only where a token has an entity.
        let from_entities = self.entity_in.forward(entities)?.broadcast_mul(&aligned)?;
        let h = self.activation.apply(&(self.token_in.forward(tokens)? + from_entities)?)?;
        let (w, e) = (self.token_out.forward(&h)?, self.entity_out.forward(&h)?);
        let (w, e) = match &self.output {
            FusionOutput::Activated => (self.activation.apply(&w)?, self.activation.apply(&e)?),
            FusionOutput::ResidualNorm { token_norm, entity_norm } => {
                (token_norm.forward(&(w + tokens)?)?, entity_norm.forward(&(e + entities)?)?)
            }
        };
        Ok((w, e.broadcast_mul(&aligned)?))
    }

    /// The same layer written out token by token in f64 on the host, for tests: slow on purpose.
    pub fn forward_reference(
        &self,
        tokens: &Tensor,
        entities: &Tensor,
        entity_mask: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (b, s, hidden) = tokens.dims3()?;
        let entity_dim = entities.dim(2)?;
        let host = |t: &Tensor| -> Result<Vec<f64>> { t.to_dtype(DType::F64)?.flatten_all()?.to_vec1() };
        let weights = |l: &Linear| -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
            let Some(w) = l.weight() else { candle_core::bail!("entity fusion reference: needs dense weights") };
            let bias = match l.bias() {
                Some(bias) => host(bias)?,
                None => vec![0.0; l.out_features()],
            };
            Ok((w.to_dtype(DType::F64)?.to_vec2()?, bias))
        };
        let affine = |(w, bias): &(Vec<Vec<f64>>, Vec<f64>), x: &[f64]| -> Vec<f64> {
            w.iter().zip(bias).map(|(row, c)| row.iter().zip(x).map(|(a, b)| a * b).sum::<f64>() + c).collect()
        };
        let sigma = |x: f64| self.activation_reference(x);
        let (ti, ei, to, eo) = (
            weights(&self.token_in)?,
            weights(&self.entity_in)?,
            weights(&self.token_out)?,
            weights(&self.entity_out)?,
        );
        let (tv, ev, mv) = (host(tokens)?, host(entities)?, host(&entity_mask.to_dtype(DType::F64)?)?);
        let (mut w_out, mut e_out) = (Vec::new(), Vec::new());
        for p in 0..b * s {
            let w_in = &tv[p * hidden..(p + 1) * hidden];
            let e_in = &ev[p * entity_dim..(p + 1) * entity_dim];
            let has_entity = mv[p] != 0.0;
            let mut pre = affine(&ti, w_in);
            if has_entity {
                for (x, y) in pre.iter_mut().zip(affine(&ei, e_in)) {
                    *x += y;
                }
            }
            let h: Vec<f64> = pre.into_iter().map(sigma).collect();
            let (w, e) = (affine(&to, &h), affine(&eo, &h));
            let (w, e): (Vec<f64>, Vec<f64>) = match &self.output {
                FusionOutput::Activated => (w.into_iter().map(sigma).collect(), e.into_iter().map(sigma).collect()),
                FusionOutput::ResidualNorm { token_norm, entity_norm } => (
                    norm_reference(token_norm, &w.iter().zip(w_in).map(|(a, b)| a + b).collect::<Vec<_>>())?,
                    norm_reference(entity_norm, &e.iter().zip(e_in).map(|(a, b)| a + b).collect::<Vec<_>>())?,
                ),
            };
            w_out.extend(w);
            e_out.extend(e.into_iter().map(|x| if has_entity { x } else { 0.0 }));
        }
        let device = tokens.device();
        Ok((
            Tensor::from_vec(w_out, (b, s, hidden), device)?.to_dtype(tokens.dtype())?,
            Tensor::from_vec(e_out, (b, s, entity_dim), device)?.to_dtype(tokens.dtype())?,
        ))
    }

    /// `σ` in f64 through candle's ops on a one-element tensor (the reference for the layer,
    /// not for the activation, which has its own tests).
    fn activation_reference(&self, x: f64) -> f64 {
        let t = Tensor::new(&[x], &candle_core::Device::Cpu).and_then(|t| self.activation.apply(&t));
        t.and_then(|t| t.to_vec1::<f64>()).map_or(f64::NAN, |v| v[0])
    }
}

/// A norm over one row in f64.
fn norm_reference(norm: &Norm, x: &[f64]) -> Result<Vec<f64>> {
    let n = x.len() as f64;
    let to_vec = |t: &Tensor| -> Result<Vec<f64>> { t.to_dtype(DType::F64)?.to_vec1() };
    match norm {
        Norm::LayerNorm { weight, bias, eps } => {
            let mean = x.iter().sum::<f64>() / n;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            let (g, b) = (to_vec(weight)?, to_vec(bias)?);
            Ok(x.iter().enumerate().map(|(i, v)| (v - mean) / (var + eps).sqrt() * g[i] + b[i]).collect())
        }
        Norm::RmsNorm { weight, eps } => {
            let ms = x.iter().map(|v| v * v).sum::<f64>() / n;
            let g = to_vec(weight)?;
            Ok(x.iter().enumerate().map(|(i, v)| v / (ms + eps).sqrt() * g[i]).collect())
        }
        Norm::RmsNormPlusOne { weight, eps, .. } => {
            let ms = x.iter().map(|v| v * v).sum::<f64>() / n;
            let g = to_vec(weight)?;
            Ok(x.iter().enumerate().map(|(i, v)| v / (ms + eps).sqrt() * (1.0 + g[i])).collect())
        }
        Norm::Identity => Ok(x.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn lin(o: usize, i: usize, dev: &Device) -> Linear {
        Linear::new(
            Tensor::randn(0f32, (1.0 / i as f32).sqrt(), (o, i), dev).unwrap(),
            Some(Tensor::randn(0f32, 0.3, o, dev).unwrap()),
        )
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    #[test]
    fn fusion_matches_the_papers_equations_written_out() {
        let dev = Device::Cpu;
        let (hidden, entity_dim, fused) = (12, 5, 20);
        let fusion = EntityFusion::new(
            lin(fused, hidden, &dev),
            lin(fused, entity_dim, &dev),
            lin(hidden, fused, &dev),
            lin(entity_dim, fused, &dev),
            Activation::Gelu,
        )
        .unwrap();
        let tokens = Tensor::randn(0f32, 1., (2, 6, hidden), &dev).unwrap();
        let entities = Tensor::randn(0f32, 1., (2, 6, entity_dim), &dev).unwrap();
        let mask = Tensor::new(&[[1u8, 0, 0, 1, 0, 0], [0, 0, 1, 1, 1, 0]], &dev).unwrap();
        let norm = |d| {
            Norm::layer_norm(
                Tensor::randn(1f32, 0.1, d, &dev).unwrap(),
                Tensor::randn(0f32, 0.1, d, &dev).unwrap(),
                1e-12,
            )
        };
        let residual = FusionOutput::ResidualNorm { token_norm: norm(hidden), entity_norm: norm(entity_dim) };
        for fusion in [fusion.clone(), fusion.with_output(residual)] {
            let (w, e) = fusion.forward(&tokens, &entities, &mask).unwrap();
            let (w_ref, e_ref) = fusion.forward_reference(&tokens, &entities, &mask).unwrap();
            assert!(max_diff(&w, &w_ref) < 1e-5, "{:?}: tokens {}", fusion.output, max_diff(&w, &w_ref));
            assert!(max_diff(&e, &e_ref) < 1e-5, "{:?}: entities {}", fusion.output, max_diff(&e, &e_ref));
            // The entity stream changes the tokens that have an entity, and only those.
            let (w_none, _) = fusion.forward(&tokens, &entities.zeros_like().unwrap(), &mask).unwrap();
            let changed = (&w - &w_none).unwrap().abs().unwrap().sum(2).unwrap().to_vec2::<f32>().unwrap();
            let mask = mask.to_vec2::<u8>().unwrap();
            for (row, mrow) in changed.iter().zip(&mask) {
                for (c, m) in row.iter().zip(mrow) {
                    assert_eq!(*c > 1e-6, *m != 0, "{:?}: {changed:?}", fusion.output);
                }
            }
        }
    }

    #[test]
    fn shape_errors_name_the_input() {
        let dev = Device::Cpu;
        let fusion =
            EntityFusion::new(lin(8, 4, &dev), lin(8, 3, &dev), lin(4, 8, &dev), lin(3, 8, &dev), Activation::Gelu)
                .unwrap();
        let t = Tensor::zeros((1, 2, 4), DType::F32, &dev).unwrap();
        let e = Tensor::zeros((1, 2, 3), DType::F32, &dev).unwrap();
        let m = Tensor::zeros((1, 2), DType::U8, &dev).unwrap();
        let err = fusion.forward(&t, &t, &m).unwrap_err().to_string();
        assert!(err.contains("entities are [1, 2, 4]") && err.contains("entity_dim=3"), "{err}");
        let err = fusion.forward(&t, &e, &Tensor::zeros((1, 3), DType::U8, &dev).unwrap()).unwrap_err().to_string();
        assert!(err.contains("entity mask is [1, 3]"), "{err}");
        let err =
            EntityFusion::new(lin(8, 4, &dev), lin(7, 3, &dev), lin(4, 8, &dev), lin(3, 8, &dev), Activation::Gelu)
                .unwrap_err()
                .to_string();
        assert!(err.contains("entity_in") && err.contains("width 7, expected 8"), "{err}");
    }
}
