#!/usr/bin/env python3
"""Writes an HF folder shaped like LLaMA-3.2-1B-Instruct (its config.json, llama3 RoPE scaling, tied
embeddings) with random weights, for trying a run at that size where the real weights cannot be
fetched. The tokenizer is copied from TOKENIZER_JSON (any LLaMA-3-style tokenizer.json; its vocabulary
must not exceed 128,256), with the tokenizer_config.json beside it when there is one.

    /work/venv-fixtures/bin/python tools/llama32_shaped.py OUT_DIR TOKENIZER_JSON [--layers N]
"""
import argparse
import os
import shutil

import torch
from transformers import LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("tokenizer")
p.add_argument("--layers", type=int, default=16)
a = p.parse_args()
cfg = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=a.layers,
                  num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
                  rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True, bos_token_id=128000,
                  eos_token_id=[128001, 128008, 128009],
                  rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                    original_max_position_embeddings=8192))
torch.manual_seed(0)
LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(a.out, safe_serialization=True)
shutil.copy(a.tokenizer, f"{a.out}/tokenizer.json")
config = os.path.join(os.path.dirname(a.tokenizer), "tokenizer_config.json")
if os.path.exists(config):
    shutil.copy(config, f"{a.out}/tokenizer_config.json")
print(f"{a.out}: LLaMA-3.2-1B-shaped, {a.layers} layers, random weights")
