#!/usr/bin/env bash
# cluster/train.sbatch through a stand-in srun (mpiexec underneath): it starts SLURM_NTASKS ranks of one
# MPI world, passes the YAML file and overrides through, and writes to runs/<name>-<id>. A srun without
# PMI (N lone ranks, each a world of one) must be refused rather than train N unrelated copies. On
# SIGUSR1 the job checkpoints, requeues itself (a stand-in scontrol records it), and the requeued run
# resumes and ends with the uninterrupted run's adapter. SIGTERM to the batch shell alone (scancel
# --batch) reaches the ranks as SIGUSR1 through cluster/preemptible.sh, with the same outcome.
set -uo pipefail
peftc=$(realpath "$1")
here=$(cd "$(dirname "$0")/.." && pwd)
. "$(dirname "$0")/lib_cli.sh"

mkdir "$dir/bin"
cat >"$dir/bin/srun" <<STUB
#!/usr/bin/env bash
while [[ \$1 == --* ]]; do shift; done   # srun's own options
exec "$mpiexec" -n "\$SLURM_NTASKS" --oversubscribe "\$@"
STUB
chmod +x "$dir/bin/srun"
cat >"$dir/bin/scontrol" <<STUB
#!/usr/bin/env bash
echo "\$@" >>"$dir/scontrol.calls"
STUB
chmod +x "$dir/bin/scontrol"
printf 'model:\n  path: ""\ntrain:\n  steps: 4\n  micro_batch: 2\n  seq_len: 32\nsched:\n  warmup: 1\ndata:\n  task: reverse\n' >"$dir/job.yaml"

export PEFTC_CLUSTER="$here/cluster"
(cd "$dir" && SLURM_SUBMIT_DIR="$dir" SLURM_NTASKS=2 SLURM_JOB_ID=42 SLURM_JOB_NAME=peftc SLURM_CPUS_PER_TASK=1 \
  PEFTC_BIN="$peftc" PATH="$dir/bin:$PATH" bash "$here/cluster/train.sbatch" job.yaml train.eval_batches=2 \
  >"$dir/job.log" 2>&1)
check "sbatch script exits 0" "[ $? -eq 0 ]"
check "ran on 2 ranks" "grep -q 'on 2 rank(s)' '$dir/job.log'"
check "YAML and overrides reached peftc" "grep -q 'steps: 4' '$dir/runs/peftc-42/config.yaml' && grep -q 'eval_batches: 2' '$dir/runs/peftc-42/config.yaml'"
check "metrics in runs/<name>-<id>" "[ \$(grep -c '^train,' '$dir/runs/peftc-42/metrics.csv') -eq 4 ]"

# Preemption: SIGUSR1 mid-run (what --signal=USR1@120 sends), requeue, resume.
sbatch_env() { (cd "$dir" && SLURM_SUBMIT_DIR="$dir" SLURM_NTASKS=2 SLURM_JOB_ID=$1 SLURM_JOB_NAME=peftc \
  SLURM_CPUS_PER_TASK=1 PEFTC_BIN="$peftc" PATH="$dir/bin:$PATH" bash "$here/cluster/train.sbatch" job.yaml \
  train.steps=60 train.eval_every=10 checkpoint.every=20 "${@:2}" >>"$dir/job$1.log" 2>&1); }
sbatch_env 7
check "uninterrupted sbatch job exits 0" "[ $? -eq 0 ]"
sbatch_env 8 &
job=$!
rows() { local n; n=$(grep -c '^train,' "$dir/runs/peftc-8/metrics.csv" 2>/dev/null); echo "${n:-0}"; }
until [ "$(rows)" -ge 5 ]; do sleep 0.02; done
pkill -USR1 -f "mpiexec.*output.dir=runs/peftc-8"
wait $job
check "the signalled job asks Slurm to requeue it" "grep -qx 'requeue 8' '$dir/scontrol.calls'"
sbatch_env 8
check "the requeued job exits 0" "[ $? -eq 0 ]"
check "the requeued job resumed from its checkpoint" "grep -q 'resumed from runs/peftc-8/checkpoints/step_' '$dir/job8.log'"
check "the requeued job's adapter is bit-identical to the uninterrupted one" \
  "cmp -s '$dir/runs/peftc-7/adapter/adapter_model.safetensors' '$dir/runs/peftc-8/adapter/adapter_model.safetensors'"

# SIGTERM to the batch shell only: relayed to the ranks, which checkpoint and exit 75; requeue, resume.
sbatch_env 9 &
job=$!
until [ "$(grep -c '^train,' "$dir/runs/peftc-9/metrics.csv" 2>/dev/null)" -ge 5 ] 2>/dev/null; do sleep 0.02; done
pkill -TERM -f "preemptible.sh --requeue srun .*output.dir=runs/peftc-9"
wait $job
check "SIGTERM to the batch shell checkpoints and requeues" \
  "grep -qx 'requeue 9' '$dir/scontrol.calls' && grep -q 'stopped by signal 10' '$dir/job9.log'"
sbatch_env 9
check "the batch-shell-signalled job resumes to the uninterrupted adapter" \
  "grep -q 'resumed from runs/peftc-9/checkpoints/step_' '$dir/job9.log' && cmp -s '$dir/runs/peftc-7/adapter/adapter_model.safetensors' '$dir/runs/peftc-9/adapter/adapter_model.safetensors'"

SLURM_NTASKS=2 SLURM_STEP_ID=0 SLURM_PROCID=0 "$peftc" train model.path= data.task=reverse output.dir="$dir/lone" >"$dir/lone.log" 2>&1
check "a lone rank in a 2-task step is refused" "[ $? -ne 0 ] && grep -q 'SLURM_NTASKS' '$dir/lone.log'"

finish job.log job7.log job8.log job9.log lone.log
