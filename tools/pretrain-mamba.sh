#!/usr/bin/env bash
# Pretrains the small Mamba that the SDT study adapts, reproducibly, with peftc itself (full training of a
# random model.family=mamba): English text from Debian's `fortunes` package (tools/mamba_corpus.py, which
# also trains its byte-level BPE tokenizer), then `peftc train method.name=full`, whose saved model folder
# (config.json, model.safetensors, tokenizer.json) is the base. Installs what it needs (the fortunes
# package, a Python venv with `tokenizers`), caches the result in OUT, and prints the model's hash.
#
#   tools/pretrain-mamba.sh [OUT] [key=value ...]   (OUT defaults to models/mamba-fortunes)
# Extra key=value pairs go to peftc train, e.g. train.steps=200 for a quick look.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-models/mamba-fortunes}
[ $# -gt 0 ] && shift
if [ -s "$out/model/model.safetensors" ] && [ $# -eq 0 ]; then
  echo "pretrain-mamba: $out/model exists (sha256 $(sha256sum "$out/model/model.safetensors" | cut -c1-16)); remove it to rebuild"
  exit 0
fi
[ -d /usr/share/games/fortunes ] || { apt-get update -qq && apt-get install -y -qq fortunes; }
venv=build/venv-corpus
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import tokenizers" 2>/dev/null || "$venv/bin/pip" install -q "tokenizers==0.23.3"
[ -x build/peftc ] || ./tools/build.sh build
mkdir -p "$out"
"$venv/bin/python" tools/mamba_corpus.py "$out/corpus" --vocab 4096 --eval-percent 5 --seed 1
# 4 layers of width 256 (inner 512, state 16): 2.8M parameters, 1M of them the tied 4096-token embedding.
build/peftc train model.path= model.family=mamba model.hidden=256 model.layers=4 model.vocab=4096 \
  model.state=16 model.init_std=0.02 model.seed=1 \
  data.path="$out/corpus/train.jsonl" data.eval_path="$out/corpus/eval.jsonl" \
  data.tokenizer="$out/corpus/tokenizer.json" data.cache_dir= \
  method.name=full optim.lr=2e-3 optim.weight_decay=0.01 train.steps=1500 sched.warmup=50 \
  train.seq_len=256 train.micro_batch=8 train.eval_every=100 train.eval_batches=8 eval.examples=0 \
  checkpoint.every=100 checkpoint.resume=auto output.dir="$out/run" "$@"
rm -rf "$out/model"
cp -r "$out/run/model" "$out/model"
cp "$out/corpus/tokenizer_config.json" "$out/model/"
echo "pretrain-mamba: base in $out/model, sha256 $(sha256sum "$out/model/model.safetensors" | cut -c1-16); loss curve in $out/run/metrics.csv"
