#!/usr/bin/env bash
# Throughput with and without data.packing, run back to back with the same settings:
#   bench/packing.sh [--out DIR] [key=value ...]
# Each run is `peftc train` (held-out loss at the start and the end only, no exact match); the table
# reports, over steps 3..N of its metrics.csv, input positions per second (padding included), target
# tokens per second (the positions with a loss: what packing raises) and the held-out losses. Extra
# key=value arguments go to both runs (e.g. model.path=, train.seq_len=256). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results/packing
if [ "${1:-}" = "--out" ]; then out=$2; shift 2; fi
peftc=${PEFTC:-build/peftc}
mkdir -p "$out"

common=(data.task=records train.steps=20 train.eval_every=0 eval.examples=0 output.log_every=5 output.save_adapter=false
        "$@")
for packing in false true; do
  dir=$out/packing-$packing
  rm -rf "$dir"
  echo "packing: data.packing=$packing" >&2
  "$peftc" train "${common[@]}" data.packing=$packing output.dir="$dir" >"$dir.log" 2>&1 ||
    { tail -5 "$dir.log" >&2; exit 1; }
done

python3 - "$out" "$*" <<'PY'
import csv, sys
out, extra = sys.argv[1], sys.argv[2]
print(f"| data.packing (`bench/packing.sh {extra}`) | positions/s | target tokens/s | target tokens/step | held-out loss start -> end |")
print("|---|---:|---:|---:|---|")
for packing in ("false", "true"):
    rows = list(csv.DictReader(open(f"{out}/packing-{packing}/metrics.csv")))
    train = [r for r in rows if r["kind"] == "train" and int(r["step"]) >= 3]
    evals = [float(r["loss"]) for r in rows if r["kind"] == "eval"]
    sec = sum(float(r["step_ms"]) for r in train) / 1e3
    tgt = sum(float(r["tokens"]) for r in train)
    pos = sum(float(r["tokens_per_s"]) * float(r["step_ms"]) / 1e3 for r in train)
    print(f"| {packing} | {pos / sec:.0f} | {tgt / sec:.1f} | {tgt / len(train):.0f} | {evals[0]:.4f} -> {evals[-1]:.4f} |")
PY
