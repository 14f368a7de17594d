//! Multi-head latent attention: the absorbed path (attention over the cached latents, `W_UK`
//! folded into the queries, `W_UV` after the sum) equals the paper's equations computed
//! literally, with direct and low-rank queries, rotary on the decoupled part, value heads
//! narrower and wider than query/key heads, a padded batch and both kernels; cached decoding
//! token by token and in chunks equals the full pass; the cache holds `rank + rope_dim`
//! numbers per token; mis-shaped projections are refused by name.

use candle_core::{DType, Device, Tensor};
use tcat_attention::{AttentionKernel, AttentionMask, LatentAttention, LatentDims, LatentQuery};
use tcat_core::Linear;
use tcat_position::{RotaryConfig, RotaryEmbedding};

const HIDDEN: usize = 24;

fn lin(o: usize, i: usize, dev: &Device) -> Linear {
    Linear::new(Tensor::randn(0f32, (1.0 / i as f32).sqrt(), (o, i), dev).unwrap(), None)
}

fn layer(dims: LatentDims, low_rank_query: bool, dev: &Device) -> LatentAttention {
    let q_out = dims.heads * dims.qk_dim();
    let query = if low_rank_query {
        LatentQuery::LowRank {
            down: lin(10, HIDDEN, dev),
            gain: Tensor::rand(0.5f32, 1.5, 10, dev).unwrap(),
            up: lin(q_out, 10, dev),
        }
    } else {
        LatentQuery::Direct(lin(q_out, HIDDEN, dev))
    };
    let rope = RotaryEmbedding::new(RotaryConfig::new(dims.rope_dim), 64, DType::F32, dev).unwrap();
    LatentAttention::new(
        query,
        lin(dims.rank + dims.rope_dim, HIDDEN, dev),
        Tensor::rand(0.5f32, 1.5, dims.rank, dev).unwrap(),
        lin(dims.heads * (dims.nope_dim + dims.value_dim), dims.rank, dev),
        lin(HIDDEN, dims.heads * dims.value_dim, dev),
        dims,
        1e-6,
    )
    .unwrap()
    .with_rotary(rope)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

const SHAPES: [LatentDims; 2] = [
    // DeepSeek-V2's proportions (values as wide as the no-position part, narrower than q/k).
    LatentDims { heads: 4, nope_dim: 8, rope_dim: 4, value_dim: 8, rank: 12 },
    // Values wider than queries and keys.
    LatentDims { heads: 2, nope_dim: 4, rope_dim: 2, value_dim: 10, rank: 6 },
];

#[test]
fn absorbed_latent_attention_equals_the_expanded_equations() {
    let dev = Device::Cpu;
    for dims in SHAPES {
        for low_rank in [false, true] {
            let mla = layer(dims, low_rank, &dev);
            let x = Tensor::randn(0f32, 1., (2, 7, HIDDEN), &dev).unwrap();
            // Row 1 left-padded: its real queries would see the 3 pads if the padding were ignored.
            let keep = Tensor::new(&[[1u8, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1]], &dev).unwrap();
            for mask in [AttentionMask::causal(), AttentionMask::causal().with_key_padding(keep.clone())] {
                let want = mla.forward_expanded(&x, &mask, None).unwrap();
                for kernel in [AttentionKernel::Materialized, AttentionKernel::Fused] {
                    let got = mla.clone().with_kernel(kernel).forward(&x, &mask, None, None).unwrap();
                    let d = max_diff(&got.narrow(0, 0, 1).unwrap(), &want.narrow(0, 0, 1).unwrap())
                        .max(max_diff(&got.i_real(), &want.i_real()));
                    assert!(d < 2e-5, "{dims:?} low-rank {low_rank} {kernel:?}: absorbed differs by {d}");
                }
            }
            // The comparison can fail: another score scale gives another result.
            let plain = LatentAttention::clone(&mla).with_scale(0.5);
            let d = max_diff(
                &plain.forward(&x, &AttentionMask::causal(), None, None).unwrap(),
                &mla.forward_expanded(&x, &AttentionMask::causal(), None).unwrap(),
            );
            assert!(d > 1e-3, "the score scale changed nothing ({d})");
        }
    }
}

/// The real rows of a padded batch: row 1's last 4 positions (the others are padding).
trait RealRows {
    fn i_real(&self) -> Tensor;
}

impl RealRows for Tensor {
    fn i_real(&self) -> Tensor {
        self.narrow(0, 1, 1).unwrap().narrow(1, 3, 4).unwrap()
    }
}

#[test]
fn cached_latent_decoding_equals_the_full_pass_and_stores_only_the_latent() {
    let dev = Device::Cpu;
    for dims in SHAPES {
        let mla = layer(dims, true, &dev);
        let x = Tensor::randn(0f32, 1., (1, 9, HIDDEN), &dev).unwrap();
        let full = mla.forward_expanded(&x, &AttentionMask::causal(), None).unwrap();
        for chunks in [vec![1; 9], vec![4, 1, 3, 1]] {
            let mut cache = mla.new_cache(9);
            let mut at = 0;
            for n in chunks {
                let step = mla.forward(&x.narrow(1, at, n).unwrap(), &AttentionMask::causal(), None, Some(&mut cache));
                let d = max_diff(&step.unwrap(), &full.narrow(1, at, n).unwrap());
                assert!(d < 2e-5, "{dims:?}: cached step at {at} (+{n}) differs by {d}");
                at += n;
            }
            assert_eq!(cache.len(), 9);
            // One [c ; k_R] per token serves as key and value: no value buffer.
            assert!(cache.is_shared());
            assert_eq!(cache.held(), 9);
            // A tenth token does not fit.
            let err = mla.forward(&x.narrow(1, 0, 1).unwrap(), &AttentionMask::causal(), None, Some(&mut cache));
            assert!(
                err.unwrap_err()
                    .to_string()
                    .contains("KV cache full: 9 cached + 1 new positions exceed its capacity of 9")
            );
        }
    }
}

#[test]
fn mis_shaped_latent_projections_are_refused() {
    let dev = Device::Cpu;
    let dims = SHAPES[0];
    let err = LatentAttention::new(
        LatentQuery::Direct(lin(dims.heads * dims.qk_dim(), HIDDEN, &dev)),
        lin(dims.rank, HIDDEN, &dev), // the shared rotary key is missing
        Tensor::ones(dims.rank, DType::F32, &dev).unwrap(),
        lin(dims.heads * (dims.nope_dim + dims.value_dim), dims.rank, &dev),
        lin(HIDDEN, dims.heads * dims.value_dim, &dev),
        dims,
        1e-6,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("kv_down projects 24→12, expected 24→16"), "{err}");
}
