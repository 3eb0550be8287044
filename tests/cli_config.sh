#!/usr/bin/env bash
# Configuration errors as the user sees them: `peftc train ...` must fail fast with exit code 2 and
# "peftc: error: <message>" on stderr naming the key (and the file and line for YAML), and
# `peftc train --help` must list every key.
#
# usage: cli_config.sh PATH_TO_PEFTC
# The YAML file is the first argument (`peftc train job.yaml key=value ...`); set PEFTC_CONFIG_FLAG
# (e.g. to --config) if the command line takes it behind a flag instead.
set -u

BIN=${1:?usage: cli_config.sh PATH_TO_PEFTC}
CONFIG_FLAG=${PEFTC_CONFIG_FLAG-}
WORK=$(mktemp -d /tmp/peftc_cli_config.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
pass=0
fail=0

ok() {
    pass=$((pass + 1))
    echo "ok   $1"
}

bad() {
    fail=$((fail + 1))
    echo "FAIL $1: $2"
    sed -n '1,5s/^/       stderr: /p' "$WORK/err"
}

# Runs the binary; a config error must not start training, so a generous timeout only guards a hang.
run() {
    timeout 120 "$BIN" "$@" >"$WORK/out" 2>"$WORK/err"
    rc=$?
}

config_args() {
    if [ -n "$CONFIG_FLAG" ]; then cfg=("$CONFIG_FLAG" "$1"); else cfg=("$1"); fi
}

# expect_error NAME NEEDLES ARGS... : exit 2, "peftc: error: " on stderr, and every '|'-separated needle.
expect_error() {
    local name=$1 needles=$2 n
    shift 2
    run train "$@"
    if [ "$rc" -ne 2 ]; then bad "$name" "exit code $rc, expected 2"; return; fi
    if ! grep -q '^peftc: error: ' "$WORK/err"; then bad "$name" "stderr lacks 'peftc: error: '"; return; fi
    IFS='|' read -ra list <<<"$needles"
    for n in "${list[@]}"; do
        if ! grep -qF -- "$n" "$WORK/err"; then bad "$name" "stderr does not mention '$n'"; return; fi
    done
    ok "$name"
}

write_yaml() {
    printf '%s' "$2" >"$WORK/$1"
    echo "$WORK/$1"
}

expect_error "unknown key override" "lora.rank|lora.r'" lora.rank=4
expect_error "unknown leaf override" "acum" acum=2
expect_error "ambiguous leaf override" "seed" seed=3
expect_error "integer given text" "train.steps|ten" train.steps=ten
expect_error "integer given a fraction" "train.accum" train.accum=1.5
expect_error "bool given maybe" "model.tie_embeddings" model.tie_embeddings=maybe
expect_error "enum given an unknown name" "sched.type|cosine" sched.type=step
expect_error "value out of range" "lora.dropout" lora.dropout=1.5
expect_error "rank out of range" "lora.r" lora.r=0
expect_error "override without =" "lora.alpha" train.steps=5 lora.alpha
expect_error "cross-field check" "model.kv_heads|model.heads" model.kv_heads=3
expect_error "sequence too short for the task" "train.seq_len" model.path= data.task=reverse train.seq_len=8
expect_error "flag form is checked like key=value" "lora.rank|lora.r'" --lora.rank 4
expect_error "flag without a value" "--lora.r" --lora.r
expect_error "flag=value form is checked" "lora.dropout" --lora.dropout=2

config_args "$WORK/missing.yaml"
expect_error "missing YAML file" "$WORK/missing.yaml" "${cfg[@]}"

f=$(write_yaml unknown.yaml $'model:\n  hidden: 64\n  hiden: 32\n')
config_args "$f"
expect_error "YAML unknown key names file and line" "$f:3|model.hiden" "${cfg[@]}"

f=$(write_yaml type.yaml $'lora:\n  r: eight\n')
config_args "$f"
expect_error "YAML wrong type names file and line" "$f:2|lora.r" "${cfg[@]}"

f=$(write_yaml shape.yaml $'train:\n  steps:\n    n: 3\n')
config_args "$f"
expect_error "YAML mapping where a value belongs" "train.steps" "${cfg[@]}"

f=$(write_yaml syntax.yaml $'model:\n  hidden: [64\n')
config_args "$f"
expect_error "YAML syntax error names the file" "$f" "${cfg[@]}"

f=$(write_yaml ok.yaml $'lora:\n  r: 4\n')
config_args "$f"
expect_error "override after a valid file still checked" "lora.alpha" "${cfg[@]}" lora.alpha=-1

run train --help
if [ "$rc" -ne 0 ]; then
    bad "--help" "exit code $rc, expected 0"
else
    missing=""
    for key in model.hidden model.kv_heads model.tie_embeddings method.name lora.r lora.alpha lora.targets \
        train.steps train.accum train.threads optim.lr optim.grad_clip sched.type sched.warmup data.task \
        data.max_digits output.dir output.log_every; do
        grep -qF -- "$key" "$WORK/out" "$WORK/err" || missing="$missing $key"
    done
    if [ -z "$missing" ]; then ok "--help lists the keys"; else bad "--help" "does not list:$missing"; fi
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
