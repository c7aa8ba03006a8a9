#!/usr/bin/env bash
# The rows of the issue-11 study (docs/results.md), as study.sh commands. Run after
# `study.sh prepare`; every row is resumable (a finished row/seed is skipped).
#   bench/study/grid.sh phase1      # every setting, seed 1
#   bench/study/grid.sh phase2 S..  # the finalists and their ablations, seeds S..
set -euo pipefail
S=$(dirname "$0")/study.sh
phase=${1:-phase1}; shift || true
row() { bash "$S" run "$@"; }
case "$phase" in
  phase1)
    row mart 1                                                        # the paper's literal reading
    row no-pwt 1 --model.use_pwt false
    row no-hcl 1 --model.use_hcl false
    row neither 1 --model.use_pwt false --model.use_hcl false
    row single 1 --model.pwt_residual single
    row separate 1 --model.pw_term separate --model.pw_weight 0.2
    row single-separate 1 --model.pwt_residual single --model.pw_term separate --model.pw_weight 0.2
    row single-separate-seq 1 --model.pwt_residual single --model.pw_term separate --model.pw_weight 0.2 --model.pwt_order sequential
    row literal-tau0.2 1 --model.tau 0.2
    bash "$S" baselines mart 1
    ;;
  phase2)
    for seed in "$@"; do
      row mart "$seed"
      row no-pwt "$seed" --model.use_pwt false
      row no-hcl "$seed" --model.use_hcl false
      row neither "$seed" --model.use_pwt false --model.use_hcl false
      row single-separate "$seed" --model.pwt_residual single --model.pw_term separate --model.pw_weight 0.2
    done
    ;;
  *) sed -n '2,6p' "$0"; exit 2 ;;
esac
