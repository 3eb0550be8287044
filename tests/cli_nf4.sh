#!/usr/bin/env bash
# model.quantized=nf4 through the binary, on the HF fixture folder tests/fixtures/hf_tiny_llama:
#  - a LoRA run prints the NF4 base's size beside the fp32 one and records nf4 in its config.yaml;
#  - `mpiexec -n 2` gives the 1-rank accum=2 loss curve within 1e-5;
#  - a run checkpointed at step 4 and resumed to step 8 matches an uninterrupted run bit for bit, and a
#    resume that would load the base dense instead is refused by name;
#  - RoSA trains on the NF4 base; `peftc merge` folds the adapter into the dense folder;
#  - model.quantized=true on the folder is refused, pointing at nf4.
set -uo pipefail
peftc=$1
here=$(cd "$(dirname "$0")/.." && pwd)
. "$(dirname "$0")/lib_cli.sh"
export OMP_NUM_THREADS=1

hf=$here/tests/fixtures/hf_tiny_llama
# A constant schedule, so that a run to step 4 continued to step 8 follows the 8-step run.
base="model.path=$hf model.quantized=nf4 data.task=reverse train.seq_len=24 data.max_digits=6 train.micro_batch=2
      sched.type=constant sched.warmup=0 optim.lr=1e-2 train.eval_every=0 train.eval_batches=2 eval.examples=0
      output.log_every=1 data.cache_dir="
train_rows() { grep '^train,' "$1/metrics.csv" | cut -d, -f1-5; }

"$peftc" train $base train.steps=8 train.accum=2 output.dir="$dir/ref" >"$dir/ref.log" 2>&1
check "NF4 LoRA run exits 0" "[ $? -eq 0 ]"
check "it prints the NF4 base beside the fp32 one" \
  "grep -q 'base weights .* MiB quantized (NF4 blocks) instead of .* MiB fp32' '$dir/ref.log'"
check "its config.yaml records quantized: nf4" "grep -q 'quantized: nf4' '$dir/ref/config.yaml'"

"$mpiexec" -n 2 --oversubscribe "$peftc" train $base train.steps=8 output.dir="$dir/np2" >"$dir/np2.log" 2>&1
check "2-rank NF4 run exits 0" "[ $? -eq 0 ] && grep -q 'on 2 rank(s)' '$dir/np2.log'"
check "2 ranks give the 1-rank accum=2 curve within 1e-5" "same_curve '$dir/ref' '$dir/np2' 1e-5 train,eval"

"$peftc" train $base train.steps=4 train.accum=2 checkpoint.every=4 output.dir="$dir/res" >"$dir/res.log" 2>&1
check "the first half exits 0 with a checkpoint" "[ $? -eq 0 ] && [ -s '$dir/res/checkpoints/step_4.h5' ]"
"$peftc" train $base train.steps=8 train.accum=2 checkpoint.every=4 checkpoint.resume=auto \
  model.quantized=false checkpoint.allow_changes=train.steps output.dir="$dir/res" >>"$dir/res.log" 2>&1
check "resuming on the dense base is refused by name" "[ $? -ne 0 ] && grep -q 'model.quantized: nf4 -> false' '$dir/res.log'"
"$peftc" train $base train.steps=8 train.accum=2 checkpoint.every=4 checkpoint.resume=auto \
  checkpoint.allow_changes=train.steps output.dir="$dir/res" >>"$dir/res.log" 2>&1
check "the resume exits 0 from step 4" "[ $? -eq 0 ] && grep -q 'resumed from .*step_4.h5 at step 4' '$dir/res.log'"
check "and its steps are the uninterrupted run's, bit for bit" "diff <(train_rows '$dir/ref') <(train_rows '$dir/res')"

"$peftc" train $base method.name=rosa rosa.density=0.05 rosa.warmup=2 train.steps=6 output.dir="$dir/rosa" \
  >"$dir/rosa.log" 2>&1
check "RoSA on the NF4 base exits 0" "[ $? -eq 0 ] && grep -q 'step 6/6' '$dir/rosa.log'"

"$peftc" merge --model "$hf" --adapter "$dir/ref/adapter" --out "$dir/merged" >"$dir/merge.log" 2>&1
check "merge folds the NF4-trained adapter into the dense folder" \
  "[ $? -eq 0 ] && [ -s '$dir/merged/model.safetensors' ] && [ -s '$dir/merged/config.json' ]"

"$peftc" train $base model.quantized=true train.steps=1 output.dir="$dir/true" >"$dir/true.log" 2>&1
check "model.quantized=true on an HF folder is refused, naming nf4" \
  "[ $? -ne 0 ] && grep -q 'is an HF folder: model.quantized=true' '$dir/true.log' && grep -q 'model.quantized=nf4' '$dir/true.log'"

finish ref.log np2.log res.log rosa.log merge.log true.log
