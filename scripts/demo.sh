#!/usr/bin/env bash
# The main command: installs what is missing, builds, and runs the whole pipeline on the built-in
# demo corpus: mart-synth -> mart-preprocess -> mart-train -> mart-eval. Output under $MART_DEMO
# (default ./demo); $MART_NP ranks (default 2). A rerun starts the pipeline over.
set -euo pipefail
source "$(dirname "$0")/env.sh"
DEMO=${MART_DEMO:-$MART_ROOT/demo}
NP=${MART_NP:-2}
t_start=$(date +%s)
bash "$MART_ROOT/scripts/setup.sh"
# Only the five executables the demo runs: the test suite and benchmarks are built by
# scripts/test.sh (the same build folder, so nothing is compiled twice).
MART_TARGETS="mart-synth mart-preprocess mart-train mart-eval mart-embed" bash "$MART_ROOT/scripts/build.sh"
BIN=$MART_BUILD/src
rm -rf "$DEMO"
mkdir -p "$DEMO"
t0=$(date +%s)
stage() { echo; echo "== mart demo [$(( $(date +%s) - t0 )) s]: $*"; }
stage "1/5 mart-synth writes the demo corpus on $NP ranks"
mpirun -np "$NP" "$BIN/synth/mart-synth" --config "$MART_ROOT/configs/demo-synth.ini" --output "$DEMO/corpus"
# A second covers set for the zero-shot transfer column (Covers80-style: 40 works x 2 versions),
# other compositions (another seed); never trained on.
mpirun -np "$NP" "$BIN/synth/mart-synth" --config "$MART_ROOT/configs/demo-synth.ini" --output "$DEMO/transfer-corpus" \
  --synth.tracks 80 --synth.versions 2 --synth.seed 2
stage "2/5 mart-preprocess: audio -> shards on $NP ranks"
mpirun -np "$NP" "$BIN/preprocess/mart-preprocess" --config "$MART_ROOT/configs/preprocess-demo.ini" \
  --input "$DEMO/corpus" --output "$DEMO/shards"
mpirun -np "$NP" "$BIN/preprocess/mart-preprocess" --config "$MART_ROOT/configs/preprocess-demo.ini" \
  --input "$DEMO/transfer-corpus" --output "$DEMO/transfer-shards"
stage "3/5 mart-train: pretraining a small MART on $NP ranks"
mpirun -np "$NP" "$BIN/train/mart-train" --config "$MART_ROOT/configs/pretrain-demo.ini" \
  --data "$DEMO/shards" --run "$DEMO/run"
stage "4/5 mart-eval: tagging, classification, covers for the model and two baselines on $NP ranks"
mpirun -np "$NP" "$BIN/eval/mart-eval" --config "$MART_ROOT/configs/eval-demo.ini" \
  --data "$DEMO/shards" --checkpoint "$DEMO/run" --run "$DEMO/eval" --eval.transfer_data "$DEMO/transfer-shards"
stage "5/5 mart-embed: scene and timestamped embeddings straight from the audio files on $NP ranks"
mpirun -np "$NP" "$BIN/embed/mart-embed" --config "$MART_ROOT/configs/embed-demo.ini" \
  --checkpoint "$DEMO/run" --input "$DEMO/corpus/audio" --output "$DEMO/embed"
stage "done: pipeline $(( $(date +%s) - t0 )) s, all with set-up and build $(( $(date +%s) - t_start )) s"
cat "$DEMO/eval/report.md"
echo
echo "report: $DEMO/eval/report.md   training metrics: $DEMO/run/metrics.jsonl   embeddings: $DEMO/embed"
for png in "$DEMO/run/curves.png" "$DEMO/eval/results.png"; do
  if [ -f "$png" ]; then echo "plot: $png"; fi
done
[ -f "$DEMO/run/curves.png" ] || echo "no plots: python3-matplotlib is missing (scripts/setup.sh installs it)"
