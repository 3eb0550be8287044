#!/usr/bin/env bash
# The SDT study (arXiv 2410.09016's claims at this scale): the small Mamba of tools/pretrain-mamba.sh
# adapted to the built-in `records` task (held out: exact match of generated sentences), parameter-
# matched as the paper matches them, several seeds, then a table and a plot (bench/sdt_report.py).
# A benchmark, not a test.
#
#   linear  LoRA on the linear projections: r=2 on out_proj+x_proj+dt_proj, r=3 on out_proj+x_proj,
#           r=5 on out_proj+dt_proj; SDLoRA (SDT + LoRA on out_proj) with f_st 0.75 / 0.9 / 0.95 and
#           f_ch 0.99
#   ssm     LoRA on the SSM module (dt_proj), SDT alone, SDLoRA, and full fine-tuning as the ceiling
# The paper's claims: LoRA on the linear projections works, LoRA on the SSM modules does not, and
# SDLoRA beats parameter-matched LoRA.
#
# Every run writes runs/<name>/seed<N>/{summary.json,metrics.csv,log}; finished runs are skipped.
# Usage: bench/sdt_study.sh [--seeds "1 2 3"] [--steps 300] [--out DIR] [--base DIR] [--quick]
#   --quick: 1 seed, 6 steps, 4 exact-match prompts: checks the pipeline in a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

args="$*"
seeds="1 2 3"; steps=300; out=bench/results/sdt; base=bench/results/mamba_base/model; em=64; eval_every=25
warm=50; quick=()
while [ $# -gt 0 ]; do
    case $1 in
        --seeds) seeds=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --base) base=$2; shift 2 ;;
        --quick) seeds=1; steps=6; em=4; eval_every=3; warm=2; quick=(sched.warmup=1); shift ;;
        *) echo "sdt_study.sh: unknown argument '$1' (see the usage at the top of the script)" >&2; exit 2 ;;
    esac
done

./tools/install-deps.sh --bench >/dev/null
[ -x build/peftc ] || ./tools/build.sh build
[ -s "$base/model.safetensors" ] || ./tools/pretrain-mamba.sh "$(dirname "$base")"

common=(model.path="$base" data.task=records train.steps="$steps" train.eval_every="$eval_every"
        train.eval_batches=8 train.seq_len=128 train.micro_batch=8 eval.examples="$em" optim.lr=2e-3
        lora.dropout=0.1 output.save_adapter=false output.log_every=25 "${quick[@]}")

study=sdt
launch=(build/peftc train)
. bench/lib_study.sh

sd=(sdt.f_ch=0.99 sdt.warmup="$warm" lora.r=4 lora.alpha=4)
for seed in $seeds; do
    train lora_oxd_r2 "$seed" method.name=lora lora.r=2 lora.alpha=2 lora.targets=out_proj,x_proj,dt_proj
    train lora_ox_r3 "$seed" method.name=lora lora.r=3 lora.alpha=3 lora.targets=out_proj,x_proj
    train lora_od_r5 "$seed" method.name=lora lora.r=5 lora.alpha=5 lora.targets=out_proj,dt_proj
    train lora_ssm "$seed" method.name=lora lora.r=8 lora.alpha=8 lora.targets=dt_proj
    for f in 0.75 0.9 0.95; do
        train "sdlora_$f" "$seed" method.name=sdlora "${sd[@]}" sdt.f_st="$f" sdt.mask_path="$out/runs/sdlora_$f/seed$seed/masks.safetensors"
    done
    train sdt "$seed" method.name=sdt "${sd[@]}" sdt.f_st=0.9 sdt.mask_path="$out/runs/sdt/seed$seed/masks.safetensors"
    train full "$seed" method.name=full optim.lr=3e-4
done

python3 bench/sdt_report.py "$out" "bench/sdt_study.sh${args:+ $args}"
