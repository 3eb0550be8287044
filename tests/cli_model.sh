#!/usr/bin/env bash
# The commands on the real model (models/SmolLM2-135M-Instruct.Q4_1.gguf; skipped when absent):
# generate names Paris; a short LoRA run on a JSONL file saves a PEFT adapter that eval, export (PEFT
# and GGUF) and merge take; bad JSONL lines stop the run before training with file:line, unless
# data.skip_bad_lines; a truncated GGUF is refused with its name. Every failure must be an exit code and
# a message, never a crash.
set -uo pipefail
peftc=$(realpath "$1")
here=$(cd "$(dirname "$0")/.." && pwd)
. "$(dirname "$0")/lib_cli.sh"
model=$here/models/SmolLM2-135M-Instruct.Q4_1.gguf
fx=$here/tests/fixtures/sft
if [ ! -s "$model" ]; then
  echo "SKIP: $model is absent (tools/fetch-model.sh fetches it)"
  exit 0
fi
export OMP_NUM_THREADS=2

"$peftc" generate --model "$model" --prompt "The capital of France is" --max-new 8 >"$dir/gen.log" 2>&1
check "generate exits 0" "[ $? -eq 0 ]"
check "generate names Paris" "grep -q 'The capital of France is Paris' '$dir/gen.log'"
"$peftc" generate --model "$model" --chat --prompt "What is the capital of France?" --max-new 32 >"$dir/chat.log" 2>&1
check "chat answer names Paris and stops at the end of its turn" \
  "grep -q 'Paris' '$dir/chat.log' && ! grep -q 'im_end\|im_start' '$dir/chat.log'"
"$peftc" generate --model "$model" --prompt hi --top-p 0 >"$dir/badflag.log" 2>&1
check "a bad sampling flag is a usage error" "[ $? -eq 2 ] && grep -q 'top-p' '$dir/badflag.log'"

small="model.path=$model train.steps=2 sched.warmup=1 train.micro_batch=2 train.seq_len=64 train.eval_batches=1
       eval.examples=2 eval.max_new_tokens=8 data.cache_dir=$dir/cache"
"$peftc" train $small data.path="$fx/prompt.jsonl" data.eval_percent=40 output.dir="$dir/run" >"$dir/train.log" 2>&1
check "train on JSONL exits 0" "[ $? -eq 0 ]"
check "train prints exact match before and after" \
  "grep -q 'exact match before training' '$dir/train.log' && grep -q 'exact match after training' '$dir/train.log'"
check "train saves a PEFT adapter" \
  "[ -s '$dir/run/adapter/adapter_model.safetensors' ] && grep -q '\"peft_type\":.*\"LORA\"' '$dir/run/adapter/adapter_config.json'"
"$peftc" train $small data.path="$fx/prompt.jsonl" data.eval_percent=40 output.dir="$dir/run2" >"$dir/train2.log" 2>&1
check "second run reads the tokenized cache" "grep -q '(tokenized cache)' '$dir/train2.log'"
# A preemption signal while the base model loads (the configuration is printed just before) must be
# caught like one during training: a checkpoint after the first step and exit 75, not death by signal.
"$peftc" train $small data.path="$fx/prompt.jsonl" data.eval_percent=40 checkpoint.every=0 output.dir="$dir/early" \
  >"$dir/early.log" 2>&1 &
pid=$!
until grep -q '^# resolved configuration' "$dir/early.log" 2>/dev/null || ! kill -0 $pid 2>/dev/null; do sleep 0.01; done
kill -USR1 $pid
wait $pid
rc=$?
check "SIGUSR1 during model loading exits 75 after a checkpoint at step 1" \
  "[ $rc -eq 75 ] && grep -q 'stopped by signal 10 at step 1 ' '$dir/early.log' && [ -s '$dir/early/checkpoints/step_1.h5' ]"
"$peftc" train $small data.path="$fx/prompt.jsonl" data.eval_percent=40 checkpoint.every=0 checkpoint.resume=auto \
  output.dir="$dir/early" >>"$dir/early.log" 2>&1
check "and that run resumes from step 1 to the end" "[ $? -eq 0 ] && grep -q 'resumed from .*step_1.h5 at step 1 of 2' '$dir/early.log'"
"$peftc" train $small model.quantized=true data.path="$fx/prompt.jsonl" data.eval_percent=40 output.dir="$dir/runq" >"$dir/trainq.log" 2>&1
check "train on a quantized base (QLoRA) exits 0 and prints its size" "[ $? -eq 0 ] && grep -q 'base weights .* quantized' '$dir/trainq.log'"

"$peftc" eval $small data.path="$fx/prompt.jsonl" data.eval_percent=40 lora.init_from="$dir/run/adapter" \
  >"$dir/eval.log" 2>&1
check "eval with the adapter prints loss, perplexity, exact match" \
  "[ $? -eq 0 ] && grep -q 'perplexity' '$dir/eval.log' && grep -q 'exact match on held-out prompts' '$dir/eval.log'"

"$peftc" export --model "$model" --adapter "$dir/run/adapter" --out "$dir/export" >"$dir/export.log" 2>&1
check "export (PEFT) re-writes the same tensors" \
  "[ $? -eq 0 ] && cmp -s '$dir/run/adapter/adapter_model.safetensors' '$dir/export/adapter_model.safetensors'"
"$peftc" export --model "$model" --adapter "$dir/run/adapter" --format gguf --out "$dir/lora.gguf" >"$dir/gguf.log" 2>&1
check "export (GGUF) writes a GGUF file" "[ $? -eq 0 ] && [ \"\$(head -c 4 '$dir/lora.gguf')\" = GGUF ]"
"$peftc" merge --model "$model" --adapter "$dir/run/adapter" --out "$dir/merged" --dtype bf16 >"$dir/merge.log" 2>&1
check "merge writes an HF folder" "[ $? -eq 0 ] && [ -s '$dir/merged/config.json' ] && [ -s '$dir/merged/model.safetensors' ]"
check "the merged folder carries the GGUF's tokenizer, chat template and generation config" \
  "[ -s '$dir/merged/tokenizer.json' ] && grep -q im_start '$dir/merged/tokenizer_config.json' && grep -q '\"eos_token_id\":[[:space:]]*2' '$dir/merged/generation_config.json'"
check "the merged config.json has the context length and token ids transformers would otherwise guess" \
  "grep -q '\"max_position_embeddings\":[[:space:]]*8192' '$dir/merged/config.json' && grep -q '\"bos_token_id\":[[:space:]]*1' '$dir/merged/config.json'"
"$peftc" generate --model "$dir/merged" --chat --prompt "Name a primary color." --max-new 1 >"$dir/merged-gen.log" 2>&1
check "the merged folder generates with its own tokenizer and chat format" "[ $? -eq 0 ] && [ -s '$dir/merged-gen.log' ]"

"$peftc" train $small data.path="$fx/bad.jsonl" output.dir="$dir/bad" >"$dir/bad.log" 2>&1
rc=$?
check "bad JSONL lines stop the run before training" \
  "[ $rc -ne 0 ] && grep -q 'bad.jsonl:2' '$dir/bad.log' && ! grep -q '^step ' '$dir/bad.log'"
"$peftc" train $small data.path="$fx/bad.jsonl" data.skip_bad_lines=true output.dir="$dir/skip" >"$dir/skip.log" 2>&1
check "data.skip_bad_lines trains on the good lines" "[ $? -eq 0 ] && grep -q 'bad.jsonl:2' '$dir/skip.log'"

head -c 1000000 "$model" >"$dir/cut.gguf"
"$peftc" generate --model "$dir/cut.gguf" --prompt hi >"$dir/cut.log" 2>&1
rc=$?
check "a truncated GGUF is refused by name (exit 65, damaged input)" "[ $rc -eq 65 ] && grep -q 'cut.gguf' '$dir/cut.log'"

finish gen.log chat.log train.log early.log eval.log export.log gguf.log merge.log merged-gen.log bad.log skip.log cut.log
