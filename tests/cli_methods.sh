#!/usr/bin/env bash
# Every method through the binary, from key=value overrides and from a YAML file, on 1 and 2 ranks:
# the trainable count printed at start equals the method's formula, the 2-rank run's loss curve equals
# the 1-rank run with accum=2, and the adapter methods save a PEFT folder that reloads (lora.init_from)
# with the same held-out loss. EigenLoRAx gets its basis from two LoRAs trained on other tasks; RoSA,
# SpA and PiSSA train and lower the held-out loss. On a GGUF base, full fine-tuning and GMT save
# model.gguf, and `peftc merge --out X.gguf` writes one.
# PEFTC_PRECISION=bf16 runs all of it with train.precision=bf16 (the cli_methods_bf16 test).
set -uo pipefail
peftc=$1
. "$(dirname "$0")/lib_cli.sh"
export OMP_NUM_THREADS=1

# The random toy model: hidden 128, q 128, k/v 64 (4 heads, 2 kv heads), intermediate 352, 4 layers.
prec=${PEFTC_PRECISION:-fp32}
base="model.path= data.task=reverse train.steps=8 sched.warmup=2 train.eval_every=0 train.eval_batches=2
      eval.examples=0 optim.lr=5e-3 train.precision=$prec"
# 2 ranks against 1 rank with accum=2: the same sums in another order. In fp32 (OpenBLAS, whose
# results do not depend on how the batch is split) the curves agree to 1e-5; in bf16 oneDNN's kernels
# may block the accumulating products differently, and GMT's mask choice amplifies 1e-7 differences
# about a hundredfold over 8 steps, so 1e-3 there.
# An adapter saved as plain LoRA and reloaded gives the run's held-out loss: to its 4 printed decimals
# in fp32; in bf16 the reloaded two-matrix form rounds other intermediates (SLoRA's x A^T N^T becomes
# x A^T (B N)^T), so to 2e-3 relative there.
tol=1e-5 eval_tol=0
[ "$prec" = bf16 ] && tol=1e-3 eval_tol=2e-3
r=8 layers=4
# sum over the 7 modules of (in + out): q 128+128, k 128+64, v 128+64, o 128+128, gate/up 128+352, down 352+128
io=$((256 + 192 + 192 + 256 + 480 + 480 + 480))
declare -A want=(
  [lora]=$((layers * r * io))
  [slora]=$((layers * (r * io + 7 * r * r)))
  [nlora]=$((layers * (r * io + 7 * r * r)))
  [inttune]=$((layers * 7 * r * r))
  [full]=746624
  [gmt]=746624
)

trainable() { sed -n 's/.*trainable \([0-9]*\) (.*/\1/p' "$1" | head -1; }
# summary_ok FILE METHOD TRAINABLE RANKS LOG: summary.json agrees with the run's banner and final line.
summary_ok() {
  python3 - "$@" <<'PY'
import json, re, sys
path, method, trainable, ranks, log = sys.argv[1:]
s = json.load(open(path))
final = re.search(r"held-out loss ([0-9.]+) -> ([0-9.]+)", open(log).read())
assert s["method"] == method and s["trainable"] == int(trainable) and s["ranks"] == int(ranks), s
assert s["exact_match_after"] is None and s["train_seconds"] > 0 and s["wall_seconds"] >= s["train_seconds"], s
assert "%.4f" % s["eval_loss_last"] == final.group(2), (s["eval_loss_last"], final.group(2))
PY
}
heldout() { sed -n 's/.*held-out loss [0-9.]* -> \([0-9.]*\).*/\1/p' "$1"; }
# same_heldout EVAL_LOG TRAIN_LOG: `peftc eval` reports the training run's final held-out loss, to eval_tol.
same_heldout() {
  local a b
  a=$(eval_loss "$1")
  b=$(heldout "$2")
  awk -v a="$a" -v b="$b" -v t="$eval_tol" 'BEGIN { exit !(a != "" && b != "" && (a - b) ^ 2 <= (t * b) ^ 2) }'
}

for m in lora slora nlora inttune full gmt; do
  "$peftc" train $base method.name=$m output.dir="$dir/$m-1" >"$dir/$m-1.log" 2>&1
  check "$m: 1-rank run exits 0" "[ $? -eq 0 ]"
  check "$m: trainable count ${want[$m]}" "[ \"\$(trainable '$dir/$m-1.log')\" = ${want[$m]} ]"
  "$mpiexec" -n 2 --oversubscribe "$peftc" train $base method.name=$m output.dir="$dir/$m-2" >"$dir/$m-2.log" 2>&1
  check "$m: 2-rank run exits 0" "[ $? -eq 0 ]"
  check "$m: summary.json holds the method, ranks, count and final loss" \
    "summary_ok '$dir/$m-2/summary.json' $m ${want[$m]} 2 '$dir/$m-2.log'"
  "$peftc" train $base method.name=$m train.accum=2 output.dir="$dir/$m-a" >"$dir/$m-a.log" 2>&1
  check "$m: 2 ranks give the loss curve of 1 rank with accum=2" "same_curve '$dir/$m-2' '$dir/$m-a' $tol"
done

# From a YAML file (SLoRA with the pinv core of NLoRA's init, as a file user would write it).
printf 'model: {path: ""}\nmethod: {name: nlora}\nnlora: {core: pinv}\nlora: {r: 4, targets: [q, v]}\ntrain: {steps: 4, seq_len: 32}\nsched: {warmup: 1}\ndata: {task: reverse}\neval: {examples: 0}\n' >"$dir/nlora.yaml"
"$peftc" train "$dir/nlora.yaml" output.dir="$dir/yaml" >"$dir/yaml.log" 2>&1
check "YAML nlora run exits 0" "[ $? -eq 0 ]"
check "YAML run counts q,v at r=4: $((layers * (4 * (256 + 192) + 2 * 16)))" \
  "[ \"\$(trainable '$dir/yaml.log')\" = $((layers * (4 * (256 + 192) + 2 * 16))) ]"

# Adapter methods save PEFT folders that reload as LoRA with the same held-out loss.
for m in slora inttune; do
  "$peftc" eval $base lora.init_from="$dir/$m-1/adapter" >"$dir/$m-eval.log" 2>&1
  check "$m: saved adapter reloads with the run's held-out loss" \
    "same_heldout '$dir/$m-eval.log' '$dir/$m-1.log'"
done

# The sparse methods (RoSA: masks from a warm-up, then a fresh run; SpA: sparse only) and PiSSA.
for m in rosa spa pissa; do
  "$peftc" train $base method.name=$m rosa.density=0.02 rosa.warmup=3 rosa.grad_steps=2 output.dir="$dir/$m-1" >"$dir/$m-1.log" 2>&1
  check "$m: trains ($prec) and lowers the held-out loss" \
    "[ \$? -eq 0 ] && awk '/held-out loss .* -> /{ split(\$0, w, \"held-out loss \"); split(w[2], v, \" \"); n++; ok = v[3] + 0 < v[1] + 0 } END { exit !(n == 1 && ok) }' '$dir/$m-1.log'"
done

# EigenLoRAx: basis from LoRAs of two other tasks, then loadings only.
for t in copy add; do
  "$peftc" train $base data.task=$t output.dir="$dir/src-$t" >"$dir/src-$t.log" 2>&1
done
"$peftc" eigen build --adapters "$dir/src-copy/adapter,$dir/src-add/adapter" --k 8 --random 4 \
  --out "$dir/basis.safetensors" >"$dir/eigen.log" 2>&1
check "eigen build exits 0 and reports captured variance" "[ $? -eq 0 ] && grep -q 'captured variance' '$dir/eigen.log'"
eig="$base method.name=eigenlora eigenlora.basis=$dir/basis.safetensors"
"$peftc" train $eig output.dir="$dir/eig-1" >"$dir/eig-1.log" 2>&1
check "eigenlora: trains; trainable = 2 K r per module = $((28 * 2 * 12 * r))" \
  "[ \$? -eq 0 ] && [ \"\$(trainable '$dir/eig-1.log')\" = $((28 * 2 * 12 * r)) ]"
"$mpiexec" -n 2 --oversubscribe "$peftc" train $eig output.dir="$dir/eig-2" >"$dir/eig-2.log" 2>&1
"$peftc" train $eig train.accum=2 output.dir="$dir/eig-a" >"$dir/eig-a.log" 2>&1
check "eigenlora: 2 ranks equal 1 rank with accum=2" "same_curve '$dir/eig-2' '$dir/eig-a' $tol"
"$peftc" eval $base lora.init_from="$dir/eig-1/adapter" >"$dir/eig-eval.log" 2>&1
check "eigenlora: exported as LoRA, reloads with the run's held-out loss" \
  "same_heldout '$dir/eig-eval.log' '$dir/eig-1.log'"
"$peftc" train $base method.name=eigenlora >"$dir/nobasis.log" 2>&1
check "eigenlora without a basis is a configuration error" "[ $? -eq 2 ] && grep -q 'eigenlora.basis' '$dir/nobasis.log'"

# A GGUF base (tests/fixtures/hf_tiny_llama.gguf: F16 matrices, Q/K rows in llama.cpp's order, a
# rope_freqs tensor): full fine-tuning and GMT save <output.dir>/model.gguf, no model/ folder, with the
# base's metadata; it gives the run's held-out loss. A full run rolled back to its step-2 checkpoint and
# run again saves the same bytes.
fixtures=$(dirname "$0")/fixtures
gguf=$fixtures/hf_tiny_llama.gguf
gg="$base model.path=$gguf train.steps=4 sched.warmup=1 checkpoint.every=2 checkpoint.resume=auto"
for m in full gmt; do
  d=$dir/gguf-$m
  "$peftc" train $gg method.name=$m output.dir="$d" >"$d.log" 2>&1
  check "$m on a GGUF base: saves model.gguf, not an HF folder" \
    "[ \$? -eq 0 ] && grep -q 'peftc: model saved to $d/model.gguf' '$d.log' && [ \"\$(head -c 4 '$d/model.gguf')\" = GGUF ] && grep -q hf_tiny_llama '$d/model.gguf' && [ ! -e '$d/model' ]"
  "$peftc" eval $base model.path="$d/model.gguf" >"$d-eval.log" 2>&1
  check "$m on a GGUF base: model.gguf gives the run's held-out loss" "same_heldout '$d-eval.log' '$d.log'"
done
d=$dir/gguf-full
mv "$d/model.gguf" "$d.ref.gguf"
rm -f "$d/checkpoints/step_4.h5" "$d/checkpoints/latest"
"$peftc" train $gg method.name=full output.dir="$d" >"$d-resumed.log" 2>&1
check "full on a GGUF base: resumed from step 2, it saves model.gguf byte for byte again" \
  "[ \$? -eq 0 ] && grep -q 'resumed from .*step_2.h5' '$d-resumed.log' && cmp -s '$d.ref.gguf' '$d/model.gguf'"
# merge --out X.gguf: the GGUF base with a PEFT adapter folded in, as a GGUF file that gives what the
# base with the adapter gives; an HF folder base has no GGUF metadata to carry, and is refused.
if [ "$prec" = fp32 ]; then
  lora=$fixtures/hf_tiny_lora
  "$peftc" merge --model "$gguf" --adapter "$lora" --out "$dir/merged.gguf" >"$dir/gguf-merge.log" 2>&1
  check "merge --out merged.gguf of a GGUF base writes a GGUF file" \
    "[ \$? -eq 0 ] && [ \"\$(head -c 4 '$dir/merged.gguf')\" = GGUF ]"
  "$peftc" eval $base model.path="$gguf" lora.init_from="$lora" >"$dir/gguf-lora.log" 2>&1
  "$peftc" eval $base model.path="$dir/merged.gguf" >"$dir/gguf-merged.log" 2>&1
  check "the merged GGUF gives the held-out loss of the base with the adapter (to float rounding)" \
    "near \"\$(eval_loss '$dir/gguf-lora.log')\" \"\$(eval_loss '$dir/gguf-merged.log')\" 2e-4"
  "$peftc" merge --model "$fixtures/hf_tiny_llama" --adapter "$lora" --out "$dir/hf.gguf" >"$dir/gguf-hf.log" 2>&1
  check "merge --out X.gguf of an HF folder base is refused, naming --model and --out" \
    "[ \$? -eq 2 ] && grep -q -- '--out $dir/hf.gguf: .*--model $fixtures/hf_tiny_llama is an HF folder (expected a GGUF base)' '$dir/gguf-hf.log' && [ ! -e '$dir/hf.gguf' ]"
fi

# Resume in this precision: 3 steps, then on to 6 from the checkpoint, equals 6 straight (the adapter
# bit for bit); resuming in the other precision is refused by name.
other=fp32
[ "$prec" = fp32 ] && other=bf16
"$peftc" train $base train.steps=6 output.dir="$dir/rz-full" >"$dir/rz-full.log" 2>&1
"$peftc" train $base train.steps=3 checkpoint.every=3 output.dir="$dir/rz" >"$dir/rz-1.log" 2>&1
"$peftc" train $base train.steps=6 checkpoint.every=3 checkpoint.resume=auto checkpoint.allow_changes=train.steps \
  output.dir="$dir/rz" >"$dir/rz-2.log" 2>&1
check "lora ($prec): resumed run's adapter equals the uninterrupted run's" \
  "[ \$? -eq 0 ] && grep -q 'resumed from' '$dir/rz-2.log' && cmp -s '$dir/rz-full/adapter/adapter_model.safetensors' '$dir/rz/adapter/adapter_model.safetensors'"
"$peftc" train $base train.steps=6 train.precision=$other checkpoint.resume=auto output.dir="$dir/rz" >"$dir/rz-3.log" 2>&1
check "resuming with train.precision=$other is refused, naming the key" \
  "[ \$? -eq 2 ] && grep -q 'train.precision: $prec -> $other' '$dir/rz-3.log'"

finish lora-1.log lora-2.log yaml.log eigen.log eig-1.log eig-eval.log gguf-full.log gguf-gmt.log gguf-full-resumed.log \
  gguf-merge.log gguf-hf.log
