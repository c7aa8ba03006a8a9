#!/usr/bin/env bash
# Installs what mart needs on Debian 12 (idempotent). Run as root or with sudo available.
set -euo pipefail
PACKAGES=(
  build-essential cmake pkg-config ccache git
  libtorch-dev libopenblas0-pthread          # LibTorch 1.13 (CPU) and a fast BLAS under it
  libopenmpi-dev openmpi-bin                 # MPI
  libhdf5-dev                                # shards
  libboost-program-options-dev libspdlog-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libsndfile1-dev libsoxr-dev libfftw3-dev libsox-dev   # decode, resample, FFT, effects
  python3-torch python3-torchaudio python3-h5py python3-sklearn python3-numpy  # reference values
  python3-matplotlib                         # curves.png and the report's bars (optional at run time)
  slurmctld slurmd slurm-client libpmix-dev  # the Slurm test's private one-node cluster; srun --mpi=pmix
)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
echo "mart setup: updating the package index"
$SUDO apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "mart setup: installing ${missing[*]}"
  # The Slurm packages would start daemons on a site-less default config; the test starts its own
  # cluster, so services stay down while installing (policy-rc.d 101: "do not start").
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?
  if [ $made_policy = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
  [ "${rc:-0}" = 0 ] || exit "$rc"
else
  echo "mart setup: all ${#PACKAGES[@]} packages present"
fi
