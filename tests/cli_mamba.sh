#!/usr/bin/env bash
# Mamba through the binary: a random Mamba (model.family=mamba) and the transformers-written fixture
# folder train with LoRA on every projection, full fine-tuning and SDLoRA; the trainable counts printed
# equal the formulas; 2 ranks give the loss curve (and, for SDLoRA, the selection file) of 1 rank with
# accum=2; an SDLoRA run resumed from its checkpoint ends bit-identical to an uninterrupted one; a saved
# LoRA adapter reloads, an SDLoRA run merges into a folder, and a full fine-tune of the fixture's GGUF
# saves model.gguf, each with the run's held-out loss; and the Mamba-only methods refuse a LLaMA model by
# name.
set -uo pipefail
peftc=$1
. "$(dirname "$0")/lib_cli.sh"
export OMP_NUM_THREADS=1
fixtures=$(dirname "$0")/fixtures

# hidden 32, inner 64, state 8, dt_rank 2, conv 4, 2 layers, vocab 64 (the fixture's shape too)
shape="model.family=mamba model.hidden=32 model.layers=2 model.vocab=64 model.state=8 model.expand=2"
base="model.path= $shape data.task=reverse train.steps=10 sched.warmup=2 train.eval_every=0 train.eval_batches=2
      eval.examples=0 optim.lr=5e-3 train.seq_len=32 lora.r=4"
trainable() { sed -n 's/.*trainable \([0-9]*\) (.*/\1/p' "$1" | tail -1; }
final_loss() { sed -n 's/.*held-out loss [0-9.]* -> \([0-9.]*\).*/\1/p' "$1"; }
eval_loss() { sed -n 's/^held-out loss \([0-9.]*\),.*/\1/p' "$1"; }
lowers() { awk '/held-out loss .* -> /{ split($0, w, "held-out loss "); split(w[2], v, " "); n++; ok = v[3] + 0 < v[1] + 0 } END { exit !(n == 1 && ok) }' "$1"; }
# per layer: LoRA r (in + out) over in_proj 32+128, x_proj 64+18, dt_proj 2+64, out_proj 64+32
lora_want=$((2 * 4 * (160 + 82 + 66 + 96)))
# embedding 64x32 (tied), per layer norm 32, in_proj 128x32, conv 64x4 + 64, x_proj 18x64, dt_proj 64x2 + 64,
# A_log 64x8, D 64, out_proj 32x64; norm_f 32
full_want=$((64 * 32 + 2 * (32 + 4096 + 256 + 64 + 1152 + 128 + 64 + 512 + 64 + 2048) + 32))
# SDLoRA with f_ch 0.9, f_st 0.75: 6 channels x 2 states of A_log, 2 x 8 x 6 of x_proj, LoRA out_proj 4 x 96
sd="sdt.f_ch=0.9 sdt.f_st=0.75 sdt.warmup=3"
sd_want=$((2 * (12 + 96 + 384)))

declare -A want=([lora]=$lora_want [full]=$full_want [sdlora]=$sd_want)
declare -A extra=([lora]="lora.targets=in_proj,x_proj,dt_proj,out_proj" [full]="" [sdlora]="$sd")
for m in lora full sdlora; do
  "$peftc" train $base method.name=$m ${extra[$m]} output.dir="$dir/$m-1" >"$dir/$m-1.log" 2>&1
  check "$m: 1-rank run exits 0 and lowers the held-out loss" "[ \$? -eq 0 ] && lowers '$dir/$m-1.log'"
  check "$m: trainable count ${want[$m]}" "[ \"\$(trainable '$dir/$m-1.log')\" = ${want[$m]} ]"
  "$mpiexec" -n 2 --oversubscribe "$peftc" train $base method.name=$m ${extra[$m]} output.dir="$dir/$m-2" \
    >"$dir/$m-2.log" 2>&1
  check "$m: 2-rank run exits 0" "[ $? -eq 0 ]"
  "$peftc" train $base method.name=$m ${extra[$m]} train.accum=2 output.dir="$dir/$m-a" >"$dir/$m-a.log" 2>&1
  check "$m: 2 ranks give the loss curve of 1 rank with accum=2" "same_curve '$dir/$m-2' '$dir/$m-a' 1e-5"
done
check "sdlora: the warm-up's selection is reported and saved" \
  "grep -q 'sdt: 6 of 64 channels and 2 of 8 states' '$dir/sdlora-1.log' && [ -s '$dir/sdlora-1/sdt_masks.safetensors' ]"
check "sdlora: 2 ranks select what 1 rank with accum=2 selects" \
  "cmp -s '$dir/sdlora-2/sdt_masks.safetensors' '$dir/sdlora-a/sdt_masks.safetensors'"

# Resume: 3 main-run steps, then on to 6 from the checkpoint, equals 6 straight, deltas bit for bit.
"$peftc" train $base method.name=sdlora $sd train.steps=6 output.dir="$dir/rz-full" >"$dir/rz-full.log" 2>&1
"$peftc" train $base method.name=sdlora $sd train.steps=3 checkpoint.every=3 output.dir="$dir/rz" >"$dir/rz-1.log" 2>&1
"$peftc" train $base method.name=sdlora $sd train.steps=6 checkpoint.every=3 checkpoint.resume=auto \
  checkpoint.allow_changes=train.steps output.dir="$dir/rz" >"$dir/rz-2.log" 2>&1
check "sdlora: resumed run's deltas equal the uninterrupted run's" \
  "[ \$? -eq 0 ] && grep -q 'resumed from' '$dir/rz-2.log' && cmp -s '$dir/rz-full/adapter/base_deltas.safetensors' '$dir/rz/adapter/base_deltas.safetensors'"

# The transformers-written folder: LoRA trains, and its saved adapter reloads (lora.init_from) in
# `peftc eval` with the run's final held-out loss.
hf="$base model.path=$fixtures/hf_tiny_mamba"
"$peftc" train $hf method.name=lora output.dir="$dir/hf" >"$dir/hf.log" 2>&1
check "HF Mamba folder: trains with LoRA, banner names the family and shape" \
  "[ \$? -eq 0 ] && lowers '$dir/hf.log' && grep -q 'peftc: model .*(mamba hf_tiny_mamba, 2 layers, hidden 32, vocab 64' '$dir/hf.log'"
"$peftc" eval $hf lora.init_from="$dir/hf/adapter" >"$dir/hf-eval.log" 2>&1
check "HF Mamba folder: the saved adapter reloads with the run's held-out loss" \
  "[ -n \"\$(final_loss '$dir/hf.log')\" ] && [ \"\$(eval_loss '$dir/hf-eval.log')\" = \"\$(final_loss '$dir/hf.log')\" ]"

# SDLoRA on the folder, merged (LoRA and the base deltas folded in) into a folder that computes what
# the trained run computed: its held-out loss is the run's final one.
"$peftc" train $hf method.name=sdlora $sd output.dir="$dir/hfsd" >"$dir/hfsd.log" 2>&1
"$peftc" merge --model "$fixtures/hf_tiny_mamba" --adapter "$dir/hfsd/adapter" --out "$dir/merged" >"$dir/merge.log" 2>&1
check "sdlora: merged into an HF folder with its deltas" "[ \$? -eq 0 ] && [ -s '$dir/hfsd/adapter/base_deltas.safetensors' ]"
"$peftc" eval $base model.path="$dir/merged" >"$dir/merged-eval.log" 2>&1
check "sdlora: the merged folder gives the run's held-out loss" \
  "[ -n \"\$(final_loss '$dir/hfsd.log')\" ] && [ \"\$(eval_loss '$dir/merged-eval.log')\" = \"\$(final_loss '$dir/hfsd.log')\" ]"

# The fixture as llama.cpp's GGUF: full fine-tuning saves model.gguf with A written back as -exp(A_log),
# whose held-out loss is the run's (A_log comes back through exp and log, so to the last printed digit).
"$peftc" train $base model.path="$fixtures/hf_tiny_mamba.gguf" method.name=full output.dir="$dir/gguf" >"$dir/gguf.log" 2>&1
check "GGUF Mamba: full fine-tuning saves model.gguf" \
  "[ \$? -eq 0 ] && grep -q 'model saved to $dir/gguf/model.gguf' '$dir/gguf.log' && [ ! -e '$dir/gguf/model' ]"
"$peftc" eval $base model.path="$dir/gguf/model.gguf" >"$dir/gguf-eval.log" 2>&1
check "GGUF Mamba: model.gguf gives the run's held-out loss" \
  "awk -v a=\"\$(eval_loss '$dir/gguf-eval.log')\" -v b=\"\$(final_loss '$dir/gguf.log')\" 'BEGIN { exit !(a != \"\" && b != \"\" && (a - b) ^ 2 <= 1e-8) }'"

# Pretraining from scratch (what tools/pretrain-mamba.sh does at scale): a random Mamba, full training on
# text with data.tokenizer, saves a model folder with the tokenizer beside it; that folder then takes an
# SDLoRA run on text and generates through `peftc generate`.
tok="$fixtures/tokenizer/gpt2/tokenizer.json"
txt="data.path=$fixtures/sft/plain.txt data.cache_dir= train.seq_len=16 train.micro_batch=2 data.eval_percent=20"
"$peftc" train model.path= model.family=mamba model.hidden=32 model.layers=2 model.vocab=512 model.state=8 $txt \
  data.tokenizer="$tok" method.name=full train.steps=6 sched.warmup=1 train.eval_every=0 eval.examples=0 \
  output.dir="$dir/pre" >"$dir/pre.log" 2>&1
check "pretraining: full training of a random Mamba saves config, weights and tokenizer" \
  "[ \$? -eq 0 ] && [ -s '$dir/pre/model/model.safetensors' ] && cmp -s '$tok' '$dir/pre/model/tokenizer.json' && grep -q 'model_type.*mamba' '$dir/pre/model/config.json'"
"$peftc" train model.path="$dir/pre/model" $txt method.name=sdlora sdt.f_ch=0.9 sdt.f_st=0.75 sdt.warmup=2 lora.r=4 \
  train.steps=4 sched.warmup=1 train.eval_every=0 eval.examples=0 output.dir="$dir/pre-sd" >"$dir/pre-sd.log" 2>&1
check "pretrained folder: SDLoRA on text with its own tokenizer" "[ \$? -eq 0 ] && lowers '$dir/pre-sd.log'"
"$peftc" generate --model "$dir/pre/model" --prompt "The" --max-new 6 >"$dir/gen.log" 2>&1
check "pretrained folder: peftc generate runs on Mamba" "[ \$? -eq 0 ] && [ -s '$dir/gen.log' ]"

"$peftc" train model.path= data.task=reverse method.name=sdlora train.steps=4 sched.warmup=1 sdt.warmup=2 \
  output.dir="$dir/llama" \
  >"$dir/llama.log" 2>&1
check "sdlora on a LLaMA model is refused, naming the family" "[ \$? -ne 0 ] && grep -q 'Mamba' '$dir/llama.log'"

finish lora-1.log lora-2.log full-1.log sdlora-1.log sdlora-2.log rz-2.log hf.log hfsd.log merge.log merged-eval.log gguf.log \
  gguf-eval.log pre.log pre-sd.log gen.log llama.log
