#!/usr/bin/env bash
# mart-preprocess on 1 rank vs 2 ranks over the same corpus, in one run: wall time, audio per
# second, speed-up, peak memory per rank. The rank counts alternate for ROUNDS rounds and the
# median wall time of each is reported (single runs on a shared machine vary by 20%).
#
# Usage: bench/preprocess/stage_ranks.sh [BUILD] [TRACKS | DIR] [ROUNDS] [-- preprocess options]
#   TRACKS  a mart-synth corpus of that many 12 s tracks (default 120), demo features
#   DIR     a folder of real audio (dataset.kind folder), e.g. with the paper's features:
#           CONFIG=configs/mart-paper.ini bench/preprocess/stage_ranks.sh build ~/music 3 -- \
#             --preprocess.unit_tracks 4
# CONFIG: the preprocess config (default configs/preprocess-demo.ini); options after -- go to
# mart-preprocess as well.
set -euo pipefail
BUILD=${1:-build}; CORPUS=${2:-120}; ROUNDS=${3:-3}; CONFIG=${CONFIG:-configs/preprocess-demo.ini}
shift $(( $# < 3 ? $# : 3 ))
[ "${1:-}" = "--" ] && shift
source "$(dirname "$0")/../../scripts/env.sh"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
if [ -d "$CORPUS" ]; then
  input=(--dataset.kind folder --input "$CORPUS")
else
  "$BUILD/src/synth/mart-synth" --output "$W/corpus" --synth.tracks "$CORPUS" --synth.seconds 12 >/dev/null 2>&1
  input=(--input "$W/corpus")
fi
declare -A times mem
hours=
for r in $(seq "$ROUNDS"); do
  for np in 1 2; do
    rm -rf "$W/shards$np"
    t0=$(date +%s.%N)
    out=$(mpirun -np $np "$BUILD/src/preprocess/mart-preprocess" --config "$CONFIG" \
          "${input[@]}" --output "$W/shards$np" "$@" 2>&1) || { echo "$out" >&2; exit 1; }
    times[$np]+="$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{print a-b}') "
    mem[$np]=$(echo "$out" | sed -n 's/.*peak memory per rank: //p')
    hours=$(echo "$out" | sed -n 's/.* tracks, \([0-9.]*\) h of audio.*/\1/p')
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
base=$(echo "${times[1]}" | median)
echo "corpus: $CORPUS, $hours h of audio decoded; median of $ROUNDS alternating rounds"
printf "%-6s %10s %14s %10s  %-24s %s\n" ranks "wall s" "audio h/s" speed-up "peak memory per rank" "all rounds (s)"
for np in 1 2; do
  t=$(echo "${times[$np]}" | median)
  awk -v np=$np -v t="$t" -v h="$hours" -v b="$base" -v m="${mem[$np]}" -v all="${times[$np]}" \
    'BEGIN{printf "%-6s %10.1f %14.4f %9.2fx  %-24s %s\n", np, t, h/t, b/t, m, all}'
done
