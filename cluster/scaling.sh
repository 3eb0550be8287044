#!/usr/bin/env bash
# Scaling experiment: the same training job at 1, 2, 4, ... ranks, then a CSV and a PNG of throughput,
# efficiency and the step time split into compute, all-reduce and update (bench/scaling_report.py).
#
#   cluster/scaling.sh [--ranks "1 2 4 8"] [--steps 12] [--skip 2] [--mode weak|strong]
#                      [--threads 1] [--out DIR (bench/results/scaling/MODE)] [key=value ...]
#
# weak    every rank keeps train.micro_batch, so the global batch grows with the ranks (data-parallel
#         training as it is used: more ranks, more samples per step); efficiency = tokens/s at N ranks
#         over N x tokens/s at 1 rank.
# strong  the global batch is fixed at micro_batch x (largest N): each rank accumulates largest/N
#         micro-batches; efficiency = step time at 1 rank over N x step time at N ranks.
# Each rank runs --threads threads (one core each by default, so N ranks use N cores). The first
# --skip steps are left out of the averages (allocation and cache warm-up). The job defaults to LoRA
# r=8 on the default model (SmolLM2-135M, records task, 4 x 96 tokens per rank); key=value arguments
# change it. Inside a Slurm allocation the ranks are started with srun --mpi=pmix, elsewhere with
# mpirun. Results: DIR/runs/npN/{log,metrics.csv,summary.json}, DIR/scaling.csv, DIR/scaling.png,
# DIR/scaling.md (with this command line). A benchmark, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."

command_line="cluster/scaling.sh${*:+ $*}"
ranks="1 2"; steps=12; skip=2; mode=weak; threads=1; out=
while [ $# -gt 0 ]; do
    case $1 in
        --ranks) ranks=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --skip) skip=$2; shift 2 ;;
        --mode) mode=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --*) echo "scaling.sh: unknown option '$1' (see the usage at the top of the script)" >&2; exit 2 ;;
        *) break ;;
    esac
done
out=${out:-bench/results/scaling/$mode}
case $mode in weak|strong) ;; *) echo "scaling.sh: --mode is weak or strong, not '$mode'" >&2; exit 2 ;; esac
[ "$steps" -gt "$skip" ] || { echo "scaling.sh: --steps ($steps) must exceed --skip ($skip)" >&2; exit 2; }
largest=0
for n in $ranks; do [ "$n" -gt "$largest" ] && largest=$n; done
if [ "$mode" = strong ]; then
    for n in $ranks; do
        [ $((largest % n)) -eq 0 ] && continue
        echo "scaling.sh: --mode strong needs every rank count to divide the largest ($largest); $n does not" >&2
        exit 2
    done
fi

./tools/install-deps.sh --bench >/dev/null
# PEFTC_BIN names another binary (the tests use it); otherwise build/ is brought up to date, so the
# measured binary is this tree's.
peftc=${PEFTC_BIN:-build/peftc}
[ -n "${PEFTC_BIN:-}" ] || ./tools/build.sh build >/dev/null
./tools/fetch-model.sh >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# Evaluation is cut to one micro-batch and exact match is off: they are not part of a training step.
job=(data.task=records lora.r=8 train.micro_batch=4 train.seq_len=96 train.steps="$steps"
     sched.warmup=1 train.threads="$threads" train.eval_every=0 train.eval_batches=1 eval.examples=0
     output.save_adapter=false output.log_every=1 "$@")

launch() {  # N args...
    local n=$1; shift
    if [ -n "${SLURM_JOB_ID:-}" ]; then
        srun --mpi=pmix -n "$n" --cpus-per-task="$threads" "$@"
    else
        mpirun -np "$n" --oversubscribe --bind-to none "$@"
    fi
}

rm -rf "$out/runs"
for n in $ranks; do
    dir=$out/runs/np$n
    mkdir -p "$dir"
    accum=1
    [ "$mode" = strong ] && accum=$((largest / n))
    echo "scaling: $n rank(s), accum $accum"
    if ! launch "$n" "$peftc" train "${job[@]}" train.accum="$accum" output.dir="$dir" >"$dir/log" 2>&1; then
        echo "scaling: the $n-rank run failed; its log $dir/log begins:" >&2
        head -5 "$dir/log" >&2
        exit 1
    fi
done
python3 bench/scaling_report.py "$out" "$mode" "$skip" "$command_line"
