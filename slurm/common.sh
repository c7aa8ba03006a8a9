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

# ---- GPU layout: one rank per GPU, the node's CPUs shared by its ranks ------------------------
# Each rank runs its main thread, the loader's prefetch thread, autograd's device thread and
# NCCL's proxy thread: with one CPU per rank they take turns on one core.
#
# mart_gpu_layout NODES GPUS_PER_NODE CPUS_PER_NODE: the sbatch flags of a training job,
#   e.g. `sbatch $(mart_gpu_layout 2 4 64) slurm/pretrain.sh` -> 8 ranks, 16 CPUs each.
mart_gpu_layout() {
  local nodes=${1:-} gpus=${2:-} cpus=${3:-}
  if ! [[ "$nodes" =~ ^[1-9][0-9]*$ && "$gpus" =~ ^[1-9][0-9]*$ && "$cpus" =~ ^[1-9][0-9]*$ ]] || [ "$cpus" -lt "$gpus" ]; then
    echo "error: mart_gpu_layout NODES GPUS_PER_NODE CPUS_PER_NODE needs positive counts with at least one CPU per GPU (got '$*')" >&2
    return 2
  fi
  echo "--nodes=$nodes --ntasks-per-node=$gpus --gpus-per-node=$gpus --cpus-per-task=$((cpus / gpus))"
}

# mart_check_gpu_layout: inside a GPU training job, before any rank starts. The job must run
# nodes x GPUs-per-node ranks (an --ntasks caps them silently); too few CPUs per rank is a
# warning. Exports SRUN_CPUS_PER_TASK: srun (Slurm >= 22.05) no longer inherits sbatch's
# --cpus-per-task. Prints the layout; exits 2 with the sbatch flags to use when it is wrong.
mart_check_gpu_layout() {
  local nodes=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
  local gpus=${SLURM_GPUS_ON_NODE:-}
  if [ -z "$gpus" ] && [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    gpus=$(awk -F, '{print NF}' <<<"$CUDA_VISIBLE_DEVICES")
  fi
  local tasks=${SLURM_NTASKS:-1}
  local cpt=${SLURM_CPUS_PER_TASK:-1}
  local cpus_node=${SLURM_CPUS_ON_NODE:-$((cpt * tasks / nodes))}
  if [ -z "$gpus" ] || [ "$gpus" -lt 1 ]; then
    echo "error: TRAIN_DEVICE=cuda but this job has no GPUs: submit with sbatch --gpus-per-node=G --ntasks-per-node=G" >&2
    exit 2
  fi
  local want=$((nodes * gpus))
  local fix
  fix=$(mart_gpu_layout "$nodes" "$gpus" "$((cpus_node > gpus ? cpus_node : gpus))")
  if [ "$tasks" -ne "$want" ]; then
    echo "error: this job runs $tasks rank(s) but has $nodes node(s) x $gpus GPU(s) = $want: mart runs one rank per GPU." >&2
    echo "       Submit with: sbatch $fix slurm/pretrain.sh (no --ntasks: it caps the ranks)" >&2
    exit 2
  fi
  if [ "$cpt" -lt 2 ]; then
    echo "warning: 1 CPU per rank: the main, loader, autograd and NCCL threads share it; submit with $fix" >&2
  fi
  export SRUN_CPUS_PER_TASK=$cpt
  echo "GPU layout: $want rank(s) = $nodes node(s) x $gpus GPU(s), $cpt CPU(s) per rank"
}
