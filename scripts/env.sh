# Sourced by the scripts: the environment mart runs best in on a small CPU machine.
# OpenBLAS's own threads fight LibTorch's intra-op threads; torch's threads are set by mart itself.
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# Two ranks on a two-core machine must be allowed to share it.
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
MART_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MART_BUILD=${MART_BUILD:-$MART_ROOT/build}
# GNU nproc obeys OMP_NUM_THREADS (set to 1 above): count the cores without it, or every build
# runs one compile at a time.
MART_JOBS=${MART_JOBS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}
export MART_ROOT MART_BUILD MART_JOBS
