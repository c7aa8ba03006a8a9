#!/usr/bin/env bash
# The collectives' time against message size on 2 and 4 ranks, over shared memory (Open MPI's
# default on one node) and over TCP (`--mca pml ob1 --mca btl self,tcp`: the stand-in for links
# between nodes; on one machine it runs over loopback, so it measures the TCP stack's cost, not a
# network's bandwidth). One table per (ranks, transport), from `mart-bench-comm sweep`.
# Usage: bench/dist/transports.sh [BUILD] [REPS]
set -euo pipefail
BUILD=${1:-build}; REPS=${2:-9}
source "$(dirname "$0")/../../scripts/env.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for np in 2 4; do
  for transport in shm tcp; do
    mca=()
    [ "$transport" = tcp ] && mca=(--mca pml ob1 --mca btl self,tcp)
    echo "== $np ranks over $transport (mpirun --oversubscribe -np $np ${mca[*]})"
    mpirun --oversubscribe -np "$np" "${mca[@]}" "$BUILD/bench/dist/mart-bench-comm" sweep "$REPS"
  done
done
