#!/usr/bin/env bash
# output.tensorboard through the binary, the event files read back by the tests' own reader
# (tfevents_dump, built from tests/tfevents_reader.h):
#  - a run leaves exactly one non-empty event file holding the metrics CSV's values at the CSV's steps,
#    and eval/exact_match before and after training as summary.json has them;
#  - resuming from a checkpoint behind the last step adds a second file opening with a START at the step
#    after the checkpoint, and what TensorBoard shows (earlier files' events before that step, then the
#    new file) is the truncated-and-continued CSV, with no step twice;
#  - a shorter fresh run in the same folder adds a third file, after which only its curve shows;
#  - without the key there is no tensorboard/ folder; a tensorboard/ that is a file stops the run, named.
set -uo pipefail
peftc=$1
dump=${TFEVENTS_DUMP:?the tfevents_dump helper, set by tests/CMakeLists.txt}
. "$(dirname "$0")/lib_cli.sh"
export OMP_NUM_THREADS=1
fixtures="$(cd "$(dirname "$0")" && pwd)/fixtures"

# A random model on text with a tokenizer, so exact match runs (on the one held-out example).
base="model.path= model.vocab=512 data.path=$fixtures/sft/prompt.jsonl data.cache_dir= data.eval_percent=25
      data.tokenizer=$fixtures/tokenizer/gpt2/tokenizer.json train.seq_len=32 train.steps=6 sched.warmup=1
      train.eval_every=3 eval.examples=1 eval.max_new_tokens=2 checkpoint.every=3 output.log_every=1"
events() { ls "$1"/tensorboard/events.out.tfevents.* 2>/dev/null; }

# shown RUN [FIRST]: what TensorBoard shows of RUN's event files against its metrics.csv and summary.json:
# files in name order, a START dropping the points already read at or after its step; then every CSV
# value must be there once, as float32 (tokens/s to the CSV's 0.1), and nothing else. A resumed run's
# exact match before training is in FIRST, the summary.json of the run it continues.
shown() {
  "$dump" $(events "$1") >"$1.dump" && python3 - "$1" "${2:-$1/summary.json}" <<'PY'
import json, struct, sys
run = sys.argv[1]
f32 = lambda x: struct.unpack('f', struct.pack('f', x))[0]
seen = {}
for line in open(run + '.dump'):
    w = line.split()
    if w[0] == 'start':
        seen = {k: v for k, v in seen.items() if k[0] < int(w[1])}
    elif w[0] == 'scalar':
        key = (int(w[1]), w[2])
        assert key not in seen, ('twice', key)
        seen[key] = float(w[3])
want = {}
for row in open(run + '/metrics.csv').read().split('\n')[1:]:
    c = row.split(',')
    if c[0] == 'train':
        for tag, i in (('loss', 2), ('learning_rate', 3), ('grad_norm', 4), ('tokens_per_second', 6)):
            want[(int(c[1]), 'train/' + tag)] = float(c[i])
    elif c[0] == 'eval':
        want[(int(c[1]), 'eval/loss')] = float(c[2])
s = json.load(open(run + '/summary.json'))
want[(0, 'eval/exact_match')] = json.load(open(sys.argv[2]))['exact_match_before']
want[(s['steps'], 'eval/exact_match')] = s['exact_match_after']
assert sorted(seen) == sorted(want), (sorted(set(seen) ^ set(want)))
for k, v in want.items():
    tol = 0.05 if k[1] == 'train/tokens_per_second' else 0
    assert abs(seen[k] - f32(v)) <= tol + 2e-7 * abs(v), (k, seen[k], v)
print(len(seen), 'points')
PY
}

"$peftc" train $base output.tensorboard=true output.dir="$dir/a" >"$dir/a.log" 2>&1
check "a run with output.tensorboard=true exits 0" "[ $? -eq 0 ]"
check "it leaves exactly one non-empty event file" "[ \$(events '$dir/a' | wc -l) -eq 1 ] && [ -s \"\$(events '$dir/a')\" ]"
check "the file's scalars are the metrics CSV's and summary.json's" "shown '$dir/a' >>'$dir/a.log' 2>&1"
check "it opens with the file version and a START at step 0" \
  "[ \"\$(head -2 '$dir/a.dump' | tr '\n' ' ')\" = 'version brain.Event:2 start 0 ' ]"
cp "$dir/a/summary.json" "$dir/a-first.json"

"$peftc" train $base output.tensorboard=true output.dir="$dir/a" \
  checkpoint.resume="$dir/a/checkpoints/step_3.h5" >>"$dir/a.log" 2>&1
check "resuming from step 3 exits 0" "[ $? -eq 0 ]"
check "resuming adds a second event file" "[ \$(events '$dir/a' | wc -l) -eq 2 ]"
check "the new file opens with a START at step 4" \
  "[ \"\$('$dump' \"\$(events '$dir/a' | tail -1)\" | sed -n 2p)\" = 'start 4' ]"
check "what TensorBoard shows is the continued CSV, no step twice" "shown '$dir/a' '$dir/a-first.json' >>'$dir/a.log' 2>&1"

"$peftc" train $base train.steps=4 checkpoint.every=0 output.tensorboard=true output.dir="$dir/a" >>"$dir/a.log" 2>&1
check "a fresh 4-step run in the same folder adds a third file" "[ $? -eq 0 ] && [ \$(events '$dir/a' | wc -l) -eq 3 ]"
check "after it TensorBoard shows only the new run's curve" "shown '$dir/a' >>'$dir/a.log' 2>&1"

"$peftc" train $base train.steps=1 train.eval_every=0 eval.examples=0 checkpoint.every=0 output.dir="$dir/off" \
  >"$dir/off.log" 2>&1
check "without output.tensorboard there is no tensorboard/ folder" "[ $? -eq 0 ] && [ ! -e '$dir/off/tensorboard' ]"

mkdir -p "$dir/bad" && touch "$dir/bad/tensorboard"
"$peftc" train $base output.tensorboard=true output.dir="$dir/bad" >"$dir/bad.log" 2>&1
check "an event file that cannot be created stops the run, naming its path" \
  "[ $? -ne 0 ] && grep -q \"cannot create TensorBoard event file '$dir/bad/tensorboard/events.out.tfevents\" '$dir/bad.log'"

finish a.log off.log bad.log
