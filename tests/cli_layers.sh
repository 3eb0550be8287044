#!/usr/bin/env bash
# The layer check (tools/check-layers.sh) passes on this tree and fails, naming the file and the rule,
# on copies of it with one forbidden edge each: core calling up into adapters/, a format reading a
# model, a header named with "../", and launch/ comparing a method kind.
#
# usage: cli_layers.sh PATH_TO_PEFTC (unused: the check reads sources, not the binary)
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/tests/lib_cli.sh"

check "the tree passes" "bash '$src/tools/check-layers.sh' '$src' > '$dir/ok.log' 2>&1"
bash "$src/tools/check-layers.sh" "$src" --list > "$dir/edges.log" 2>&1
check "--list shows the nn -> backend edge" "grep -q 'nn -> backend' '$dir/edges.log'"
check "--list shows no core -> adapters edge" "! grep -qE '(base|backend|formats|nn|models|train) -> (adapters|datasets|launch)' '$dir/edges.log'"

# violate NAME FILE LINE PATTERN: a copy of the tree with LINE appended to FILE must fail with PATTERN.
violate() {
    local tree="$dir/tree_$1"
    mkdir -p "$tree"
    cp -r "$src/core" "$src/comm" "$src/datasets" "$src/adapters" "$src/launch" "$src/bench" "$src/tests" \
        "$tree/" 2>/dev/null
    echo "$3" >> "$tree/$2"
    if bash "$src/tools/check-layers.sh" "$tree" > "$dir/$1.log" 2>&1; then
        check "$1 is refused" false
    else
        check "$1 is refused naming the file and the rule" "grep -q '$4' '$dir/$1.log'"
    fi
}
violate core_up core/nn/linear.c '#include "adapters/lora.h"' \
    'core/nn/linear.c includes "adapters/lora.h": layer nn may include only'
violate format_model core/formats/gguf.c '#include "core/models/llama/llama.h"' \
    'core/formats/gguf.c includes "core/models/llama/llama.h": layer formats may include only: base'
violate relative launch/main.c '#include "../core/base/status.h"' \
    'launch/main.c includes "../core/base/status.h": name project headers from the repository root'
violate method_kind launch/session.c 'static int is_full(int k) { return k == METHOD_FULL; }' \
    'method kinds compared outside adapters/'
finish ok.log core_up.log format_model.log relative.log method_kind.log
