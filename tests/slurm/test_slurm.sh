#!/usr/bin/env bash
# The Slurm scripts on a real single-node Slurm that this test brings up and down itself
# (tests/slurm/local_slurm.sh: private config, ports and state): the chained pipeline, and
# preemption (USR1 -> checkpoint -> exit 75 -> requeue -> resume to the same step).
# Exits 77 (CTest: skipped) with the reason when no Slurm can be brought up here.
set -uo pipefail
SRC=$1 BIN=$2
WORK=${TMPDIR:-/tmp}/mart_slurm_test
CLUSTER=$WORK.cluster
LOCAL_SLURM="bash $SRC/tests/slurm/local_slurm.sh"
skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAILED: $*"; for f in "$WORK"/*/slurm-*.out; do echo "== $f"; tail -30 "$f"; done; exit 1; }
[ "$(id -u)" = 0 ] || skip "slurmd needs root to start job steps (run the suite as root, as CI does)"
command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null ||
  skip "Slurm is not installed: scripts/setup.sh installs slurmctld, slurmd and slurm-client"
$LOCAL_SLURM start "$CLUSTER" >"$WORK.up.log" 2>&1 || { cat "$WORK.up.log"; skip "the local Slurm did not start (log above)"; }
trap '$LOCAL_SLURM stop "$CLUSTER" >/dev/null 2>&1 || true' EXIT
export SLURM_CONF=$CLUSTER/slurm.conf

rm -rf "$WORK"; mkdir -p "$WORK"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$BIN/synth/mart-synth" --output "$WORK/corpus" --synth.tracks 48 --synth.seconds 2 --synth.seed 7 >"$WORK/synth.log" 2>&1 || fail "mart-synth"
cat >"$WORK/pre.ini" <<INI
[dataset]
kind = synth
[features]
clip_samples = 8192
levels = 3
frames = 16
n_mels = 16
views = 1
[preprocess]
unit_tracks = 4
INI
cat >"$WORK/train.ini" <<INI
[train]
batch_size = 4
max_steps = 8
checkpoint_every = 2
threads = 1
splits = train,valid,test
[model]
fcn_channels = 4,4,8,8,8,8,16
dim = 16
heads = 2
head_dim = 4
ff_dim = 16
projection_dim = 8
INI
cat >"$WORK/eval.ini" <<INI
[eval]
seeds = 1
max_epochs = 20
threads = 1
INI

export MART_ROOT=$SRC MART_BIN=$BIN
# 1. The pipeline: three jobs chained with afterok.
ids=$(env INPUT="$WORK/corpus" PREPROCESS_CONFIG="$WORK/pre.ini" PRETRAIN_CONFIG="$WORK/train.ini" \
      EVAL_CONFIG="$WORK/eval.ini" WORK="$WORK/pipeline" bash "$SRC/slurm/pipeline.sh") || fail "pipeline.sh did not submit"
read -r pre train ev <<<"$ids"
echo "pipeline jobs: preprocess $pre, pretrain $train, eval $ev"
for j in $pre $train $ev; do $LOCAL_SLURM wait "$CLUSTER" "$j" 600 || fail "job $j did not complete"; done
[ -f "$WORK/pipeline/shards/manifest.json" ] || fail "no manifest from the preprocess job"
[ -f "$WORK/pipeline/run/checkpoints/step-000000008/COMPLETE" ] || fail "no step-8 checkpoint from the pretrain job"
grep -q "| mart |" "$WORK/pipeline/eval/report.md" || fail "the eval job wrote no report with the model's row"
grep -q "logmel_stats" "$WORK/pipeline/eval/report.md" || fail "the report lacks the log-mel baseline"
echo "pipeline: ok"

# 2. Preemption: USR1 to the batch shell mid-training; the job must requeue and finish at step 2000.
mkdir -p "$WORK/preempt"
job=$(cd "$WORK/preempt" && sbatch --parsable --export "ALL,MART_ROOT=$SRC,MART_BIN=$BIN,CONFIG=$WORK/train.ini,DATA=$WORK/pipeline/shards,RUN=$WORK/preempt/run,MART_ARGS=--train.max_steps 2000 --train.checkpoint_every 100 --train.log_every 500" \
      "$SRC/slurm/pretrain.sh") || fail "sbatch pretrain.sh"
for i in $(seq 1 300); do
  [ -f "$WORK/preempt/run/checkpoints/step-000000100/COMPLETE" ] && break
  sleep 1
done
[ -f "$WORK/preempt/run/checkpoints/step-000000100/COMPLETE" ] || fail "pretrain never reached step 100"
# One writer per folder: the running job holds the run's lock under its Slurm job id.
grep -q "^slurm_job=$job\$" "$WORK/preempt/run/mart.lock" || fail "the run's lock does not name Slurm job $job"
scancel --batch --signal=USR1 "$job"
$LOCAL_SLURM wait "$CLUSTER" "$job" 900 || fail "the preempted job did not complete after its requeue"
out=$(ls "$WORK"/preempt/slurm-*.out)
grep -q "requeueing" $out || fail "the job was not requeued after USR1"
grep -q "restart 1" $out || fail "the requeued job did not restart"
grep -q '"step": 2000' "$WORK/preempt/run/checkpoints/step-000002000/state.json" || fail "the resumed run did not end at step 2000"
# Exit 75 released the lock, so the requeued job started cleanly; and it released its own at the end.
grep -q "is in use by" $out && fail "the requeued job found the folder locked"
[ ! -e "$WORK/preempt/run/mart.lock" ] || fail "the finished job left its lock"
echo "preemption: ok"
