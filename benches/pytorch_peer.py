#!/usr/bin/env python3
"""PyTorch on the workloads of benches/models.rs, for the README's side-by-side numbers.

Run with the reference venv (tests/fixtures/requirements.txt) on the same machine, right
before or after `cargo bench --bench models`:

    /work/venv/ref/bin/python benches/pytorch_peer.py

- BERT-base forward over 8 x 128 random token ids (transformers BertModel, eager attention,
  no padding), median of 10 runs after 2 warm-ups;
- GPT-2 124M greedy decoding of 64 tokens after a 16-token prompt (GPT2LMHeadModel.generate,
  KV cache, no EOS stop), median of 5 runs after 1 warm-up, in tokens/s;
- SmolLM2-135M shapes (LlamaForCausalLM, random weights, f32) greedy decoding of 64 tokens.

Random weights at transformers' default init; torch uses all cores (torch.get_num_threads()).
"""

import statistics
import time

import torch
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM


def median_time(fn, runs, warmups):
    for _ in range(warmups):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def decode_rate(model, vocab, runs=5):
    torch.manual_seed(2)
    prompt = torch.randint(0, vocab, (1, 16))
    mask = torch.ones_like(prompt)

    def run():
        model.generate(prompt, attention_mask=mask, max_new_tokens=64, min_new_tokens=64, do_sample=False,
                       eos_token_id=None, pad_token_id=0)

    return 64 / median_time(run, runs, 1)


@torch.inference_mode()
def main():
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bert = BertModel(BertConfig(attn_implementation="eager")).eval()
    ids = torch.randint(0, 30522, (8, 128))
    seconds = median_time(lambda: bert(input_ids=ids), 10, 2)
    print(f"bert_base_forward_8x128: {seconds:.3f} s")
    gpt2 = GPT2LMHeadModel(GPT2Config(attn_implementation="eager")).eval()
    print(f"gpt2_124m_decode_64: {decode_rate(gpt2, 50257):.1f} tokens/s")
    smol = LlamaForCausalLM(LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0, tie_word_embeddings=True,
        max_position_embeddings=8192, attn_implementation="eager")).eval()
    print(f"smollm2_135m_f32_decode_64: {decode_rate(smol, 49152):.1f} tokens/s")


if __name__ == "__main__":
    main()
