//! Where a model's tensors come from: one small trait over a checkpoint (safetensors, shards,
//! PyTorch `.bin`), a GGUF file, or seeded random values for presets.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::Distribution;
use tcat_core::{Error, Linear, Result, WeightLayout};

use crate::Checkpoint;

/// How a tensor starts when the source makes it up (presets); checkpoints ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Normal with the source's standard deviation (projections, tables).
    Normal,
    /// Ones (norm weights).
    Ones,
    /// Zeros (biases).
    Zeros,
}

/// A source of named tensors for the builder.
pub trait WeightSource {
    /// Names the source in error messages (its files, or `preset:NAME`).
    fn location(&self) -> String;
    /// The dtype dense tensors come in.
    fn dtype(&self) -> DType;
    /// The device tensors are put on.
    fn device(&self) -> &Device;
    /// Whether `name` exists.
    fn contains(&self, name: &str) -> bool;
    /// The dense tensor `name`, which must have `shape`.
    fn tensor(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor>;
    /// The `[vocab, width]` token table `name` (which must have `shape`) as a projection whose
    /// weight rows are the token vectors, so that a tied head shares it. Dense by default; a
    /// GGUF source keeps a Q8_0 table quantized (looked up row by row, multiplied with f32
    /// inputs).
    fn table(&self, name: &str, shape: &[usize], init: Init) -> Result<Linear> {
        Ok(Linear::new(self.tensor(name, shape, init)?, None))
    }
    /// The projection stored as `{name}.weight` (and `{name}.bias` when `bias`), `[out, in]`
    /// or `[in, out]` as `layout` says.
    fn linear(&self, name: &str, input: usize, output: usize, bias: bool, layout: WeightLayout) -> Result<Linear>;
    /// The `count` projections stored stacked as `{name}.weight` `[count, output, input]`
    /// (GGUF's `ffn_*_exps` experts), without bias. By default the stack is read dense and
    /// sliced; a source holding quantized weights splits the stack block-wise instead.
    fn stacked_linears(&self, name: &str, count: usize, input: usize, output: usize) -> Result<Vec<Linear>> {
        let stack = self.tensor(&format!("{name}.weight"), &[count, output, input], Init::Normal)?;
        (0..count).map(|e| Ok(Linear::new(stack.get(e)?.contiguous()?, None))).collect()
    }
    /// Whether query and key rows are stored permuted for interleaved rotary (llama.cpp's
    /// converter does this); the builder then rotates interleaved pairs, which gives the same
    /// outputs as half-split rotary on unpermuted rows.
    fn rotary_rows_interleaved(&self) -> bool {
        false
    }
    /// Whether the source makes tensors up (presets): it then has every name, and the builder
    /// follows the spec alone (a tied head stays tied).
    fn is_synthetic(&self) -> bool {
        false
    }
    /// How many elements the source's files hold in all, when it knows (from the file
    /// headers): the builder refuses a spec that needs more before allocating anything.
    fn stored_elements(&self) -> Option<u64> {
        None
    }
    /// The bytes the source's tensors take in memory once loaded, when it knows: compared
    /// with the available memory before building on the CPU.
    fn resident_bytes(&self) -> Option<u64> {
        None
    }
}

impl WeightSource for Checkpoint {
    fn location(&self) -> String {
        Checkpoint::location(self).to_string()
    }

    fn dtype(&self) -> DType {
        self.vb().dtype()
    }

    fn device(&self) -> &Device {
        self.device_ref()
    }

    fn contains(&self, name: &str) -> bool {
        self.vb().contains_tensor(name)
    }

    fn stored_elements(&self) -> Option<u64> {
        Checkpoint::stored_elements(self)
    }

    fn resident_bytes(&self) -> Option<u64> {
        Checkpoint::stored_elements(self).map(|n| n.saturating_mul(self.vb().dtype().size_in_bytes() as u64))
    }

    fn tensor(&self, name: &str, shape: &[usize], _init: Init) -> Result<Tensor> {
        self.require_float(name)?;
        self.vb().get(shape, name).map_err(|e| self.error(e))
    }

    fn linear(&self, name: &str, input: usize, output: usize, bias: bool, layout: WeightLayout) -> Result<Linear> {
        self.require_float(&format!("{name}.weight"))?;
        if bias {
            self.require_float(&format!("{name}.bias"))?;
        }
        Linear::load(self.vb().pp(name), input, output, bias, layout).map_err(|e| self.error(e))
    }
}

/// Seeded random tensors (normal with standard deviation `std`, ones for norms, zeros for
/// biases): the weights of a preset. Each tensor's values depend only on the seed and its
/// name, so a preset is the same on every run and every device.
#[derive(Debug, Clone)]
pub struct RandomWeights {
    name: String,
    seed: u64,
    std: f64,
    dtype: DType,
    device: Device,
}

impl RandomWeights {
    /// Random weights named `name` in messages.
    pub fn new(name: impl Into<String>, seed: u64, std: f64, dtype: DType, device: &Device) -> Self {
        Self { name: name.into(), seed, std, dtype, device: device.clone() }
    }

    fn values(&self, name: &str, len: usize, init: Init) -> Result<Vec<f32>> {
        Ok(match init {
            Init::Ones => vec![1.0; len],
            Init::Zeros => vec![0.0; len],
            Init::Normal => {
                let mut hasher = DefaultHasher::new();
                (self.seed, name).hash(&mut hasher);
                let mut rng = rand::rngs::StdRng::seed_from_u64(hasher.finish());
                let normal = rand_distr::Normal::new(0.0, self.std as f32)
                    .map_err(|e| Error::InvalidInput(format!("{}: standard deviation: {e}", self.name)))?;
                (0..len).map(|_| normal.sample(&mut rng)).collect()
            }
        })
    }
}

impl WeightSource for RandomWeights {
    fn location(&self) -> String {
        self.name.clone()
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn contains(&self, _name: &str) -> bool {
        true
    }

    fn is_synthetic(&self) -> bool {
        true
    }

    fn tensor(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let len = shape.iter().product();
        let values = self.values(name, len, init)?;
        Ok(Tensor::from_vec(values, shape, &self.device)?.to_dtype(self.dtype)?)
    }

    fn linear(&self, name: &str, input: usize, output: usize, bias: bool, _layout: WeightLayout) -> Result<Linear> {
        let weight = self.tensor(&format!("{name}.weight"), &[output, input], Init::Normal)?;
        let bias = if bias { Some(self.tensor(&format!("{name}.bias"), &[output], Init::Zeros)?) } else { None };
        Ok(Linear::new(weight, bias))
    }
}

/// A weight source with tensors a `config.json` holds beside the files' (LongRoPE's factor
/// lists, which GGUF files store as tensors): `extra` answers first, `inner` the rest.
pub struct WithConfigTensors<'a> {
    inner: &'a dyn WeightSource,
    extra: std::collections::HashMap<String, Tensor>,
}

impl<'a> WithConfigTensors<'a> {
    /// `inner` with the named `extra` vectors (as f32 on `inner`'s device).
    pub fn new(inner: &'a dyn WeightSource, extra: Vec<(&str, Vec<f32>)>) -> Result<Self> {
        let extra = extra
            .into_iter()
            .map(|(name, values)| {
                let n = values.len();
                Ok((name.to_string(), Tensor::from_vec(values, n, inner.device())?))
            })
            .collect::<Result<_>>()?;
        Ok(Self { inner, extra })
    }
}

impl WeightSource for WithConfigTensors<'_> {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn dtype(&self) -> DType {
        self.inner.dtype()
    }
    fn device(&self) -> &Device {
        self.inner.device()
    }
    fn contains(&self, name: &str) -> bool {
        self.extra.contains_key(name) || self.inner.contains(name)
    }
    fn tensor(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        match self.extra.get(name) {
            Some(t) if t.dims() == shape => Ok(t.clone()),
            Some(t) => Err(Error::InvalidInput(format!(
                "{}: `{name}` (from config.json) has shape {:?}, expected {shape:?}",
                self.inner.location(),
                t.dims()
            ))),
            None => self.inner.tensor(name, shape, init),
        }
    }
    fn table(&self, name: &str, shape: &[usize], init: Init) -> Result<Linear> {
        self.inner.table(name, shape, init)
    }
    fn linear(&self, name: &str, input: usize, output: usize, bias: bool, layout: WeightLayout) -> Result<Linear> {
        self.inner.linear(name, input, output, bias, layout)
    }
    fn stacked_linears(&self, name: &str, count: usize, input: usize, output: usize) -> Result<Vec<Linear>> {
        self.inner.stacked_linears(name, count, input, output)
    }
    fn rotary_rows_interleaved(&self) -> bool {
        self.inner.rotary_rows_interleaved()
    }
    fn is_synthetic(&self) -> bool {
        self.inner.is_synthetic()
    }
    fn stored_elements(&self) -> Option<u64> {
        self.inner.stored_elements()
    }
    fn resident_bytes(&self) -> Option<u64> {
        self.inner.resident_bytes()
    }
}
