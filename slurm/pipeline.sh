#!/usr/bin/env bash
# Submits preprocess -> pretrain -> eval as three jobs chained with --dependency=afterok.
#   INPUT=/data/mtat WORK=/scratch/mart bash slurm/pipeline.sh [extra sbatch flags for every job]
# Variables: INPUT, WORK (shards/, run/, eval/ go there), PREPROCESS_CONFIG, PRETRAIN_CONFIG,
# EVAL_CONFIG, and slurm/common.sh's. Prints the three job ids.
set -euo pipefail
MART_ROOT=${MART_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
INPUT=${INPUT:?set INPUT to the audio collection}
WORK=${WORK:?set WORK to a folder for shards, run and report}
mkdir -p "$WORK"
common=(--parsable --chdir "$WORK" --export "ALL,MART_ROOT=$MART_ROOT")
pre=$(sbatch "${common[@]}" "$@" \
  --export "ALL,MART_ROOT=$MART_ROOT,CONFIG=${PREPROCESS_CONFIG:-$MART_ROOT/configs/preprocess-demo.ini},INPUT=$INPUT,OUTPUT=$WORK/shards" \
  "$MART_ROOT/slurm/preprocess.sh")
train=$(sbatch "${common[@]}" "$@" --dependency="afterok:$pre" \
  --export "ALL,MART_ROOT=$MART_ROOT,CONFIG=${PRETRAIN_CONFIG:-$MART_ROOT/configs/pretrain-demo.ini},DATA=$WORK/shards,RUN=$WORK/run" \
  "$MART_ROOT/slurm/pretrain.sh")
eval_job=$(sbatch "${common[@]}" "$@" --dependency="afterok:$train" \
  --export "ALL,MART_ROOT=$MART_ROOT,${EVAL_CONFIG:+CONFIG=$EVAL_CONFIG,}DATA=$WORK/shards,CHECKPOINT=$WORK/run,OUT=$WORK/eval" \
  "$MART_ROOT/slurm/eval.sh")
echo "$pre $train $eval_job"
