#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/fuzz_*.c) with clang, ASan and UBSan in their own build
# folder, then runs each for a bounded time, one after the other, starting from the committed seeds
# and regression inputs in tests/fuzz/corpus/<harness>/. A crash, leak, UB report, timeout or
# over-limit allocation fails that harness; the reproducer lands in WORK/artifacts/.
#
#   tests/fuzz/run.sh [-t SECONDS] [-o WORK] [-b BUILD] [-n] [-k] [harness ...]
# Needs clang-14, libclang-rt-14-dev (libFuzzer) and libomp-14-dev (tools/install-deps.sh).
#     -t  seconds per harness (default 12)       -o  work folder: logs, grown corpus (default BUILD/run)
#     -b  build folder (default build-fuzz)       -n  do not build; run what BUILD holds
#     -k  keep going after a crash (fork mode; for long campaigns: every crash of the run is saved)
#   harness names are without the fuzz_ prefix (gguf, jsonl, ...); default: all of them.
# Ends with "N passed, M failed" and exits 1 if any failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=12 work="" build="$root/build-fuzz" do_build=1 keep_going=0
while getopts "t:o:b:nk" opt; do
  case $opt in
    t) secs=$OPTARG ;;
    o) work=$OPTARG ;;
    b) build=$OPTARG ;;
    n) do_build=0 ;;
    k) keep_going=1 ;;
    *) sed -n '2,13p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
work=${work:-$build/run}

if [ "$do_build" = 1 ]; then
  cc=${FUZZ_CC:-$(command -v clang-14 || echo clang)}
  cmake -S "$here" -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=None >/dev/null
  cmake --build "$build" -j2 >"$build/build.log" 2>&1 || { tail -40 "$build/build.log"; echo "fuzz: build failed"; exit 1; }
fi

if [ $# -gt 0 ]; then
  harnesses=("$@")
else
  harnesses=()
  for src in "$here"/fuzz_*.c; do
    name=$(basename "$src" .c)
    [ "$name" = fuzz_util ] || harnesses+=("${name#fuzz_}")
  done
fi

mkdir -p "$work/artifacts"
# One thread: the parsers are serial, and OpenMP workers would only add noise to the coverage signal.
export OMP_NUM_THREADS=1
# Set here rather than inherited: the test suite's fast_unwind_on_malloc=0 would slow every malloc.
export ASAN_OPTIONS=${FUZZ_ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# No inherited leak suppressions either (the test suite's hide HDF5's and MPI's): a harness must free all.
export LSAN_OPTIONS=${FUZZ_LSAN_OPTIONS:-}
[ -x /usr/lib/llvm-14/bin/llvm-symbolizer ] && export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer

passed=0 failed=0
for h in "${harnesses[@]}"; do
  bin="$build/fuzz_$h"
  log="$work/$h.log"
  mkdir -p "$work/corpus/$h"
  if [ ! -x "$bin" ]; then
    echo "fuzz_$h: FAIL (no binary $bin)"
    failed=$((failed + 1))
    continue
  fi
  args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$work/artifacts/$h-")
  [ -f "$here/dict/$h.dict" ] && args+=(-dict="$here/dict/$h.dict")
  [ "$keep_going" = 1 ] && args+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  # New inputs go to the first folder (the work copy); the committed seeds are only read.
  if "$bin" "${args[@]}" "$work/corpus/$h" "$here/corpus/$h" >"$log" 2>&1; then ok=1; else ok=0; fi
  # In fork mode the run itself succeeds; its status lines count what the jobs hit.
  [ "$keep_going" = 1 ] && grep -Eq "oom/timeout/crash: ([1-9]|[0-9]+/[1-9]|[0-9]+/[0-9]+/[1-9])" "$log" && ok=0
  # fork mode has no final stats: its last status line "#N: cov: ..." counts the runs
  runs=$(grep -o "stat::number_of_executed_units: [0-9]*" "$log" | tail -1 | awk '{print $2}' || true)
  [ -n "$runs" ] || runs=$(grep -o "^#[0-9]*" "$log" | tail -1 | tr -d '#' || true)
  cov=$(grep -o "cov: [0-9]*" "$log" | tail -1 | awk '{print $2}' || true)
  if [ "$ok" = 1 ]; then
    echo "fuzz_$h: PASS (${runs:-?} runs, cov ${cov:-?}, ${secs}s)"
    passed=$((passed + 1))
  else
    echo "fuzz_$h: FAIL (log $log; reproducers in $work/artifacts/)"
    grep -m1 -A30 "==ERROR\|runtime error\|ERROR: libFuzzer" "$log" | head -40 || tail -30 "$log"
    failed=$((failed + 1))
  fi
done
# A harness killed by a crash or timeout leaves its input folder (fuzz_util.c) behind.
for d in /dev/shm/peftc-fuzz-* /tmp/peftc-fuzz-*; do
  [ -d "$d" ] && ! kill -0 "${d##*-}" 2>/dev/null && rm -rf "$d"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
