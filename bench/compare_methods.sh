#!/usr/bin/env bash
# The method comparison study: every seed method trained on SmolLM2-135M-Instruct and the built-in
# `records` task on this machine's CPU, several seeds each, then a Markdown table and a plot
# (bench/compare_report.py). A benchmark, not a test: about 80 minutes on 2 cores at the defaults.
#
# Four comparisons, all with the same data, batch (2 ranks x 4 sequences x 96 tokens), schedule and
# evaluation:
#   budget   LoRA r=8 vs RoSA (r=4 + 1.15% sparse) vs SpA (2.3% sparse), the same ~2.4M trainable
#            parameters, and full fine-tuning as the ceiling
#   3matrix  LoRA vs SLoRA vs NLoRA vs IntTune vs PiSSA at r=8 (the held-out curve is the point; the
#            NLoRA paper ranks SLoRA ~ NLoRA > PiSSA > LoRA)
#   eigen    EigenLoRAx on a basis built from LoRAs trained on the other tasks (arith, sql) vs LoRA
#   gmt      GMT at mask ratios 0.2 / 0.5 / 0.8 vs full fine-tuning
#
# Every run writes runs/<name>/seed<N>/{summary.json,metrics.csv,log}; a run whose summary.json exists
# is skipped, so an interrupted study resumes where it stopped. Seeds go in the outer loop, so a study
# cut short still covers every method.
#
# Usage: bench/compare_methods.sh [--seeds "1 2 3"] [--steps 30] [--ranks 2] [--out DIR] [--quick]
#   --quick: 1 seed, 4 steps, 8 exact-match prompts: checks the pipeline in a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

args="$*"
quick=(); rosa_warmup=8; rosa_grad=2
seeds="1 2 3"; steps=30; ranks=2; out=bench/results/compare; em=48; eval_every=5
while [ $# -gt 0 ]; do
    case $1 in
        --seeds) seeds=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --ranks) ranks=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --quick) seeds=1; steps=4; em=8; eval_every=2; quick=(sched.warmup=1); rosa_warmup=1; rosa_grad=1; shift ;;
        *) echo "compare_methods.sh: unknown argument '$1' (see the usage at the top of the script)" >&2; exit 2 ;;
    esac
done

./tools/install-deps.sh --bench >/dev/null
[ -x build/peftc ] || ./tools/build.sh build
./tools/fetch-model.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

common=(data.task=records train.steps="$steps" train.eval_every="$eval_every" train.eval_batches=8
        eval.examples="$em" output.save_adapter=false output.log_every=10 "${quick[@]}")

study=compare
launch=(mpirun -np "$ranks" --oversubscribe build/peftc train)
. bench/lib_study.sh

# The EigenLoRAx basis: one LoRA on each of the other two tasks, then 15 principal components (their
# 16 columns have rank 15 after centring) plus 17 seeded random directions, K = 32 as in the paper.
basis=$out/runs/eigen_basis.safetensors
if [ ! -f "$basis" ]; then
    for task in arith sql; do
        train "basis_$task" 1 data.task="$task" eval.examples=0 train.eval_every=0 output.save_adapter=true
    done
    build/peftc eigen build --adapters "$out/runs/basis_arith/seed1/adapter,$out/runs/basis_sql/seed1/adapter" \
        --k 15 --random 17 --seed 1 --out "$basis" >"$out/runs/eigen_basis.log"
fi

for seed in $seeds; do
    train lora "$seed" method.name=lora lora.r=8
    train rosa "$seed" method.name=rosa lora.r=4 rosa.density=0.0115 rosa.lr=3e-4 rosa.warmup=$rosa_warmup rosa.grad_steps=$rosa_grad
    train spa "$seed" method.name=spa rosa.density=0.023 rosa.lr=3e-4 rosa.warmup=$rosa_warmup rosa.grad_steps=$rosa_grad
    train full "$seed" method.name=full optim.lr=1e-4
    train slora "$seed" method.name=slora lora.r=8
    train nlora "$seed" method.name=nlora lora.r=8
    train inttune "$seed" method.name=inttune lora.r=8
    train pissa "$seed" method.name=pissa lora.r=8
    train eigenlora "$seed" method.name=eigenlora eigenlora.basis="$basis" optim.lr=4e-3 optim.weight_decay=0.1
    train gmt_0.5 "$seed" method.name=gmt gmt.mask_ratio=0.5 optim.lr=1e-4
done
# The ratio sweep's end points, one seed each.
first=${seeds%% *}
train gmt_0.2 "$first" method.name=gmt gmt.mask_ratio=0.2 optim.lr=1e-4
train gmt_0.8 "$first" method.name=gmt gmt.mask_ratio=0.8 optim.lr=1e-4

python3 bench/compare_report.py "$out" "bench/compare_methods.sh${args:+ $args}"
