#!/usr/bin/env bash
# Failure behaviour, through the binary on the random toy model: each fault ends in its own exit code
# and a message naming the file or key, and leaves the good state behind.
#  - a full disk (a small tmpfs; root only) during a checkpoint and during metrics writes: exit 74 at
#    that step on every rank, the reason named, no temporary left, the previous checkpoint usable;
#  - a diverging run (optim.lr=1e30, lora.alpha=1e38, model.init_std=1e30, a NaN weight in a base):
#    exit 3 before the bad update, no adapter, no checkpoint of it; train.nonfinite=skip skips and
#    stops after train.max_skips in a row;
#  - two runs sharing output.dir or checkpoint.folder: the second refuses (exit 73) naming the holder,
#    the first is untouched; a SIGKILLed holder does not lock the folder;
#  - preemption at the start of a step: SIGTERM and SIGINT through cluster/preemptible.sh around
#    mpirun, and SIGTERM and SIGINT to every rank directly, checkpoint and exit 75;
#  - mpirun SIGKILLed: its ranks stop within a few steps instead of training on;
#  - a resume with changed settings names each key (exit 2) unless checkpoint.allow_changes lists it;
#    train.steps below the checkpoint's step; a `latest` naming another folder is not followed; all
#    checkpoints corrupt is exit 65, not a fresh start;
#  - a tokenizer with more ids than the model is refused at load (exit 65); a damaged config.json or
#    a missing model is exit 65 too.
set -uo pipefail
peftc=$(realpath "$1")
here=$(cd "$(dirname "$0")/.." && pwd)
. "$(dirname "$0")/lib_cli.sh"
export OMP_NUM_THREADS=1
base="model.path= data.task=reverse eval.examples=0 sched.warmup=0 output.log_every=1"
run() { local out=$1; shift; "$peftc" train $base output.dir="$dir/$out" "$@" >"$dir/$out.log" 2>&1; }
rows() { local n; n=$(grep -c "^train," "$1" 2>/dev/null); echo "${n:-0}"; }

# ---- full disk (tmpfs mounts need root) ----
mounts=()
small_fs() { mkdir -p "$1" && mount -t tmpfs -o "size=$2" tmpfs "$1" 2>/dev/null && mounts+=("$1"); }
trap 'for m in "${mounts[@]}"; do umount "$m"; done; rm -rf "$dir"' EXIT
if [ "$(id -u)" -eq 0 ] && small_fs "$dir/disk1" 1300k; then
  # One checkpoint of this model (0.9 MB) fits, the second does not.
  run ck1 train.steps=6 checkpoint.every=1 checkpoint.folder="$dir/disk1"
  check "full disk at a checkpoint: exit 74" "[ $? -eq 74 ]"
  check "... the message names the file and the OS reason" \
    "grep -q \"step_2.h5.tmp': No space left on device\" '$dir/ck1.log'"
  check "... no temporary is left and latest still names step 1" \
    "[ ! -e '$dir/disk1/step_2.h5.tmp' ] && [ \"\$(cat '$dir/disk1/latest')\" = step_1.h5 ]"
  check "... stopped at that step" "[ \$(rows '$dir/ck1/metrics.csv') -eq 2 ]"
  umount "$dir/disk1" && mounts=() && small_fs "$dir/disk1" 1300k
  "$mpiexec" -n 2 --oversubscribe "$peftc" train $base output.dir="$dir/ck2" train.steps=6 checkpoint.every=1 \
    checkpoint.folder="$dir/disk1" >"$dir/ck2.log" 2>&1
  check "full disk at a checkpoint on 2 ranks: exit 74 (no crash in HDF5)" \
    "[ $? -eq 74 ] && ! grep -q 'Segmentation\|signal 11' '$dir/ck2.log'"
  run ck2 train.steps=6 train.accum=2 checkpoint.folder="$dir/disk1" checkpoint.resume=auto output.dir="$dir/ck2b"
  check "... and the checkpoint before it resumes" "[ $? -eq 0 ] && grep -q 'resumed from .*step_1.h5 at step 1' '$dir/ck2.log'"
  # 12 KiB: config.yaml and the lock file take a page each, metrics.csv fills the third one.
  small_fs "$dir/disk2" 12k
  "$peftc" train $base output.dir="$dir/disk2/run" train.steps=400 checkpoint.folder="$dir/ck3" >"$dir/m.log" 2>&1
  check "full disk under metrics.csv: exit 74 at that step" \
    "[ $? -eq 74 ] && grep -q \"metrics file '$dir/disk2/run/metrics.csv' failed: No space left on device\" '$dir/m.log' && [ \$(rows '$dir/disk2/run/metrics.csv') -lt 100 ]"
else
  echo "SKIP: full-disk checks need root to mount a small tmpfs"
fi

# ---- divergence ----
run nan1 train.steps=20 checkpoint.every=1 checkpoint.keep=2 optim.lr=1e30
check "optim.lr=1e30: exit 3 naming the step and the value" \
  "[ $? -eq 3 ] && grep -q \"training diverged: step 2's loss is -\?nan\" '$dir/nan1.log'"
check "... no adapter, and no checkpoint past the last finite step" \
  "[ ! -e '$dir/nan1/adapter' ] && [ \"\$(ls '$dir/nan1/checkpoints' | grep -c '^step_')\" -eq 1 ] && [ -e '$dir/nan1/checkpoints/step_1.h5' ]"
run nan2 train.steps=5 lora.alpha=1e38
check "lora.alpha=1e38: exit 3" "[ $? -eq 3 ] && grep -q 'training diverged' '$dir/nan2.log'"
run nan3 train.steps=5 model.init_std=1e30
check "model.init_std=1e30: exit 3" "[ $? -eq 3 ] && grep -q 'training diverged' '$dir/nan3.log'"
run nan4 train.steps=20 checkpoint.every=1 optim.lr=1e30 train.nonfinite=skip train.max_skips=3
check "train.nonfinite=skip: skipped steps are said, then exit 3 after max_skips" \
  "[ $? -eq 3 ] && [ \$(grep -c 'update skipped' '$dir/nan4.log') -eq 3 ] && grep -q 'after 3 skipped steps in a row' '$dir/nan4.log'"
check "... skipped steps wrote no scheduled checkpoint" "[ \"\$(ls '$dir/nan4/checkpoints' | grep '^step_')\" = step_1.h5 ]"
# A NaN in one weight of an HF base: the first forward is not finite.
python3 - "$here/tests/fixtures/hf_tiny_llama" "$dir/nanbase" <<'PY'
import json, os, shutil, struct, sys
src, dst = sys.argv[1], sys.argv[2]
shutil.copytree(src, dst)
path = os.path.join(dst, "model.safetensors")
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    start = header["model.norm.weight"]["data_offsets"][0]
    f.seek(8 + n + start)
    f.write(struct.pack("<f", float("nan")))
PY
"$peftc" train $base model.path="$dir/nanbase" train.steps=3 output.dir="$dir/nan5" >"$dir/nan5.log" 2>&1
rc=$?
check "a NaN weight in a safetensors base: exit 3, or refused at load" \
  "[ $rc -eq 3 ] || { [ $rc -eq 65 ] && grep -q 'model.norm.weight' '$dir/nan5.log'; }"

# ---- one run per folder ----
# The holder trains until it is told to stop, so both refusals (each after the 3 s lock wait) happen
# while it runs however slow the machine is.
"$peftc" train $base train.steps=100000 output.dir="$dir/lock1" >"$dir/lock1.log" 2>&1 &
holder=$!
until [ "$(rows "$dir/lock1/metrics.csv")" -ge 2 ]; do sleep 0.02; done
run lock2 train.steps=5 output.dir="$dir/lock1"
check "a second run in the same output.dir: exit 73 naming the holder" \
  "[ $? -eq 73 ] && grep -q \"output.dir '$dir/lock1' is in use by another peftc run (pid $holder on host \" '$dir/lock2.log'"
run lock3 train.steps=5 checkpoint.folder="$dir/lock1/checkpoints"
check "a second run sharing only checkpoint.folder: exit 73" \
  "[ $? -eq 73 ] && grep -q \"checkpoint.folder '$dir/lock1/checkpoints' is in use\" '$dir/lock3.log'"
kill -USR1 $holder
wait $holder
rc=$?
stopped=$(sed -n 's/.*stopped by signal 10 at step \([0-9]*\).*/\1/p' "$dir/lock1.log")
check "... the first run ends normally (exit 75 on SIGUSR1) with every row its own" \
  "[ $rc -eq 75 ] && [ -n '$stopped' ] && [ \$(rows '$dir/lock1/metrics.csv') -eq '$stopped' ] && ! grep -q 'lock2\|lock3' '$dir/lock1/config.yaml'"
"$peftc" train $base train.steps=150 output.dir="$dir/kill9" >"$dir/kill9.log" 2>&1 &
holder=$!
until [ "$(rows "$dir/kill9/metrics.csv")" -ge 2 ]; do sleep 0.02; done
kill -9 $holder
wait $holder 2>/dev/null
run kill9b train.steps=5 output.dir="$dir/kill9"
check "a SIGKILLed run leaves no lock behind" "[ $? -eq 0 ]"

# ---- preemption early in a step, through mpirun ----
# The relay keeps SIGTERM and SIGINT away from mpirun, so the step's length does not matter (bare
# mpirun kills ranks whose step outlasts its ~2 s grace): the toy model keeps this quick under ASan.
slow="train.micro_batch=8 train.steps=400 checkpoint.every=0"
# preempt NAME SIG TARGET: TARGET is "relay" (the signal goes to cluster/preemptible.sh around mpirun) or
# "ranks" (to every rank directly); the signal lands just after step 2 ends, early in step 3.
preempt() {
  local out=$1 sig=$2 target=$3
  set -m # the launcher's own process group: SIGINT to a background job is otherwise ignored
  "$here/cluster/preemptible.sh" "$mpiexec" -n 2 --oversubscribe "$peftc" train $base $slow output.dir="$dir/$out" \
    >"$dir/$out.log" 2>&1 &
  local pid=$!
  set +m
  until [ "$(rows "$dir/$out/metrics.csv")" -ge 2 ] || ! kill -0 $pid 2>/dev/null; do sleep 0.01; done
  if [ "$target" = relay ]; then
    kill -"$sig" $pid
  else
    for p in $(pgrep -f "output.dir=$dir/$out\$"); do [ "$(cat /proc/$p/comm)" = peftc ] && kill -"$sig" $p; done
  fi
  wait $pid
  rc=$?
}
for sig in TERM INT; do
  for target in relay ranks; do
    preempt "p_${sig}_$target" $sig $target
    check "SIG$sig to the $target early in a step: a checkpoint and exit 75" \
      "[ $rc -eq 75 ] && grep -q 'stopped by signal .* at step' '$dir/p_${sig}_$target.log' && ls '$dir/p_${sig}_$target/checkpoints' | grep -q '^step_'"
  done
done

# ---- mpirun SIGKILLed: the ranks stop instead of training on ----
"$mpiexec" -n 2 --oversubscribe "$peftc" train $base train.steps=100000 output.dir="$dir/orphan" >"$dir/orphan.log" 2>&1 &
launcher=$!
until [ "$(rows "$dir/orphan/metrics.csv")" -ge 3 ]; do sleep 0.02; done
kill -9 $launcher
at_kill=$(rows "$dir/orphan/metrics.csv")
alive() { ps -o stat=,args= -C peftc | grep -v '^Z' | grep -q "output.dir=$dir/orphan"; }
for _ in $(seq 100); do alive || break; sleep 0.1; done
check "mpirun SIGKILLed: its ranks exit" "! alive"
check "... within a few steps (at most 3 more rows)" "[ \$(rows '$dir/orphan/metrics.csv') -le \$((at_kill + 3)) ]"

# ---- resume with changed settings ----
run rs checkpoint.every=10 train.steps=20
run rs checkpoint.every=10 train.steps=20 checkpoint.resume=auto optim.lr=2e-3 lora.alpha=32
check "a resume with changed settings: exit 2 naming each key, old and new" \
  "[ $? -eq 2 ] && grep -q 'lora.alpha: 16 -> 32; optim.lr: 0.001 -> 0.002' '$dir/rs.log'"
run rs checkpoint.every=10 train.steps=30 checkpoint.resume=auto optim.lr=2e-3 checkpoint.allow_changes=optim.lr,train.steps
check "... accepted when listed in checkpoint.allow_changes, and logged" \
  "[ $? -eq 0 ] && grep -q 'accepting changed settings (checkpoint.allow_changes): train.steps: 20 -> 30; optim.lr: 0.001 -> 0.002' '$dir/rs.log'"
run rs checkpoint.every=10 train.steps=10 checkpoint.resume=auto optim.lr=2e-3
check "train.steps below the checkpoint's step: exit 2" "[ $? -eq 2 ] && grep -q 'is at step 30, past train.steps=10' '$dir/rs.log'"
mkdir -p "$dir/elsewhere" && cp "$dir/rs/checkpoints/step_30.h5" "$dir/elsewhere/step_99.h5"
echo "../../elsewhere/step_99.h5" >"$dir/rs/checkpoints/latest"
run rs checkpoint.every=10 train.steps=30 checkpoint.resume=auto optim.lr=2e-3
check "a latest naming another folder is not followed" \
  "[ $? -eq 0 ] && grep -q \"ignoring .*latest': it names '../../elsewhere/step_99.h5'\" '$dir/rs.log' && grep -q 'resumed from .*rs/checkpoints/step_30.h5' '$dir/rs.log'"
for f in "$dir"/rs/checkpoints/step_*.h5; do printf 'damage' | dd of="$f" bs=1 seek=64 conv=notrunc 2>/dev/null; done
run rs checkpoint.every=10 train.steps=30 checkpoint.resume=auto optim.lr=2e-3
check "every checkpoint corrupt: exit 65, not a fresh start" \
  "[ $? -eq 65 ] && grep -q 'none of the 3 checkpoint(s)' '$dir/rs.log' && ! grep -q 'starting from step 0' '$dir/rs.log'"

# ---- models and tokenizers ----
mkdir -p "$dir/bigtok" && cp "$here"/tests/fixtures/hf_tiny_llama/* "$dir/bigtok/" &&
  cp "$here/tests/fixtures/tokenizer/smollm/tokenizer.json" "$here/tests/fixtures/tokenizer/smollm/tokenizer_config.json" "$dir/bigtok/"
"$peftc" train model.path="$dir/bigtok" sched.warmup=0 data.path="$here/tests/fixtures/sft/prompt.jsonl" train.steps=2 \
  output.dir="$dir/bt" data.cache_dir= >"$dir/bt.log" 2>&1
check "a tokenizer with more ids than the model: refused at load (exit 65)" \
  "[ $? -eq 65 ] && grep -q 'tokenizer has 500 tokens but the model.s vocabulary holds 128' '$dir/bt.log' && ! grep -q '^step ' '$dir/bt.log'"
mkdir -p "$dir/badcfg" && cp "$here"/tests/fixtures/hf_tiny_llama/* "$dir/badcfg/" && echo '{"hidden_size": ' >"$dir/badcfg/config.json"
"$peftc" train model.path="$dir/badcfg" data.task=reverse output.dir="$dir/bc" >"$dir/bc.log" 2>&1
check "a damaged config.json: exit 65 naming it" "[ $? -eq 65 ] && grep -q 'config.json' '$dir/bc.log'"
"$peftc" train model.path="$dir/no-such-model.gguf" output.dir="$dir/nm" >"$dir/nm.log" 2>&1
check "a missing model: exit 65 naming it" "[ $? -eq 65 ] && grep -q 'no-such-model.gguf' '$dir/nm.log'"

finish ck1.log ck2.log m.log nan1.log nan4.log nan5.log lock2.log p_TERM_relay.log p_INT_relay.log p_TERM_ranks.log \
  p_INT_ranks.log orphan.log rs.log bt.log bc.log nm.log
