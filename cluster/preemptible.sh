#!/usr/bin/env bash
# Runs a launcher so that every preemption signal ends in a checkpoint and exit code 75:
#   cluster/preemptible.sh mpirun -np 4 build/peftc train job.yaml checkpoint.resume=auto
#   timeout 2h cluster/preemptible.sh mpirun -np 4 build/peftc train ...     # exits 75 at the limit
# Why: mpirun takes SIGTERM and SIGINT as "abort the job". It kills the ranks within about two seconds
# (SIGTERM, then SIGKILL after odls_base_sigkill_timeout) and exits 1, so a step longer than that never
# reaches its checkpoint. SIGUSR1 it forwards to every rank, and peftc turns that into "finish the
# step, checkpoint, exit 75". This script receives what `timeout`, Ctrl-C, `kill` or a batch shell's
# scancel send, and relays SIGTERM, SIGINT, SIGHUP and SIGUSR1 to the launcher as SIGUSR1. srun
# forwards SIGUSR1 to its tasks too, so it works for srun as well (cluster/train.sbatch uses it).
# A second Ctrl-C aborts at once: the launcher gets SIGTERM.
# --requeue (in a Slurm batch job): when the launcher exits 75, `scontrol requeue $SLURM_JOB_ID` and
# exit 0; the job starts again under the same id and resumes from its checkpoint.
set -uo pipefail
requeue=0
if [ "${1:-}" = --requeue ]; then requeue=1; shift; fi
if [ $# -eq 0 ]; then
    echo "usage: cluster/preemptible.sh [--requeue] LAUNCHER [ARGS...]   (e.g. mpirun -np 4 build/peftc train ...)" >&2
    exit 2
fi
# The launcher runs in its own process group, so a terminal's Ctrl-C reaches only this script and not
# mpirun itself (which would abort). Its input is /dev/null: a background group may not read the terminal.
set -m
"$@" </dev/null &
launcher=$!
interrupts=0
relay() { kill -USR1 "$launcher" 2>/dev/null; }
on_int() {
    interrupts=$((interrupts + 1))
    if [ "$interrupts" -gt 1 ]; then kill -TERM "$launcher" 2>/dev/null; else relay; fi
}
trap relay TERM HUP USR1
trap on_int INT
# `wait` returns early (status > 128) each time a trapped signal arrives: wait again while the launcher
# lives. Once it has ended, `wait` gives its exit status.
while :; do
    wait "$launcher"
    rc=$?
    kill -0 "$launcher" 2>/dev/null || break
done
wait "$launcher" 2>/dev/null && rc=0 || rc=$?
if [ "$rc" -eq 75 ] && [ "$requeue" -eq 1 ]; then
    echo "peftc job ${SLURM_JOB_ID:-local}: checkpointed on a preemption signal; requeueing"
    scontrol requeue "${SLURM_JOB_ID}"
    exit 0
fi
exit "$rc"
