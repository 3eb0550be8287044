#!/usr/bin/env bash
# A Qwen2 GGUF as llama.cpp's converter writes it (tests/fixtures/qwen2_tiny.gguf: general.architecture
# qwen2, YaRN, q/k/v biases, Qwen2's tokenizer with tokenizer.ggml.pre qwen2) through the binary:
#  - a LoRA run on ChatML conversations says qwen2 and YaRN on its start-up line and lowers the loss;
#  - `mpiexec -n 2` gives the 1-rank accum=2 curve, and a resumed run is the uninterrupted one bit for bit;
#  - `peftc export --format gguf` names arch qwen2; `peftc merge` writes a Qwen2 folder (model_type
#    qwen2, the NFC normalizer in tokenizer.json) whose held-out loss is the adapter's, and which
#    generates what the GGUF plus adapter generates;
#  - full fine-tuning saves model.gguf (arch qwen2) with the run's held-out loss; merge --out X.gguf.
set -uo pipefail
peftc=$1
. "$(dirname "$0")/lib_cli.sh"
export OMP_NUM_THREADS=1
fx="$(cd "$(dirname "$0")" && pwd)/fixtures"

gguf=$fx/qwen2_tiny.gguf
base="model.path=$gguf data.path=$fx/sft/messages.jsonl data.cache_dir= train.seq_len=48 train.micro_batch=2
      sched.type=constant sched.warmup=0 optim.lr=1e-2 train.eval_every=4 eval.examples=0 output.log_every=1"
train_rows() { grep '^train,' "$1/metrics.csv" | cut -d, -f1-5; }

"$peftc" train $base train.steps=8 train.accum=2 output.dir="$dir/ref" >"$dir/ref.log" 2>&1
check "LoRA on the Qwen2 GGUF exits 0" "[ $? -eq 0 ] && grep -q 'adapter saved to' '$dir/ref.log'"
check "the start-up line says qwen2 and YaRN" "grep -q 'peftc: model .*(qwen2 .*rope yarn x4, q/k/v biases, chatml' '$dir/ref.log'"
check "the held-out loss falls" \
  "sed -n 's/.*done: held-out loss \\([0-9.]*\\) -> \\([0-9.]*\\),.*/\\1 \\2/p' '$dir/ref.log' | awk '{ok = \$2 < \$1} END {exit !ok}'"

"$mpiexec" -n 2 --oversubscribe "$peftc" train $base train.steps=8 output.dir="$dir/np2" >"$dir/np2.log" 2>&1
check "2 ranks give the 1-rank accum=2 curve within 1e-5" "[ $? -eq 0 ] && same_curve '$dir/ref' '$dir/np2' 1e-5 train,eval"

"$peftc" train $base train.steps=4 train.accum=2 checkpoint.every=4 output.dir="$dir/res" >"$dir/res.log" 2>&1
"$peftc" train $base train.steps=8 train.accum=2 checkpoint.every=4 checkpoint.resume=auto \
  checkpoint.allow_changes=train.steps output.dir="$dir/res" >>"$dir/res.log" 2>&1
check "a run resumed at step 4 is the uninterrupted one, bit for bit" \
  "[ $? -eq 0 ] && grep -q 'at step 4' '$dir/res.log' && diff <(train_rows '$dir/ref') <(train_rows '$dir/res')"

"$peftc" export --format gguf --model "$gguf" --adapter "$dir/ref/adapter" --out "$dir/a.gguf" >"$dir/export.log" 2>&1
check "the GGUF adapter names arch qwen2" "[ $? -eq 0 ] && grep -aq 'general.architecture.\{12\}qwen2' '$dir/a.gguf'"

"$peftc" merge --model "$gguf" --adapter "$dir/ref/adapter" --out "$dir/merged" >"$dir/merge.log" 2>&1
check "merge writes a Qwen2 folder" "[ $? -eq 0 ] && grep -q '\"model_type\":.*\"qwen2\"' '$dir/merged/config.json'"
check "whose tokenizer.json normalizes to NFC" \
  "python3 -c \"import json,sys; sys.exit(json.load(open('$dir/merged/tokenizer.json'))['normalizer'] != {'type': 'NFC'})\""
ev="data.path=$fx/sft/messages.jsonl data.cache_dir= train.seq_len=48 train.micro_batch=2 eval.examples=0"
"$peftc" eval model.path="$gguf" lora.init_from="$dir/ref/adapter" $ev output.dir="$dir/ev1" >"$dir/ev1.log" 2>&1
"$peftc" eval model.path="$dir/merged" $ev output.dir="$dir/ev2" >"$dir/ev2.log" 2>&1
check "the merged folder's held-out loss is the adapter's (to float rounding)" \
  "near \"\$(eval_loss '$dir/ev1.log')\" \"\$(eval_loss '$dir/ev2.log')\" 2e-4"
"$peftc" generate --model "$gguf" --adapter "$dir/ref/adapter" --chat --prompt "Count to three." --max-new 6 \
  >"$dir/gen1.txt" 2>"$dir/gen1.log"
"$peftc" generate --model "$dir/merged" --chat --prompt "Count to three." --max-new 6 >"$dir/gen2.txt" 2>"$dir/gen2.log"
check "and it generates what the GGUF plus adapter generates" "[ -s '$dir/gen1.txt' ] && cmp -s '$dir/gen1.txt' '$dir/gen2.txt'"

# Saved as GGUF: full fine-tuning leaves model.gguf (arch qwen2, q/k rows left in HF's order) that gives
# the run's held-out loss; merge --out X.gguf gives the adapter's.
"$peftc" train $base method.name=full train.steps=2 output.dir="$dir/full" >"$dir/full.log" 2>&1
check "full fine-tuning on the Qwen2 GGUF saves model.gguf" \
  "[ $? -eq 0 ] && grep -q 'model saved to $dir/full/model.gguf' '$dir/full.log' && grep -aq 'general.architecture.\{12\}qwen2' '$dir/full/model.gguf'"
"$peftc" eval model.path="$dir/full/model.gguf" $ev output.dir="$dir/ev3" >"$dir/ev3.log" 2>&1
check "which gives the run's held-out loss" \
  "[ -n \"\$(eval_loss '$dir/ev3.log')\" ] && [ \"\$(eval_loss '$dir/ev3.log')\" = \"\$(sed -n 's/^eval @ step 2: held-out loss \\([0-9.]*\\) .*/\\1/p' '$dir/full.log')\" ]"
"$peftc" merge --model "$gguf" --adapter "$dir/ref/adapter" --out "$dir/merged.gguf" >"$dir/mergeg.log" 2>&1
"$peftc" eval model.path="$dir/merged.gguf" $ev output.dir="$dir/ev4" >"$dir/ev4.log" 2>&1
check "merge --out merged.gguf gives the adapter's held-out loss (to float rounding)" \
  "near \"\$(eval_loss '$dir/ev1.log')\" \"\$(eval_loss '$dir/ev4.log')\" 2e-4"

finish full.log mergeg.log ev3.log ev4.log ref.log np2.log res.log export.log merge.log ev1.log ev2.log gen1.log gen2.log
