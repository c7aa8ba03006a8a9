#!/usr/bin/env bash
# The rows of the issue-11 study (docs/results.md), as study.sh commands. Run after
# `study.sh prepare`; every row is resumable (a finished row/seed is skipped).
#   bench/study/grid.sh phase1        # MART, its ablations and the baselines, seed 1
#   bench/study/grid.sh phase2 S..    # the same rows, seeds S..
#   bench/study/grid.sh switches S..  # the other open choices against the defaults
# Section 8 (issue 26), after `study.sh prepare-scaling` (STUDY_TARGETS="music-eval demo"):
#   bench/study/grid.sh pairing S..   # MART with each pairing switch, and all of them (CLMR's pairing)
#   bench/study/grid.sh controls S..  # plain contrastive with today's and CLMR's pairing, the supervised ceiling
#   bench/study/grid.sh data S..      # MART and plain (CLMR's pairing) on the ~5 h and the whole pretraining pool
#   bench/study/grid.sh steps S..     # the same at 4x the steps
set -euo pipefail
S=$(dirname "$0")/study.sh
phase=${1:-phase1}; shift || true
row() { bash "$S" run "$@"; }
# Section 8's switches (docs/results.md section 8).
# The pretraining pool's subsets (bench/study/scaling_splits.py): train ~5 h, +valid ~15 h, +test ~23 h.
H5="--train.splits train" H15="--train.splits train,valid" HALL="--train.splits train,valid,test"
MASK="--model.same_track masked" SYM="--model.anchors both" FRESH="--train.stored_views false"
INDEP="--train.crop_offset_s 3600"
CLMR="$MASK $SYM $FRESH $INDEP"
PLAIN="--model.use_pwt false --model.use_hcl false"
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
  pairing)
    # One switch at a time against MART's defaults, then all four: same-track crops masked, both
    # views anchoring eq. 5, fresh log-mel augmentation only (no stored views), independent crops
    # (view A anywhere in the track). Pretraining on the ~15 h subset.
    for seed in "$@"; do
      row mart "$seed" $H15
      row mart-mask "$seed" $H15 $MASK
      row mart-sym "$seed" $H15 $SYM
      row mart-fresh "$seed" $H15 $FRESH
      row mart-indep "$seed" $H15 $INDEP
      row mart-clmr "$seed" $H15 $CLMR
    done
    ;;
  controls)
    # The positive controls: plain contrastive (no PWT, no HCL) with today's pairing and with
    # CLMR's; the same model trained on the game labels of the pretraining tracks.
    for seed in "$@"; do
      row plain "$seed" $H15 $PLAIN
      row plain-clmr "$seed" $H15 $PLAIN $CLMR
      row supervised "$seed" $H15 --train.objective supervised
    done
    ;;
  data)
    for seed in "$@"; do
      row mart-clmr-5h "$seed" $H5 $CLMR
      row plain-clmr-5h "$seed" $H5 $PLAIN $CLMR
      row mart-clmr-all "$seed" $HALL $CLMR
      row plain-clmr-all "$seed" $HALL $PLAIN $CLMR
    done
    ;;
  steps)
    for seed in "$@"; do
      row mart-clmr-x4 "$seed" $H15 $CLMR --train.max_steps 1600
      row plain-clmr-x4 "$seed" $H15 $PLAIN $CLMR --train.max_steps 1600
    done
    ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
