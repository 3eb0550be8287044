#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, fetches the default model (the tests on the real
# model skip without it), builds, runs every CTest suite (CPU, MPI at 1/2/3 ranks, command line, the
# cluster script under a real one-node Slurm), then rebuilds with AddressSanitizer +
# UndefinedBehaviorSanitizer and runs them all again but the Slurm one (it exercises Slurm and the
# script; the peftc code it runs is covered there by cli_slurm and cli_resume).
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/install-deps.sh --slurm --bench
./tools/fetch-model.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "== build (Release)"
./tools/build.sh build
echo "== tests (Release)"
# Two suites at a time (CI machines have 2 cores); suites that need the whole machine (the Slurm
# clusters) run alone, and MPI suites reserve their rank count (RUN_SERIAL, PROCESSORS in tests/).
(cd build && ctest --output-on-failure --timeout 900 -j2)

echo "== build (ASan + UBSan)"
./tools/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DPEFTC_SANITIZE=ON -DPEFTC_WITH_CUDA=OFF
echo "== tests (ASan + UBSan)"
# Open MPI keeps some allocations until exit: tests/lsan.supp names its libraries. Keeping its
# components loaded and unwinding fully (MPI has no frame pointers) lets those names match, so every
# leak in peftc's own code is still reported.
export OMPI_MCA_mca_base_component_disable_dlclose=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:fast_unwind_on_malloc=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# cli_methods_bf16 (label bf16) only repeats cli_methods' runs in bf16, whose code test_bf16 covers here;
# cli_model (label realmodel) is the real model's end-to-end run, whose code the other suites cover here
# (tests/CMakeLists.txt says which); unoptimised under the sanitizers it would take minutes.
(cd build-asan && ctest --output-on-failure --timeout 900 -j2 -LE 'slurm|bf16|realmodel')

echo "== fuzz (libFuzzer + ASan + UBSan, 4 s per parser)"
# Every harness in tests/fuzz replays its committed seeds and regression inputs, then mutates them for
# 4 s; a crash, leak, UB report or over-limit allocation fails the stage. Ends "N passed, M failed".
tests/fuzz/run.sh -t 4 -o build-fuzz/ci
