#!/usr/bin/env python3
"""PyTorch + PEFT CPU baseline for bench_step's LoRA training step: SmolLM2-135M's shape (hidden 576,
intermediate 1536, 30 layers, 9 heads, 3 kv heads, vocab 49152, tied embeddings, rope_theta 100000) or
LLaMA-3.2-1B's (hidden 2048, intermediate 8192, 16 layers, 32 heads, 8 kv heads, vocab 128256, tied,
rope_theta 500000), random weights, LoRA r=16 alpha 32 on q k v o gate up down, dropout 0, AdamW lr 1e-4,
sdpa attention; float32, or bf16 autocast (fp32 master weights, matmuls in bf16: PyTorch's mixed
precision). One step is forward + HF's causal-LM loss + backward + optimizer step + zero_grad.

    pip install torch transformers peft
    python3 bench/torch_lora_cpu.py [--shape smollm2|llama1b] [--dtype fp32|bf16] [--seq 256]
                                    [--batch 4] [--steps 6] [--warmup 2] [--threads N]

Runs --steps steps and times those after the first --warmup (which pay for allocation and page
faults); prints per-step times on stderr, then on stdout:
    torch: tokens/s <X> | step_ms <Y> | batch <B> seq <T> | threads <N> | <dtype> | peak RSS <G> GiB
where step_ms is the mean of the timed steps and tokens/s = batch * seq / that mean.
"""
import argparse
import os
import resource
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {
    "smollm2": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0),
    "llama1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                    num_attention_heads=32, num_key_value_heads=8, rope_theta=500000.0),
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="smollm2")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=6, help="steps run in all, warmup included")
    p.add_argument("--warmup", type=int, default=2, help="leading steps left out of the timing")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()
    if a.batch < 1 or a.threads < 1 or a.seq < 2 or a.warmup < 0 or a.steps <= a.warmup:
        p.error("need batch >= 1, threads >= 1, seq >= 2, 0 <= warmup < steps")
    return a


def build_model(shape, seq):
    cfg = LlamaConfig(**SHAPES[shape], rms_norm_eps=1e-5, tie_word_embeddings=True,
                      max_position_embeddings=max(8192, seq), use_cache=False, attn_implementation="sdpa",
                      torch_dtype="float32")
    model = LlamaForCausalLM(cfg).float()
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, lora)
    model.train()
    return model


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.shape, args.seq)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    n_base = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    print(f"torch {torch.__version__}: {n_base} base params, {sum(p.numel() for p in trainable)} trainable, "
          f"B={args.batch} T={args.seq}, {args.dtype}, {torch.get_num_threads()} thread(s)", file=sys.stderr)

    tokens = torch.randint(0, SHAPES[args.shape]["vocab_size"], (args.batch, args.seq))
    times = []
    for step in range(args.steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
            loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        print(f"  step {step + 1}: loss {loss.item():.4f}, {1e3 * dt:.0f} ms", file=sys.stderr)
        if step >= args.warmup:
            times.append(dt)
    step_s = sum(times) / len(times)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1048576.0
    # The fastest step shows what an idle machine gives when other jobs share the cores.
    print(f"  mean of steps {args.warmup + 1}..{args.steps}, fastest {1e3 * min(times):.0f} ms "
          f"({args.batch * args.seq / min(times):.1f} tokens/s)", file=sys.stderr)
    print(f"torch: tokens/s {args.batch * args.seq / step_s:.1f} | step_ms {1e3 * step_s:.0f} | batch {args.batch} "
          f"seq {args.seq} | threads {torch.get_num_threads()} | {args.dtype} | peak RSS {peak_gib:.2f} GiB")


if __name__ == "__main__":
    main()
