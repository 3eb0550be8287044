#!/usr/bin/env bash
# Checkpoints and resume through the binary, on the random toy model:
#  - SIGTERM mid-run exits 75 after a checkpoint; checkpoint.resume=auto then finishes with a loss
#    curve and an adapter bit-identical to an uninterrupted run;
#  - 2 ranks interrupted and resumed on 1 rank with accum=2 end within 1e-5 of the 2-rank run;
#  - 20 SIGKILLs at random moments of a run that checkpoints every step: no resume ever finds `latest`
#    unreadable, and the run still ends with the uninterrupted run's adapter, bit for bit;
#  - a flipped byte in the newest checkpoint is reported by dataset name and the previous one used;
#  - checkpoint.minutes saves on rank 0's clock, as often as the run's duration says;
#  - a checkpoint of another method, base model or global batch is refused by name.
set -uo pipefail
peftc=$1
. "$(dirname "$0")/lib_cli.sh"
export OMP_NUM_THREADS=1

base="model.path= data.task=reverse sched.warmup=2 train.eval_every=5 train.eval_batches=2 eval.examples=0
      optim.lr=5e-3 output.log_every=1"
curve() { cut -d, -f1-5 "$1/metrics.csv"; }
adapter() { echo "$1/adapter/adapter_model.safetensors"; }

# run_until_rows DIR ROWS SIG ARGS...: starts a run, sends SIG once its metrics file has ROWS lines,
# waits, and leaves the exit code in $rc.
run_until_rows() {
  local out=$1 rows=$2 sig=$3; shift 3
  "$@" output.dir="$out" >>"$out.log" 2>&1 &
  local pid=$!
  until [ "$(wc -l 2>/dev/null <"$out/metrics.csv" || echo 0)" -ge "$rows" ] || ! kill -0 $pid 2>/dev/null; do
    sleep 0.02
  done
  kill -"$sig" $pid 2>/dev/null
  wait $pid
  rc=$?
}

# ---- SIGTERM, then resume on the same world size ----
"$peftc" train $base train.steps=60 checkpoint.every=20 output.dir="$dir/ref" >"$dir/ref.log" 2>&1
check "uninterrupted run exits 0" "[ $? -eq 0 ]"
mkdir -p "$dir/term"
run_until_rows "$dir/term" 8 TERM "$peftc" train $base train.steps=60 checkpoint.every=20
check "SIGTERM exits 75 (checkpointed, requeue me)" "[ $rc -eq 75 ]"
check "the stop is announced with its step" "grep -q 'stopped by signal 15 at step' '$dir/term.log'"
"$peftc" train $base train.steps=60 checkpoint.every=20 checkpoint.resume=auto output.dir="$dir/term" \
  >>"$dir/term.log" 2>&1
check "resume exits 0" "[ $? -eq 0 ]"
check "resume says where it continued" "grep -q 'resumed from .*step_[0-9]*.h5 at step' '$dir/term.log'"
check "resumed loss curve is bit-identical" "diff <(curve '$dir/ref') <(curve '$dir/term') >/dev/null"
check "resumed adapter is bit-identical" "cmp -s '$(adapter "$dir/ref")' '$(adapter "$dir/term")'"
check "checkpoint.keep=3 keeps three" "[ \$(ls '$dir/term/checkpoints' | grep -c '^step_') -eq 3 ]"

# ---- RoSA: masks from the file the first launch wrote, values and moments from the checkpoint ----
rosa="$base train.steps=40 method.name=rosa lora.r=2 rosa.density=0.05 rosa.warmup=3 checkpoint.every=10"
"$peftc" train $rosa output.dir="$dir/rref" >"$dir/rref.log" 2>&1
check "uninterrupted RoSA run exits 0" "[ $? -eq 0 ]"
mkdir -p "$dir/rint"
run_until_rows "$dir/rint" 8 TERM "$peftc" train $rosa
check "RoSA SIGTERM exits 75" "[ $rc -eq 75 ]"
"$peftc" train $rosa checkpoint.resume=auto output.dir="$dir/rint" >>"$dir/rint.log" 2>&1
check "RoSA resume exits 0" "[ $? -eq 0 ]"
check "RoSA resumed curve and sparse deltas are bit-identical" \
  "diff <(curve '$dir/rref') <(curve '$dir/rint') >/dev/null && cmp -s '$dir/rref/adapter/rosa_sparse.safetensors' '$dir/rint/adapter/rosa_sparse.safetensors'"
# Masks of the same density taken one step earlier: a checkpoint made with the first masks must
# not be continued on them.
"$peftc" train $rosa rosa.warmup=2 train.steps=4 checkpoint.every=0 output.dir="$dir/rearly" >"$dir/rearly.log" 2>&1
"$peftc" train $rosa checkpoint.resume="$dir/rint/checkpoints/step_40.h5" \
  rosa.mask_path="$dir/rearly/rosa_masks.safetensors" output.dir="$dir/rbad" >"$dir/rbad.log" 2>&1
check "a checkpoint with other masks is refused" \
  "[ $? -ne 0 ] && grep -q \"/state/rosa/.* differs from this run's (other RoSA masks\" '$dir/rbad.log'"

# ---- 2 ranks, interrupted, resumed on 1 rank with the same global batch ----
two="$peftc train $base train.steps=40 checkpoint.every=10"
"$mpiexec" -n 2 --oversubscribe $two output.dir="$dir/two" >"$dir/two.log" 2>&1
check "2-rank run exits 0" "[ $? -eq 0 ]"
mkdir -p "$dir/two-int"
# mpirun forwards SIGUSR1 (what sbatch --signal=USR1@N sends) to every rank.
run_until_rows "$dir/two-int" 6 USR1 "$mpiexec" -n 2 --oversubscribe $two
check "2-rank SIGUSR1 through mpirun exits 75" "[ $rc -eq 75 ]"
$two train.accum=2 checkpoint.resume=auto output.dir="$dir/two-int" >>"$dir/two-int.log" 2>&1
check "1-rank accum=2 resume of a 2-rank checkpoint exits 0" "[ $? -eq 0 ]"
check "2 -> 1 rank resume matches the 2-rank run within 1e-5" "python3 - '$dir/two' '$dir/two-int' <<'PY'
import sys
rows = [[l.split(',') for l in open(d + '/metrics.csv') if l[0] in 'te'] for d in sys.argv[1:]]
assert len(rows[0]) == len(rows[1]), [len(r) for r in rows]
for a, b in zip(*rows):
    assert a[:2] == b[:2], (a, b)
    x, y = float(a[2]), float(b[2])
    assert abs(x - y) <= 1e-5 * max(1.0, abs(x)), (a, b)
PY"

# ---- 20 SIGKILLs at random moments of a run that checkpoints every step ----
kill_args="$base train.steps=150 checkpoint.every=1 checkpoint.resume=auto"
"$peftc" train $base train.steps=150 output.dir="$dir/kref" >"$dir/kref.log" 2>&1
mkdir -p "$dir/kill"
: >"$dir/kill.log"   # before the first trial: its wait loop must not race the shell creating the log
# Each trial waits for its run to write a checkpoint, then kills it 0-90 ms later: during the next
# step, or in the middle of the next checkpoint's write (a write takes about as long as a step here).
RANDOM=7
for trial in $(seq 20); do
  before=$(grep -c 'checkpoint at step' "$dir/kill.log")
  "$peftc" train $kill_args output.dir="$dir/kill" >>"$dir/kill.log" 2>&1 &
  pid=$!
  while [ "$(grep -c 'checkpoint at step' "$dir/kill.log")" -le "$before" ] && kill -0 $pid 2>/dev/null; do
    sleep 0.01
  done
  sleep "0.0$((RANDOM % 10))"
  kill -KILL $pid 2>/dev/null
  wait $pid 2>/dev/null
done
"$peftc" train $kill_args output.dir="$dir/kill" >>"$dir/kill.log" 2>&1
check "after 20 SIGKILLs the run finishes" "[ $? -eq 0 ]"
check "no resume found an unreadable checkpoint" "! grep -q 'skipping checkpoint' '$dir/kill.log'"
check "every killed run after the first resumed" "[ \$(grep -c 'resumed from' '$dir/kill.log') -ge 20 ]"
check "after 20 SIGKILLs the adapter is bit-identical" "cmp -s '$(adapter "$dir/kref")' '$(adapter "$dir/kill")'"
echo "kill trials: $(grep -c 'resumed from' "$dir/kill.log") resumes, steps resumed at:" \
  $(sed -n 's/.*resumed from .* at step \([0-9]*\) of.*/\1/p' "$dir/kill.log")

# ---- resuming a finished run whose metrics file was lost ----
cp -r "$dir/ref" "$dir/done" && rm "$dir/done/metrics.csv"
"$peftc" train $base train.steps=60 checkpoint.every=20 checkpoint.resume=auto output.dir="$dir/done" >"$dir/done.log" 2>&1
check "a finished run resumes at its last step and exits 0" "[ $? -eq 0 ] && grep -q 'resumed from .*step_60.h5 at step 60 of 60' '$dir/done.log'"
check "with no metrics left it says so instead of printing nan" "grep -q 'done: no held-out loss in its metrics' '$dir/done.log' && ! grep -qiw nan '$dir/done.log'"

# ---- a corrupt newest checkpoint is reported and skipped ----
newest=$(cat "$dir/ref/checkpoints/latest")
python3 - "$dir/ref/checkpoints/$newest" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
i = b.rfind(b'\x00' * 8) - 4096  # inside the raw data of the last datasets
b[i] ^= 0x20
open(p, 'wb').write(b)
PY
"$peftc" train $base train.steps=60 checkpoint.resume=auto output.dir="$dir/ref" >"$dir/corrupt.log" 2>&1
check "a run with a corrupt newest checkpoint exits 0" "[ $? -eq 0 ]"
check "the corrupt checkpoint is named and skipped" "grep -q \"skipping checkpoint.*$newest\" '$dir/corrupt.log'"
check "the previous checkpoint is used" "grep -q 'resumed from .*step_40.h5' '$dir/corrupt.log'"

# ---- checkpoint.minutes: saves on rank 0's clock, which both ranks follow ----
# 0.005 minutes = 0.3 s. The count must match the run's duration: none would mean the clock is
# ignored, one per step that the unit is wrong. Every gap is at least 0.3 s and at most 0.3 s plus one
# step and one save (no evaluations in between), which bounds the count from both sides.
"$mpiexec" -n 2 --oversubscribe "$peftc" train $base train.steps=200 train.eval_every=0 checkpoint.every=0 \
  checkpoint.minutes=0.005 output.dir="$dir/clock" >"$dir/clock.log" 2>&1
check "a run checkpointing every 0.005 minutes exits 0" "[ $? -eq 0 ]"
check "its clock checkpoints match its duration" "python3 - '$dir/clock' <<'PY'
import json, re, sys
d = sys.argv[1]
s = json.load(open(d + '/summary.json'))
steps = [int(m) for m in re.findall(r'checkpoint at step (\d+) written', open(d + '.log').read())]
clock = [n for n in steps if n < 200]
step = max(float(l.split(',')[7]) for l in open(d + '/metrics.csv') if l.startswith('train,')) / 1e3
save = max(float(x) for x in re.findall(r'MiB, ([0-9.]+) s\)', open(d + '.log').read()))
lo, hi = int(s['train_seconds'] / (0.3 + step + save + 0.01)) - 1, int(s['wall_seconds'] / 0.3)
print('  checkpoint.minutes=0.005: %d clock checkpoints in %.2f s of training (%.2f s wall), allowed %d..%d'
      % (len(clock), s['train_seconds'], s['wall_seconds'], lo, hi))
sys.exit(not (len(clock) >= max(lo, 2) and len(clock) <= hi and steps[-1] == 200))
PY"

# ---- incompatible checkpoints are refused by name ----
"$peftc" train $base train.steps=60 method.name=full checkpoint.resume="$dir/term/checkpoints/step_60.h5" \
  output.dir="$dir/bad1" >"$dir/bad1.log" 2>&1
check "another method is refused" "[ $? -ne 0 ] && grep -q 'made by method.name=lora; this run is full' '$dir/bad1.log'"
"$peftc" train $base train.steps=60 train.micro_batch=2 checkpoint.resume="$dir/term/checkpoints/step_60.h5" \
  output.dir="$dir/bad2" >"$dir/bad2.log" 2>&1
check "another global batch is refused" "[ $? -ne 0 ] && grep -q 'global batch of 4 sequences; this run has 2' '$dir/bad2.log'"
"$peftc" train $base train.steps=60 model.seed=99 checkpoint.resume="$dir/term/checkpoints/step_60.h5" \
  output.dir="$dir/bad3" >"$dir/bad3.log" 2>&1
check "another base model is refused" "[ $? -ne 0 ] && grep -q 'made for base model' '$dir/bad3.log'"

finish ref.log term.log rint.log rbad.log two-int.log kill.log done.log corrupt.log clock.log bad1.log bad2.log bad3.log
