#!/usr/bin/env bash
# The same LoRA training step on this machine's CPU in peftc and in PyTorch + PEFT, in fp32 and in bf16
# (peftc train.precision=bf16; PyTorch bf16 autocast), alternated in one run on the same shapes and
# threads: SmolLM2-135M's shape at seq 256, batch 4, and LLaMA-3.2-1B's at seq 512, batch 1 (random
# weights, LoRA r=16 alpha 32 on every linear layer, no dropout, AdamW). Then one step at seq 8192,
# batch 1 (SmolLM2's shape) for peak memory. Prints a Markdown table: tokens/s, each peftc figure over
# PyTorch's faster precision, useful GFLOP/s and their share of the precision's measured matmul peak
# (bench_step), peak RSS. On a CPU without bf16 hardware PyTorch's bf16 runs one step at SmolLM2's
# shape only (see below). Needs a built tree (tools/build.sh) and a python3 with torch, transformers
# and peft (PYTHON=/path/to/python to choose one). A run that fails or exceeds LIMIT seconds (default
# 1800) shows as "-".
# Usage: bench/cpu_vs_torch.sh [threads]
set -uo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
py=${PYTHON:-python3}
limit=${LIMIT:-1800}
export OMP_NUM_THREADS=$threads
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

lora="lora.r=16 lora.alpha=32 lora.dropout=0 lora.targets=all-linear train.threads=$threads"
declare -A shape=(
  [smollm2]=""
  [llama1b]="model.hidden=2048 model.intermediate=8192 model.layers=16 model.heads=32 model.kv_heads=8
             model.vocab=128256 model.rope_theta=500000"
)

# peftc NAME SHAPE PREC SEQ BATCH STEPS: bench_step's figures into $log/NAME.
peftc() {
  timeout "$limit" build/bench_step $lora ${shape[$2]} train.precision="$3" train.seq_len="$4" \
    train.micro_batch="$5" train.steps="$6" >"$log/$1" 2>&1
  tail -3 "$log/$1" >&2
}
# torch NAME SHAPE DTYPE SEQ BATCH STEPS: torch_lora_cpu.py's figures into $log/NAME.
torch() {
  local warm=1
  [ "$6" -le 1 ] && warm=0
  timeout "$limit" "$py" bench/torch_lora_cpu.py --shape "$2" --dtype "$3" --seq "$4" --batch "$5" \
    --steps "$6" --warmup $warm --threads "$threads" >"$log/$1" 2>&1
  tail -2 "$log/$1" >&2
}
num() { sed -n "$2" "$log/$1" 2>/dev/null | head -1; }
tps() { case $1 in p*) num "$1" 's/^bench_step: \([0-9.]*\) tokens\/s.*/\1/p' ;;
                   *) num "$1" 's/^torch: tokens\/s \([0-9.]*\).*/\1/p' ;; esac; }
rss() { case $1 in p*) num "$1" 's/.*peak RSS \([0-9.]*\) GiB.*/\1/p' ;;
                   *) num "$1" 's/.*peak RSS \([0-9.]*\) GiB.*/\1/p' ;; esac; }
useful() { num "$1" 's/^bench_step: .*, \([0-9.]*\) useful GFLOP\/s.*/\1/p'; }
peak() { num "$1" 's/.*matmul peak here \([0-9.]*\) GFLOP\/s.*/\1/p'; }
share() { num "$1" 's/.*useful share \([0-9.]*\)%.*/\1/p'; }

# Without bf16 hardware (AVX512-BF16 or AMX) PyTorch's bf16 autocast is emulated, about 50x slower than
# its fp32 on such a CPU: it then gets one step at SmolLM2's shape only, and its other cells show "-".
native=0
grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo && native=1
echo "cpu_vs_torch: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $threads thread(s)," \
  "bf16 hardware: $([ $native = 1 ] && echo yes || echo no), $(date -u +%F)" >&2
for s in smollm2 llama1b; do
  if [ $s = smollm2 ]; then seq=256 b=4 n=5; else seq=512 b=1 n=3; fi
  # alternated: peftc and PyTorch take turns, so a change in the machine's load hits both
  peftc "p-$s-fp32" $s fp32 $seq $b $n
  torch "t-$s-fp32" $s fp32 $seq $b $n
  peftc "p-$s-bf16" $s bf16 $seq $b $n
  if [ $native = 1 ]; then torch "t-$s-bf16" $s bf16 $seq $b $n
  elif [ $s = smollm2 ]; then torch "t-$s-bf16" $s bf16 $seq $b 1; fi
done
for x in fp32 bf16; do
  peftc "p-long-$x" smollm2 $x 8192 1 1
  [ $x = fp32 ] || [ $native = 1 ] && torch "t-long-$x" smollm2 $x 8192 1 1
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2fx", a / b }'; }
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 > b + 0) ? a : b }'; }
or_dash() { echo "${1:--}"; }
echo
echo "| shape | run | tokens/s | vs PyTorch's faster | useful GFLOP/s | matmul peak GFLOP/s | share of peak | peak RSS GiB |"
echo "|---|---|---|---|---|---|---|---|"
for s in smollm2 llama1b; do
  tb=$(best "$(tps t-$s-fp32)" "$(tps t-$s-bf16)")
  label=$([ $s = smollm2 ] && echo "SmolLM2-135M, seq 256, batch 4" || echo "LLaMA-3.2-1B, seq 512, batch 1")
  for x in fp32 bf16; do
    echo "| $label | peftc $x | $(or_dash "$(tps p-$s-$x)") | $(ratio "$(tps p-$s-$x)" "$tb") | $(or_dash "$(useful p-$s-$x)") | $(or_dash "$(peak p-$s-$x)") | $(or_dash "$(share p-$s-$x)")% | $(or_dash "$(rss p-$s-$x)") |"
  done
  for x in fp32 bf16; do
    echo "| $label | PyTorch + PEFT $x | $(or_dash "$(tps t-$s-$x)") | | | | | $(or_dash "$(rss t-$s-$x)") |"
  done
done
for x in fp32 bf16; do
  echo "| SmolLM2-135M, seq 8192, batch 1 (one step) | peftc $x | | | | | | $(or_dash "$(rss p-long-$x)") |"
  echo "| SmolLM2-135M, seq 8192, batch 1 (one step) | PyTorch + PEFT $x | | | | | | $(or_dash "$(rss t-long-$x)") |"
done
