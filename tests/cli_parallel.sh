#!/usr/bin/env bash
# Through the real binary: `mpirun -np 2 peftc train ...` and `peftc train ... accum=2` must give the
# same loss curve and held-out losses (within 1e-5 relative), print progress, and write the metrics
# CSV and the resolved config; the held-out loss must fall; the same seed must reproduce the curve
# bit for bit (every column but the timings).
set -uo pipefail
peftc=$1
. "$(dirname "$0")/lib_cli.sh"

common="model.path= data.task=reverse model.hidden=32 model.intermediate=64 model.layers=2 train.steps=16 train.micro_batch=4
        train.seq_len=24 data.max_digits=6 sched.warmup=2 train.eval_every=8 train.eval_batches=4
        output.log_every=4 optim.lr=1e-2"
OMP_NUM_THREADS=1 "$mpiexec" -n 2 --oversubscribe "$peftc" train $common output.dir="$dir/np2" >"$dir/np2.log" 2>&1
check "2-rank run exits 0" "[ $? -eq 0 ]"
OMP_NUM_THREADS=1 "$peftc" train $common accum=2 output.dir="$dir/acc2" >"$dir/acc2.log" 2>&1
check "1-rank accum=2 run exits 0" "[ $? -eq 0 ]"
OMP_NUM_THREADS=2 "$peftc" train $common accum=2 output.dir="$dir/again" >"$dir/again.log" 2>&1
check "rerun exits 0" "[ $? -eq 0 ]"
check "rerun (2 threads) is bit-identical" "cmp -s <(cut -d, -f1-6,9 '$dir/acc2/metrics.csv') <(cut -d, -f1-6,9 '$dir/again/metrics.csv')"

for run in np2 acc2; do
  check "$run wrote metrics.csv" "head -1 '$dir/$run/metrics.csv' | grep -q '^kind,step,loss'"
  check "$run wrote config.yaml" "grep -q 'accum:' '$dir/$run/config.yaml'"
  check "$run printed progress" "grep -q 'step 16/16 | loss' '$dir/$run.log'"
  check "$run printed evals" "grep -q 'eval @ step 16' '$dir/$run.log'"
done
check "2-rank run says 2 ranks" "grep -q 'on 2 rank(s)' '$dir/np2.log'"
check "resolved config records accum=2" "grep -q 'accum: 2' '$dir/acc2/config.yaml'"

# kind,step,loss: every train and eval row must agree
paste -d, <(cut -d, -f1-3 "$dir/np2/metrics.csv") <(cut -d, -f1-3 "$dir/acc2/metrics.csv") | tail -n +2 >"$dir/pairs"
check "same number of rows" "[ $(wc -l <"$dir/np2/metrics.csv") -eq $(wc -l <"$dir/acc2/metrics.csv") ] && [ $(wc -l <"$dir/pairs") -ge 19 ]"
check "curves equal within 1e-5" "awk -F, '{ d = \$3 - \$6; if (d < 0) d = -d; m = \$3 < 0 ? -\$3 : \$3;
  if (\$1 != \$4 || \$2 != \$5 || d > 1e-5 * m) { print \"  row \" NR \": \" \$0; bad = 1 } } END { exit bad }' '$dir/pairs'"
# step_ms (8) = compute_ms (10) + allreduce_ms (11) + the update: compute present and positive, the
# all-reduce non-negative, together within the whole (0.002 ms for the rounding of three printed values).
check "step time split into compute and all-reduce" "awk -F, '\$1 == \"train\" { n++; if (NF != 11 || \$10 == \"\" ||
  \$10 <= 0 || \$11 < 0 || \$10 + \$11 > \$8 + 0.002) bad = 1 } END { exit bad || n != 16 }' '$dir/np2/metrics.csv'"
check "held-out loss fell" "awk -F, '\$1 == \"eval\" { if (first == \"\") first = \$3; last = \$3 } END { exit !(last < first) }' '$dir/np2/metrics.csv'"

finish np2.log acc2.log
