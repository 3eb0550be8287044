#!/usr/bin/env bash
# Installs every Debian package peftc needs to build and test, skipping those already present.
# Safe to run repeatedly; needs root (or sudo) on Debian 12. Options add what else a script needs:
#   --slurm   the one-node test cluster (cluster/local-slurm.sh, tests/slurm_cluster.sh) and the two-host
#             one in network namespaces (tests/cluster_2host.sh: ip, tc, nsenter, unshare)
#   --bench   gnuplot for the benchmark plots (bench/*_report.py, cluster/scaling.sh)
set -euo pipefail

pkgs=(build-essential cmake pkg-config
      libopenmpi-dev openmpi-bin
      libhdf5-dev zlib1g-dev libyaml-dev libcjson-dev libutf8proc-dev
      python3 python3-pip
      check libsubunit-dev
      libopenblas-openmp-dev liblapacke-dev libdnnl-dev
      ocl-icd-opencl-dev   # oneDNN's CMake package looks for OpenCL (only a Recommends of libdnnl-dev)
      clang-14 libclang-rt-14-dev libomp-14-dev llvm-14)
for opt in "$@"; do
  case $opt in
    --slurm) pkgs+=(slurmctld slurmd slurm-client munge iproute2 util-linux) ;;
    --bench) pkgs+=(gnuplot-nox) ;;
    *) echo "install-deps: unknown option '$opt' (--slurm, --bench)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The Slurm and munge packages would start system daemons, and on a machine without systemd their
  # init scripts fail without /etc/slurm/slurm.conf. cluster/local-slurm.sh runs its own daemons, so
  # service starts are refused while installing (Debian's policy-rc.d convention) unless a policy exists.
  policy=/usr/sbin/policy-rc.d
  if [[ " ${missing[*]} " =~ \ (slurmctld|slurmd|munge)\  ]] && [ ! -e "$policy" ]; then
    $sudo_cmd sh -c "printf '#!/bin/sh\\nexit 101\\n' >$policy && chmod +x $policy"
    trap '$sudo_cmd rm -f "$policy"' EXIT
  fi
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: all dependencies present"
