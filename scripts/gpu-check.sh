#!/usr/bin/env bash
# The GPU check kit: builds mart against the node's own PyTorch (its CUDA LibTorch) and runs the
# "First GPU run" checklist of docs/dist.md in under 10 minutes on one GPU, writing a results
# table. The checks themselves are C++ (mart-gpu-check, mart-train, mart-eval); this script only
# orders them.
#
#   bash scripts/gpu-check.sh --fetch   here (Debian, network): the .deb files the build needs
#                                       into .gpu-debs/ (ignored by git, < 64 MiB)
#   bash scripts/gpu-check.sh           on the GPU node (CUDA, PyTorch 2.x, CMake, ninja; no apt,
#                                       no network): unpack .gpu-debs/ into a prefix, build, check
#   bash scripts/gpu-check.sh --cpu     the same sequence on the CPU with tiny sizes, against an
#                                       existing build ($MART_BUILD, default ./build)
#   ... --bench                         instead of the checks: mart's training step side by side with
#                                       the PyTorch twin (bench/model/mart_step.py) on the same device,
#                                       fp32 and bf16, channels-last, torch.compile: samples/s, ms/step,
#                                       peak memory, model FLOP utilisation (--cpu: tiny sizes)
# Options: --out DIR (results, default out/gpu-check or out/gpu-check-cpu), --build DIR,
#          --no-build (reuse --build as is).
# Results: DIR/results.md (a table) and DIR/results.jsonl (one JSON object per check); every
# command's output is in DIR/logs/. Exit status: 0 when every check passed.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=gpu
OUT=""
BUILD=""
DO_BUILD=1
BENCH=0
DEBS=$ROOT/.gpu-debs
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) MODE=cpu ;;
    --fetch) MODE=fetch ;;
    --out) OUT=$2; shift ;;
    --build) BUILD=$2; shift ;;
    --no-build) DO_BUILD=0 ;;
    --bench) BENCH=1 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# What the build needs beyond CUDA, PyTorch, CMake and ninja: headers, CMake/pkg-config files and
# the shared libraries mart's executables load (and theirs), from Debian bookworm.
DEB_PACKAGES=(
  libhdf5-dev libhdf5-103-1 libsz2 libaec0 libcurl3-gnutls
  libboost1.74-dev libboost-program-options1.74-dev libboost-program-options1.74.0
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 nlohmann-json3-dev
  libsndfile1-dev libsndfile1 libflac12 libogg0 libvorbis0a libvorbisenc2 libopus0 libmpg123-0 libmp3lame0
  libflac-dev libogg-dev libvorbis-dev libopus-dev libmpg123-dev   # sndfile.pc's Requires.private
  libsox-dev libsox3 libgsm1 libmagic1 libmagic-mgc libpng16-16
  libsoxr-dev libsoxr0 libgomp1 libfftw3-dev libfftw3-single3 libfftw3-double3
  libopenmpi-dev libopenmpi3 openmpi-common libpmix2 libhwloc15 libevent-2.1-7 libevent-core-2.1-7
  libevent-pthreads-2.1-7 libfabric1 libucx0 libibverbs1 librdmacm1 libpsm2-2 libpsm-infinipath1 libnl-3-200
  libnl-route-3-200 libnuma1 libltdl7 libmunge2
  pkgconf-bin libpkgconf3 pkgconf
)

if [ "$MODE" = fetch ]; then
  command -v apt-get >/dev/null || { echo "gpu-check --fetch needs apt-get (run it on the Debian machine)" >&2; exit 2; }
  mkdir -p "$DEBS"
  (cd "$DEBS" && apt-get download "${DEB_PACKAGES[@]}") || { echo "gpu-check: apt-get download failed" >&2; exit 1; }
  bytes=$(du -cb "$DEBS"/*.deb | tail -1 | cut -f1)
  echo "gpu-check: $(ls "$DEBS"/*.deb | wc -l) .deb files, $((bytes / 1048576)) MiB in $DEBS"
  [ "$bytes" -lt $((64 * 1048576)) ] || { echo "gpu-check: more than 64 MiB: too much to carry" >&2; exit 1; }
  # The node has none of these packages: every pkg-config module the build asks for must resolve
  # from the .debs alone, with what its .pc file requires (private requirements too).
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  for d in "$DEBS"/*.deb; do dpkg-deb -x "$d" "$tmp"; done
  for m in sndfile soxr fftw3f sox; do
    PKG_CONFIG_LIBDIR=$tmp/usr/lib/x86_64-linux-gnu/pkgconfig:$tmp/usr/share/pkgconfig PKG_CONFIG_SYSROOT_DIR=$tmp \
      "$tmp/usr/bin/pkgconf" --exists --print-errors "$m" || { echo "gpu-check: pkg-config module $m does not resolve from the .debs alone" >&2; exit 1; }
  done
  echo "gpu-check: the pkg-config modules resolve from the .debs alone"
  exit 0
fi

if [ "$MODE" = cpu ]; then
  DEV=cpu
  OUT=${OUT:-$ROOT/out/gpu-check-cpu}
  BUILD=${BUILD:-${MART_BUILD:-$ROOT/build}}
  DO_BUILD=0
else
  DEV=cuda
  OUT=${OUT:-$ROOT/out/gpu-check}
  BUILD=${BUILD:-$ROOT/build-gpu}
fi
rm -rf "$OUT"
mkdir -p "$OUT/logs"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
# GNU nproc honours OMP_NUM_THREADS: read the cores before setting it (else the build runs -j 1).
NPROC=$(nproc)
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1
T0=$(date +%s)
failures=0
note() { echo "[gpu-check $(( $(date +%s) - T0 )) s] $*"; }
# record NAME STATUS DETAIL: one row of the results, for checks the script judges itself.
record() {
  printf '{"check": "%s", "ok": %s, "detail": "%s"}\n' "$1" "$2" "$3" >>"$RESULTS"
  [ "$2" = true ] || failures=$((failures + 1))
}
# run NAME CMD...: runs a command with its output in logs/NAME.log; collects its "result:" lines.
run() {
  local name=$1; shift
  note "$name: $*"
  local t=$(date +%s)
  "$@" >"$OUT/logs/$name.log" 2>&1
  local rc=$?
  grep '^result: ' "$OUT/logs/$name.log" | sed 's/^result: //' >>"$RESULTS"
  grep -v '^result: ' "$OUT/logs/$name.log" | grep -E '^(step|comm|throughput|losses|  all_reduce)' || true
  if [ $rc -ne 0 ]; then
    note "$name FAILED (exit $rc, $(( $(date +%s) - t )) s); last lines of logs/$name.log:"
    tail -15 "$OUT/logs/$name.log"
    grep -q '^result: ' "$OUT/logs/$name.log" || record "$name" false "exit $rc, see logs/$name.log"
    failures=$((failures + 1))
  fi
  return $rc
}

# ---- 1. Build ---------------------------------------------------------------------------------
if [ "$MODE" = gpu ]; then
  # The ranks here are MPI singletons (no mpirun): without a launcher daemon (none starts in a
  # container or microVM) Open MPI 4's singleton MPI_Init fails unless it is isolated.
  export OMPI_MCA_ess_singleton_isolated=1
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/logs/gpu.txt"
  PY=${PYTHON:-python3}
  TORCH_CMAKE=$($PY -c 'import torch;print(torch.utils.cmake_prefix_path)') || { echo "gpu-check: no PyTorch for $PY" >&2; exit 2; }
  $PY -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda, "nccl", torch.cuda.nccl.version(), "gpus", torch.cuda.device_count())' | tee "$OUT/logs/torch.txt"
  cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_CMAKE" -DMART_BUILD_TESTS=OFF
              -DMART_WERROR=${MART_WERROR:-OFF})
  if ls "$DEBS"/*.deb >/dev/null 2>&1; then
    # The .deb files unpacked into a prefix; their absolute paths (pkg-config files, CMake
    # configs, Open MPI's plugin folder) are redirected there.
    P=$DEBS/root
    if [ ! -f "$P/.unpacked" ]; then
      rm -rf "$P"; mkdir -p "$P"
      for d in "$DEBS"/*.deb; do
        if command -v dpkg-deb >/dev/null; then dpkg-deb -x "$d" "$P"
        else (tmp=$(mktemp -d) && cd "$tmp" && ar x "$d" && tar -xf data.tar.* -C "$P" && rm -rf "$tmp"); fi
      done
      touch "$P/.unpacked"
    fi
    A=$P/usr/lib/x86_64-linux-gnu
    # An MPI of the node's own (HPC-X in NVIDIA's containers) is preferred: Debian's Open MPI
    # loads libevent, which needs glibc >= 2.36; everything else here needs glibc >= 2.34.
    NATIVE_MPI=$(command -v mpicc || ls /opt/hpcx/ompi/bin/mpicc 2>/dev/null || true)
    # Absolute symlinks inside the packages (e.g. libmpi.so -> /usr/lib/...) point at the host.
    find "$P" -type l | while read -r l; do
      tgt=$(readlink "$l"); case "$tgt" in /*) ln -sfn "$P$tgt" "$l" ;; esac
    done
    export PATH=$P/usr/bin:$PATH
    export PKG_CONFIG_PATH=$A/pkgconfig:$P/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
    export PKG_CONFIG_SYSROOT_DIR=$P
    export LD_LIBRARY_PATH=$A:$A/hdf5/serial:$A/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    cmake_args+=(-DCMAKE_PREFIX_PATH="$TORCH_CMAKE;$P/usr;$A/cmake" -DPKG_CONFIG_EXECUTABLE="$P/usr/bin/pkgconf"
                 -DHDF5_C_COMPILER_EXECUTABLE=/nonexistent -DHDF5_C_INCLUDE_DIR="$P/usr/include/hdf5/serial"
                 -DHDF5_C_LIBRARY_hdf5="$A/hdf5/serial/libhdf5.so" -DHDF5_USE_STATIC_LIBRARIES=OFF
                 -DCMAKE_INCLUDE_PATH="$P/usr/include/hdf5/serial" -DCMAKE_LIBRARY_PATH="$A/hdf5/serial"
                 -DBoost_INCLUDE_DIR="$P/usr/include" -DBoost_NO_SYSTEM_PATHS=ON -DBOOST_ROOT="$P/usr")
    if [ -n "$NATIVE_MPI" ]; then
      note "using the node's MPI: $NATIVE_MPI"
      cmake_args+=(-DMPI_C_COMPILER="$NATIVE_MPI" -DMPI_CXX_COMPILER="$(dirname "$NATIVE_MPI")/mpicxx")
    else
      export OPAL_PREFIX=$P/usr
      MPI_INC=$A/openmpi/include
      cmake_args+=(-DMPI_C_COMPILER=/nonexistent -DMPI_CXX_COMPILER=/nonexistent
                   -DMPI_C_HEADER_DIR="$MPI_INC" -DMPI_CXX_HEADER_DIR="$MPI_INC" -DMPI_C_LIB_NAMES=mpi
                   -DMPI_CXX_LIB_NAMES=mpi -DMPI_mpi_LIBRARY="$A/libmpi.so" -DMPI_CXX_SKIP_MPICXX=ON)
    fi
  fi
  if [ "$DO_BUILD" = 1 ]; then
    note "configure and build (mart-synth, mart-preprocess, mart-train, mart-eval, mart-gpu-check) in $BUILD"
    cmake -S "$ROOT" -B "$BUILD" "${cmake_args[@]}" >"$OUT/logs/configure.log" 2>&1 \
      || { tail -30 "$OUT/logs/configure.log"; record build false "configure failed, logs/configure.log"; exit 1; }
    grep -E "mart: (NCCL|torch)" "$OUT/logs/configure.log"
    grep -q "CUDA/NCCL: ON" "$OUT/logs/configure.log" || { record build false "configured without NCCL"; exit 1; }
    cmake --build "$BUILD" -j "$NPROC" --target mart-synth mart-preprocess mart-train mart-eval mart-gpu-check -- -k 0 \
      >"$OUT/logs/build.log" 2>&1 || { grep -E "error|Error" "$OUT/logs/build.log" | head -60; record build false "build failed, logs/build.log"; exit 1; }
    warnings=$(grep -c "warning:" "$OUT/logs/build.log")
    record build true "built in $(( $(date +%s) - T0 )) s; $warnings compiler warning(s) (-Werror would $( [ "$warnings" = 0 ] && echo pass || echo fail))"
  fi
  missing=$(ldd "$BUILD/src/train/mart-train" 2>&1 | grep "not found" || true)
  [ -z "$missing" ] || { echo "$missing"; record libraries false "mart-train misses: $(echo $missing | tr -d '"')"; exit 1; }
  # The loader's own verdict (symbol versions, e.g. a glibc older than the .debs need).
  "$BUILD/src/train/mart-train" --help >"$OUT/logs/load.log" 2>&1 \
    || { tail -5 "$OUT/logs/load.log"; record libraries false "mart-train does not start: logs/load.log"; exit 1; }
fi
BIN=$BUILD/src
CHECK=$BUILD/bench/gpu/mart-gpu-check
for x in "$BIN/synth/mart-synth" "$BIN/preprocess/mart-preprocess" "$BIN/train/mart-train" "$BIN/eval/mart-eval" "$CHECK"; do
  [ -x "$x" ] || { echo "gpu-check: $x is missing: build mart first (or drop --no-build)" >&2; exit 2; }
done

# ---- The side-by-side benchmark (--bench) -------------------------------------------------------
# mart's step (mart-gpu-check throughput: the multi-tensor Adam, cuDNN benchmark mode, no host read
# inside a step) and the twin (the same model, loss and Adam in PyTorch, as a user would write it)
# on inputs of the same shape, the same warm-up and timed steps, the median of repeats. Peak memory:
# the device's used memory sampled by nvidia-smi every 200 ms (the same measure for both; on the
# CPU the process's peak RSS). MFU: samples/s x training FLOPs per sample (mart_step.py flops,
# counted from the shapes) over the card's dense peak for the precision: fp32 runs use TF32 in
# cuDNN's convolutions (both frameworks' default), so they are set against the TF32 peak.
if [ "$BENCH" = 1 ]; then
  TWIN=$ROOT/bench/model/mart_step.py
  if [ "$MODE" = gpu ]; then
    PY=${PYTHON:-python3}
    SHAPES="paper:48 demo:48"; STEPS=(--warmup 3 --steps 10 --repeats 3); PRECISIONS="fp32 bf16"; COMPILE="0 1"
    GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
    case "$GPU_NAME" in  # dense (no sparsity) TFLOP/s: TF32 and BF16 tensor cores
      *H100*PCIe*) PEAK_fp32=378; PEAK_bf16=756 ;;
      *H100*|*H200*|*GH200*) PEAK_fp32=494.7; PEAK_bf16=989.4 ;;
      *A100*) PEAK_fp32=156; PEAK_bf16=312 ;;
      *) PEAK_fp32=""; PEAK_bf16="" ;;
    esac
  else
    PY=/usr/bin/python3
    SHAPES="small:8"; STEPS=(--warmup 1 --steps 3 --repeats 1); PRECISIONS="fp32"; COMPILE="0 1"
    GPU_NAME="CPU"; PEAK_fp32=""; PEAK_bf16=""
  fi
  rows=$OUT/bench.tsv
  printf 'shape\timpl\tprecision\tlayout\tcompiled\tsamples_per_s\tms_per_step\tpeak_mib\tmfu\n' >"$rows"
  sample_memory() {  # FILE: the device's used MiB every 200 ms until killed
    if [ "$MODE" = gpu ]; then nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$1" 2>/dev/null; fi
  }
  measure() {  # SHAPE IMPL PRECISION LAYOUT COMPILED CMD...: one row
    local shape=$1 impl=$2 prec=$3 layout=$4 compiled=$5; shift 5
    local name="bench_${shape}_${impl}_${prec}_${layout}_c${compiled}" mem=$OUT/logs/mem-$RANDOM.txt
    sample_memory "$mem" & local sampler=$!
    run "$name" "$@"
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
    local json sps ms peak mfu=""
    json=$(grep -h '^result: \|^{"impl"' "$OUT/logs/$name.log" | tail -1 | sed 's/^result: //')
    [ -n "$json" ] || return 0
    if grep -q '"skipped"' <<<"$json"; then
      printf '%s\t%s\t%s\t%s\t%s\t%s\t\t\t\n' "$shape" "$impl" "$prec" "$layout" "$compiled" "skipped: $(sed -E 's/.*"skipped": "([^"]*)".*/\1/' <<<"$json")" >>"$rows"
      return 0
    fi
    sps=$(sed -E 's/.*"samples_per_s": ?([0-9.e+-]+).*/\1/' <<<"$json")
    ms=$(sed -E 's/.*"(step_ms|ms_per_step)": ?([0-9.e+-]+).*/\2/' <<<"$json")
    if [ -s "$mem" ]; then peak=$(sort -n "$mem" | tail -1)
    else peak=$(sed -nE 's/.*"peak_rss_mib": ?([0-9.e+-]+).*/\1/p' <<<"$json" | xargs printf '%.0f' 2>/dev/null); fi
    local peak_tf=PEAK_$prec
    [ -n "${!peak_tf:-}" ] && mfu=$(awk -v s="$sps" -v f="$FLOPS" -v p="${!peak_tf}" 'BEGIN{printf "%.3f", s*f/(p*1e12)}')
    printf '%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%s\t%s\n' "$shape" "$impl" "$prec" "$layout" "$compiled" "$sps" "$ms" "${peak:-}" "$mfu" >>"$rows"
  }
  for sb in $SHAPES; do
    shape=${sb%%:*} batch=${sb#*:}
    FLOPS=$($PY "$TWIN" flops --preset "$shape")
    for prec in $PRECISIONS; do
      bf=$([ "$prec" = bf16 ] && echo 1 || echo 0)
      for cl in 0 1; do
        layout=$([ $cl = 1 ] && echo channels-last || echo default)
        measure "$shape" mart "$prec" "$layout" no "$CHECK" throughput --device $DEV --preset "$shape" --batch "$batch" \
          --bf16 $bf --channels-last $cl --overlap 1 --threads 1 "${STEPS[@]}"
        for comp in $COMPILE; do
          measure "$shape" pytorch "$prec" "$layout" "$([ $comp = 1 ] && echo yes || echo no)" \
            "$PY" "$TWIN" throughput --device $DEV --preset "$shape" --batch "$batch" --precision "$prec" --threads 1 \
            "${STEPS[@]}" $([ $cl = 1 ] && echo --channels-last) $([ $comp = 1 ] && echo --compile)
        done
      done
    done
  done
  {
    echo "# mart against PyTorch on one device: $GPU_NAME ($MODE mode), $(date -u '+%F %T UTC')"
    [ -f "$OUT/logs/torch.txt" ] && echo "PyTorch: $(cat "$OUT/logs/torch.txt")"
    echo
    echo "| shape (batch) | impl | precision | layout | torch.compile | samples/s | ms/step | peak MiB | MFU |"
    echo "|---|---|---|---|---|---|---|---|---|"
    tail -n +2 "$rows" | while IFS=$'\t' read -r shape impl prec layout comp sps ms peak mfu; do
      echo "| $shape | $impl | $prec | $layout | $comp | $sps | $ms | $peak | $mfu |"
    done
    echo
    # The goals of issue 27, per shape: mart's best over the twin's best, and bf16 over fp32 for mart.
    awk -F'\t' 'NR > 1 && $6 ~ /^[0-9.]+$/ {
        k = $1; if ($2 == "mart") { if ($6 > m[k]) m[k] = $6; if ($3 == "bf16" && $6 > mb[k]) mb[k] = $6;
                                    if ($3 == "fp32" && $6 > mf[k]) mf[k] = $6 }
        else if ($6 > p[k]) p[k] = $6; s[k] = 1 }
      END { for (k in s) {
              extra = ""
              if (mf[k] > 0 && mb[k] > 0) extra = sprintf("; mart bf16/fp32 %.2fx", mb[k] / mf[k])
              ratio = 0
              if (p[k] > 0) ratio = m[k] / p[k]
              printf "%s: mart best %.1f samples/s, PyTorch best %.1f (mart/PyTorch %.2fx)%s\n", k, m[k], p[k], ratio, extra } }' "$rows"
  } >"$OUT/bench.md"
  cat "$OUT/bench.md"
  note "done: $failures failed run(s); table in $OUT/bench.md"
  [ "$failures" -eq 0 ]
  exit
fi

# ---- 2. Sizes per mode -------------------------------------------------------------------------
W=$OUT/work
mkdir -p "$W"
if [ "$MODE" = gpu ]; then
  NP=1; MPI=()
  STEP_ARGS=(--preset paper --batch 2)
  TP=(--preset paper --batch 48 --steps 10 --warmup 3)
  SYNTH=(--config "$ROOT/configs/demo-synth.ini" --synth.tracks 60)
  PRE_CONFIG=$ROOT/configs/preprocess-demo.ini
  TRAIN_CONFIG=$ROOT/configs/pretrain-demo.ini
  LOSS_STEPS=200
  THREADS=$(( NPROC > 8 ? 8 : NPROC ))
else
  NP=2; MPI=(mpirun -np 2)
  STEP_ARGS=(--preset small --batch 2)
  TP=(--preset small --batch 8 --steps 3 --warmup 1)
  SYNTH=(--synth.tracks 48 --synth.seconds 2 --synth.seed 7)
  PRE_CONFIG=$W/pre.ini
  TRAIN_CONFIG=$W/train.ini
  printf '[dataset]\nkind = synth\n[features]\nclip_samples = 8192\nlevels = 3\nframes = 16\nn_mels = 16\nviews = 1\n[preprocess]\nunit_tracks = 4\n' >"$PRE_CONFIG"
  printf '[train]\nbatch_size = 4\nlog_every = 10\nsplits = train,valid,test\n[model]\nfcn_channels = 4,4,8,8,8,8,16\ndim = 16\nheads = 2\nhead_dim = 4\nff_dim = 16\nprojection_dim = 8\n' >"$TRAIN_CONFIG"
  LOSS_STEPS=30
  THREADS=1
fi

# ---- 3. The checks (docs/dist.md, "First GPU run") --------------------------------------------
# (c) the communicator's collectives (NCCL on the GPU, world size 1; MPI on 2 ranks in --cpu)
run comm "${MPI[@]}" "$CHECK" comm --device $DEV --threads $THREADS
# (a) one float64 training step on the device equals the CPU's
run step "$CHECK" step --device $DEV "${STEP_ARGS[@]}" --threads $THREADS
# (d) samples/s at batch 48 of the paper model, fp32 and bf16; overlap of the gradient all-reduce on and off
run throughput_fp32 "${MPI[@]}" "$CHECK" throughput --device $DEV "${TP[@]}" --bf16 0 --overlap 1 --threads $THREADS
# bf16 autocast is CUDA-only in mart (LibTorch 1.13's CPU layer_norm takes no bf16 under autocast)
if [ "$MODE" = gpu ]; then
  run throughput_bf16 "${MPI[@]}" "$CHECK" throughput --device $DEV "${TP[@]}" --bf16 1 --overlap 1 --threads $THREADS
fi
run throughput_no_overlap "${MPI[@]}" "$CHECK" throughput --device $DEV "${TP[@]}" --bf16 0 --overlap 0 --threads $THREADS

# Data for the training checks: the demo corpus (fewer tracks), preprocessed.
run synth "${MPI[@]}" "$BIN/synth/mart-synth" "${SYNTH[@]}" --output "$W/corpus"
run preprocess "${MPI[@]}" "$BIN/preprocess/mart-preprocess" --config "$PRE_CONFIG" --input "$W/corpus" --output "$W/shards"
TRAIN=("${MPI[@]}" "$BIN/train/mart-train" --config "$TRAIN_CONFIG" --data "$W/shards" --train.device $DEV
       --train.threads $THREADS --train.checkpoint_every 0 --train.log_every 50)
# (b) bf16 against fp32: the loss over the same steps of the demo config
run train_fp32 "${TRAIN[@]}" --run "$W/run_fp32" --train.max_steps $LOSS_STEPS --train.bf16 false
if [ "$MODE" = gpu ]; then
  run train_bf16 "${TRAIN[@]}" --run "$W/run_bf16" --train.max_steps $LOSS_STEPS --train.bf16 true
  run losses "$CHECK" losses --fp32 "$W/run_fp32/metrics.jsonl" --bf16 "$W/run_bf16/metrics.jsonl" --last 20 --tol 0.1
else  # the comparison itself, of the fp32 run with itself
  run losses "$CHECK" losses --fp32 "$W/run_fp32/metrics.jsonl" --bf16 "$W/run_fp32/metrics.jsonl" --last 20 --tol 0.1
fi
# 20 steps on the device, checkpoint at 10, resume on the device, then evaluate on the CPU.
run train_10 "${TRAIN[@]}" --run "$W/run" --train.max_steps 10
run resume_20 "${TRAIN[@]}" --run "$W/run" --train.max_steps 20 --train.resume true
if grep -q "resumed from .*step-000000010 at step 10" "$OUT/logs/resume_20.log" 2>/dev/null \
   && grep -q '"step": 20' "$W/run/checkpoints/step-000000020/state.json" 2>/dev/null; then
  record resume true "trained 10 steps on $DEV, resumed from step 10 on $DEV, finished at step 20"
else
  record resume false "no resume from step 10 to 20: see logs/train_10.log and logs/resume_20.log"
fi
run eval_cpu "${MPI[@]}" "$BIN/eval/mart-eval" --data "$W/shards" --checkpoint "$W/run" --run "$W/eval" \
  --eval.seeds 1 --eval.max_epochs 5 --eval.baselines false --eval.threads $THREADS
if grep -q "| mart |" "$W/eval/report.md" 2>/dev/null; then
  record eval_cpu true "the $DEV checkpoint evaluated on the CPU: $W/eval/report.md"
else
  record eval_cpu false "no report row for the checkpoint: see logs/eval_cpu.log"
fi

# ---- 4. The results table ---------------------------------------------------------------------
{
  echo "# gpu-check ($MODE mode), $(date -u '+%F %T UTC'), $(( $(date +%s) - T0 )) s"
  [ -f "$OUT/logs/gpu.txt" ] && echo && echo "GPU: $(cat "$OUT/logs/gpu.txt")"
  [ -f "$OUT/logs/torch.txt" ] && echo "PyTorch: $(cat "$OUT/logs/torch.txt")"
  echo
  echo "| check | ok | result |"
  echo "|---|---|---|"
  while read -r line; do
    check=$(sed -E 's/.*"check": ?"([^"]*)".*/\1/' <<<"$line")
    ok=$(sed -E 's/.*"ok": ?(true|false).*/\1/' <<<"$line")
    rest=$(sed -E 's/"check": ?"[^"]*",? ?//; s/"ok": ?(true|false),? ?//' <<<"$line")
    echo "| $check | $ok | \`$rest\` |"
  done <"$RESULTS"
} >"$OUT/results.md"
cat "$OUT/results.md"
note "done: $failures failed check(s); results in $OUT/results.md"
[ "$failures" -eq 0 ]
