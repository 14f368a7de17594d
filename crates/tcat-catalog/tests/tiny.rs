//! The preset scaling rule: every spec shrinks to a valid model of a few hundred kilobytes that
//! keeps its architectural choices.

use std::mem::discriminant;

use tcat_catalog::{entries, tiny};
use tcat_spec::{ArchSpec, AttentionSpec, HeadSpec, Stacks, TowerSpec, VisionConnection};

/// The grouping kind of an attention: multi-head, multi-query or grouped.
fn grouping(a: &AttentionSpec) -> u8 {
    match a.num_kv_heads {
        kv if kv == a.num_heads => 0,
        1 => 1,
        _ => 2,
    }
}

fn patterns(a: &AttentionSpec) -> Vec<std::mem::Discriminant<tcat_spec::AttentionPattern>> {
    let mut kinds: Vec<_> = a.schedule.iter().map(discriminant).collect();
    kinds.dedup();
    let mut distinct = Vec::new();
    for kind in kinds {
        if !distinct.contains(&kind) {
            distinct.push(kind);
        }
    }
    distinct
}

fn same_attention(name: &str, big: &AttentionSpec, small: &AttentionSpec) {
    assert_eq!(grouping(big), grouping(small), "{name}: grouping");
    assert_eq!((big.qkv_bias, big.out_bias, big.masking), (small.qkv_bias, small.out_bias, small.masking), "{name}");
    assert_eq!(discriminant(&big.scale), discriminant(&small.scale), "{name}: scale rule");
    assert_eq!(patterns(big), patterns(small), "{name}: schedule patterns");
}

fn same_tower(name: &str, big: &TowerSpec, small: &TowerSpec) {
    assert_eq!(discriminant(&big.embeddings.input), discriminant(&small.embeddings.input), "{name}: input");
    assert_eq!(discriminant(&big.embeddings.projection), discriminant(&small.embeddings.projection), "{name}");
    assert_eq!(big.embeddings.scale, small.embeddings.scale, "{name}: embedding scale");
    assert_eq!(big.embeddings.norm, small.embeddings.norm, "{name}: embedding norm");
    assert_eq!(big.embeddings.token_types, small.embeddings.token_types, "{name}: token types");
    assert_eq!(big.embeddings.languages > 0, small.embeddings.languages > 0, "{name}: languages");
    assert_eq!(discriminant(&big.positions), discriminant(&small.positions), "{name}: positions");
    if let (tcat_spec::PositionSpec::Rotary(b), tcat_spec::PositionSpec::Rotary(s)) = (big.positions, small.positions) {
        assert_eq!((b.fraction, b.base, b.layout), (s.fraction, s.base, s.layout), "{name}: rotary");
        assert_eq!(discriminant(&b.scaling), discriminant(&s.scaling), "{name}: rope scaling");
    }
    same_attention(name, &big.attention, &small.attention);
    assert_eq!(big.cross_attention.is_some(), small.cross_attention.is_some(), "{name}: cross-attention");
    if let (Some(b), Some(s)) = (&big.cross_attention, &small.cross_attention) {
        same_attention(name, b, s);
    }
    let (bf, sf) = (&big.feed_forward, &small.feed_forward);
    assert_eq!((bf.kind, bf.activation, bf.bias), (sf.kind, sf.activation, sf.bias), "{name}: feed-forward");
    assert_eq!(bf.experts.is_some(), sf.experts.is_some(), "{name}: experts");
    if let (Some(b), Some(s)) = (bf.experts, sf.experts) {
        assert_eq!(b.expert_kind, s.expert_kind, "{name}: expert kind");
        assert_eq!(b.active_experts(), s.active_experts(), "{name}: top-k");
        assert_eq!(discriminant(&b.router.rule), discriminant(&s.router.rule), "{name}: routing");
        assert_eq!((b.every, b.offset), (s.every, s.offset), "{name}: MoE placement");
        assert!(s.num_experts > s.active_experts(), "{name}: still sparse");
    }
    assert_eq!(big.norm, small.norm, "{name}: norm");
    assert_eq!(big.residual, small.residual, "{name}: residual");
    assert_eq!(big.final_norm, small.final_norm, "{name}: final norm");
    assert_eq!(discriminant(&big.sharing), discriminant(&small.sharing), "{name}: sharing");
    assert_eq!(big.entity_fusion.is_some(), small.entity_fusion.is_some(), "{name}: entity fusion");
    // Every layer kind of the big model appears in the tiny one.
    for layer in 0..big.num_layers {
        let pattern = discriminant(&big.attention.pattern(layer));
        assert!((0..small.num_layers).any(|l| discriminant(&small.attention.pattern(l)) == pattern), "{name}");
        let sparse = big.is_sparse_layer(layer);
        assert!((0..small.num_layers).any(|l| small.is_sparse_layer(l) == sparse), "{name}: layer {layer}");
    }
    assert_eq!(small.hidden_size, 32);
}

fn same_heads(name: &str, big: &ArchSpec, small: &ArchSpec) {
    let kinds = |s: &ArchSpec| s.heads.iter().map(discriminant).collect::<Vec<_>>();
    assert_eq!(kinds(big), kinds(small), "{name}: heads");
    for (b, s) in big.heads.iter().zip(&small.heads) {
        if let (HeadSpec::Lm { tied: bt, bias: bb }, HeadSpec::Lm { tied: st, bias: sb }) = (b, s) {
            assert_eq!((bt, bb), (st, sb), "{name}: LM head");
        }
    }
}

#[test]
fn every_spec_shrinks_to_a_tiny_valid_model_of_the_same_architecture() {
    for entry in entries() {
        let Some(spec) = entry.spec else { continue };
        let big = spec();
        let small = tiny(&big);
        small.validate().unwrap_or_else(|e| panic!("tiny {}: {e}", entry.name));
        assert_eq!(small.kind(), big.kind(), "{}", entry.name);
        assert_eq!(discriminant(&small.stacks), discriminant(&big.stacks), "{}", entry.name);
        let params = small.param_count().total;
        assert!(params < 150_000, "tiny {} has {params} parameters", entry.name);
        for (b, s) in big.towers().into_iter().zip(small.towers()) {
            same_tower(entry.name, b, s);
        }
        same_heads(entry.name, &big, &small);
        if let (Stacks::VisionLanguage { connection: b, .. }, Stacks::VisionLanguage { connection: s, .. }) =
            (&big.stacks, &small.stacks)
        {
            assert_eq!(discriminant(b), discriminant(s), "{}", entry.name);
            if let VisionConnection::AttentionalPooling { unimodal_layers, .. } = s {
                assert!(*unimodal_layers > 0, "{}", entry.name);
            }
        }
        for id in small.tokens.eos.iter().chain([&small.tokens.pad]) {
            assert!((*id as usize) < 256, "{}", entry.name);
        }
        // Tiny is a fixed point in shape: shrinking twice changes nothing.
        assert_eq!(tiny(&small), small, "{}", entry.name);
    }
}

#[test]
fn tiny_keeps_dalle_schedule_kinds_and_gpt3_bands() {
    let dalle = tiny(&(tcat_catalog::find("dall-e").unwrap().spec.unwrap())());
    let tower = dalle.single_tower().unwrap();
    assert_eq!(tower.num_layers, 3);
    assert_eq!(tower.max_positions, 16 + 8 * 8);
    let gpt3 = tiny(&(tcat_catalog::find("gpt-3").unwrap().spec.unwrap())());
    let tower = gpt3.single_tower().unwrap();
    assert_eq!(tower.attention.schedule[1], tcat_spec::AttentionPattern::Local { window: 16 });
    let palm = tiny(&(tcat_catalog::find("palm").unwrap().spec.unwrap())());
    assert_eq!(palm.single_tower().unwrap().attention.num_kv_heads, 1);
    let lamda = tiny(&(tcat_catalog::find("lamda").unwrap().spec.unwrap())());
    assert_eq!(lamda.single_tower().unwrap().attention.head_dim, 16);
}
