#!/usr/bin/env bash
# The small synthetic check of docs/results.md: the corpus and budget of tests/eval/test_learns.cpp
# (90 mart-synth tracks of 4 s, 3 levels, 32 mels x 16 frames, a 32-d FCN, batch 16, 300 steps,
# one rank, one thread), one row per setting, frozen linear probes (2 probe seeds).
#   bench/study/synth-mini.sh [ROW ...]     rows: literal separate single single-separate no-hcl no-pwt
# Output under $MART_STUDY/synth-mini (default ./study/synth-mini); prints each row's report line.
set -euo pipefail
source "$(dirname "$0")/../../scripts/env.sh"
OUT=${MART_STUDY:-$MART_ROOT/study}/synth-mini
BIN=${MART_STUDY_BIN:-$MART_BUILD/src}
mkdir -p "$OUT"
if [ ! -f "$OUT/data/manifest.json" ]; then
  "$BIN/synth/mart-synth" --output "$OUT/corpus" --synth.tracks 90 --synth.seconds 4 --synth.seed 3
  mpirun -np 2 "$BIN/preprocess/mart-preprocess" --dataset.kind synth --input "$OUT/corpus" --output "$OUT/data" \
    --features.clip_samples 8192 --features.levels 3 --features.frames 16 --features.n_mels 32 --features.views 2 \
    --preprocess.unit_tracks 16
fi
flags_of() {
  case "$1" in
    literal) echo "--model.pw_term inside" ;;
    separate) echo "--model.pw_term separate --model.pw_weight 0.2" ;;
    single) echo "--model.pw_term inside --model.pwt_residual single" ;;
    single-separate) echo "--model.pwt_residual single --model.pw_term separate --model.pw_weight 0.2" ;;
    no-hcl) echo "--model.use_hcl false" ;;
    no-pwt) echo "--model.use_pwt false --model.pw_term inside" ;;
    *) echo "unknown row $1" >&2; exit 2 ;;
  esac
}
rows=("$@"); [ ${#rows[@]} -gt 0 ] || rows=(literal separate single single-separate no-hcl no-pwt)
for row in "${rows[@]}"; do
  d=$OUT/$row; rm -rf "$d"; mkdir -p "$d"
  # shellcheck disable=SC2046
  mpirun -np 1 "$BIN/train/mart-train" --data "$OUT/data" --run "$d/run" \
    --model.fcn_channels 8,8,16,16,16,16,32 --model.dim 32 --model.heads 2 --model.head_dim 8 --model.ff_dim 64 \
    --model.projection_dim 16 --train.batch_size 16 --train.max_steps 300 --train.lr 1e-3 --train.warmup_steps 10 \
    --train.cosine true --train.crops_per_track 4 --train.threads 1 --train.seed "${SEED:-1}" --train.log_every 100 \
    --train.splits train,valid,test ${EXTRA:-} $(flags_of "$row") > "$d/train.log" 2>&1
  mpirun -np 1 "$BIN/eval/mart-eval" --data "$OUT/data" --checkpoint "$d/run" --run "$d/eval" \
    --eval.tasks tagging,classification --eval.seeds 2 --eval.max_epochs 60 --eval.threads 1 \
    --eval.baselines "$([ "$row" = literal ] && echo true || echo false)" > "$d/eval.log" 2>&1
  grep -E "^\| (mart|random_init|logmel_stats) \|" "$d/eval.log" | head -3 | sed "s/^/$row: /"
done
