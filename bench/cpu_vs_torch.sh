#!/usr/bin/env bash
# The same LoRA training step on this machine's CPU in peftc and in PyTorch + PEFT: SmolLM2-135M's
# shape (random weights), seq 256, batch 4, r=16 (alpha 32, no dropout) on every linear layer, fp32,
# AdamW. Prints both tokens/s and the ratio. Needs a built tree (tools/build.sh) and a python3 with
# torch, transformers and peft (PYTHON=/path/to/python to choose one).
# Usage: bench/cpu_vs_torch.sh [threads]    (default: all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
py=${PYTHON:-python3}
export OMP_NUM_THREADS=$threads
peftc=$(build/bench_step lora.r=16 lora.alpha=32 lora.dropout=0 train.steps=6 train.threads="$threads" 2>&1 |
        tee /dev/stderr | sed -n 's/^bench_step: \([0-9.]*\) tokens\/s.*/\1/p')
torch=$("$py" bench/torch_lora_cpu.py --batch 4 --steps 6 --warmup 2 --threads "$threads" 2>&1 |
        tee /dev/stderr | sed -n 's/^torch: tokens\/s \([0-9.]*\).*/\1/p')
awk -v p="$peftc" -v t="$torch" -v n="$threads" \
    'BEGIN { printf "cpu lora step (SmolLM2-135M shape, seq 256, batch 4, r=16, %d threads): peftc %.1f tokens/s, torch+peft %.1f tokens/s, ratio %.2fx\n", n, p, t, p / t }'
