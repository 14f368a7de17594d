//! `MultiHeadAttention::load` with an `AttentionConfig`: the weights it reads are the ones the
//! names say (the module equals one built by hand from the same tensors, for every q/k/v layout
//! and bias setting), the numbers are checked before anything is read, and the module composes
//! with candle's `Module` / `Sequential`.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use tcat_attention::{
    AttentionConfig, AttentionMask, AttentionNames, Causality, MultiHeadAttention, ProjectionBias, QkvLayout,
    QkvProjection, ScoreScale,
};
use tcat_core::Linear;
use tcat_position::{RotaryConfig, RotaryEmbedding};

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

#[test]
fn loaded_modules_equal_hand_built_ones() {
    let dev = common::device();
    let (hidden, heads, kv_heads, head_dim) = (24, 4, 2, 6);
    let w = |o: usize, i: usize| Tensor::randn(0f32, 0.3, (o, i), &dev).unwrap();
    let b = |o: usize| Tensor::randn(0f32, 0.3, o, &dev).unwrap();
    let (wq, wk, wv, wo) = (w(24, hidden), w(12, hidden), w(12, hidden), w(hidden, 24));
    let (bq, bk, bv, bo) = (b(24), b(12), b(12), b(hidden));
    let x = Tensor::randn(0f32, 1., (2, 7, hidden), &dev).unwrap();
    let rope = RotaryConfig::new(head_dim);
    let mut tensors = HashMap::new();
    for (name, t) in [
        ("attn.query.weight", &wq),
        ("attn.key.weight", &wk),
        ("attn.value.weight", &wv),
        ("attn.out.weight", &wo),
        ("attn.query.bias", &bq),
        ("attn.key.bias", &bk),
        ("attn.value.bias", &bv),
        ("attn.out.bias", &bo),
    ] {
        tensors.insert(name.to_string(), t.clone());
    }
    let fused = Tensor::cat(&[&wq, &wk, &wv], 0).unwrap();
    tensors.insert("attn.qkv.weight".into(), fused.clone());
    tensors.insert("attn.qkv.bias".into(), Tensor::cat(&[&bq, &bk, &bv], 0).unwrap());
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &dev);
    let names = AttentionNames::new("query", "key", "value", "qkv", "out");
    for bias in [ProjectionBias::None, ProjectionBias::QkvOnly, ProjectionBias::All] {
        for layout in [QkvLayout::Separate, QkvLayout::Fused] {
            let config = AttentionConfig::new(hidden, heads)
                .with_kv_heads(kv_heads)
                .with_names(names.clone())
                .with_bias(bias)
                .with_qkv_layout(layout)
                .with_scale(ScoreScale::Fixed(0.3))
                .with_rotary_config(rope, 32)
                .with_sliding_window(3);
            let loaded = MultiHeadAttention::load(vb.pp("attn"), &config).unwrap();
            let qkv_bias =
                |t: &Tensor| matches!(bias, ProjectionBias::QkvOnly | ProjectionBias::All).then(|| t.clone());
            let qkv = QkvProjection::Separate {
                q: Linear::new(wq.clone(), qkv_bias(&bq)),
                k: Linear::new(wk.clone(), qkv_bias(&bk)),
                v: Linear::new(wv.clone(), qkv_bias(&bv)),
            };
            let out = Linear::new(wo.clone(), matches!(bias, ProjectionBias::All).then(|| bo.clone()));
            let by_hand = MultiHeadAttention::new(qkv, out, heads, kv_heads, head_dim)
                .unwrap()
                .with_scale(0.3)
                .with_rotary(RotaryEmbedding::new(rope, 32, DType::F32, &dev).unwrap())
                .with_sliding_window(3);
            let mask = AttentionMask::causal();
            let d = max_diff(
                &loaded.forward(&x, &mask, None, None).unwrap(),
                &by_hand.forward(&x, &mask, None, None).unwrap(),
            );
            assert!(d < 1e-5, "{bias:?} {layout:?}: {d}");
        }
    }
}

#[test]
fn construction_errors_name_the_field() {
    let dev = Device::Cpu;
    let vb = VarBuilder::zeros(DType::F32, &dev);
    let cases = [
        (AttentionConfig::new(64, 2).with_kv_heads(4), "`num_kv_heads` must divide num_heads (2), found 4"),
        (AttentionConfig::new(64, 0), "`num_heads` must be positive"),
        (AttentionConfig::new(64, 8).with_head_dim(0), "`head_dim` must be positive"),
        (AttentionConfig::new(64, 8).with_rotary_config(RotaryConfig::new(10), 16), "`rotary.rotary_dim`"),
        (AttentionConfig::new(64, 8).with_sliding_window(0), "`sliding_window` must be at least 1"),
        (
            AttentionConfig::new(64, 8).with_kv_heads(2).with_qkv_layout(QkvLayout::FusedPerHead),
            "must equal num_heads (8) with per-head fused",
        ),
    ];
    for (config, want) in cases {
        let err = MultiHeadAttention::load(vb.clone(), &config).unwrap_err().to_string();
        assert!(err.contains(want), "{config:?}: {err}");
    }
    // A missing tensor names itself.
    let empty = VarBuilder::from_tensors(HashMap::new(), DType::F32, &dev);
    let err = MultiHeadAttention::load(empty.pp("layer"), &AttentionConfig::new(8, 2)).unwrap_err().to_string();
    assert!(err.contains("layer.q_proj.weight"), "{err}");
}

#[test]
fn the_module_composes_with_candle_sequential() {
    let dev = Device::Cpu;
    let vars = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &dev);
    let config = AttentionConfig::new(16, 4).with_kv_heads(2).with_causality(Causality::Causal);
    let attention = MultiHeadAttention::load(vb.pp("attn"), &config).unwrap();
    let linear = candle_nn::linear(16, 16, vb.pp("lin")).unwrap();
    for var in vars.all_vars() {
        // VarMap starts at zero; the loaded tensors share the variables' storage.
        var.set(&Tensor::randn(0f32, 0.3, var.shape(), &dev).unwrap()).unwrap();
    }
    let x = Tensor::randn(0f32, 1., (2, 5, 16), &dev).unwrap();
    let seq = candle_nn::seq().add(attention.clone()).add(linear.clone());
    let want = linear.forward(&attention.forward(&x, &AttentionMask::causal(), None, None).unwrap()).unwrap();
    assert!(want.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 1.0, "the weights are set");
    assert!(max_diff(&seq.forward(&x).unwrap(), &want) < 1e-6);
}
