#!/usr/bin/env bash
#SBATCH --job-name=mart-pretrain
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
# mart-train with preemption: Slurm sends USR1 to this script 120 s before the time limit (or on
# preemption); the trap forwards it to the ranks, which checkpoint at the next step and exit 75;
# then, and only then, the job requeues itself and resumes from the checkpoint. A user's scancel
# (SIGTERM) also checkpoints, but never requeues.
# Ranks: no count in this header, so the command line decides. CPU nodes:
#   sbatch --ntasks-per-node=R --cpus-per-task=C slurm/pretrain.sh
# GPU nodes, one rank per GPU (not --gpus-per-task, which hides the other GPUs and breaks NCCL
# peer access), the node's CPUs shared by its ranks for their loader threads:
#   sbatch $(source slurm/common.sh; mart_gpu_layout NODES GPUS_PER_NODE CPUS_PER_NODE) \
#     --export=ALL,TRAIN_DEVICE=cuda,DATA=...,RUN=... slurm/pretrain.sh
# i.e. --nodes=N --ntasks-per-node=G --gpus-per-node=G --cpus-per-task=CPUS/G; the job checks
# that it runs N x G ranks before starting any (an --ntasks would cap them).
# Variables: CONFIG, DATA (shards), RUN (run folder), TRAIN_DEVICE (cpu|cuda), and slurm/common.sh's.
source "${MART_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/common.sh"
CONFIG=${CONFIG:-$MART_ROOT/configs/pretrain-demo.ini}
DATA=${DATA:?set DATA to the shard folder of mart-preprocess}
RUN=${RUN:?set RUN to the run folder}
TRAIN_DEVICE=${TRAIN_DEVICE:-cpu}
mart_require "$MART_BIN/train/mart-train"
if [ "$TRAIN_DEVICE" = cuda ]; then mart_check_gpu_layout; fi

requeue=0
child=0
forward() {
  mart_log "got $1: asking the ranks to checkpoint"
  [ "$child" -gt 0 ] && kill -"$1" "$child" 2>/dev/null || true
}
trap 'requeue=1; forward USR1' USR1  # Slurm's warning: checkpoint, then requeue
trap 'forward TERM' TERM            # scancel: checkpoint, no requeue

mart_log "pretrain on $DATA -> $RUN (restart ${SLURM_RESTART_COUNT:-0})"
# --train.resume: a fresh run starts from scratch, a requeued one from its newest checkpoint.
$MART_LAUNCH "$MART_BIN/train/mart-train" --config "$CONFIG" --data "$DATA" --run "$RUN" \
  --train.device "$TRAIN_DEVICE" --train.resume $MART_ARGS &
child=$!
rc=0
# `wait` returns early when a trapped signal arrives: keep waiting for the trainer itself.
while true; do
  wait "$child" && rc=0 || rc=$?
  kill -0 "$child" 2>/dev/null || break
done
if [ "$rc" -eq 75 ] && [ "$requeue" -eq 1 ]; then
  mart_log "checkpointed after USR1: requeueing"
  scontrol requeue "$SLURM_JOB_ID"
fi
mart_log "mart-train exited $rc"
exit "$rc"
