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
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "mart setup: all ${#PACKAGES[@]} packages present"
fi
