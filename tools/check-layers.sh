#!/usr/bin/env bash
# Lists the include edges between the project's layers and fails on one against the arrows (README,
# "Architecture"). The build runs it before compiling anything; `--list` prints every edge with its count.
#
#   launch      -> everything below
#   adapters    -> train models nn backend formats comm base
#   datasets    -> train formats base
#   train       -> models nn backend formats comm base
#   models      -> nn backend formats base
#   nn          -> backend formats base
#   backend, formats, comm -> base
#
# It also enforces one include style (project headers named from the repository root, never with
# "../") and that no method kind is compared outside adapters/.
set -euo pipefail
root=${1:-$(dirname "$0")/..}
cd "$root"
list=0
[[ ${2:-} == --list || ${1:-} == --list ]] && list=1

# The layer a path belongs to (empty: not a layer, e.g. tests/ and bench/, which may include anything).
layer_of() {
    case $1 in
        core/base/*) echo base ;;
        core/backend/*) echo backend ;;
        core/formats/*) echo formats ;;
        core/nn/*) echo nn ;;
        core/models/*) echo models ;;
        core/train/*) echo train ;;
        comm/*) echo comm ;;
        datasets/*) echo datasets ;;
        adapters/*) echo adapters ;;
        launch/*) echo launch ;;
        core/*) echo core-unsorted ;;
        *) echo "" ;;
    esac
}

declare -A allowed=(
    [base]=""
    [backend]="base"
    [formats]="base"
    [comm]="base"
    [nn]="backend formats base"
    [models]="nn backend formats base"
    [train]="models nn backend formats comm base"
    [datasets]="train formats base"
    [adapters]="train models nn backend formats comm base"
    [launch]="adapters datasets train models nn backend formats comm base"
)

declare -A edges=()
bad=0
while IFS= read -r -d '' f; do
    from=$(layer_of "$f")
    while IFS= read -r line; do
        target=${line#*\"}
        target=${target%%\"*}
        if [[ $target == ../* || $target == */../* ]]; then
            echo "check-layers: $f includes \"$target\": name project headers from the repository root" >&2
            bad=1
            continue
        fi
        [[ -e $target ]] || continue # a system header in quotes, or one relative to tests/
        to=$(layer_of "$target")
        [[ -n $from && -n $to && $from != "$to" ]] || continue
        edges["$from -> $to"]=$(( ${edges["$from -> $to"]:-0} + 1 ))
        if [[ $from == core-unsorted || $to == core-unsorted ]]; then
            echo "check-layers: $f: files directly under core/ belong in one of its layer folders" >&2
            bad=1
        elif [[ " ${allowed[$from]} " != *" $to "* ]]; then
            echo "check-layers: $f includes \"$target\": layer $from may include only: ${allowed[$from]:-nothing}" >&2
            bad=1
        fi
    done < <(grep -E '^\s*#\s*include\s+"' "$f" || true)
done < <(find core comm datasets adapters launch bench tests \( -name '*.c' -o -name '*.h' -o -name '*.cu' \) -print0)

# Method kinds belong to adapters/: everything else asks the method's descriptor (adapters/method.h).
if matches=$(grep -rnE '\bMETHOD_[A-Z]+\b|\bmethod_is_[a-z_]+\(|\brosa_is\(' core comm datasets launch bench \
                 --include='*.c' --include='*.h' --include='*.cu'); then
    echo "check-layers: method kinds compared outside adapters/ (ask the MethodDesc instead):" >&2
    echo "$matches" >&2
    bad=1
fi

if (( list )); then
    for e in "${!edges[@]}"; do printf '%5d  %s\n' "${edges[$e]}" "$e"; done | sort -k2
fi
exit $bad
