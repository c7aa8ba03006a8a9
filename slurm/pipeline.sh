#!/usr/bin/env bash
# Submits preprocess -> pretrain -> eval as three jobs chained with --dependency=afterok.
#   INPUT=/data/mtat WORK=/scratch/mart bash slurm/pipeline.sh [extra sbatch flags for every job]
# Variables: INPUT, WORK (shards/, run/, eval/ go there), PREPROCESS_CONFIG, PRETRAIN_CONFIG,
# EVAL_CONFIG, and slurm/common.sh's. Prints the three job ids.
# Pretraining on GPUs: GPUS_PER_NODE=G [NODES=N] CPUS_PER_NODE=C: one rank per GPU on N nodes
# (mart_gpu_layout), train.device = cuda. Otherwise on CPUs: NTASKS ranks (default 2).
set -euo pipefail
MART_ROOT=${MART_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
source "$MART_ROOT/slurm/common.sh"
if [ -n "${GPUS_PER_NODE:-}" ]; then
  read -r -a train_layout <<<"$(mart_gpu_layout "${NODES:-1}" "$GPUS_PER_NODE" "${CPUS_PER_NODE:?set CPUS_PER_NODE (sinfo -o %c) with GPUS_PER_NODE}")"
  train_device=cuda
else
  train_layout=(--ntasks="${NTASKS:-2}")
  train_device=cpu
fi
INPUT=${INPUT:?set INPUT to the audio collection}
WORK=${WORK:?set WORK to a folder for shards, run and report}
mkdir -p "$WORK"
common=(--parsable --chdir "$WORK" --export "ALL,MART_ROOT=$MART_ROOT")
pre=$(sbatch "${common[@]}" "$@" \
  --export "ALL,MART_ROOT=$MART_ROOT,CONFIG=${PREPROCESS_CONFIG:-$MART_ROOT/configs/preprocess-demo.ini},INPUT=$INPUT,OUTPUT=$WORK/shards" \
  "$MART_ROOT/slurm/preprocess.sh")
train=$(sbatch "${common[@]}" "${train_layout[@]}" "$@" --dependency="afterok:$pre" \
  --export "ALL,MART_ROOT=$MART_ROOT,TRAIN_DEVICE=$train_device,CONFIG=${PRETRAIN_CONFIG:-$MART_ROOT/configs/pretrain-demo.ini},DATA=$WORK/shards,RUN=$WORK/run" \
  "$MART_ROOT/slurm/pretrain.sh")
eval_job=$(sbatch "${common[@]}" "$@" --dependency="afterok:$train" \
  --export "ALL,MART_ROOT=$MART_ROOT,${EVAL_CONFIG:+CONFIG=$EVAL_CONFIG,}DATA=$WORK/shards,CHECKPOINT=$WORK/run,OUT=$WORK/eval" \
  "$MART_ROOT/slurm/eval.sh")
echo "$pre $train $eval_job"
