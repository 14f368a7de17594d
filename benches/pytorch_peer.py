#!/usr/bin/env python3
"""PyTorch on the workloads of `tcat bench models`, for the README's side-by-side numbers.

Run with the reference environment (a venv outside the repository with
tests/fixtures/requirements.txt installed) on the same machine, right before or after
`tcat bench models`, with the same thread count:

    python benches/pytorch_peer.py [--workloads LIST] [--threads N] [--repeats R] [--json]

The workloads carry `tcat bench models`' names and are timed the same way (one warm-up run,
then R timed runs, default 5, median reported; random weights at transformers' default init):

- bert-base: BertModel (BERT-base, eager attention) forward over 8 x 128 random token ids, no
  padding; last hidden states and pooler;
- gpt2-decode: GPT2LMHeadModel (124M): the forward of a 16-token prompt picks the first token,
  then 64 greedy tokens, one single-token step each with the KV cache, are the generation part
  (tokens_per_s = 64 / its time);
- t5-base-generate: T5ForConditionalGeneration (t5-base shapes): the 16-token prompt is encoded,
  then 64 greedy decoder steps from the decoder start token;
- moe-decode: MixtralForCausalLM, hidden 1024, 4 layers, 16 heads sharing 4 key/value heads,
  8 experts of 3584, top-2, vocabulary 32000; decoded as gpt2-decode;
- moe-dense-decode: the same shapes as a dense LlamaForCausalLM with a 7168-wide SwiGLU (the
  same active parameters).
- smollm2-f32-decode: SmolLM2-135M shapes (LlamaForCausalLM, f32, random weights): 64 greedy
  single-token steps from an empty context (tg64, as llama-bench and tcat count it).
- vit-base: ViTModel (ViT-B/16 shapes, with its pooler, eager attention) forward over 8 random
  224 x 224 RGB images; last hidden states [8, 197, 768] and pooler.
- qwen3-decode: Qwen3ForCausalLM with Qwen3-0.6B's shapes; decoded as gpt2-decode;
- gemma3-decode: Gemma3ForCausalLM with Gemma 3 270M's shapes; decoded as gpt2-decode;
- deepseek-v2-decode: DeepseekV2ForCausalLM with DeepSeek-V2-Lite's layer shapes at 4 layers
  (the first dense) and 16 routed experts; decoded as gpt2-decode;
- modernbert-base: ModernBertModel (ModernBERT-base, sdpa attention) forward over 8 x 128
  random token ids; last hidden states.

With --json each workload prints one line, as `tcat bench models --json` does:
{"workload": ..., "median_s": ..., "tokens_per_s": ... (decoding only), "threads": N,
"peak_rss_mib": ...}; peak_rss_mib is the process's peak resident memory (VmHWM, reset before
each workload where Linux allows it). --threads sets torch.set_num_threads (default: torch's
own choice).
"""

import argparse
import json
import statistics
import sys
import time

import torch
import transformers
from transformers import (
    BertConfig,
    BertModel,
    DeepseekV2Config,
    DeepseekV2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    ModernBertConfig,
    ModernBertModel,
    Qwen3Config,
    Qwen3ForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
    ViTConfig,
    ViTModel,
)

PROMPT_TOKENS = 16
NEW_TOKENS = 64


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def greedy_decode(model, prompt):
    """Runs the prompt (if any) and NEW_TOKENS single-token steps; returns (total, generation) s."""
    start = time.perf_counter()
    past = None
    if prompt is not None:
        out = model(input_ids=prompt, use_cache=True)
        past = out.past_key_values
        token = out.logits[:, -1].argmax(-1, keepdim=True)
    else:
        token = torch.ones((1, 1), dtype=torch.long)
    token.tolist()
    generation = time.perf_counter()
    for _ in range(NEW_TOKENS):
        out = model(input_ids=token, past_key_values=past, use_cache=True)
        past = out.past_key_values
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        token.tolist()  # the step's host copy, as tcat's
    end = time.perf_counter()
    return end - start, end - generation


def seq2seq_decode(model, prompt):
    start = time.perf_counter()
    encoder_outputs = model.get_encoder()(input_ids=prompt)
    token = torch.full((1, 1), model.config.decoder_start_token_id, dtype=torch.long)
    past = None
    generation = time.perf_counter()
    for _ in range(NEW_TOKENS):
        out = model(encoder_outputs=encoder_outputs, decoder_input_ids=token, past_key_values=past, use_cache=True)
        past = out.past_key_values
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        token.tolist()
    end = time.perf_counter()
    return end - start, end - generation


def moe_config(**extra):
    return dict(vocab_size=32000, hidden_size=1024, num_hidden_layers=4, num_attention_heads=16,
                num_key_value_heads=4, head_dim=64, max_position_embeddings=32768, rope_theta=1e6,
                tie_word_embeddings=False, attn_implementation="eager", **extra)


def workload(name):
    """Builds the model; returns (run, counted tokens or None). run() returns (total, counted) s."""
    torch.manual_seed(0)
    if name == "bert-base":
        model = BertModel(BertConfig(attn_implementation="eager")).eval()
        ids = torch.randint(1, 30522, (8, 128))

        def run():
            start = time.perf_counter()
            model(input_ids=ids)
            total = time.perf_counter() - start
            return total, total

        return run, None
    if name == "gpt2-decode":
        model = GPT2LMHeadModel(GPT2Config(attn_implementation="eager")).eval()
        prompt = torch.randint(1, 50257, (1, PROMPT_TOKENS))
        return (lambda: greedy_decode(model, prompt)), NEW_TOKENS
    if name == "t5-base-generate":
        config = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
                          feed_forward_proj="relu", tie_word_embeddings=True, decoder_start_token_id=0,
                          attn_implementation="eager")
        model = T5ForConditionalGeneration(config).eval()
        prompt = torch.randint(1, 32128, (1, PROMPT_TOKENS))
        return (lambda: seq2seq_decode(model, prompt)), NEW_TOKENS
    if name == "moe-decode":
        model = MixtralForCausalLM(MixtralConfig(**moe_config(
            intermediate_size=3584, num_local_experts=8, num_experts_per_tok=2))).eval()
        prompt = torch.randint(1, 32000, (1, PROMPT_TOKENS))
        return (lambda: greedy_decode(model, prompt)), NEW_TOKENS
    if name == "moe-dense-decode":
        model = LlamaForCausalLM(LlamaConfig(**moe_config(intermediate_size=2 * 3584))).eval()
        prompt = torch.randint(1, 32000, (1, PROMPT_TOKENS))
        return (lambda: greedy_decode(model, prompt)), NEW_TOKENS
    if name == "smollm2-f32-decode":
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
            num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0, tie_word_embeddings=True,
            max_position_embeddings=8192, attn_implementation="eager")).eval()
        return (lambda: greedy_decode(model, None)), NEW_TOKENS
    if name == "vit-base":
        # ViT-B/16 (google/vit-base-patch16-224's shapes), ViTModel with its pooler.
        model = ViTModel(ViTConfig(attn_implementation="eager"), add_pooling_layer=True).eval()
        pixels = torch.rand((8, 3, 224, 224)) * 2 - 1

        def run():
            start = time.perf_counter()
            model(pixel_values=pixels)
            total = time.perf_counter() - start
            return total, total

        return run, None
    if name == "qwen3-decode":
        # Qwen/Qwen3-0.6B's shapes.
        model = Qwen3ForCausalLM(Qwen3Config(
            vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
            num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
            rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True, attn_implementation="eager")).eval()
        prompt = torch.randint(1, 151936, (1, PROMPT_TOKENS))
        return (lambda: greedy_decode(model, prompt)), NEW_TOKENS
    if name == "gemma3-decode":
        # google/gemma-3-270m's shapes: five sliding-window layers (512) per global one.
        model = Gemma3ForCausalLM(Gemma3TextConfig(
            vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
            num_attention_heads=4, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256,
            sliding_window=512, max_position_embeddings=32768, tie_word_embeddings=True,
            attn_implementation="eager")).eval()
        prompt = torch.randint(1, 262144, (1, PROMPT_TOKENS))
        return (lambda: greedy_decode(model, prompt)), NEW_TOKENS
    if name == "deepseek-v2-decode":
        # deepseek-ai/DeepSeek-V2-Lite's layers at 4 layers (the first dense) and 16 routed experts.
        model = DeepseekV2ForCausalLM(DeepseekV2Config(
            vocab_size=102400, hidden_size=2048, intermediate_size=10944, moe_intermediate_size=1408,
            num_hidden_layers=4, num_attention_heads=16, num_key_value_heads=16, n_shared_experts=2,
            n_routed_experts=16, num_experts_per_tok=6, first_k_dense_replace=1, kv_lora_rank=512,
            q_lora_rank=None, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, topk_method="greedy",
            norm_topk_prob=False, routed_scaling_factor=1.0, max_position_embeddings=163840,
            rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=40.0,
                                 original_max_position_embeddings=4096, beta_fast=32.0, beta_slow=1.0,
                                 mscale=0.707, mscale_all_dim=0.707),
            tie_word_embeddings=False, attn_implementation="eager")).eval()
        prompt = torch.randint(1, 102400, (1, PROMPT_TOKENS))
        return (lambda: greedy_decode(model, prompt)), NEW_TOKENS
    if name == "modernbert-base":
        model = ModernBertModel(ModernBertConfig(
            vocab_size=50368, hidden_size=768, num_hidden_layers=22, num_attention_heads=12, intermediate_size=1152,
            max_position_embeddings=8192, global_attn_every_n_layers=3, local_attention=128,
            attn_implementation="sdpa")).eval()
        ids = torch.randint(1, 50368, (8, 128))

        def run():
            start = time.perf_counter()
            model(input_ids=ids)
            total = time.perf_counter() - start
            return total, total

        return run, None
    raise KeyError(name)


WORKLOADS = ["bert-base", "gpt2-decode", "smollm2-f32-decode", "t5-base-generate", "moe-decode",
             "moe-dense-decode", "vit-base", "qwen3-decode", "gemma3-decode", "deepseek-v2-decode",
             "modernbert-base"]


@torch.inference_mode()
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help="comma-separated, from: " + ", ".join(WORKLOADS))
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs after one warm-up (median reported)")
    parser.add_argument("--json", action="store_true", help="one JSON line per workload")
    args = parser.parse_args()
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown or not names:
        sys.exit(f"error: unknown workload(s) {unknown}; expected some of {', '.join(WORKLOADS)}")
    if args.repeats < 1:
        sys.exit("error: --repeats must be at least 1")
    if args.threads is not None:
        if args.threads < 1:
            sys.exit("error: --threads must be at least 1")
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {threads} threads", file=sys.stderr)
    for name in names:
        reset_peak_rss()
        run, tokens = workload(name)
        run()
        runs = [run() for _ in range(args.repeats)]
        median_s = statistics.median(r[0] for r in runs)
        line = {"workload": name, "median_s": median_s}
        if tokens is not None:
            line["tokens_per_s"] = tokens / statistics.median(r[1] for r in runs)
        line["threads"] = threads
        line["peak_rss_mib"] = peak_rss_mib()
        del run
        if args.json:
            print(json.dumps(line), flush=True)
        else:
            rate = f"{line['tokens_per_s']:.1f} tokens/s" if tokens is not None else ""
            print(f"{name:<20} {median_s:8.3f} s  {rate}", flush=True)


if __name__ == "__main__":
    main()
