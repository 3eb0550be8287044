# Shared by the command-line tests: a scratch folder removed on exit, Open MPI allowed as root, and
# check/finish that count results and print the "N passed, M failed" line CTest logs show.
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpiexec=${MPIEXEC:-mpiexec}
pass=0 fail=0

# check NAME CONDITION: CONDITION is evaluated as shell code.
check() { if eval "$2"; then pass=$((pass + 1)); else echo "FAIL: $1"; fail=$((fail + 1)); fi; }

# same_curve RUN1 RUN2 TOL [KINDS]: the two runs' metrics.csv hold the same losses, row by row, to TOL
# relative; KINDS lists the row kinds compared (default "train"; "train,eval" adds held-out losses).
same_curve() {
    python3 - "$1/metrics.csv" "$2/metrics.csv" "$3" "${4:-train}" <<'PY'
import sys
kinds = tuple(k + ',' for k in sys.argv[4].split(','))
rows = [[l.split(',') for l in open(p) if l.startswith(kinds)] for p in sys.argv[1:3]]
tol = float(sys.argv[3])
assert len(rows[0]) == len(rows[1]) > 0, [len(r) for r in rows]
for a, b in zip(*rows):
    x, y = float(a[2]), float(b[2])
    assert abs(x - y) <= tol * max(abs(x), abs(y)), (a, b)
PY
}

# eval_loss LOG: the held-out loss a `peftc eval` log reports ("held-out loss X, perplexity ...").
eval_loss() { sed -n 's/^held-out loss \([0-9.]*\),.*/\1/p' "$1" | tail -1; }

# near A B TOL: both numbers are there and |A - B| <= TOL (losses printed to 4 decimals that float
# rounding can move by one in the last place).
near() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { exit !(a != "" && b != "" && (a - b) ^ 2 <= t ^ 2) }'; }

# finish LOG...: on failure shows the end of each log; exits nonzero if anything failed.
finish() {
    if [ "$fail" -ne 0 ]; then
        for log in "$@"; do echo "--- $log"; tail -5 "$dir/$log"; done
    fi
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}

# steps_gone [JOB]: waits (up to 30 s) until no slurmstepd of Slurm job JOB (of any job without JOB)
# is left on this machine. A requeued job's rerun reuses its step ids (JOB.0); launched while the
# previous run's slurmstepd still tears that step's PMIx state down, srun fails ("aborted before step
# completely launched", "pmixp_stepd_init() failed"), and the batch job still ended COMPLETED with
# exit 0 in the runs that hit it. Slurm's own two-minute hold of a requeued job prevents this on a real
# cluster; the tests release the job early, so they wait for it themselves.
steps_gone() {
    local i
    for i in $(seq 300); do pgrep -f "slurmstepd: \[${1:+$1\.}" >/dev/null || return 0; sleep 0.1; done
}
