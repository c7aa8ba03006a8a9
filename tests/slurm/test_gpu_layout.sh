#!/usr/bin/env bash
# The Slurm GPU layout the scripts compute, without Slurm: mart_gpu_layout's sbatch flags (ranks =
# nodes x GPUs, the node's CPUs shared by its ranks), and pretrain.sh's check inside a job (fake
# SLURM_* variables, a stand-in mart-train that prints what it was given).
set -uo pipefail
SRC=$1
WORK=${TMPDIR:-/tmp}/mart_gpu_layout_test
fail() { echo "FAILED: $*"; exit 1; }
rm -rf "$WORK"; mkdir -p "$WORK/bin/train"

# 1. The flags of a GPU job.
layout() { (source "$SRC/slurm/common.sh"; mart_gpu_layout "$@"); }
[ "$(layout 2 4 64)" = "--nodes=2 --ntasks-per-node=4 --gpus-per-node=4 --cpus-per-task=16" ] || fail "2 nodes x 4 GPUs, 64 CPUs: $(layout 2 4 64)"
[ "$(layout 1 8 20)" = "--nodes=1 --ntasks-per-node=8 --gpus-per-node=8 --cpus-per-task=2" ] || fail "1 x 8 GPUs, 20 CPUs: $(layout 1 8 20)"
layout 1 4 2 2>/dev/null && fail "fewer CPUs than GPUs must be refused"
layout 0 4 64 2>/dev/null && fail "0 nodes must be refused"
layout 2 x 64 2>/dev/null && fail "a non-number must be refused"
echo "mart_gpu_layout: ok"

# 2. The defect: a task count in pretrain.sh's header caps sbatch --ntasks-per-node=G.
grep -E '^#SBATCH +--(ntasks|cpus-per-task)=' "$SRC/slurm/pretrain.sh" && fail "pretrain.sh's header fixes the task count or CPUs"
echo "pretrain.sh header: ok"

# 3. pretrain.sh inside a job. The stand-in trainer prints its arguments and srun's CPUs per task.
cat >"$WORK/bin/train/mart-train" <<'SH'
#!/usr/bin/env bash
echo "mart-train $* SRUN_CPUS_PER_TASK=${SRUN_CPUS_PER_TASK:-unset}"
SH
chmod +x "$WORK/bin/train/mart-train"
run_job() {  # fake job environment in "$@"; the launcher runs the stand-in directly
  env -i PATH="$PATH" HOME="$WORK" MART_ROOT="$SRC" MART_BIN="$WORK/bin" MART_LAUNCH=env DATA="$WORK/shards" RUN="$WORK/run" \
    TRAIN_DEVICE=cuda SLURM_JOB_ID=1 "$@" bash "$SRC/slurm/pretrain.sh" 2>&1
}
# 2 nodes x 4 GPUs but the job got 2 tasks (what #SBATCH --ntasks=2 did): refused before any rank starts.
out=$(run_job SLURM_JOB_NUM_NODES=2 SLURM_GPUS_ON_NODE=4 SLURM_NTASKS=2 SLURM_CPUS_PER_TASK=1 SLURM_CPUS_ON_NODE=64); rc=$?
[ "$rc" -eq 2 ] || fail "a 2-rank job on 8 GPUs exited $rc, not 2: $out"
grep -q "runs 2 rank(s) but has 2 node(s) x 4 GPU(s) = 8" <<<"$out" || fail "no clear message: $out"
grep -q -- "--ntasks-per-node=4 --gpus-per-node=4 --cpus-per-task=16" <<<"$out" || fail "the message lacks the flags to use: $out"
grep -q "^mart-train" <<<"$out" && fail "mart-train started on a wrong layout"
# A job with GPUs but none on the node.
out=$(run_job SLURM_JOB_NUM_NODES=1 SLURM_NTASKS=1); rc=$?
[ "$rc" -eq 2 ] && grep -q "has no GPUs" <<<"$out" || fail "a GPU job without GPUs: rc $rc: $out"
# The right layout: 8 ranks, 16 CPUs each, passed on to srun.
out=$(run_job SLURM_JOB_NUM_NODES=2 SLURM_GPUS_ON_NODE=4 SLURM_NTASKS=8 SLURM_CPUS_PER_TASK=16 SLURM_CPUS_ON_NODE=64); rc=$?
[ "$rc" -eq 0 ] || fail "the right layout exited $rc: $out"
grep -q "GPU layout: 8 rank(s) = 2 node(s) x 4 GPU(s), 16 CPU(s) per rank" <<<"$out" || fail "no layout line: $out"
grep -q "mart-train .*--train.device cuda .*SRUN_CPUS_PER_TASK=16" <<<"$out" || fail "mart-train not started as expected: $out"
# One CPU per rank works but warns.
out=$(run_job SLURM_JOB_NUM_NODES=1 SLURM_GPUS_ON_NODE=2 SLURM_NTASKS=2 SLURM_CPUS_PER_TASK=1 SLURM_CPUS_ON_NODE=32); rc=$?
[ "$rc" -eq 0 ] && grep -q "warning: 1 CPU per rank.*--cpus-per-task=16" <<<"$out" || fail "1 CPU per rank: rc $rc: $out"
# CPU training is not checked.
out=$(run_job TRAIN_DEVICE=cpu SLURM_NTASKS=3); rc=$?
[ "$rc" -eq 0 ] && grep -q "mart-train .*--train.device cpu" <<<"$out" || fail "a CPU job: rc $rc: $out"
echo "pretrain.sh layout check: ok"
rm -rf "$WORK"
