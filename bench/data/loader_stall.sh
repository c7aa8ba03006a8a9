#!/usr/bin/env bash
# Does the training step wait for data? mart-train on 2 ranks at the paper's shape (configs/
# pretrain-paper.ini: 128 mels x 128 frames, 4 levels, the paper's channels), once reading its
# shards as usual and once with --train.repeat_first_batch (batch 0 read once, copies after:
# no reading at all). Per mode, over the steps after the first: mean step time, mean data wait
# (the time the step blocked on the loader's queue) and the stall = wait / step. The modes
# alternate for ROUNDS rounds. The loader-vs-memory step ratio shows what reading costs even
# when the queue never runs dry (the loader thread shares the cores with the ranks).
#
# Usage: bench/data/loader_stall.sh AUDIO_DIR|SHARDS [BATCH] [STEPS] [ROUNDS] [NP]
#   AUDIO_DIR  a folder of audio, preprocessed here with configs/mart-paper.ini (2 ranks)
#   SHARDS     a preprocess run (has manifest.json) with the paper's features
set -euo pipefail
SRC=${1:?usage: loader_stall.sh AUDIO_DIR|SHARDS [BATCH] [STEPS] [ROUNDS] [NP]}
BATCH=${2:-8}; STEPS=${3:-6}; ROUNDS=${4:-1}; NP=${5:-2}; BUILD=${BUILD:-build}
source "$(dirname "$0")/../../scripts/env.sh"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
if [ -f "$SRC/manifest.json" ]; then
  SHARDS=$SRC
else
  SHARDS=$W/shards
  mpirun -np 2 "$BUILD/src/preprocess/mart-preprocess" --config configs/mart-paper.ini \
    --dataset.kind folder --input "$SRC" --output "$SHARDS" --preprocess.unit_tracks 4 > "$W/preprocess.log" 2>&1 ||
    { cat "$W/preprocess.log" >&2; exit 1; }
fi
for r in $(seq "$ROUNDS"); do
  for mode in loader memory; do
    extra=(); [ $mode = memory ] && extra=(--train.repeat_first_batch true)
    mpirun -np "$NP" "$BUILD/src/train/mart-train" --config configs/pretrain-paper.ini --data "$SHARDS" \
      --run "$W/run-$mode-$r" --train.batch_size "$BATCH" --train.max_steps "$STEPS" --train.log_every 1 \
      --train.checkpoint_every 0 "${extra[@]}" > "$W/train-$mode-$r.log" 2>&1 ||
      { cat "$W/train-$mode-$r.log" >&2; exit 1; }
  done
done
/usr/bin/python3 - "$W" "$ROUNDS" "$NP" "$BATCH" <<'PY'
import json, sys, statistics as st
w, rounds, np_, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = {}
for mode in ("loader", "memory"):
    steps = []
    for r in range(1, rounds + 1):
        lines = [json.loads(l) for l in open(f"{w}/run-{mode}-{r}/metrics.jsonl")]
        steps += lines[1:]  # the first step warms up allocator and kernels
    step = st.mean(x["step_s"] for x in steps)
    wait = st.mean(x["data_wait_s"] for x in steps)
    rows[mode] = (len(steps), step, wait)
print(f"mart-train, {np_} ranks, paper shape (configs/pretrain-paper.ini), global batch {batch}; "
      f"steps after the first, {rounds} round(s), modes alternating")
print(f"{'mode':<8} {'steps':>5} {'step s':>8} {'data wait ms':>13} {'stall':>7}")
for mode, (n, step, wait) in rows.items():
    print(f"{mode:<8} {n:>5} {step:>8.3f} {wait * 1e3:>13.2f} {100 * wait / step:>6.3f}%")
print(f"step time, loader / memory: {rows['loader'][1] / rows['memory'][1]:.3f}")
PY
