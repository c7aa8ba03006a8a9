#!/usr/bin/env bash
#SBATCH --job-name=mart-eval
#SBATCH --ntasks=2
#SBATCH --cpus-per-task=1
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%x-%j.out
# mart-eval of a training run. Variables: CONFIG (optional INI), DATA (shards of the evaluation
# set), CHECKPOINT (a run folder or checkpoint), OUT (report folder), and slurm/common.sh's.
source "${MART_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/common.sh"
DATA=${DATA:?set DATA to the shard folder of the evaluation set}
CHECKPOINT=${CHECKPOINT:?set CHECKPOINT to a mart-train run folder}
OUT=${OUT:?set OUT to the report folder}
CONFIG_ARGS=""
[ -n "${CONFIG:-}" ] && CONFIG_ARGS="--config $CONFIG"
mart_require "$MART_BIN/eval/mart-eval"
mart_log "eval $CHECKPOINT on $DATA -> $OUT"
$MART_LAUNCH "$MART_BIN/eval/mart-eval" $CONFIG_ARGS --data "$DATA" --checkpoint "$CHECKPOINT" --run "$OUT" $MART_ARGS
