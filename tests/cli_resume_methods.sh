#!/usr/bin/env bash
# Resume is exact for every method, not only LoRA and RoSA (cli_resume). A run of 20 steps that
# checkpoints at step 10 is rolled back to that checkpoint (later checkpoints, `latest` and the outputs
# removed, as if killed just after it) and run again with the same command (checkpoint.resume=auto).
# Its loss curve, its step-20 checkpoint and its adapter, where the method saves one, must equal the
# uninterrupted run's byte for byte. This covers the state that is not in the trainable arena: GMT's
# masks, SpA's Fisher mask, SLoRA/NLoRA/IntTune's frozen factors, EigenLoRAx's basis, full
# fine-tuning's whole model.
set -uo pipefail
peftc=$1
. "$(dirname "$0")/lib_cli.sh"
export OMP_NUM_THREADS=1

base="model.path= data.task=reverse train.steps=20 sched.warmup=2 train.eval_every=5 train.eval_batches=2
      eval.examples=0 optim.lr=5e-3 checkpoint.every=10 checkpoint.resume=auto output.log_every=1"

# EigenLoRAx's basis from two short LoRAs on other tasks.
for task in copy add; do
  "$peftc" train model.path= data.task=$task train.steps=6 sched.warmup=1 eval.examples=0 output.dir="$dir/src-$task" \
    >"$dir/src-$task.log" 2>&1
done
"$peftc" eigen build --adapters "$dir/src-copy/adapter,$dir/src-add/adapter" --k 8 --random 4 --seed 1 \
  --out "$dir/basis.safetensors" >"$dir/basis.log" 2>&1
check "the EigenLoRAx basis builds" "[ $? -eq 0 ]"

declare -A extra=(
  [full]="" [gmt]="gmt.mask_ratio=0.5" [slora]="" [nlora]="" [inttune]=""
  [eigenlora]="eigenlora.basis=$dir/basis.safetensors" [spa]="rosa.warmup=3 rosa.grad_steps=2"
)
methods="full gmt slora nlora inttune eigenlora spa"
for m in $methods; do
  d=$dir/$m
  "$peftc" train $base method.name=$m ${extra[$m]} output.dir="$d" >"$d.log" 2>&1
  check "$m: the uninterrupted run exits 0" "[ $? -eq 0 ]"
  # Keep the uninterrupted run's results, then roll the folder back to just after step 10's checkpoint,
  # with the metrics rows a killed run would have written past it.
  mv "$d/checkpoints/step_20.h5" "$d.ref.h5"
  mv "$d/metrics.csv" "$d.ref.csv"
  [ -d "$d/adapter" ] && mv "$d/adapter" "$d.ref-adapter"
  rm -f "$d/checkpoints/latest" "$d/summary.json"
  awk -F, 'NR == 1 || $2 <= 12' "$d.ref.csv" >"$d/metrics.csv"
  "$peftc" train $base method.name=$m ${extra[$m]} output.dir="$d" >>"$d.log" 2>&1
  check "$m: the resumed run exits 0" "[ $? -eq 0 ]"
  check "$m: it resumed at step 10" "grep -q 'resumed from .*step_10.h5 at step 10 of 20' '$d.log'"
  # Every column but the timings: loss, lr, gradient norm, tokens, bytes reduced.
  check "$m: loss curve bit-identical" "cmp -s <(cut -d, -f1-6,9 '$d.ref.csv') <(cut -d, -f1-6,9 '$d/metrics.csv')"
  # The same output.dir makes the files comparable byte for byte: values, Adam moments, method state.
  check "$m: step 20's checkpoint byte-identical" "cmp -s '$d.ref.h5' '$d/checkpoints/step_20.h5'"
  if [ -d "$d.ref-adapter" ]; then
    check "$m: adapter byte-identical" "diff -r '$d.ref-adapter' '$d/adapter' >/dev/null"
  fi
done

finish basis.log $(printf '%s.log ' $methods)
