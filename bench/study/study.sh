#!/usr/bin/env bash
# The issue-11 study: pretrain MART and its ablations on real music, evaluate each on the demo
# corpus' tasks and on real alternate versions (covers), several seeds per row.
#
#   bench/study/study.sh prepare MUSIC_DIR     # preprocess MUSIC_DIR/train (+ train.csv) and MUSIC_DIR/covers/list.tsv
#                                              # (scripts/study/fetch-music.sh makes MUSIC_DIR), synth the demo corpus
#   bench/study/study.sh prepare-scaling MUSIC_DIR   # section 8's layout: nested pretraining subsets of about
#                                              # 5, 15, 23 h (--train.splits train | train,valid | train,valid,test)
#                                              # and the held-out tracks as shards-music-eval (k-fold game ID)
#   bench/study/study.sh run NAME SEED [--key value ...]   # one row x seed: train, then evaluate
#   bench/study/study.sh baselines [NAME SEED] # random-init (NAME's shape) and log-mel statistics rows
#   bench/study/study.sh reeval NAME FROM SEED [--eval.key value ...]   # FROM's checkpoint, another readout, as row NAME
#   bench/study/study.sh valid NAME SEED       # the same checkpoint's probes scored on the valid splits (for choosing)
#   bench/study/study.sh report [OUT.md]       # mean +- std per row and metric, curves (bench/study/summarize.py)
#
# Everything goes under $MART_STUDY (default ./study, ignored by git). MART_STUDY_FEATURES adds
# feature flags to every preprocess of `prepare` (a study of the features themselves); a folder
# keeps the flags it was prepared with (features.txt) and refuses others. Each run writes the exact
# command that made it to its folder (command.txt); the report prints it next to the row.
# The covers works are split in two halves by a hash of the work id: "dev" (used to choose
# settings) and "test" (reported, never used to choose).
set -euo pipefail
source "$(dirname "$0")/../../scripts/env.sh"
STUDY=${MART_STUDY:-$MART_ROOT/study}
NP=${MART_NP:-2}
BIN=${MART_STUDY_BIN:-$MART_BUILD/src}  # a copy of the executables keeps a long study safe from rebuilds
HERE=$MART_ROOT/bench/study
mkdir -p "$STUDY"
cmd=${1:-}; shift || true

tasks_of() {  # what each evaluation set is for
  case "$1" in music|music-eval) echo classification ;; demo) echo tagging,classification ;; *) echo covers ;; esac
}
target_args() {  # per evaluation set: the held-out music has no test split, mart-eval makes 5 folds
  case "$1" in music-eval) echo "--eval.folds 5" ;; *) echo "" ;; esac
}

preprocess() {  # INPUT OUTPUT [flags]
  local in=$1 out=$2; shift 2
  if [ -f "$out/manifest.json" ]; then echo "study: $out exists"; return; fi
  # MART_STUDY_FEATURES: extra feature flags for every set (e.g. "--features.window scaled"),
  # with its own MART_STUDY folder.
  # shellcheck disable=SC2086
  mpirun -np "$NP" "$BIN/preprocess/mart-preprocess" --config "$HERE/preprocess-study.ini" \
    --input "$in" --output "$out" "$@" ${MART_STUDY_FEATURES:-}
}

record_features() {  # a study folder holds one set of features: refuse another, else record it
  local features=${MART_STUDY_FEATURES:-}
  if [ -f "$STUDY/features.txt" ] && [ "$(cat "$STUDY/features.txt")" != "$features" ]; then
    echo "study: $STUDY was prepared with MART_STUDY_FEATURES='$(cat "$STUDY/features.txt")', not '$features':" \
      "use another MART_STUDY folder" >&2
    exit 2
  fi
  echo "$features" > "$STUDY/features.txt"
}

evaluate_row() {  # DIR [--eval.* ...]: DIR/run's checkpoint on every evaluation set, frozen
  local dir=$1; shift
  for target in ${STUDY_TARGETS:-music demo covers-dev covers-test}; do
    mpirun -np "$NP" "$BIN/eval/mart-eval" --config "$HERE/eval-study.ini" --data "$STUDY/shards-$target" \
      --checkpoint "$dir/run" --run "$dir/eval-$target" --eval.tasks "$(tasks_of "$target")" --eval.baselines false \
      $(target_args "$target") "$@" > "$dir/eval-$target.log" 2>&1
  done
}

case "$cmd" in
  prepare)
    music=${1:?usage: study.sh prepare MUSIC_DIR}
    music=$(cd "$music" && pwd)
    [ -d "$music/train" ] || { echo "study: $music/train is missing (run scripts/study/fetch-music.sh $music)" >&2; exit 2; }
    record_features
    covers_list=$music/covers/list.tsv
    [ -f "$covers_list" ] || { echo "study: $covers_list is missing (run scripts/study/fetch-music.sh $music)" >&2; exit 2; }
    # Pretraining music: every track gets a split by a hash of its path (70/15/15), so the
    # real-music classification probe (class = the game) tests tracks pretraining never saw.
    /usr/bin/python3 - "$music/train.csv" "$STUDY/music-labels.csv" <<'PY'
import csv, sys, zlib
rows = list(csv.DictReader(open(sys.argv[1])))
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["path", "class", "split"])
    for r in rows:
        h = zlib.crc32(r["path"].encode()) % 100
        w.writerow([r["path"], r["class"], "train" if h < 70 else "valid" if h < 85 else "test"])
PY
    preprocess "$music/train" "$STUDY/shards-music" --dataset.kind folder --dataset.labels_csv "$STUDY/music-labels.csv"
    # Split the covers list by work into dev and test halves (stable: a hash of the work id).
    /usr/bin/python3 - "$covers_list" "$STUDY" <<'PY'
import sys, zlib, os
src, out = sys.argv[1], sys.argv[2]
base = os.path.dirname(os.path.abspath(src))
rows = [l.rstrip("\n").split("\t") for l in open(src) if l.strip() and not l.startswith("#")]
rows = [r for r in rows if r[0] not in ("work_id", "work")]
halves = {"dev": [], "test": []}
for r in rows:
    path = r[1] if os.path.isabs(r[1]) else os.path.join(base, r[1])
    halves["dev" if zlib.crc32(r[0].encode()) % 2 == 0 else "test"].append((r[0], path))
for name, rs in halves.items():
    with open(f"{out}/covers-{name}.tsv", "w") as f:
        for w, p in rs: f.write(f"{w}\t{p}\n")
    print(f"study: covers-{name}: {len(set(w for w, _ in rs))} works, {len(rs)} versions")
PY
    for half in dev test; do preprocess "$STUDY/covers-$half.tsv" "$STUDY/shards-covers-$half" --dataset.kind covers; done
    if [ ! -f "$STUDY/shards-demo/manifest.json" ]; then
      mpirun -np "$NP" "$BIN/synth/mart-synth" --config "$MART_ROOT/configs/demo-synth.ini" --output "$STUDY/demo-corpus"
      preprocess "$STUDY/demo-corpus" "$STUDY/shards-demo" --dataset.kind synth
    fi
    ;;
  prepare-scaling)
    # Section 8 (issue 26): one corpus, every track assigned once by a hash of its path
    # (bench/study/scaling_splits.py): held out (about 30% of each game): never pretrained on;
    # shards-music-eval holds them, all in one split, so mart-eval and bench/study/yardstick.py
    # score game ID by 5 folds. The pretraining pool (shards-music), in a second hash order, is cut
    # by duration into nested subsets named train (~5 h), valid (up to ~15 h), test (the rest).
    music=${1:?usage: study.sh prepare-scaling MUSIC_DIR}
    music=$(cd "$music" && pwd)
    [ -f "$music/train.csv" ] || { echo "study: $music/train.csv is missing (run scripts/study/fetch-music.sh $music)" >&2; exit 2; }
    record_features
    /usr/bin/python3 "$HERE/scaling_splits.py" "$music" "$STUDY"
    preprocess "$STUDY/music-pool" "$STUDY/shards-music" --dataset.kind folder --dataset.labels_csv "$STUDY/music-labels.csv"
    preprocess "$STUDY/music-eval" "$STUDY/shards-music-eval" --dataset.kind folder \
      --dataset.labels_csv "$STUDY/music-eval-labels.csv"
    if [ ! -f "$STUDY/shards-demo/manifest.json" ]; then
      mpirun -np "$NP" "$BIN/synth/mart-synth" --config "$MART_ROOT/configs/demo-synth.ini" --output "$STUDY/demo-corpus"
      preprocess "$STUDY/demo-corpus" "$STUDY/shards-demo" --dataset.kind synth
    fi
    ;;
  run)
    name=${1:?usage: study.sh run NAME SEED [--key value ...]}; seed=${2:?seed}; shift 2
    dir=$STUDY/runs/$name/seed$seed
    if [ -f "$dir/done" ]; then echo "study: $dir done"; exit 0; fi
    rm -rf "$dir"; mkdir -p "$dir"
    echo "bench/study/study.sh run $name $seed $*" > "$dir/command.txt"
    train_args=(); eval_args=()  # --eval.* options go to mart-eval, the rest to mart-train
    while [ $# -gt 0 ]; do
      case "$1" in --eval.*) eval_args+=("$1" "$2") ;; *) train_args+=("$1" "$2") ;; esac
      shift 2
    done
    t0=$(date +%s)
    mpirun -np "$NP" "$BIN/train/mart-train" --config "$HERE/pretrain-study.ini" --data "$STUDY/shards-music" \
      --run "$dir/run" --train.seed "$seed" "${train_args[@]}" > "$dir/train.log" 2>&1
    t1=$(date +%s)
    evaluate_row "$dir" "${eval_args[@]}"
    echo "{\"train_s\": $((t1 - t0)), \"eval_s\": $(( $(date +%s) - t1 ))}" > "$dir/done"
    echo "study: $name seed $seed: train $((t1 - t0)) s, eval $(( $(date +%s) - t1 )) s"
    ;;
  reeval)
    # Another readout of a trained row, no training of its own: FROM's checkpoints evaluated with
    # other --eval.* options (e.g. --eval.embedding levels) as row NAME.
    name=${1:?usage: study.sh reeval NAME FROM SEED --eval.key value ...}; from=${2:?from}; seed=${3:?seed}; shift 3
    src=$STUDY/runs/$from/seed$seed
    [ -f "$src/done" ] && [ "$from" != baselines ] || { echo "study: $src is not a finished training row" >&2; exit 2; }
    dir=$STUDY/runs/$name/seed$seed
    if [ -f "$dir/done" ]; then echo "study: $dir done"; exit 0; fi
    rm -rf "$dir"; mkdir -p "$dir"
    echo "bench/study/study.sh reeval $name $from $seed $*" > "$dir/command.txt"
    ln -s "$src/run" "$dir/run"
    t1=$(date +%s)
    evaluate_row "$dir" "$@"
    echo "{\"train_s\": 0, \"eval_s\": $(( $(date +%s) - t1 ))}" > "$dir/done"
    echo "study: $name (from $from) seed $seed: eval $(( $(date +%s) - t1 )) s"
    ;;
  baselines)
    # Random-init and log-mel statistics rows. The random encoder takes the shape of a trained
    # run's checkpoint (NAME SEED, default mart 1), so it is the study model, untrained.
    from=$STUDY/runs/${1:-mart}/seed${2:-1}/run
    [ -d "$from" ] || { echo "study: $from does not exist: run that row first" >&2; exit 2; }
    dir=$STUDY/runs/baselines/seed1
    rm -rf "$dir"; mkdir -p "$dir"
    echo "bench/study/study.sh baselines ${1:-mart} ${2:-1}" > "$dir/command.txt"
    for target in ${STUDY_TARGETS:-music demo covers-dev covers-test}; do
      mpirun -np "$NP" "$BIN/eval/mart-eval" --config "$HERE/eval-study.ini" --data "$STUDY/shards-$target" \
        --checkpoint "$from" --run "$dir/eval-$target" --eval.tasks "$(tasks_of "$target")" --eval.baselines true \
        $(target_args "$target") > "$dir/eval-$target.log" 2>&1
    done
    touch "$dir/done"
    ;;
  valid)
    # Development scores of a finished row/seed (or of the baselines): the music and demo probes
    # scored on their valid splits (mart-eval --eval.score_split valid), so rows are compared
    # without reading a test split. The covers' dev half is already scored by `run`.
    name=${1:?usage: study.sh valid NAME SEED}; seed=${2:?seed}
    dir=$STUDY/runs/$name/seed$seed
    [ -f "$dir/done" ] || { echo "study: $dir is not finished: run it first" >&2; exit 2; }
    if [[ "$name" == baselines* ]]; then  # baselines, or baselines read another way (baselines-levels)
      from=$(sed -n 's/^bench\/study\/study.sh baselines \([^ ]*\) \([0-9]*\).*$/\1 \2/p' "$dir/command.txt")
      read -r from_row from_seed <<< "${from:-mart 1}"
      ckpt=$STUDY/runs/$from_row/seed$from_seed/run; which=true
    else
      ckpt=$dir/run; which=false
    fi
    # The row's own --eval.* options (command.txt), so its valid and test scores measure the same thing.
    read -r -a words < "$dir/command.txt"
    eval_args=()
    for ((i = 0; i + 1 < ${#words[@]}; i++)); do
      case "${words[i]}" in --eval.*) eval_args+=("${words[i]}" "${words[i + 1]}"); i=$((i + 1)) ;; esac
    done
    for target in ${STUDY_TARGETS:-music demo}; do
      case "$target" in music|demo) ;; *) continue ;; esac  # the covers' dev half is scored by `run`
      [ -f "$dir/valid-$target/results.json" ] && continue
      # The tracks' embeddings do not depend on the split scored: start from the test run's, which
      # mart-eval reuses after checking they come from the same model, data and readout (it embeds
      # anew where none are there; it stops if they differ).
      if [ ! -d "$dir/valid-$target" ] && compgen -G "$dir/eval-$target/embeddings-*.h5" > /dev/null; then
        mkdir -p "$dir/valid-$target"
        cp "$dir"/eval-"$target"/embeddings-*.h5 "$dir/valid-$target/"
      fi
      mpirun -np "$NP" "$BIN/eval/mart-eval" --config "$HERE/eval-study.ini" --data "$STUDY/shards-$target" \
        --checkpoint "$ckpt" --run "$dir/valid-$target" --eval.tasks "$(tasks_of "$target")" --eval.baselines $which \
        "${eval_args[@]}" --eval.score_split valid > "$dir/valid-$target.log" 2>&1
    done
    echo "study: $name seed $seed: valid scores done"
    ;;
  report)
    /usr/bin/python3 "$HERE/summarize.py" "$STUDY" "${1:-$STUDY/results.md}"
    ;;
  *) sed -n '2,21p' "$0"; exit 2 ;;
esac
