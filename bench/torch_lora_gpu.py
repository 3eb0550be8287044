#!/usr/bin/env python3
"""PyTorch + PEFT GPU baseline for the LoRA training step that bench_step times with
train.device=cuda: r=16 (alpha 32, no dropout) on q k v o gate up down, random weights, AdamW, SDPA
attention, bf16 weights and activations (--dtype float32 for an fp32 comparison).

Shapes: --shape smollm2 (hidden 576, intermediate 1536, 30 layers, 9/3 heads, vocab 49152, tied) or
--shape llama1b (hidden 2048, intermediate 8192, 16 layers, 32/8 heads, vocab 128256, tied).

    pip install torch transformers peft
    python3 bench/torch_lora_gpu.py --shape llama1b --seq 1024 --batch 8 [--steps 12 --warmup 3]

--device cpu runs the same code on the CPU (peak memory: the process's peak RSS), which is how
tools/gpu-check.sh dryrun checks this script on a machine without a GPU.

Prints on stdout:
    torch: tokens/s <X> | step_ms <Y> | peak_mem_gib <M> | useful_tflops <F> | mfu <U> | bf16 matmul peak <P> TFLOP/s
useful FLOPs per token = 4N (forward + input gradient of the N matrix weights, LM head included)
+ 6 x adapter parameters + causal attention (3 x 2 x 2 x L x NH x HD x T / 2); MFU divides by the bf16
matmul throughput measured here on a 8192^3 GEMM.
"""
import argparse
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
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    a = p.parse_args()
    if a.steps <= a.warmup:
        p.error("--steps must exceed --warmup")
    return a


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak_tflops(dtype, device):
    n, reps = (8192, 20) if device == "cuda" else (512, 3)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e12


def useful_flops_per_token(cfg, n_adapter, seq):
    C, I, L, V = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    HD = C // cfg.num_attention_heads
    q, kv = cfg.num_attention_heads * HD, cfg.num_key_value_heads * HD
    n = L * (q * C + 2 * kv * C + C * q + 3 * I * C) + V * C  # matrices + LM head
    attn = 3 * 2 * 2 * L * cfg.num_attention_heads * HD * seq / 2
    return 4 * n + 6 * n_adapter + attn


def main():
    args = parse_args()
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    cfg = LlamaConfig(**SHAPES[args.shape], rms_norm_eps=1e-5, tie_word_embeddings=True,
                      max_position_embeddings=max(8192, args.seq), use_cache=False, attn_implementation="sdpa")
    dev = args.device
    model = LlamaForCausalLM(cfg).to(device=dev, dtype=dtype)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, lora)
    for p in model.parameters():  # the trainable arena in fp32, as peftc keeps it
        if p.requires_grad:
            p.data = p.data.float()
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    n_adapter = sum(p.numel() for p in trainable)
    tokens = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device=dev)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(args.steps):
        sync(dev)
        t0 = time.perf_counter()
        with torch.autocast(dev, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(dev)
        dt = time.perf_counter() - t0
        print(f"  step {step + 1}: loss {loss.item():.4f}, {1e3 * dt:.1f} ms", file=sys.stderr)
        if step >= args.warmup:
            times.append(dt)
    step_s = sum(times) / len(times)
    tps = args.batch * args.seq / step_s
    if dev == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2 ** 30
        name = torch.cuda.get_device_name()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        name = "cpu"
    useful = tps * useful_flops_per_token(cfg, n_adapter, args.seq) / 1e12
    mm = matmul_peak_tflops(torch.bfloat16 if dev == "cuda" else dtype, dev)
    print(f"torch: tokens/s {tps:.0f} | step_ms {1e3 * step_s:.1f} | peak_mem_gib {peak:.2f} | useful_tflops "
          f"{useful:.1f} | mfu {useful / mm:.3f} | bf16 matmul peak {mm:.1f} TFLOP/s "
          f"| {args.shape} B={args.batch} T={args.seq} {args.dtype} on {name}")


if __name__ == "__main__":
    main()
