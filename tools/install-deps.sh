#!/usr/bin/env bash
# Installs every Debian package peftc needs to build and test, skipping those already present.
# Safe to run repeatedly; needs root (or sudo) on Debian 12. Options add what else a script needs:
#   --slurm   the one-node test cluster (cluster/local-slurm.sh, tests/slurm_cluster.sh)
#   --bench   gnuplot for the benchmark plots (bench/*_report.py, cluster/scaling.sh)
set -euo pipefail

pkgs=(build-essential cmake pkg-config
      libopenmpi-dev openmpi-bin
      libhdf5-dev zlib1g-dev libyaml-dev libcjson-dev libutf8proc-dev
      python3 python3-pip
      check libsubunit-dev
      libopenblas-openmp-dev liblapacke-dev)
for opt in "$@"; do
  case $opt in
    --slurm) pkgs+=(slurmctld slurmd slurm-client munge) ;;
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
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: all dependencies present"
