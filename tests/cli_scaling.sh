#!/usr/bin/env bash
# cluster/scaling.sh end to end on the toy model: both rank counts run (the script starts them with
# mpirun, an mpiexec), and scaling.csv, scaling.md and scaling.png come out with one row per rank count,
# numbers consistent with the runs' own metrics, and the command that made them.
set -uo pipefail
peftc=$(realpath "$1")
here=$(cd "$(dirname "$0")/.." && pwd)
. "$(dirname "$0")/lib_cli.sh"

PEFTC_BIN=$peftc "$here/cluster/scaling.sh" --ranks "1 2" --steps 6 --skip 2 --out "$dir/weak" \
  model.path= data.task=reverse train.seq_len=32 >"$dir/weak.log" 2>&1
check "weak scaling run exits 0" "[ $? -eq 0 ]"
PEFTC_BIN=$peftc "$here/cluster/scaling.sh" --ranks "1 2" --mode strong --steps 4 --skip 1 --out "$dir/strong" \
  model.path= data.task=reverse train.seq_len=32 >"$dir/strong.log" 2>&1
check "strong scaling run exits 0" "[ $? -eq 0 ]"
check "scaling.png is a PNG" "head -c 8 '$dir/weak/scaling.png' | od -An -c | grep -q 'P   N   G'"
check "scaling.md names the command" "grep -q 'cluster/scaling.sh --ranks 1 2 --steps 6 --skip 2' '$dir/weak/scaling.md'"
check "the CSV agrees with the runs' metrics" "python3 - '$dir/weak' '$dir/strong' <<'PY'
import csv, statistics, sys
for root, mode, skip in ((sys.argv[1], 'weak', 2), (sys.argv[2], 'strong', 1)):
    rows = list(csv.DictReader(open(root + '/scaling.csv')))
    assert [r['ranks'] for r in rows] == ['1', '2'], rows
    want_batch = {'weak': ['4', '8'], 'strong': ['8', '8']}[mode]   # micro_batch 4; strong: 1 x accum 2 = 2 x 1
    assert [r['global_batch'] for r in rows] == want_batch, (mode, rows)
    assert [r['accum'] for r in rows] == ({'weak': ['1', '1'], 'strong': ['2', '1']}[mode]), rows
    for r in rows:
        m = [x for x in csv.DictReader(open('%s/runs/np%s/metrics.csv' % (root, r['ranks'])))
             if x['kind'] == 'train' and int(x['step']) > skip]
        step = statistics.mean(float(x['step_ms']) for x in m)
        assert int(r['steps_measured']) == len(m) and abs(float(r['step_ms']) - step) < 1e-3, (r, step)
        parts = float(r['compute_ms']) + float(r['allreduce_ms']) + float(r['update_ms'])
        assert abs(parts - float(r['step_ms'])) < 1e-3, r
        tps = int(r['tokens_per_step']) / (step / 1e3)
        assert abs(float(r['tokens_per_s']) - tps) < 1e-3 * tps, (r, tps)
        assert int(r['bytes_reduced_per_step']) == int(m[-1]['bytes_reduced']) > 0, r
    base, two = rows
    assert float(base['efficiency']) == 1.0
    eff = float(two['tokens_per_s']) / (2 * float(base['tokens_per_s']))
    assert abs(float(two['efficiency']) - eff) < 1e-3, (two, eff)
    assert float(two['allreduce_ms']) > 0, two
print('  scaling.csv rows agree with metrics.csv (weak and strong)')
PY"
check "a rank count that does not divide the largest is refused in strong mode" \
  "! '$here/cluster/scaling.sh' --ranks '2 3' --mode strong --out '$dir/bad' >'$dir/bad.log' 2>&1 && grep -q 'divide the largest' '$dir/bad.log'"
finish weak.log strong.log bad.log
