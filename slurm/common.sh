# Sourced by the batch scripts: where mart is, how ranks are launched, and the environment.
# Variables (export them or pass with sbatch --export=ALL,VAR=...):
#   MART_ROOT    the mart checkout (default: the folder sbatch was called from)
#   MART_BIN     the built executables (default: $MART_ROOT/build/src)
#   MART_LAUNCH  how ranks start: "srun --mpi=pmix" (default) or "mpirun" where a site needs it
#   MART_ARGS    extra flags for the stage, e.g. "--train.max_steps 1000"
set -euo pipefail
MART_ROOT=${MART_ROOT:-${SLURM_SUBMIT_DIR:-$(pwd)}}
MART_BIN=${MART_BIN:-$MART_ROOT/build/src}
MART_LAUNCH=${MART_LAUNCH:-srun --mpi=pmix}
MART_ARGS=${MART_ARGS:-}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mart_log() { echo "[$(date '+%F %T')] ${SLURM_JOB_NAME:-mart} ${SLURM_JOB_ID:-}: $*"; }
mart_require() {
  [ -x "$1" ] || { echo "error: $1 is missing: build mart first (scripts/build.sh) or set MART_BIN" >&2; exit 2; }
}
