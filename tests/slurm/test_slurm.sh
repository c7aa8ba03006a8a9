#!/usr/bin/env bash
# The Slurm scripts on a real single-node Slurm (../shared/tools/slurm-local.sh): the chained
# pipeline, and preemption (USR1 -> checkpoint -> exit 75 -> requeue -> resume to the same step).
# Exits 77 (CTest: skipped) with the reason when no Slurm can be brought up here.
set -uo pipefail
SRC=$1 BIN=$2
SLURM_LOCAL=${SLURM_LOCAL:-$SRC/../shared/tools/slurm-local.sh}
WORK=${TMPDIR:-/tmp}/mart_slurm_test
skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAILED: $*"; for f in "$WORK"/*/slurm-*.out; do echo "== $f"; tail -30 "$f"; done; exit 1; }
[ -f "$SLURM_LOCAL" ] || skip "no slurm-local.sh at $SLURM_LOCAL"
[ "$(id -u)" = 0 ] || skip "slurm-local.sh needs root to start slurmctld/slurmd"
bash "$SLURM_LOCAL" up >"$WORK.up.log" 2>&1 || { tail -20 "$WORK.up.log"; skip "slurm-local.sh up failed (log above)"; }
trap 'bash "$SLURM_LOCAL" down >/dev/null 2>&1 || true' EXIT

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
for j in $pre $train $ev; do bash "$SLURM_LOCAL" wait "$j" 600 || fail "job $j did not complete"; done
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
scancel --batch --signal=USR1 "$job"
bash "$SLURM_LOCAL" wait "$job" 900 || fail "the preempted job did not complete after its requeue"
out=$(ls "$WORK"/preempt/slurm-*.out)
grep -q "requeueing" $out || fail "the job was not requeued after USR1"
grep -q "restart 1" $out || fail "the requeued job did not restart"
grep -q '"step": 2000' "$WORK/preempt/run/checkpoints/step-000002000/state.json" || fail "the resumed run did not end at step 2000"
echo "preemption: ok"
