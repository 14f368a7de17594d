//! DeepSeek-V2 and V3 against transformers (tiny perturbed checkpoints it saved,
//! tests/fixtures/tcat_fixtures/deepseek.py): multi-head latent attention with and without query
//! compression, greedy, group-limited and `noaux_tc` routing, shared experts and dense first
//! layers; cached decoding keeps only the latent.

mod common;

use candle_core::{DType, Tensor};
use common::*;
use tcat_attention::AttentionMask;
use tcat_blocks::SelfAttention;
use tcat_models::{Batch, ConfigFile, GenerationConfig, Model, ModelSource, Sampling, generate};
use tcat_position::sequential_position_ids;

const TOL: f32 = 1e-4;
const FIXTURES: [&str; 4] = ["deepseek_v2-lite", "deepseek_v2", "deepseek_v3", "deepseek_v3-yarn"];

fn load(name: &str) -> Model {
    let source = ModelSource::resolve(fixture(name).to_str().unwrap()).unwrap();
    Model::load(&source, &device(), DType::F32).unwrap()
}

fn greedy(max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig { max_new_tokens, sampling: Sampling::Greedy, stop_tokens: Some(vec![]), ..Default::default() }
}

fn check(name: &str) -> f32 {
    let exp = expected(name);
    let model = load(name);
    let decoder = model.as_decoder().unwrap();
    let mask = &exp["attention_mask"];
    let batch = Batch::right_padded(&rows(&exp["input_ids"], mask), None, decoder.pad_token_id(), &device()).unwrap();
    let d = masked_max_diff(&decoder.logits(&batch).unwrap(), &exp["logits"], mask);
    eprintln!("{name}: logits max abs diff {d:.2e}");
    assert!(d <= TOL, "{name} logits differ by {d}");

    let to_u32 = |t: &Tensor| -> Vec<u32> { t.to_vec1::<i64>().unwrap().iter().map(|&i| i as u32).collect() };
    let prompt = to_u32(&exp["prompt_ids"]);
    let want = to_u32(&exp["greedy_ids"]);
    let got = generate(decoder, std::slice::from_ref(&prompt), &greedy(want.len() - prompt.len()), |_, _| {}).unwrap();
    assert_eq!(got[0], want, "{name} greedy");

    // Left-padded prompts of lengths 5 and 3 decoded in one batch.
    let prompts = rows(&exp["batch_prompt_ids"], &exp["batch_prompt_mask"]);
    let want: Vec<Vec<i64>> = exp["batch_greedy_ids"].to_vec2().unwrap();
    let prompt_len = exp["batch_prompt_ids"].dim(1).unwrap();
    let got = generate(decoder, &prompts, &greedy(want[0].len() - prompt_len), |_, _| {}).unwrap();
    for (row, (g, w)) in got.iter().zip(&want).enumerate() {
        let w: Vec<u32> = w[prompt_len - prompts[row].len()..].iter().map(|&i| i as u32).collect();
        assert_eq!(g, &w, "{name} batched greedy row {row}");
    }
    d
}

/// DeepSeek-V2-Lite's shape: queries projected directly (`q_lora_rank` null), greedy top-2 of 8
/// experts, layer 0 dense, layers 1–3 sparse with two shared experts.
#[test]
fn deepseek_v2_lite_direct_queries_and_greedy_routing_match_transformers() {
    check("deepseek_v2-lite");
}

/// DeepSeek-V2's shape: compressed queries, attention biases, group-limited routing (2 of 4
/// groups, top-3, scale 1.5), layers 0–1 dense.
#[test]
fn deepseek_v2_query_compression_and_group_limited_routing_match_transformers() {
    check("deepseek_v2");
}

/// DeepSeek-V3: sigmoid scores with a non-zero score correction, groups by their top-2 sum,
/// renormalised gates times 2.5, one shared expert.
#[test]
fn deepseek_v3_noaux_tc_routing_matches_transformers() {
    check("deepseek_v3");
}

/// DeepSeek-V3 with YaRN (factor 4 over 16 positions, `mscale` 1 and `mscale_all_dim` 0.8: an
/// attention factor on the cos/sin tables and mscale² on the softmax scale) and
/// `rope_interleave` false (half-split pairs).
#[test]
fn deepseek_v3_yarn_and_half_split_rotary_match_transformers() {
    check("deepseek_v3-yarn");
}

#[test]
fn every_layer_is_latent_and_dense_layers_come_first() {
    for name in FIXTURES {
        let model = load(name);
        let layers = model.as_decoder().unwrap().stack().layers();
        let dense = if name == "deepseek_v2" { 2 } else { 1 };
        for (i, layer) in layers.iter().enumerate() {
            let SelfAttention::Latent(a) = layer.attention() else { panic!("{name} layer {i} is not latent") };
            // kv_lora_rank 16 + qk_rope_head_dim 4 numbers per token, against 2 × 4 heads × 12.
            assert_eq!(a.dims().cached_per_token(), 20);
            assert_eq!(layer.parts().1.as_experts().is_some(), i >= dense, "{name} layer {i}");
        }
    }
}

#[test]
fn padded_batch_equals_rows_alone() {
    let dev = device();
    let rows: Vec<Vec<u32>> = vec![vec![5, 17, 33, 8, 91, 12, 40], vec![7, 3, 99], vec![64]];
    for name in FIXTURES {
        let model = load(name);
        let decoder = model.as_decoder().unwrap();
        for batch in [
            Batch::right_padded(&rows, None, decoder.pad_token_id(), &dev).unwrap(),
            Batch::left_padded(&rows, decoder.pad_token_id(), &dev).unwrap(),
        ] {
            let left = batch.attention_mask().to_vec2::<u32>().unwrap()[2][0] == 0;
            let all = decoder.logits(&batch).unwrap();
            for (i, row) in rows.iter().enumerate() {
                let alone = decoder
                    .logits(
                        &Batch::right_padded(std::slice::from_ref(row), None, decoder.pad_token_id(), &dev).unwrap(),
                    )
                    .unwrap();
                let start = if left { all.dim(1).unwrap() - row.len() } else { 0 };
                let d = max_diff(&all.narrow(0, i, 1).unwrap().narrow(1, start, row.len()).unwrap(), &alone);
                assert!(d < 1e-5, "{name} row {i} (left padded: {left}): {d}");
            }
        }
    }
}

#[test]
fn cached_decoding_equals_the_full_forward_and_keeps_only_the_latent() {
    let dev = device();
    let ids: Vec<u32> = vec![11, 250, 3, 77, 190, 42, 8, 120, 5, 66];
    for name in FIXTURES {
        let model = load(name);
        let decoder = model.as_decoder().unwrap();
        let full_ids = Tensor::new(ids.as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
        let positions = |n, from| sequential_position_ids(1, n, from, &dev).unwrap();
        let full = decoder.forward(&full_ids, &positions(ids.len(), 0), &AttentionMask::causal(), None).unwrap();
        let mut caches = decoder.new_caches(ids.len());
        let prompt = 4;
        let mut steps = vec![
            decoder
                .forward(
                    &full_ids.narrow(1, 0, prompt).unwrap(),
                    &positions(prompt, 0),
                    &AttentionMask::causal(),
                    Some(&mut caches),
                )
                .unwrap(),
        ];
        let mut worst = 0f32;
        for t in prompt..ids.len() {
            let step = decoder
                .forward(
                    &full_ids.narrow(1, t, 1).unwrap(),
                    &positions(1, t),
                    &AttentionMask::causal(),
                    Some(&mut caches),
                )
                .unwrap();
            steps.push(step);
            let d = max_diff(&Tensor::cat(&steps, 1).unwrap(), &full.narrow(1, 0, t + 1).unwrap());
            worst = worst.max(d);
            assert!(d < 1e-4, "{name} step {t}: {d}");
        }
        eprintln!("{name}: cached vs full max abs diff {worst:.2e}");
        assert!(caches.iter().all(|c| c.is_shared() && c.held() == ids.len()), "{name}: one latent tensor per layer");
        // 4 layers × (16 + 4) numbers per token.
        assert_eq!(decoder.stack().cache_elements(1, ids.len()), Some(4 * 20 * ids.len() as u64));
    }
}

fn config_with(name: &str, edit: impl Fn(&mut serde_json::Value)) -> ConfigFile {
    let path = fixture(name).join("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    ConfigFile { path, json }
}

fn refusal(name: &str, edit: impl Fn(&mut serde_json::Value)) -> String {
    tcat_models::spec_of(&config_with(name, edit)).unwrap_err().to_string()
}

/// A change to a config's JSON.
type Edit = dyn Fn(&mut serde_json::Value);

#[test]
fn unsupported_settings_are_refused_by_name() {
    let unknown_rope = |j: &mut serde_json::Value| {
        j["rope_parameters"] = serde_json::json!({"rope_type": "proportional", "rope_theta": 10000.0, "factor": 4.0});
    };
    let cases: Vec<(&str, Box<Edit>, &str)> = vec![
        ("deepseek_v2", Box::new(|j| j["topk_method"] = "noaux_tc".into()), "`topk_method` `noaux_tc`"),
        ("deepseek_v2", Box::new(|j| j["norm_topk_prob"] = true.into()), "`norm_topk_prob`"),
        ("deepseek_v2", Box::new(|j| j["n_group"] = 3.into()), "`n_group` (3)"),
        ("deepseek_v2", Box::new(|j| j["topk_group"] = 5.into()), "`topk_group` (5)"),
        ("deepseek_v3", Box::new(|j| j["topk_method"] = "greedy".into()), "`topk_method` `greedy`"),
        ("deepseek_v3", Box::new(|j| j["scoring_func"] = "softmax".into()), "`scoring_func` `softmax`"),
        ("deepseek_v3", Box::new(|j| j["moe_layer_freq"] = 2.into()), "`moe_layer_freq` 2"),
        ("deepseek_v3", Box::new(|j| j["num_key_value_heads"] = 2.into()), "`num_key_value_heads` (2)"),
        ("deepseek_v3", Box::new(|j| j["num_experts_per_tok"] = 5.into()), "`num_experts_per_tok` (5)"),
        ("deepseek_v3", Box::new(unknown_rope), "rope scaling type `proportional`"),
    ];
    for (name, edit, want) in cases {
        let err = refusal(name, edit);
        assert!(err.contains(want), "{name}: `{want}` not in: {err}");
    }
}

/// DeepSeek-V2-Lite's published config (hub `deepseek-ai/DeepSeek-V2-Lite`, with YaRN): the spec's
/// parameter count equals transformers' `sum(p.numel())` on the meta device (15,706,484,224;
/// active: 2,661,150,208 with 6 of 64 routed experts, embeddings and head included), and the
/// softmax scale is transformers' `0.1147…` (1/√192 × mscale(40, 0.707)²).
#[test]
fn deepseek_v2_lite_spec_counts_transformers_parameters() {
    let json = serde_json::json!({
        "model_type": "deepseek_v2", "vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 10944,
        "moe_intermediate_size": 1408, "num_hidden_layers": 27, "num_attention_heads": 16,
        "num_key_value_heads": 16, "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6,
        "first_k_dense_replace": 1, "moe_layer_freq": 1, "kv_lora_rank": 512, "q_lora_rank": null,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "max_position_embeddings": 163840,
        "rope_theta": 10000, "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
            "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
        "rms_norm_eps": 1e-6, "tie_word_embeddings": false, "topk_method": "greedy", "scoring_func": "softmax",
        "routed_scaling_factor": 1.0, "norm_topk_prob": false, "n_group": 1, "topk_group": 1,
        "bos_token_id": 100000, "eos_token_id": 100001, "hidden_act": "silu"
    });
    let config = ConfigFile { path: "DeepSeek-V2-Lite/config.json".into(), json };
    let spec = tcat_models::spec_of(&config).unwrap();
    let count = spec.param_count();
    assert_eq!((count.total, count.active), (15_706_484_224, 2_661_150_208));
    let tcat_spec::Stacks::Decoder { tower } = &spec.stacks else { panic!("a decoder") };
    let scale = tower.attention.scale_for_layer(0);
    assert!((scale - 0.114_721_386_792_926_1).abs() < 1e-12, "{scale}");
}

/// DeepSeek-V3's published shape (61 layers, 256 routed experts in groups of 32, 8 per token,
/// query compression 1536): 671,026,404,352 parameters and 37,552,282,624 active, as
/// transformers counts them (the multi-token-prediction layer, which transformers does not load,
/// left out), and its softmax scale with YaRN's mscale(40, 1)².
#[test]
fn deepseek_v3_spec_counts_transformers_parameters() {
    let json = serde_json::json!({
        "model_type": "deepseek_v3", "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432,
        "moe_intermediate_size": 2048, "num_hidden_layers": 61, "num_attention_heads": 128,
        "num_key_value_heads": 128, "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8,
        "first_k_dense_replace": 3, "moe_layer_freq": 1, "kv_lora_rank": 512, "q_lora_rank": 1536,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "max_position_embeddings": 163840,
        "n_group": 8, "topk_group": 4, "topk_method": "noaux_tc", "scoring_func": "sigmoid",
        "routed_scaling_factor": 2.5, "norm_topk_prob": true, "num_nextn_predict_layers": 1,
        "rope_theta": 10000, "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
            "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
        "rms_norm_eps": 1e-6, "tie_word_embeddings": false, "hidden_act": "silu"
    });
    let spec = tcat_models::spec_of(&ConfigFile { path: "DeepSeek-V3/config.json".into(), json }).unwrap();
    let count = spec.param_count();
    assert_eq!((count.total, count.active), (671_026_404_352, 37_552_282_624));
    let tcat_spec::Stacks::Decoder { tower } = &spec.stacks else { panic!("a decoder") };
    let scale = tower.attention.scale_for_layer(0);
    assert!((scale - 0.135_233_778_860_880_1).abs() < 1e-12, "{scale}");
}
