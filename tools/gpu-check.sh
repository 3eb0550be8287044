#!/usr/bin/env bash
# The GPU check: everything the CUDA backend must show on a real GPU, in one call of a few minutes.
#
#   tools/gpu-check.sh bundle            on the CPU machine: builds build-gpu (CUDA for sm_90, no MPI)
#                                        and packs the binaries and the shared libraries a bare GPU
#                                        machine lacks into .gpucheck/bundle.tar.xz (git-ignored)
#   tools/gpu-check.sh run OUTDIR [PACKDIR]
#                                        on the GPU machine, from the repository root with .gpucheck/
#                                        beside it: unpacks, then runs the steps below; with PACKDIR,
#                                        also leaves table.md and gpu-check-logs.tar.gz there (the
#                                        device call's $OUT takes a few flat files only):
#                                          tools/gpu-check.sh run /tmp/gpucheck "$OUT"   (carry .gpucheck)
#   tools/gpu-check.sh dryrun OUTDIR     on the CPU machine: the same steps on the CPU at tiny shapes, to
#                                        check the script itself (GPU-only steps report "no GPU"; the
#                                        PyTorch script runs on the CPU with $GPUCHECK_PYTHON)
#
# Steps (each logged to OUTDIR/<step>.log, the whole summarised in OUTDIR/table.md):
#   env       the GPU, driver, CUDA and PyTorch found there; libraries the binaries cannot resolve
#   ctest     ctest -L gpu: the gpu_* suites against the CPU backend
#   step      peftc train on a small random LLaMA, CUDA against CPU, fp32 and bf16: the losses of 8 steps
#   bench     LoRA r=16 on all linear layers, bf16, at SmolLM2-135M's and LLaMA-3.2-1B's shapes: peftc
#             (bench_step) and PyTorch + PEFT (bench/torch_lora_gpu.py) side by side, tokens/s, useful
#             TFLOP/s and MFU against the bf16 matmul peak PyTorch measures, peak memory; and RoSA's step
#             against LoRA's
#   memcheck  compute-sanitizer memcheck on gpu_comm and gpu_ops_core, racecheck on gpu_ops_core, in
#             the time left of the budget
#
# Each step runs under a timeout and a failing step does not stop the next. Exit status: 0 when every
# step that ran passed.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
mode=${1:-}
bundle=.gpucheck/bundle.tar.xz
build=build-gpu
targets="peftc bench_step gpu_ops gpu_ops_core gpu_model gpu_comm"

die() { echo "gpu-check: $*" >&2; exit 2; }

# ---------------------------------------------------------------- bundle (CPU machine)

# Shared libraries of the binaries, less what every Linux has (the C library) and the CUDA libraries
# (the GPU machine's driver and toolkit, or PyTorch's wheels, must provide those that match its driver).
bundle_libs() {
  ldd "$@" | awk '$3 ~ /^\// {print $3}' | sort -u |
    grep -Ev '/(libc|libm|libdl|libpthread|librt|libresolv|libutil|libanl|ld-linux-x86-64|libgcc_s|libstdc\+\+)\.so' |
    grep -Ev '/lib(cuda|cudart|cublas|cublasLt|cusparse|nccl|nvidia-ml)\.so'
}

make_bundle() {
  cmake -S . -B $build -DCMAKE_BUILD_TYPE=Release -DPEFTC_WITH_CUDA=ON -DPEFTC_WITH_MPI=OFF \
    "-DCMAKE_CUDA_ARCHITECTURES=90-real;90-virtual" >/dev/null || die "configure failed"
  cmake --build $build -j"$(nproc)" --target $targets || die "build failed"
  local bins=($build/peftc $build/bench_step $build/tests/gpu_ops $build/tests/gpu_ops_core $build/tests/gpu_model
              $build/tests/gpu_comm)
  rm -rf .gpucheck/stage && mkdir -p .gpucheck/stage/$build/lib .gpucheck/stage/$build/tests
  cp -L $(bundle_libs "${bins[@]}") .gpucheck/stage/$build/lib/
  for b in "${bins[@]}"; do cp "$b" ".gpucheck/stage/$b"; done
  # ctest -L gpu runs from the copied test files; they name the build folder by its absolute path,
  # which `run` recreates there as a link to the repository.
  cp $build/CTestTestfile.cmake .gpucheck/stage/$build/
  cp $build/tests/CTestTestfile.cmake .gpucheck/stage/$build/tests/
  echo "$here" >.gpucheck/stage/$build/source_dir
  local n_libs
  n_libs=$(ls .gpucheck/stage/$build/lib | wc -l)
  tar -C .gpucheck/stage -cJf $bundle $build || die "packing failed"
  rm -rf .gpucheck/stage
  echo "gpu-check: $bundle $(du -h $bundle | cut -f1) ($n_libs libraries); carry .gpucheck"
}

# ---------------------------------------------------------------- run (GPU machine, or dry run)

declare -a rows=()
failed=0
row() { rows+=("| $1 | $2 | $3 |"); [ "$2" = FAIL ] && failed=1; return 0; }

# The binaries' folder at the absolute path they were built in, and their libraries on the search
# path: the bundle's, then the CUDA toolkit's, then those in PyTorch's nvidia-* wheels.
unpack() {
  if [ -f $bundle ] && [ "$mode" = run ]; then
    rm -rf $build && tar -xJf $bundle || die "cannot unpack $bundle"
  fi
  [ -x $build/peftc ] || die "$build/peftc is missing: run 'tools/gpu-check.sh bundle' first"
  local src
  src=$(cat $build/source_dir 2>/dev/null || echo "$here")
  if [ "$src" != "$here" ]; then
    [ -e "$src" ] && [ "$(cd "$src" && pwd -P)" != "$(pwd -P)" ] && die "$src exists and is not this repository"
    mkdir -p "$(dirname "$src")" && ln -sfn "$here" "$src" || die "cannot link $src to $here"
  fi
  local wheels
  wheels=$(python3 -c 'import glob, os, nvidia; print(":".join(sorted({os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(d + "/*/lib/lib*.so*")})))' 2>/dev/null)
  export LD_LIBRARY_PATH="$here/$build/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${wheels}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

step_env() {
  {
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1
    nvcc --version 2>&1 | tail -1
    python3 -c 'import torch, transformers, peft; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available(), "transformers", transformers.__version__, "peft", peft.__version__)' 2>&1
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    ldd $build/peftc $build/tests/gpu_model
  } >"$out/env.log" 2>&1
  local gpu missing
  gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
  missing=$(grep -c '=> not found' "$out/env.log")
  if [ "$missing" -gt 0 ]; then row env FAIL "$missing libraries not found (env.log)"
  else row env ok "${gpu:-no GPU}; $(grep -o 'torch [^ ]* cuda [^ ]* [A-Za-z]*' "$out/env.log" | head -1)"; fi
}

step_ctest() {
  (cd $build && timeout 300 ctest -L gpu --output-on-failure) >"$out/ctest.log" 2>&1
  local rc=$? summary
  summary=$(grep -E 'tests passed|tests failed' "$out/ctest.log" | tail -1)
  if [ $rc -ne 0 ]; then row "ctest -L gpu" FAIL "${summary:-exit $rc} (ctest.log)"
  elif grep -q 'Not Run\|Skipped' "$out/ctest.log" && [ -z "$gpu_present" ]; then row "ctest -L gpu" "no GPU" "$summary, skipped"
  else row "ctest -L gpu" ok "$summary"; fi
}

# Last, in what is left of the budget: a sanitized suite runs ten to a hundred times slower.
step_sanitizers() {
  if [ -z "$gpu_present" ] || ! command -v compute-sanitizer >/dev/null; then
    row compute-sanitizer "no GPU" "not run"
    return
  fi
  local tool suite rc limit
  for spec in memcheck:gpu_comm memcheck:gpu_ops_core racecheck:gpu_ops_core; do
    tool=${spec%%:*} suite=${spec#*:}
    limit=$(( (budget - (SECONDS - t0)) / 2 ))
    [ $limit -gt 150 ] && limit=150
    if [ $limit -lt 20 ]; then row "$tool $suite" "not run" "the time budget is spent"; continue; fi
    CK_FORK=no timeout $limit compute-sanitizer --tool "$tool" --error-exitcode 9 $build/tests/$suite \
      >"$out/$tool-$suite.log" 2>&1
    rc=$?
    case $rc in
      0) row "$tool $suite" ok "$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/$tool-$suite.log" | tail -1)" ;;
      124) row "$tool $suite" "timed out" "after $limit s, no error reported before ($tool-$suite.log)" ;;
      *) row "$tool $suite" FAIL "exit $rc: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|Failures' "$out/$tool-$suite.log" | tail -1)" ;;
    esac
  done
}

# Losses of 8 steps on a small random LLaMA on `dev` at `prec`; prints the train rows' losses.
train_losses() {
  local dev=$1 prec=$2 dir="$out/step-$1-$2"
  timeout 120 $build/peftc train model.path= model.hidden=256 model.intermediate=512 model.layers=4 model.heads=8 \
    model.kv_heads=4 model.vocab=2048 data.task=reverse train.seq_len=128 train.micro_batch=4 train.steps=8 \
    sched.warmup=1 train.eval_every=0 eval.examples=0 output.log_every=1 data.cache_dir= \
    train.device="$dev" train.precision="$prec" output.dir="$dir" >"$dir.log" 2>&1 || return 1
  grep '^train,' "$dir/metrics.csv" | cut -d, -f3
}

step_train() {
  local prec tol cpu dev worst
  for prec in fp32 bf16; do
    tol=$([ $prec = fp32 ] && echo 1e-4 || echo 2e-2)
    cpu=$(train_losses cpu $prec) || { row "train step $prec" FAIL "the CPU run failed (step-cpu-$prec.log)"; continue; }
    if [ -z "$gpu_present" ]; then row "train step $prec, CUDA vs CPU" "no GPU" "CPU run ok"; continue; fi
    dev=$(train_losses cuda $prec) || { row "train step $prec, CUDA vs CPU" FAIL "the CUDA run failed (step-cuda-$prec.log)"; continue; }
    worst=$(paste <(echo "$cpu") <(echo "$dev") | awk '{d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > w) w = r; n++} END {if (n != 8) print "rows " n; else printf "%.2e", w}')
    if [[ $worst == rows* ]] || awk -v w="$worst" -v t="$tol" 'BEGIN {exit !(w > t)}'; then
      row "train step $prec, CUDA vs CPU (NCCL 1 rank)" FAIL "worst relative loss difference $worst over 8 steps (tolerance $tol)"
    else
      row "train step $prec, CUDA vs CPU (NCCL 1 rank)" ok "worst relative loss difference $worst over 8 steps (tolerance $tol)"
    fi
  done
}

# Benchmark shapes: name, the overrides bench_step takes, the torch script's flags. Batch and sequence
# fill an H200 without running out of memory in PyTorch (its logits alone take B x T x V x 4 bytes).
bench_shapes() {
  if [ -n "$dry" ]; then
    echo "smollm2|model.hidden=64 model.intermediate=128 model.layers=2 model.heads=4 model.kv_heads=2 model.vocab=256 data.max_digits=16|--shape smollm2"
    return
  fi
  echo "smollm2||--shape smollm2"
  echo "llama1b|model.hidden=2048 model.intermediate=8192 model.layers=16 model.heads=32 model.kv_heads=8 model.vocab=128256 model.rope_theta=500000|--shape llama1b"
}

# One bench_step run: prints "tokens/s|useful GFLOP/s|peak GPU GiB|ms/step", or "failed|||".
peftc_bench() {
  local log=$1; shift
  timeout 240 $build/bench_step "$@" >"$log" 2>&1 || { echo "failed|||"; return; }
  local tps ms useful peak
  read -r tps ms useful < <(sed -n 's/^bench_step: \([0-9.]*\) tokens\/s, \([0-9.]*\) ms\/step.*, \([0-9.]*\) useful GFLOP\/s.*/\1 \2 \3/p' "$log")
  peak=$(sed -n 's/^bench_step: peak GPU memory \([0-9.]*\) GiB/\1/p' "$log")
  [ -z "$peak" ] && peak=$(sed -n 's/.*peak RSS \([0-9.]*\) GiB.*/\1 (RSS)/p' "$log")
  echo "$tps|$useful|$peak|$ms"
}

step_bench() {
  local name shape torchflags dev T B steps common lora rosa tline
  dev=$([ -n "$dry" ] && echo cpu || echo cuda)
  T=$([ -n "$dry" ] && echo 64 || echo 1024)
  B=$([ -n "$dry" ] && echo 2 || echo 8)
  steps=$([ -n "$dry" ] && echo 3 || echo 12)
  bench_rows=()
  while IFS='|' read -r name shape torchflags; do
    common="train.device=$dev train.precision=bf16 train.seq_len=$T train.micro_batch=$B train.steps=$steps
            sched.warmup=1 lora.r=16 lora.alpha=32 lora.dropout=0 lora.targets=all-linear $shape"
    lora=$(peftc_bench "$out/bench-peftc-lora-$name.log" $common)
    mkdir -p "$out/rosa-$name" # where RoSA writes its mask
    rosa=$(peftc_bench "$out/bench-peftc-rosa-$name.log" $common method.name=rosa rosa.density=0.01 rosa.warmup=2 \
           rosa.restart=false output.dir="$out/rosa-$name")
    if [ -n "$gpu_present" ]; then
      PYTHONUNBUFFERED=1 timeout 300 python3 bench/torch_lora_gpu.py $torchflags --seq $T --batch $B --steps $steps \
        --warmup 3 >"$out/bench-torch-$name.log" 2>&1
    elif [ -n "$dry" ]; then # the same script on the CPU, fp32 (bf16 autocast is emulated on most CPUs)
      PYTHONUNBUFFERED=1 timeout 300 "${GPUCHECK_PYTHON:-python3}" bench/torch_lora_gpu.py $torchflags --seq $T \
        --batch $B --steps 2 --warmup 1 --device cpu --dtype float32 >"$out/bench-torch-$name.log" 2>&1
    fi
    tline=$(grep -s '^torch:' "$out/bench-torch-$name.log")
    bench_rows+=("$name|$lora|$rosa|$tline")
  done < <(bench_shapes)
  bench_table
}

# The benchmark table: one row per shape and run; MFU against PyTorch's 8192^3 bf16 matmul peak.
bench_table() {
  local r name ltps luseful lpeak lms rtps ruseful rpeak rms tline ttps tms tpeak mm
  {
    echo
    echo "| shape | run | tokens/s | ms/step | useful TFLOP/s | MFU | peak GPU memory (GiB) | vs PyTorch + PEFT |"
    echo "|---|---|---|---|---|---|---|---|"
    for r in "${bench_rows[@]}"; do
      IFS='|' read -r name ltps luseful lpeak lms rtps ruseful rpeak rms tline <<<"$r"
      ttps=$(sed -n 's/.*tokens\/s \([0-9.]*\).*/\1/p' <<<"$tline")
      tms=$(sed -n 's/.*step_ms \([0-9.]*\).*/\1/p' <<<"$tline")
      tpeak=$(sed -n 's/.*peak_mem_gib \([0-9.]*\).*/\1/p' <<<"$tline")
      mm=$(sed -n 's/.*bf16 matmul peak \([0-9.]*\) TFLOP.*/\1/p' <<<"$tline")
      echo "| $name | peftc LoRA | $ltps | ${lms:-} | $(tflops "$luseful") | $(mfu "$luseful" "$mm") | ${lpeak:-} | $(ratio "$ltps" "$ttps") |"
      echo "| $name | peftc RoSA 1% | $rtps | ${rms:-} | $(tflops "$ruseful") | $(mfu "$ruseful" "$mm") | ${rpeak:-} | step $(ratio "$rms" "$lms") LoRA's |"
      echo "| $name | PyTorch + PEFT | ${ttps:-not run} | ${tms:-} | $(sed -n 's/.*useful_tflops \([0-9.]*\).*/\1/p' <<<"$tline") | $(sed -n 's/.*mfu \([0-9.]*\).*/\1/p' <<<"$tline") | ${tpeak:-} | |"
    done
    [ -n "${mm:-}" ] && echo && echo "MFU: useful FLOPs over PyTorch's measured 8192^3 bf16 matmul rate, $mm TFLOP/s."
  } >"$out/bench.md"
  if grep -q '| failed |' "$out/bench.md"; then row bench FAIL "a peftc run failed (bench-*.log)"
  else row bench "$([ -n "$gpu_present" ] && echo ok || echo "no GPU")" "see the table below"; fi
}

tflops() { [ -n "$1" ] && awk -v g="$1" 'BEGIN {printf "%.1f", g / 1000}'; }
mfu() { [ -n "$1" ] && [ -n "$2" ] && awk -v g="$1" -v p="$2" 'BEGIN {if (p > 0) printf "%.3f", g / 1000 / p}'; }
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2fx", a / b}'; }

# The whole run aims at budget seconds (GPUCHECK_BUDGET, default 480); the sanitizers get what is left.
run_all() {
  out=$1
  mkdir -p "$out" || die "cannot create $out"
  unpack
  gpu_present=""
  [ -z "$dry" ] && nvidia-smi -L >/dev/null 2>&1 && gpu_present=1
  t0=$SECONDS budget=${GPUCHECK_BUDGET:-480}
  step_env
  step_ctest
  step_train
  step_bench
  step_sanitizers
  {
    echo "# GPU check ($(date -u +%Y-%m-%dT%H:%MZ), $((SECONDS - t0)) s, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo
    echo "| step | result | detail |"
    echo "|---|---|---|"
    printf '%s\n' "${rows[@]}"
    cat "$out/bench.md" 2>/dev/null
  } >"$out/table.md"
  cat "$out/table.md"
  # What comes back from a device call is a few flat files: the table and one archive of every log.
  if [ -n "${pack:-}" ]; then
    mkdir -p "$pack" && cp "$out/table.md" "$pack/" && tar -C "$(dirname "$out")" -czf "$pack/gpu-check-logs.tar.gz" \
      "$(basename "$out")"
  fi
  return $failed
}

usage="usage: $0 bundle | run OUTDIR [PACKDIR] | dryrun OUTDIR [PACKDIR]"
case $mode in
  bundle) make_bundle ;;
  run | dryrun)
    [ $# -ge 2 ] && [ $# -le 3 ] || die "$usage"
    dry=$([ "$mode" = dryrun ] && echo 1)
    pack=${3:-}
    run_all "$2" ;;
  *) die "$usage" ;;
esac
