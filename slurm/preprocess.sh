#!/usr/bin/env bash
#SBATCH --job-name=mart-preprocess
#SBATCH --ntasks=2
#SBATCH --cpus-per-task=1
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%x-%j.out
# mart-preprocess on a collection. Variables: CONFIG (INI), INPUT (the collection), OUTPUT (shards),
# plus those of slurm/common.sh. The stage resumes a killed run, so a requeue loses only units in flight.
source "${MART_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/common.sh"
CONFIG=${CONFIG:-$MART_ROOT/configs/preprocess-demo.ini}
INPUT=${INPUT:?set INPUT to the audio collection}
OUTPUT=${OUTPUT:?set OUTPUT to the shard folder}
mart_require "$MART_BIN/preprocess/mart-preprocess"
RESUME=""
[ -f "$OUTPUT/preprocess.state.json" ] && RESUME="--preprocess.resume"
mart_log "preprocess $INPUT -> $OUTPUT on $SLURM_NTASKS ranks"
$MART_LAUNCH "$MART_BIN/preprocess/mart-preprocess" --config "$CONFIG" --input "$INPUT" --output "$OUTPUT" $RESUME $MART_ARGS
