#!/usr/bin/env bash
# cluster/train.sbatch under a real Slurm: a one-node cluster on localhost (cluster/local-slurm.sh:
# munged, slurmctld, slurmd with 2 CPUs), a 2-task job wired by srun --mpi=pmix, and two preemptions
# in the middle of a run: scancel --signal=USR1 (what --signal=USR1@120 sends before the time limit)
# and an admin's scontrol requeue (SIGTERM to the steps). Each interrupted job must requeue itself or
# be requeued, resume from its checkpoint under the same job id, and end with an adapter bit-identical
# to an uninterrupted job's. A third job runs into its time limit and must be warned by Slurm, requeue
# itself and resume. The cluster is taken down however the test ends.
set -uo pipefail
peftc=$(realpath "$1")
here=$(cd "$(dirname "$0")/.." && pwd)
. "$(dirname "$0")/lib_cli.sh"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then echo "SKIP: Slurm is not installed and this is not root"; exit 77; fi
    "$here/tools/install-deps.sh" --slurm || { echo "FAIL: could not install Slurm"; exit 1; }
fi
[ "$(id -u)" -eq 0 ] || { echo "SKIP: a local slurmd needs root"; exit 77; }

trap '"$here/cluster/local-slurm.sh" down "$dir/cluster" >/dev/null 2>&1; rm -rf "$dir"' EXIT
chmod 711 "$dir"   # munged requires every folder above its socket to be traversable
"$here/cluster/local-slurm.sh" up "$dir/cluster" 2 || { echo "FAIL: the local cluster did not start"; exit 1; }
export SLURM_CONF=$dir/cluster/slurm.conf PEFTC_BIN=$peftc PEFTC_CLUSTER=$here/cluster
mkdir "$dir/job" && cd "$dir/job" || exit 1
printf 'model:\n  path: ""\ntrain:\n  steps: 400\n  micro_batch: 2\n  seq_len: 32\n  eval_every: 50\nsched:\n  warmup: 1\ndata:\n  task: reverse\ncheckpoint:\n  every: 100\n' >job.yaml

submit() { sbatch --parsable --cpus-per-task=1 --ntasks-per-node=2 "$here/cluster/train.sbatch" job.yaml; }
state() { scontrol show job -o "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
# wait_for JOB STATE...: up to 120 s; prints the state reached.
wait_for() {
    local j=$1 s i; shift
    for i in $(seq 600); do
        s=$(state "$j")
        for want in "$@"; do [ "$s" = "$want" ] && { echo "$s"; return 0; }; done
        sleep 0.2
    done
    echo "${s:-unknown}"
}
rows() { local n; n=$(grep -c '^train,' "runs/peftc-$1/metrics.csv" 2>/dev/null); echo "${n:-0}"; }
# preempt JOB HOW...: waits until the job has trained a few steps, then runs HOW on it.
preempt() {
    local j=$1 i; shift
    for i in $(seq 1200); do [ "$(rows "$j")" -ge 3 ] && break; sleep 0.05; done
    "$@" "$j"
}
adapter() { echo "runs/peftc-$1/adapter/adapter_model.safetensors"; }
# wait_line PATTERN FILE SECONDS: until FILE has a line matching PATTERN, or SECONDS pass.
wait_line() { local i; for i in $(seq $(($3 * 10))); do grep -q "$1" "$2" 2>/dev/null && return; sleep 0.1; done; }

full=$(submit)
check "uninterrupted job completes" "[ '$(wait_for "$full" COMPLETED FAILED CANCELLED)' = COMPLETED ]"
check "srun --mpi=pmix made one 2-rank world" "grep -q 'lora on 2 rank(s)' peftc-$full.out"

# Slurm delays a requeued job's start by two minutes; StartTime=now skips that wait, and starts the
# job at once (a later StartTime would wait for the scheduler's next pass). Not in the second that the
# previous run ended, though: slurmd refuses a launch credential no newer than the revocation of that
# run's ("Killing non-startable batch job: Job credential revoked") and the job fails.
# Nor while the previous run's steps are still being torn down (steps_gone in lib_cli.sh).
# release JOB [FIELD=VALUE...]: also changes those fields of the job.
release() {
    local j=$1; shift
    [ "$(wait_for "$j" PENDING)" = PENDING ] || return
    steps_gone "$j"
    sleep 2
    scontrol update JobId="$j" StartTime=now "$@"
}

usr1=$(submit)
preempt "$usr1" scancel --signal=USR1
release "$usr1"
check "SIGUSR1: peftc checkpointed, exited 75, and the job requeued itself" \
  "grep -q 'stopped by signal 10' peftc-$usr1.out && grep -q 'checkpointed on a preemption signal; requeueing' peftc-$usr1.out"
check "SIGUSR1: the requeued job completes" "[ '$(wait_for "$usr1" COMPLETED FAILED CANCELLED)' = COMPLETED ]"
check "SIGUSR1: Slurm counted one restart" "scontrol show job $usr1 | grep -q 'Restarts=1'"
check "SIGUSR1: the rerun resumed from its checkpoint" \
  "grep -q 'restart count 1' peftc-$usr1.out && grep -q 'resumed from runs/peftc-$usr1/checkpoints/step_' peftc-$usr1.out"
check "SIGUSR1: adapter bit-identical to the uninterrupted job's" "cmp -s $(adapter "$full") $(adapter "$usr1")"

requeued=$(submit)
preempt "$requeued" scontrol requeue
release "$requeued"
check "scontrol requeue: the job completes" "[ '$(wait_for "$requeued" COMPLETED FAILED CANCELLED)' = COMPLETED ]"
check "scontrol requeue: SIGTERM made peftc checkpoint first" "grep -q 'stopped by signal 15' peftc-$requeued.out"
check "scontrol requeue: the rerun resumed from that checkpoint" "grep -q 'resumed from runs/peftc-$requeued/checkpoints/step_' peftc-$requeued.out"
check "scontrol requeue: adapter bit-identical to the uninterrupted job's" "cmp -s $(adapter "$full") $(adapter "$requeued")"

# The template's own mechanism: Slurm signals the steps --signal=USR1@N seconds before the time limit
# (checked on slurmctld's 30 s tick). A 1-minute job warned 58 s ahead is signalled within about 32 s;
# bit-identity is shown above, so this one only has to requeue and resume before it is cancelled.
limit=$(sbatch --parsable --time=1 --signal=USR1@58 --cpus-per-task=1 --ntasks-per-node=2 \
        "$here/cluster/train.sbatch" job.yaml train.steps=100000 train.eval_every=0 checkpoint.every=0 output.log_every=1000)
wait_line 'requeueing' "peftc-$limit.out" 90
release "$limit" TimeLimit=10   # or the rerun is warned at once, and stops after its first step
check "time limit: the warning signal stopped peftc with a checkpoint and the job requeued itself" \
  "grep -q 'stopped by signal 10' peftc-$limit.out && grep -q 'checkpointed on a preemption signal; requeueing' peftc-$limit.out"
wait_line 'resumed from' "peftc-$limit.out" 60
check "time limit: the requeued job resumed from that checkpoint" "grep -q 'resumed from runs/peftc-$limit/checkpoints/step_' peftc-$limit.out"
scancel "$limit"
grep -h 'resumed from\|stopped by signal' peftc-*.out

# Without PMIx, srun starts lone processes; they must fail rather than train unrelated copies.
srun -n 2 --mpi=none "$peftc" train model.path= data.task=reverse train.steps=3 output.dir=lone >lone.log 2>&1
check "srun --mpi=none fails instead of training 2 copies" "[ $? -ne 0 ] && [ ! -e lone/metrics.csv ]"

cp peftc-*.out lone.log "$dir" 2>/dev/null
if [ "$fail" -ne 0 ]; then   # what Slurm saw, for the log of a failed run
    for j in "$full" "$usr1" "$requeued" "$limit"; do scontrol show job -o "$j"; done
    tail -n 40 "$dir/cluster/log/slurmctld.log"
fi
finish "peftc-$full.out" "peftc-$usr1.out" "peftc-$requeued.out" "peftc-$limit.out" lone.log
