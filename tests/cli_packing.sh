#!/usr/bin/env bash
# data.packing through the binary, on a random LLaMA with the fixture tokenizer and the built-in arith
# task at seq_len 256 (about two examples per window):
#  - the start-up line says how the examples were packed, into fewer windows than examples;
#  - the held-out loss before training equals the unpacked run's (the same examples, packed), within 1e-5;
#  - `mpirun -np 2` equals 1 rank with accum=2 (train and held-out losses within 1e-5);
#  - a run rolled back to its step-4 checkpoint and run again ends with the uninterrupted run's curve,
#    step-8 checkpoint and adapter byte for byte, and a resume with packing turned off is refused;
#  - a digit task and a Mamba model refuse packing, naming data.packing.
set -uo pipefail
peftc=$1
. "$(dirname "$0")/lib_cli.sh"
export OMP_NUM_THREADS=1
tok="$(dirname "$0")/fixtures/tokenizer/smollm"

common="model.path= data.tokenizer=$tok model.vocab=512 model.hidden=32 model.intermediate=64 model.layers=2
        data.task=arith data.train_examples=120 data.eval_examples=16 data.cache_dir=$dir/cache train.seq_len=256
        train.micro_batch=2 train.steps=8 sched.warmup=1 train.eval_every=4 train.eval_batches=4 eval.examples=0
        optim.lr=5e-3 lora.dropout=0.1 output.log_every=1"
"$peftc" train $common data.packing=false output.dir="$dir/plain" >"$dir/plain.log" 2>&1
check "unpacked run exits 0" "[ $? -eq 0 ]"
"$peftc" train $common data.packing=true train.accum=2 output.dir="$dir/acc2" >"$dir/acc2.log" 2>&1
check "packed 1-rank accum=2 run exits 0" "[ $? -eq 0 ]"
"$mpiexec" -n 2 --oversubscribe "$peftc" train $common data.packing=true output.dir="$dir/np2" >"$dir/np2.log" 2>&1
check "packed 2-rank run exits 0" "[ $? -eq 0 ]"

check "the packing line: 120 examples into fewer windows, and how full" \
  "grep -Eq '^peftc: packing: 120 examples into [0-9]+ windows of 256 tokens, [0-9.]+% filled \(one example per row: [0-9.]+%\)' \
     '$dir/acc2.log' &&
   [ \$(sed -n 's/.*into \([0-9]*\) windows.*/\1/p' '$dir/acc2.log') -lt 80 ]"
check "no packing line without packing" "! grep -q 'packing:' <(grep '^peftc:' '$dir/plain.log')"
check "progress shows the target-token rate" "grep -Eq 'tok/s \([0-9]+ target\)' '$dir/acc2.log'"
first_eval() { awk -F, '$1 == "eval" { print $3; exit }' "$1/metrics.csv"; }
check "held-out loss at step 0: packed equals unpacked (1e-5)" \
  "python3 -c 'import sys; a, b = map(float, sys.argv[1:]); assert abs(a - b) <= 1e-5 * abs(a), (a, b)' \
   $(first_eval "$dir/plain") $(first_eval "$dir/acc2")"
check "2 ranks equal 1 rank with accum=2 (train and held-out, 1e-5)" "same_curve '$dir/np2' '$dir/acc2' 1e-5 train,eval"
check "packed steps hold more target tokens than unpacked ones" \
  "[ \$(awk -F, '\$1 == \"train\" { s += \$6 } END { print int(s) }' '$dir/acc2/metrics.csv') -gt \
     \$(awk -F, '\$1 == \"train\" { s += 1.5 * \$6 } END { print int(s) }' '$dir/plain/metrics.csv') ]"

# Resume: roll the folder back to just after step 4's checkpoint, as if killed there, and run again.
d=$dir/resume
rargs="$common data.packing=true checkpoint.every=4 checkpoint.resume=auto output.dir=$d"
"$peftc" train $rargs >"$d.log" 2>&1
check "packed run with checkpoints exits 0" "[ $? -eq 0 ]"
mv "$d/checkpoints/step_8.h5" "$d.ref.h5"
mv "$d/metrics.csv" "$d.ref.csv"
mv "$d/adapter" "$d.ref-adapter"
rm -f "$d/checkpoints/latest" "$d/summary.json"
awk -F, 'NR == 1 || $2 <= 5' "$d.ref.csv" >"$d/metrics.csv"
"$peftc" train $rargs data.packing=false >"$d-off.log" 2>&1
check "resuming a packed run unpacked is refused" "[ $? -ne 0 ] && grep -q 'data.packing: true -> false' '$d-off.log'"
"$peftc" train $rargs >>"$d.log" 2>&1
check "resumed packed run exits 0" "[ $? -eq 0 ] && grep -q 'resumed from .*step_4.h5 at step 4 of 8' '$d.log'"
check "resumed: loss curve bit-identical" "cmp -s <(cut -d, -f1-6,9 '$d.ref.csv') <(cut -d, -f1-6,9 '$d/metrics.csv')"
check "resumed: step 8's checkpoint byte-identical" "cmp -s '$d.ref.h5' '$d/checkpoints/step_8.h5'"
check "resumed: adapter byte-identical" "diff -r '$d.ref-adapter' '$d/adapter' >/dev/null"

"$peftc" train model.path= data.task=reverse data.packing=true output.dir="$dir/digits" >"$dir/digits.log" 2>&1
check "a digit task refuses packing (exit 2)" \
  "[ $? -eq 2 ] && grep -q 'data.packing=true needs text data' '$dir/digits.log'"
"$peftc" train $common model.family=mamba data.packing=true output.dir="$dir/mamba" >"$dir/mamba.log" 2>&1
check "a Mamba model refuses packing" "[ $? -ne 0 ] && grep -q 'data.packing=true: a mamba model' '$dir/mamba.log' &&
  ! grep -q '^step ' '$dir/mamba.log'"

finish plain.log acc2.log np2.log resume.log resume-off.log digits.log mamba.log
