#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for trying cluster/train.sbatch without a cluster and for
# tests/slurm_cluster.sh. Everything (munge key and socket, slurm.conf, state, spool, logs) lives in
# one folder, so it touches no system configuration and two of them can run side by side:
#
#   cluster/local-slurm.sh up FOLDER [CPUS]   start munged, slurmctld and slurmd; prints SLURM_CONF
#   export SLURM_CONF=FOLDER/slurm.conf       then sbatch, squeue, scancel, scontrol as usual
#   cluster/local-slurm.sh down FOLDER        stop them (running jobs are killed) and wait for them
#
# Needs root (slurmd starts jobs as their submitter) and Debian's slurmctld, slurmd, slurm-client and
# munge: tools/install-deps.sh --slurm installs them.
set -euo pipefail

die() { echo "local-slurm: $*" >&2; exit 1; }

# Ports derived from the folder name keep two clusters (say, two test runs) apart.
ports() { local h; h=$(printf '%s' "$1" | cksum | cut -d' ' -f1); echo $((20000 + (h % 2000) * 2)); }

write_conf() {  # FOLDER CPUS
    local d=$1 cpus=$2 host port
    host=$(hostname -s)
    port=$(ports "$d")
    # proctrack/linuxproc and task/affinity work without cgroups (containers, CI machines);
    # config_overrides trusts CPUs= rather than drain a node whose probe disagrees.
    cat >"$d/slurm.conf" <<EOF
ClusterName=peftc-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge/socket
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=10
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

up() {  # FOLDER [CPUS]
    local d cpus=${2:-$(nproc)} i
    [ "$(id -u)" -eq 0 ] || die "needs root: slurmd runs jobs as their submitter"
    for b in munged slurmctld slurmd sbatch; do
        command -v "$b" >/dev/null || die "'$b' not found; run tools/install-deps.sh --slurm"
    done
    mkdir -p "$1"
    d=$(cd "$1" && pwd)
    [ -e "$d/slurmctld.pid" ] && die "$d already holds a cluster; run '$0 down $d' first"
    mkdir -p "$d/munge" "$d/state" "$d/spool" "$d/log"
    # munged refuses a socket folder others cannot traverse, and a key others can read.
    chmod 711 "$d" "$d/munge"
    head -c 1024 /dev/urandom >"$d/munge/key"
    chmod 400 "$d/munge/key"
    munged --key-file="$d/munge/key" --socket="$d/munge/socket" --pid-file="$d/munge/pid" \
           --log-file="$d/log/munged.log" --seed-file="$d/munge/seed" || die "munged failed: $d/log/munged.log"
    write_conf "$d" "$cpus"
    slurmctld -f "$d/slurm.conf" || die "slurmctld failed: $d/log/slurmctld.log"
    slurmd -f "$d/slurm.conf" || die "slurmd failed: $d/log/slurmd.log"
    for i in $(seq 100); do
        [ "$(SLURM_CONF=$d/slurm.conf sinfo -h -o %T 2>/dev/null)" = idle ] && { echo "SLURM_CONF=$d/slurm.conf"; return 0; }
        sleep 0.2
    done
    die "the node did not come up within 20 s: see $d/log/slurmctld.log and $d/log/slurmd.log"
}

stop_pid() {  # PIDFILE: TERM, then KILL after 15 s
    local f=$1 pid i
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || { rm -f "$f"; return 0; }
    for i in $(seq 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
}

down() {  # FOLDER
    local d
    d=$(cd "$1" && pwd) || die "no folder $1"
    local left="" i
    if [ -s "$d/slurmctld.pid" ]; then
        export SLURM_CONF=$d/slurm.conf
        scancel --quiet --full --user=root 2>/dev/null || true
        for i in $(seq 100); do
            left=$(squeue -h -t running,completing -o %i 2>/dev/null) || break
            [ -z "$left" ] && break
            sleep 0.2
        done
    fi
    stop_pid "$d/slurmd.pid"
    stop_pid "$d/slurmctld.pid"
    # Steps that ignored the cancel would outlive their slurmd; slurmstepd names its job in argv.
    for i in $left; do pkill -9 -f "slurmstepd: \[$i\." 2>/dev/null || true; done
    stop_pid "$d/munge/pid"
}

case ${1:-} in
    up) [ $# -ge 2 ] || die "usage: $0 up FOLDER [CPUS]"; up "$2" "${3:-}" ;;
    down) [ $# -eq 2 ] || die "usage: $0 down FOLDER"; down "$2" ;;
    *) die "usage: $0 up FOLDER [CPUS] | $0 down FOLDER" ;;
esac
