#!/usr/bin/env bash
# Two hosts on one machine: two network namespaces joined by a veth pair (10.77.0.1 and 10.77.0.2),
# each with its own hostname, /dev/shm and Slurm temp folder, and one slurmd per namespace, so a
# 2-node job of cluster/train.sbatch puts one rank on each "host" and the all-reduce crosses the
# veth over TCP, as between real nodes. It checks that
#   1. 2 ranks on 2 hosts give the adapter of 1 rank with train.accum=2 (bit for bit) and its losses;
#   2. a SIGUSR1 preemption of both hosts' ranks exits 75, requeues, resumes and ends bit-identical;
#   3. SIGKILL of the rank on host 2 ends the whole job by itself (bounded by Slurm's KillWait);
#   4. a slower link (netem delay, or a tbf rate limit where the kernel lacks netem) makes the
#      all-reduce slower while the adapter stays bit-identical.
# Needs root, iproute2 (ip, tc), util-linux (nsenter, unshare) and Slurm with munge. Namespaces,
# daemons and qdiscs go away however the test ends; a run killed outright is cleaned up by the next.
set -uo pipefail
peftc=$(realpath "$1")
[ -x "$peftc" ] || { echo "FAIL: no peftc binary at $1"; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
. "$(dirname "$0")/lib_cli.sh"

[ "$(id -u)" -eq 0 ] || { echo "SKIP: network namespaces and slurmd need root"; exit 77; }
for c in ip tc nsenter unshare; do
    command -v "$c" >/dev/null || { echo "SKIP: '$c' not found (packages iproute2, util-linux)"; exit 77; }
done
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    "$here/tools/install-deps.sh" --slurm || { echo "FAIL: could not install Slurm"; exit 1; }
fi

# Names carry this shell's pid so that a leftover of a killed run never blocks the next one.
prefix=peftc2h
ns1=$prefix-$$-1 ns2=$prefix-$$-2 veth1=p2h$$a veth2=p2h$$b
c=$dir/cluster

# kill_ns NS: SIGKILL every process still inside namespace NS (all of them were started by this test
# or by the run that made NS), then delete it, which also removes its end of the veth and its qdiscs.
kill_ns() {
    local p
    for p in $(ip netns pids "$1" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$1" 2>/dev/null
}
# A run that was SIGKILLed (say, by a CTest timeout) could not clean up: its namespaces name a dead pid.
for n in $(ip netns list 2>/dev/null | grep -o "^$prefix-[0-9]*-[12]"); do
    p=${n#"$prefix"-}; p=${p%-*}
    kill -0 "$p" 2>/dev/null || kill_ns "$n"
done

cleanup() {
    # Cancelled jobs first, so that slurmd ends their steps; whatever is left dies with its namespace.
    [ -s "$c/slurmctld.pid" ] && ctl scancel --quiet --full --user=root 2>/dev/null
    local f pid i
    for f in "$c"/h1/slurmd.pid "$c"/h2/slurmd.pid "$c/slurmctld.pid" "$c/munge/pid"; do
        [ -s "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null || continue
        for i in $(seq 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    done
    kill_ns "$ns1"
    kill_ns "$ns2"
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if ! ip netns add "$ns1" 2>/dev/null || ! ip netns add "$ns2" 2>/dev/null ||
   ! ip link add "$veth1" type veth peer name "$veth2" 2>/dev/null; then
    echo "SKIP: cannot create network namespaces and a veth pair here (a container without CAP_SYS_ADMIN or CAP_NET_ADMIN?)"
    exit 77
fi
ip link set "$veth1" netns "$ns1" && ip link set "$veth2" netns "$ns2" &&
ip -n "$ns1" addr add 10.77.0.1/24 dev "$veth1" && ip -n "$ns2" addr add 10.77.0.2/24 dev "$veth2" &&
ip -n "$ns1" link set lo up && ip -n "$ns2" link set lo up &&
ip -n "$ns1" link set "$veth1" up && ip -n "$ns2" link set "$veth2" up || { echo "FAIL: could not wire the veth pair"; exit 1; }

# host N CMD...: CMD on host N. nsenter rather than `ip netns exec`, which remounts /sys without the
# cgroup mounts slurmd looks for. A new UTS and mount namespace give the host its own name (hN) and its
# own /dev/shm and Slurm TmpFS ($c/tmp, bound to $c/hN/tmp): Open MPI's shared-memory segments and the
# PMIx folders of Slurm are named by host and job, and two hosts sharing them would trip over each other.
host() {
    local n=$1 ns; shift
    [ "$n" = 1 ] && ns=$ns1 || ns=$ns2
    nsenter --net="/run/netns/$ns" unshare --uts --mount sh -c \
        'hostname "$1" && mount -t tmpfs tmpfs /dev/shm && mount --bind "$2" "$3" && shift 3 && exec "$@"' \
        sh "h$n" "$c/h$n/tmp" "$c/tmp" "$@"
}
# ctl CMD...: a Slurm client command. slurmctld listens on host 1's address, reachable only there.
ctl() { nsenter --net="/run/netns/$ns1" "$@"; }

# One munged for both hosts: its socket is a path, and path sockets are shared across network namespaces.
mkdir -p "$c/munge" "$c/state" "$c/log" "$c/tmp" "$c/h1/spool" "$c/h1/tmp" "$c/h2/spool" "$c/h2/tmp"
chmod 711 "$dir" "$c" "$c/munge"   # munged requires every folder above its socket to be traversable
head -c 1024 /dev/urandom >"$c/munge/key" && chmod 400 "$c/munge/key"
# munged runs on host 1, so that kill_ns finds it after a killed run too.
host 1 munged --key-file="$c/munge/key" --socket="$c/munge/socket" --pid-file="$c/munge/pid" \
    --log-file="$c/log/munged.log" --seed-file="$c/munge/seed" || { echo "FAIL: munged did not start"; exit 1; }
# As cluster/local-slurm.sh, with two nodes. Each namespace has its own ports, so the usual ones do;
# %n gives each slurmd its own spool folder, pid file and log. task/none: both "hosts" share this
# machine's cores, and task/affinity would bind both ranks to core 0. KillWait=5 bounds how long a
# rank that ignores SIGTERM (stuck in an all-reduce with a dead peer) survives its step's end.
cat >"$c/slurm.conf" <<EOF
ClusterName=peftc-2host
SlurmctldHost=h1(10.77.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$c/munge/socket
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
TmpFS=$c/tmp
StateSaveLocation=$c/state
SlurmdSpoolDir=$c/%n/spool
SlurmctldPidFile=$c/slurmctld.pid
SlurmdPidFile=$c/%n/slurmd.pid
SlurmctldLogFile=$c/log/slurmctld.log
SlurmdLogFile=$c/log/slurmd-%n.log
NodeName=h1 NodeAddr=10.77.0.1 CPUs=1 State=UNKNOWN
NodeName=h2 NodeAddr=10.77.0.2 CPUs=1 State=UNKNOWN
PartitionName=two Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$c/slurm.conf PEFTC_BIN=$peftc PEFTC_CLUSTER=$here/cluster
host 1 slurmctld || { echo "FAIL: slurmctld did not start: $(tail -3 "$c/log/slurmctld.log")"; exit 1; }
host 1 slurmd -N h1 && host 2 slurmd -N h2 || { echo "FAIL: a slurmd did not start: $(tail -n 3 "$c"/log/slurmd-*.log)"; exit 1; }
for i in $(seq 100); do
    [ "$(ctl sinfo -h -N -o %T 2>/dev/null | sort -u)" = idle ] && break
    sleep 0.2
done
if [ "$(ctl sinfo -h -N -o %T 2>/dev/null | sort -u)" != idle ]; then
    echo "FAIL: the two slurmds did not both come up idle within 20 s"; ctl sinfo -N; tail -n 5 "$c"/log/*.log; exit 1
fi

mkdir "$dir/job" && cd "$dir/job" || exit 1
# The toy model of cli_parallel's size class: a 300 kB all-reduce per step, about 20 ms a step.
printf 'model:\n  path: ""\ntrain:\n  steps: 100\n  seq_len: 32\n  eval_every: 50\nsched:\n  warmup: 1\ndata:\n  task: reverse\n' >job.yaml

# Each job starts on idle nodes and 2 s after the last one ended: a step launched while the previous
# step's slurmstepd still cleans up its PMIx folders failed once with "pmixp_stepd_init() failed".
idle() { [ "$(ctl sinfo -h -N -o %T 2>/dev/null | sort -u)" = idle ]; }
submit() {
    local i
    for i in $(seq 100); do idle && break; sleep 0.2; done
    steps_gone
    sleep 2
    ctl sbatch --parsable --nodes=2 --ntasks-per-node=1 --cpus-per-task=1 "$here/cluster/train.sbatch" job.yaml "$@"
}
state() { ctl scontrol show job -o "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
# wait_for JOB SECONDS STATE...: prints the state reached, or the last one seen after SECONDS.
wait_for() {
    local j=$1 n=$(($2 * 5)) s i; shift 2
    for i in $(seq "$n"); do
        s=$(state "$j")
        for want in "$@"; do [ "$s" = "$want" ] && { echo "$s"; return 0; }; done
        sleep 0.2
    done
    echo "${s:-unknown}"
}
out() { echo "runs/peftc-$1"; }
rows() { local n; n=$(grep -c '^train,' "$(out "$1")/metrics.csv" 2>/dev/null); echo "${n:-0}"; }
# wait_rows JOB N: until the job has trained N steps (at most 60 s), or has ended without them.
wait_rows() {
    local i
    for i in $(seq 1200); do
        [ "$(rows "$1")" -ge "$2" ] && return
        [ $((i % 20)) -eq 0 ] && case $(state "$1") in COMPLETED|FAILED|CANCELLED) return ;; esac
        sleep 0.05
    done
}
adapter() { echo "$(out "$1")/adapter/adapter_model.safetensors"; }
rx() { ip -n "$ns1" -s -j link show "$veth1" | grep -o '"rx":{"bytes":[0-9]*' | grep -o '[0-9]*$'; }
# median_ar DIR: the median allreduce_ms (column 11) of DIR's train rows.
median_ar() { awk -F, '$1 == "train" { print $11 }' "$1/metrics.csv" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# The same configuration on one rank, two micro-batches per step: the global batch of the 2-host job.
OMP_NUM_THREADS=1 "$peftc" train job.yaml train.accum=2 output.dir=ref >ref.log 2>&1
check "1-rank accum=2 reference exits 0" "[ $? -eq 0 ]"

# ---- 1. one rank per host: the result of 1 rank with accum=2 ----
rx0=$(rx)
full=$(submit)
check "2-host job completes" "[ '$(wait_for "$full" 120 COMPLETED FAILED CANCELLED)' = COMPLETED ]"
rx1=$(rx)
check "one 2-rank MPI world over nodes h1 and h2" \
  "grep -q 'lora on 2 rank(s)' peftc-$full.out && ctl scontrol show job $full | grep -q ' NodeList=h\[1-2\]'"
# Every step all-reduces bytes_reduced between the hosts, so at least steps x that crossed the veth.
bytes=$(awk -F, '$1 == "train" { b = $9 } END { print b + 0 }' "$(out "$full")/metrics.csv")
check "the all-reduce crossed the veth pair (host 1 received $((rx1 - rx0)) bytes)" "[ $bytes -gt 0 ] && [ $((rx1 - rx0)) -ge $((100 * bytes)) ]"
check "2 hosts: adapter bit-identical to 1 rank with accum=2" "cmp -s ref/adapter/adapter_model.safetensors $(adapter "$full")"
# As cli_parallel: kind, step and loss of every train and eval row within 1e-5 relative.
paste -d, <(cut -d, -f1-3 ref/metrics.csv) <(cut -d, -f1-3 "$(out "$full")/metrics.csv") | tail -n +2 >pairs
check "2 hosts: losses equal 1 rank's within 1e-5" "[ \$(wc -l <pairs) -eq 103 ] && awk -F, '{ d = \$3 - \$6; if (d < 0) d = -d;
  m = \$3 < 0 ? -\$3 : \$3; if (\$1 != \$4 || \$2 != \$5 || d > 1e-5 * m) { print \"  row \" NR \": \" \$0; bad = 1 } } END { exit bad }' pairs"

# ---- 2. SIGUSR1 on both hosts (Slurm's warning before a time limit), requeue, resume ----
usr1=$(submit)
wait_rows "$usr1" 5
ctl scancel --signal=USR1 "$usr1"
# A requeued job waits two minutes; StartTime=now skips that, though not in the second its previous
# run ended (slurmd refuses a credential no newer than that run's revocation; see slurm_cluster.sh),
# nor before that run's steps are gone on both hosts (steps_gone in lib_cli.sh).
[ "$(wait_for "$usr1" 60 PENDING)" = PENDING ] && steps_gone "$usr1" && sleep 2 &&
  ctl scontrol update JobId="$usr1" StartTime=now
# srun reports each task's nonzero exit status; train.sbatch requeues only when srun's own is 75.
check "SIGUSR1: the ranks on both hosts checkpointed and exited 75" \
  "grep -q 'stopped by signal 10' peftc-$usr1.out && grep -q 'h1: task 0: Exited with exit code 75' peftc-$usr1.out &&
   grep -q 'h2: task 1: Exited with exit code 75' peftc-$usr1.out"
check "SIGUSR1: the job requeued itself" "grep -q 'checkpointed on a preemption signal; requeueing' peftc-$usr1.out"
check "SIGUSR1: the requeued job completes" "[ '$(wait_for "$usr1" 120 COMPLETED FAILED CANCELLED)' = COMPLETED ]"
check "SIGUSR1: the rerun resumed from the checkpoint (checkpoint.resume=auto)" \
  "ctl scontrol show job $usr1 | grep -q 'Restarts=1' && grep -q 'resumed from runs/peftc-$usr1/checkpoints/step_' peftc-$usr1.out"
check "SIGUSR1: adapter bit-identical to the uninterrupted job's" "cmp -s $(adapter "$full") $(adapter "$usr1")"

# ---- 3. SIGKILL of host 2's rank: the job must end by itself, not hang in the all-reduce ----
kill=$(submit train.steps=100000 train.eval_every=0 output.log_every=1000)
wait_rows "$kill" 3
victim=""
for p in $(ip netns pids "$ns2"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = peftc ] && victim=$p; done
check "found host 2's rank" "[ -n '$victim' ]"
[ -n "$victim" ] && kill -9 "$victim"
# The guard: 60 s is several times what srun's kill-on-bad-exit plus KillWait=5 take; a job still
# running then has hung, and is cancelled here so that the rest of the test can go on.
timeout 60 nsenter --net="/run/netns/$ns1" bash -c \
  "until scontrol show job -o $kill | grep -q 'JobState=\(FAILED\|COMPLETED\|CANCELLED\) '; do sleep 0.2; done"
guard=$?
check "SIGKILL on host 2: the job ended by itself, not by the 60 s guard" "[ $guard -ne 124 ]"
[ "$guard" -eq 124 ] && ctl scancel "$kill"
check "SIGKILL on host 2: the job failed and srun saw the killed task" \
  "[ '$(state "$kill")' = FAILED ] && grep -q 'h2: task 1: Killed' peftc-$kill.out"
left=""
for p in $(ip netns pids "$ns1") $(ip netns pids "$ns2"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = peftc ] && left="$left $p"; done
check "SIGKILL on host 2: no rank left running on either host" "[ -z '$left' ]"

# ---- 4. a slower link: a longer all-reduce, the same result ----
# netem's delay where the kernel has it; else a tbf rate limit, whose effect follows from the bytes
# each rank must receive. Either goes on both ends of the veth, and lower bounds the all-reduce.
if tc -n "$ns1" qdisc add dev "$veth1" root netem delay 20ms 2>/dev/null &&
   tc -n "$ns2" qdisc add dev "$veth2" root netem delay 20ms 2>/dev/null; then
    shaping="netem delay 20ms" floor=20
else
    tc -n "$ns1" qdisc del dev "$veth1" root 2>/dev/null
    echo "SKIP: netem (the kernel has no sch_netem: CONFIG_NET_SCH_NETEM); a tbf rate limit stands in"
    # Each rank must receive the other's share of all bytes_reduced: at 50 Mbit/s, ~48 ms for 300 kB.
    if tc -n "$ns1" qdisc add dev "$veth1" root tbf rate 50mbit burst 8kb latency 100ms 2>/dev/null &&
       tc -n "$ns2" qdisc add dev "$veth2" root tbf rate 50mbit burst 8kb latency 100ms 2>/dev/null; then
        shaping="tbf rate 50mbit" floor=$((bytes * 8 / 50000))
    else
        shaping=""
        echo "SKIP: the slow-link check (neither netem nor tbf qdiscs are available)"
    fi
fi
if [ -n "$shaping" ]; then
    slow=$(submit)
    check "$shaping: the job completes" "[ '$(wait_for "$slow" 120 COMPLETED FAILED CANCELLED)' = COMPLETED ]"
    fast_ms=$(median_ar "$(out "$full")") slow_ms=$(median_ar "$(out "$slow")")
    echo "median allreduce_ms: $fast_ms plain, $slow_ms with $shaping (lower bound ${floor} ms)"
    # Against the physical lower bound alone (half of it: margin for the burst and rounding), not
    # against the plain link's time: a busy machine can only make the shaped all-reduce slower.
    check "$shaping: the all-reduce takes at least the link's minimum" "awk 'BEGIN { exit !($slow_ms >= $floor / 2) }'"
    check "$shaping: adapter bit-identical to the plain link's" "cmp -s $(adapter "$full") $(adapter "$slow")"
    tc -n "$ns1" qdisc del dev "$veth1" root 2>/dev/null
    tc -n "$ns2" qdisc del dev "$veth2" root 2>/dev/null
fi

cp peftc-*.out ref.log "$dir" 2>/dev/null
if [ "$fail" -ne 0 ]; then   # what Slurm saw, for the log of a failed run
    for j in "$full" "$usr1" "$kill" ${slow:-}; do ctl scontrol show job -o "$j"; done
    tail -n 20 "$c/log/slurmctld.log" "$c"/log/slurmd-h*.log
fi
finish ref.log "peftc-$full.out" "peftc-$usr1.out" "peftc-$kill.out" ${slow:+"peftc-$slow.out"}
