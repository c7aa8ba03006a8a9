#!/usr/bin/env bash
# The rows of the issue-11 study (docs/results.md), as study.sh commands. Run after
# `study.sh prepare`; every row is resumable (a finished row/seed is skipped).
#   bench/study/grid.sh phase1        # MART, its ablations and the baselines, seed 1
#   bench/study/grid.sh phase2 S..    # the same rows, seeds S..
#   bench/study/grid.sh switches S..  # the other open choices against the defaults
set -euo pipefail
S=$(dirname "$0")/study.sh
phase=${1:-phase1}; shift || true
row() { bash "$S" run "$@"; }
case "$phase" in
  phase1)
    # Seed 1 of MART and its three ablations, and the baselines. "mart" is today's defaults
    # (separate L_pw term, weight 0.2); "literal" is the paper's eq. 5 as printed (L_pw inside).
    row mart 1
    row literal 1 --model.pw_term inside
    row no-pwt 1 --model.use_pwt false
    row no-hcl 1 --model.use_hcl false
    row neither 1 --model.use_pwt false --model.use_hcl false
    bash "$S" baselines mart 1
    ;;
  phase2)
    # More seeds of the same rows.
    for seed in "$@"; do
      row mart "$seed"
      row literal "$seed" --model.pw_term inside
      row no-pwt "$seed" --model.use_pwt false
      row no-hcl "$seed" --model.use_hcl false
      row neither "$seed" --model.use_pwt false --model.use_hcl false
    done
    ;;
  switches)
    # The other open choices, one at a time against the defaults (seeds S..).
    for seed in "$@"; do
      row single "$seed" --model.pwt_residual single
      row sequential "$seed" --model.pwt_order sequential
      row pw0.05 "$seed" --model.pw_weight 0.05
      row tau0.2 "$seed" --model.tau 0.2
    done
    # The downstream vector (eval.embedding hat0|tilde0|levels) needs no training of its own:
    # evaluate runs/mart/seedS/run again with mart-eval --eval.embedding tilde0 (or levels).
    ;;
  *) sed -n '2,6p' "$0"; exit 2 ;;
esac
