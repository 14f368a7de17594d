//! The encoder-decoder half of the builder (Vaswani et al. 2017, §3.1): an encoder tower and a
//! decoder tower whose layers cross-attend to the encoder output, one token table shared by
//! both or one each, and the LM head: tied or own, rescaled before the projection (T5's tied
//! head) or with a logits bias (BART's and Marian's `final_logits_bias`).

use super::{
    Error, HeadSpec, PositionSpec, Resolver, Result, Tensor, TowerSpec, WeightNames, WeightSource, embeddings,
    not_implemented, position_table, shared_positions, stack, weights,
};
use crate::seq2seq::{Seq2seqModel, Seq2seqTokens, Seq2seqTower};
use tcat_blocks::LmHead;
use tcat_core::Linear;
use tcat_spec::ArchSpec;

/// Builds the encoder-decoder `spec` describes; `names` names the encoder and, through
/// [`WeightNames::seq2seq`], the decoder.
pub(super) fn build(
    spec: &ArchSpec,
    (encoder, decoder, shared): (&TowerSpec, &TowerSpec, bool),
    names: &WeightNames,
    weights: &dyn WeightSource,
) -> Result<Seq2seqModel> {
    let seq = names.seq2seq.ok_or_else(|| not_implemented("an encoder-decoder without names for its decoder"))?;
    super::check_tower(encoder)?;
    super::check_tower(decoder)?;
    let invalid = |what: String| Error::InvalidInput(format!("{}: architecture: {what}", weights.location()));
    if encoder.cross_attention.is_some() {
        return Err(invalid("the encoder tower of an encoder-decoder cannot cross-attend".into()));
    }
    if decoder.cross_attention.is_none() {
        return Err(invalid("the decoder tower of an encoder-decoder needs `cross_attention`".into()));
    }
    if shared && (encoder.vocab_size, encoder.embedding_width()) != (decoder.vocab_size, decoder.embedding_width()) {
        return Err(invalid(format!(
            "a shared token table needs one shape; the encoder's is {} × {}, the decoder's {} × {}",
            encoder.vocab_size,
            encoder.embedding_width(),
            decoder.vocab_size,
            decoder.embedding_width()
        )));
    }
    let decoder_token = spec
        .tokens
        .decoder_start
        .ok_or_else(|| invalid("an encoder-decoder needs its decoder start token (`decoder_start_token_id`)".into()))?;
    let er = Resolver::for_tower(names, weights)?;
    let dr = Resolver::for_tower(&seq.decoder, weights)?;
    let encoder_word = token_table(encoder, &er, seq.shared)?;
    let decoder_word = if shared { encoder_word.clone() } else { token_table(decoder, &dr, seq.shared)? };
    let head = lm_head(spec, decoder, &dr, &decoder_word, seq.final_logits_bias)?;
    let tokens = Seq2seqTokens {
        decoder_start: decoder_token,
        eos: spec.tokens.eos.clone(),
        pad: spec.tokens.pad,
        forced_bos: None,
        forced_eos: None,
        bad_words: Vec::new(),
    };
    Seq2seqModel::new(tower(encoder, &er, &encoder_word)?, tower(decoder, &dr, &decoder_word)?, head, tokens)
}

/// A tower's token table: its own when stored, else the shared one.
fn token_table(tower: &TowerSpec, r: &Resolver, shared: &[&str]) -> Result<Tensor> {
    let own = r.base(&format!("{}.weight", r.names.word));
    let candidates = std::iter::once(own).chain(shared.iter().map(|s| format!("{s}.weight"))).collect::<Vec<_>>();
    let name = candidates
        .iter()
        .find(|n| r.weights.contains(n))
        .ok_or_else(|| Error::MissingTensor { name: candidates.join("` or `"), location: r.weights.location() })?;
    r.tensor(name, &[tower.vocab_size, tower.embedding_width()], weights::Init::Normal)
}

fn tower(tower: &TowerSpec, r: &Resolver, word: &Tensor) -> Result<Seq2seqTower> {
    let shared = shared_positions(tower, r)?;
    let embeddings = embeddings(tower, r, word, position_table(tower, r)?)?;
    let max_positions = match tower.positions {
        PositionSpec::Learned { .. } | PositionSpec::Sinusoidal { .. } => Some(tower.max_positions),
        _ => None,
    };
    Ok(Seq2seqTower { embeddings, stack: stack(tower, r, &shared)?, max_positions })
}

/// The decoder's LM head: a stored head, else the decoder's token table when tied; T5's tied
/// head rescales its input, BART's and Marian's add `final_logits_bias` (`[1, vocab]`).
fn lm_head(spec: &ArchSpec, decoder: &TowerSpec, r: &Resolver, word: &Tensor, logits_bias: &str) -> Result<LmHead> {
    let (tied, bias, scale) = match spec.heads.as_slice() {
        [HeadSpec::Lm { tied, bias }] => (*tied, *bias, None),
        [HeadSpec::ScaledLm { tied, scale }] => (*tied, false, Some(*scale)),
        other => {
            return Err(not_implemented(format!("the encoder-decoder heads {other:?} (one LM head is supported)")));
        }
    };
    let (vocab, h) = (decoder.vocab_size, decoder.hidden_size);
    let name = r.names.lm_head;
    let stored = if r.weights.is_synthetic() { !tied } else { r.has(name) };
    let weight = if stored {
        r.tensor(&format!("{name}.weight"), &[vocab, h], weights::Init::Normal)?
    } else if tied {
        word.clone()
    } else {
        return Err(Error::MissingTensor {
            name: format!("{name}.weight (the LM head: the config does not tie it to the token embeddings)"),
            location: r.weights.location(),
        });
    };
    let bias = if bias && !logits_bias.is_empty() && r.weights.contains(logits_bias) {
        Some(r.tensor(logits_bias, &[1, vocab], weights::Init::Zeros)?.reshape(vocab)?)
    } else {
        None
    };
    let head = LmHead::new(Linear::new(weight, bias));
    Ok(match scale {
        Some(scale) => head.with_input_scale(scale),
        None => head,
    })
}
