//! The variants added for the Sparse Transformer's fixed pattern, DALL-E's masks and
//! grouped-query attention: their names, their errors, and that each computes what its mask
//! says, checked against tcat's materialised attention with the same mask spelled out.

use candle_core::{DType, Device, Result, Tensor};
use tcat_attention::{AttentionMask, GridAxis, SparsePattern, scaled_dot_product_attention};
use tcat_bench::{DALLE_CONV_KERNEL, Inputs, Shape, Variant, measure};

const NEW: [Variant; 7] = [
    Variant::Fixed { block: 64 },
    Variant::Fixed { block: 1 },
    Variant::DalleRow,
    Variant::DalleColumn,
    Variant::DalleConv,
    Variant::Gqa { groups: 2 },
    Variant::Gqa { groups: 1 },
];

#[test]
fn new_names_round_trip() {
    for (name, variant) in [
        ("fixed:64", Variant::Fixed { block: 64 }),
        ("dalle-row", Variant::DalleRow),
        ("dalle-column", Variant::DalleColumn),
        ("dalle-conv", Variant::DalleConv),
        ("gqa:2", Variant::Gqa { groups: 2 }),
    ] {
        assert_eq!(Variant::parse(name).unwrap(), variant, "{name}");
        assert_eq!(variant.to_string(), name);
    }
    for v in NEW {
        assert_eq!(v.to_string().parse::<Variant>().unwrap(), v);
        assert!(v.memory_efficient(), "{v}");
    }
    let benchmarked = Variant::benchmarked();
    for name in ["fixed:128", "dalle-row", "dalle-column", "dalle-conv", "gqa:2"] {
        assert!(benchmarked.contains(&name.parse().unwrap()), "{name}");
    }
    let list = Variant::parse_list("fixed:64,dalle-row,gqa:2").unwrap();
    assert_eq!(list, [Variant::Fixed { block: 64 }, Variant::DalleRow, Variant::Gqa { groups: 2 }]);
    let known = Variant::parse("warp").unwrap_err().to_string();
    for syntax in ["fixed:L", "dalle-row", "dalle-column", "dalle-conv", "gqa:G"] {
        assert!(known.contains(syntax), "{known}");
    }
}

#[test]
fn new_names_have_clear_errors() {
    for (bad, message) in [
        ("fixed", "attention variant `fixed` needs a block length: fixed:L, e.g. fixed:128"),
        ("fixed:", "attention variant `fixed:`: `` is not a positive integer"),
        ("fixed:0", "attention variant `fixed:0`: `0` is not a positive integer"),
        ("fixed:x", "`x` is not a positive integer"),
        ("gqa", "attention variant `gqa` needs the query heads per key/value head: gqa:G, e.g. gqa:2"),
        ("gqa:0", "attention variant `gqa:0`: `0` is not a positive integer"),
        ("dalle", "DALL-E's masks are dalle-row, dalle-column, dalle-conv"),
        ("dalle:row", "DALL-E's masks are dalle-row, dalle-column, dalle-conv"),
        ("dalle-row:4", "attention variant `dalle-row` takes no `:` argument (found `dalle-row:4`)"),
        ("dalle-conv:11", "attention variant `dalle-conv` takes no `:` argument"),
        ("dalle-diagonal", "unknown attention variant `dalle-diagonal`; known: dense,"),
    ] {
        let err = Variant::parse(bad).unwrap_err().to_string();
        assert!(err.contains(message), "{bad}: {err}");
    }

    // G must divide the heads: found when the heads are known, before anything runs.
    let gqa5 = Variant::Gqa { groups: 5 };
    let err = gqa5.kv_heads(8).unwrap_err().to_string();
    assert!(err.contains("attention variant `gqa:5`: 5 does not divide the 8 query heads"), "{err}");
    assert_eq!(Variant::Gqa { groups: 8 }.kv_heads(8).unwrap(), 1);
    assert_eq!(Variant::Fixed { block: 3 }.kv_heads(8).unwrap(), 8);
    let inputs = Inputs::random(Shape { batch: 1, heads: 8, seq: 16, head_dim: 4 }, DType::F32, &Device::Cpu).unwrap();
    let err = measure(gqa5, &inputs, 1).unwrap_err().to_string();
    assert!(err.contains("5 does not divide the 8 query heads"), "{err}");
    // Calling run directly with full-width keys says what it needs.
    let err = Variant::Gqa { groups: 2 }.run(&inputs.q, &inputs.k, &inputs.v).unwrap_err().to_string();
    assert!(err.contains("needs k and v with 8 / 2 = 4 heads, found 8"), "{err}");
    // measure hands gqa its narrower keys.
    let m = measure(Variant::Gqa { groups: 2 }, &inputs, 1).unwrap();
    assert_eq!(m.shape, Shape { batch: 1, heads: 8, seq: 16, head_dim: 4 });
}

#[test]
fn fixed_summary_and_dalle_grid() {
    // c = l / 16: the paper's l = 128, c = 8 example; at least one summary position.
    assert_eq!([1, 15, 16, 64, 128, 256].map(Variant::fixed_summary), [1, 1, 1, 4, 8, 16]);
    assert_eq!(DALLE_CONV_KERNEL, 11);
    for (seq, grid) in [
        (128, (16, 8)),
        (256, (16, 16)),
        (512, (32, 16)),
        (2048, (64, 32)),
        (8192, (128, 64)),
        (16384, (128, 128)),
        (150, (15, 10)),
        (1, (1, 1)),
        (7, (7, 1)),
    ] {
        assert_eq!(Variant::dalle_grid(seq), grid, "{seq}");
        assert_eq!(grid.0 * grid.1, seq);
    }
}

/// The largest absolute difference of two tensors.
fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    (a - b)?.abs()?.flatten_all()?.max(0)?.to_dtype(DType::F32)?.to_scalar::<f32>()
}

/// The `[1, 1, seq, seq]` visibility of `pattern` as an explicit `u8` mask, from its predicate.
fn explicit(pattern: SparsePattern, seq: usize, device: &Device) -> Result<Tensor> {
    let cells: Vec<u8> = (0..seq * seq).map(|p| u8::from(pattern.allows(p / seq, p % seq, seq))).collect();
    Tensor::from_vec(cells, (1, 1, seq, seq), device)
}

/// Each new variant equals `scaled_dot_product_attention` (the materialised path) with the
/// same mask, both as the pattern and as an explicit mask, on inputs longer than one 64-key
/// tile so that the fused kernel's tile skipping is exercised.
#[test]
fn new_variants_match_materialised_attention() -> Result<()> {
    let dev = Device::Cpu;
    let (batch, heads, seq, head_dim) = (2, 4, 150, 8);
    let scale = (head_dim as f64).powf(-0.5);
    let inputs = Inputs::random(Shape { batch, heads, seq, head_dim }, DType::F32, &dev)?;
    let (q, k, v) = (&inputs.q, &inputs.k, &inputs.v);
    let (rows, cols) = (15, 10); // Variant::dalle_grid(150), spelled out
    let dalle = |axis| SparsePattern::Dalle { text: 0, rows, cols, axis };
    let cases = [
        (Variant::Fixed { block: 64 }, SparsePattern::Fixed { block: 64, summary: 4 }),
        (Variant::Fixed { block: 32 }, SparsePattern::Fixed { block: 32, summary: 2 }),
        (Variant::Fixed { block: 5 }, SparsePattern::Fixed { block: 5, summary: 1 }),
        (Variant::DalleRow, dalle(GridAxis::Row)),
        (Variant::DalleColumn, dalle(GridAxis::Column)),
        (Variant::DalleConv, dalle(GridAxis::Convolutional { kernel: 11 })),
    ];
    for (variant, pattern) in cases {
        let got = variant.run(q, k, v)?;
        assert_eq!(got.dims(), q.dims());
        let with_pattern = scaled_dot_product_attention(q, k, v, &AttentionMask::none().with_pattern(pattern), scale)?;
        let allowed = AttentionMask::none().with_allowed(explicit(pattern, seq, &dev)?);
        let with_explicit = scaled_dot_product_attention(q, k, v, &allowed, scale)?;
        let (d1, d2) = (max_diff(&got, &with_pattern)?, max_diff(&got, &with_explicit)?);
        assert!(d1 <= 1e-5 && d2 <= 1e-5, "{variant}: {d1} against the pattern, {d2} against the explicit mask");
        // And the pattern really is sparse: it differs from plain causal attention.
        let causal = scaled_dot_product_attention(q, k, v, &AttentionMask::causal(), scale)?;
        assert!(max_diff(&got, &causal)? > 1e-3, "{variant} computed plain causal attention");
    }

    for groups in [1, 2, 4] {
        let variant = Variant::Gqa { groups };
        let narrow = inputs.for_variant(variant)?;
        let kv_heads = heads / groups;
        assert_eq!(narrow.k.dims(), [batch, kv_heads, seq, head_dim]);
        let got = variant.run(&narrow.q, &narrow.k, &narrow.v)?;
        assert_eq!(got.dims(), q.dims());
        // The materialised path with the same grouped keys ...
        let grouped = scaled_dot_product_attention(&narrow.q, &narrow.k, &narrow.v, &AttentionMask::causal(), scale)?;
        // ... and with every key/value head repeated for its `groups` query heads, spelled out:
        // query head h reads key/value head h / groups.
        let repeat = |t: &Tensor| -> Result<Tensor> {
            let heads: Vec<Tensor> = (0..heads).map(|h| t.narrow(1, h / groups, 1)).collect::<Result<_>>()?;
            Tensor::cat(&heads, 1)
        };
        let causal = AttentionMask::causal().with_allowed(Tensor::ones((1, 1, seq, seq), DType::U8, &dev)?);
        let repeated = scaled_dot_product_attention(q, &repeat(&narrow.k)?, &repeat(&narrow.v)?, &causal, scale)?;
        let (d1, d2) = (max_diff(&got, &grouped)?, max_diff(&got, &repeated)?);
        assert!(d1 <= 1e-5 && d2 <= 1e-5, "{variant}: {d1} against grouped sdpa, {d2} against repeated heads");
    }
    Ok(())
}
