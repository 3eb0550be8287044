#!/usr/bin/env bash
# Quick start: installs what is missing, fetches the default model once, builds, and trains the built-in
# default job on 2 MPI ranks: LoRA on SmolLM2-135M-Instruct learning the built-in `records` task
# (rewriting key-value records as sentences), with exact-match accuracy before and after. Extra
# arguments are passed to `peftc train` as key=value overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/install-deps.sh
./tools/fetch-model.sh
./tools/build.sh build
# Open MPI refuses to run as root unless told; containers and CI machines often are root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun -np 2 --oversubscribe build/peftc train "$@"
