#!/usr/bin/env bash
# RoSA and SpA through the binary: LoRA warm-up, Fisher collection, masks saved, restart from step 0;
# the two-launch recipe (a second run loading the saved masks) gives exactly the restart run's curve;
# 2 ranks give the 1-rank-with-accum=2 masks byte for byte and its loss curve; the trainable count is
# LoRA's plus the nonzeros; the adapter folder holds the PEFT LoRA part and the sparse deltas.
set -uo pipefail
peftc=$1
. "$(dirname "$0")/lib_cli.sh"
export OMP_NUM_THREADS=1

base="model.path= data.task=reverse train.steps=12 sched.warmup=2 train.eval_every=0 train.eval_batches=2
      eval.examples=0 optim.lr=5e-3 rosa.density=0.02 rosa.warmup=3 rosa.grad_steps=2"
trainable() { sed -n 's/.*trainable \([0-9]*\) (.*/\1/p' "$1" | head -1; }

"$peftc" train $base method.name=rosa output.dir="$dir/r1" >"$dir/r1.log" 2>&1
check "rosa run exits 0" "[ $? -eq 0 ]"
check "rosa makes masks after warm-up + collection, then restarts" "grep -q 'rosa: masks from 2 micro-batches after step 5' '$dir/r1.log'"
# LoRA r=8 on the toy model (74752) plus floor(0.02 * in * out) per module: q,o 327; k,v 163; gate,up,down 901.
check "trainable = LoRA + nonzeros" "[ \"\$(trainable '$dir/r1.log')\" = $((74752 + 4 * (2 * 327 + 2 * 163 + 3 * 901))) ]"
check "adapter folder has the PEFT part and the sparse deltas" \
  "[ -s '$dir/r1/adapter/adapter_model.safetensors' ] && [ -s '$dir/r1/adapter/rosa_sparse.safetensors' ]"

"$peftc" train $base method.name=rosa rosa.mask_path="$dir/r1/rosa_masks.safetensors" output.dir="$dir/r2" >"$dir/r2.log" 2>&1
check "second launch loads the masks instead of making them" "[ $? -eq 0 ] && ! grep -q 'rosa: masks from' '$dir/r2.log'"
check "two launches equal one run with restart, bit for bit" "cmp -s <(cut -d, -f1-6 '$dir/r1/metrics.csv') <(cut -d, -f1-6 '$dir/r2/metrics.csv')"

"$mpiexec" -n 2 --oversubscribe "$peftc" train $base method.name=rosa output.dir="$dir/np2" >"$dir/np2.log" 2>&1
check "2-rank rosa exits 0" "[ $? -eq 0 ]"
"$peftc" train $base method.name=rosa train.accum=2 output.dir="$dir/acc2" >"$dir/acc2.log" 2>&1
check "2-rank masks equal the 1-rank masks (accum=2), byte for byte" \
  "cmp -s '$dir/np2/rosa_masks.safetensors' '$dir/acc2/rosa_masks.safetensors'"
check "2 ranks follow the 1-rank curve" "same_curve '$dir/np2' '$dir/acc2' 1e-5 train,eval"

"$peftc" train $base method.name=spa output.dir="$dir/spa" >"$dir/spa.log" 2>&1
check "spa trains the sparse delta alone" \
  "[ $? -eq 0 ] && [ \"\$(trainable '$dir/spa.log')\" = $((4 * (2 * 327 + 2 * 163 + 3 * 901))) ] && [ ! -e '$dir/spa/adapter/adapter_model.safetensors' ] && [ -s '$dir/spa/adapter/rosa_sparse.safetensors' ]"
"$peftc" train $base method.name=rosa rosa.restart=false output.dir="$dir/single" >"$dir/single.log" 2>&1
check "single-run variant continues after the mask" "[ $? -eq 0 ] && grep -q 'rosa: masks from' '$dir/single.log' && ! grep -q 'training again' '$dir/single.log'"
"$peftc" train $base method.name=spa rosa.density=0 >"$dir/spa0.log" 2>&1
check "spa without density is a configuration error" "[ $? -eq 2 ] && grep -q 'rosa.density' '$dir/spa0.log'"

finish r1.log r2.log np2.log acc2.log spa.log single.log
