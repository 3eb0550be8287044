# Shared by the study scripts (compare_methods.sh, sdt_study.sh); sourced, not run.
#
# train NAME SEED key=value...: one run of the study into $out/runs/NAME/seedSEED, skipped when its
# summary.json exists (an interrupted study resumes where it stopped). The caller sets $study (the
# name its lines start with), $out, common (the keys every run shares) and launch (the command that
# starts `peftc train`, e.g. with mpirun in front).
train() {
    local name=$1 seed=$2; shift 2
    local dir=$out/runs/$name/seed$seed
    [ -f "$dir/summary.json" ] && return 0
    mkdir -p "$dir"
    echo "$study: $name seed $seed"
    if ! "${launch[@]}" "${common[@]}" train.seed="$seed" output.dir="$dir" "$@" >"$dir/log" 2>&1; then
        echo "$study: $name seed $seed failed; the last lines of $dir/log:" >&2
        tail -5 "$dir/log" >&2
        exit 1
    fi
    grep '^peftc: done' "$dir/log"
}
