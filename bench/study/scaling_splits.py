#!/usr/bin/python3
"""Section 8's data layout (bench/study/study.sh prepare-scaling MUSIC_DIR): every track of
MUSIC_DIR/train.csv (path,class; class = the game) gets one role, from hashes of its path alone, so
adding games or rerunning never moves a track of another game:

  held out: per game, its tracks in crc32(path) order, the first max(MIN_HELD_OUT, 30%) of a game
      with at least MIN_TRACKS tracks (30% of a smaller one): never pretrained on. STUDY/music-eval/
      is a tree of links to them (games with at least MIN_HELD_OUT of them) with
      music-eval-labels.csv (every track in the train split: mart-eval and yardstick.py score game
      ID by folds over them);
  pretraining pool (the rest), ordered by crc32("subset:" + path) and cut by decoded duration into
      nested subsets, named with the three split names a shard may carry: "train" (the first
      SUBSET_HOURS[0] hours), "valid" (up to SUBSET_HOURS[1]), "test" (the rest). Here they are
      subset labels, not evaluation splits: --train.splits train | train,valid | train,valid,test
      pretrains on about 5, 15 or all hours, and no evaluation reads these shards.

Writes STUDY/music-pool/ (links to the pool's tracks) with STUDY/music-labels.csv (path,class,
split), STUDY/durations.tsv (a cache) and STUDY/splits.md (hours and tracks per role and game).
Held-out audio is in no pretraining folder, so no option can pretrain on it.
usage: scaling_splits.py MUSIC_DIR STUDY
"""
import collections
import csv
import os
import sys
import zlib

SUBSET_HOURS = (5.0, 15.0)
HELD_OUT_PERCENT = 30
MIN_HELD_OUT = 5  # tracks per game for 5-fold stratified game ID
MIN_TRACKS = 8    # a game this large gives MIN_HELD_OUT tracks even where 30% is fewer


def duration_s(path):
    import torchaudio  # Debian's python3-torchaudio (the sox backend decodes ogg, opus, mp3)
    info = torchaudio.info(path)
    return info.num_frames / info.sample_rate


def main():
    music, study = sys.argv[1], sys.argv[2]
    rows = list(csv.DictReader(open(os.path.join(music, "train.csv"))))
    cache_file = os.path.join(study, "durations.tsv")
    cache = {}
    if os.path.exists(cache_file):
        for line in open(cache_file):
            p, d = line.rstrip("\n").split("\t")
            cache[p] = float(d)
    for r in rows:
        if r["path"] not in cache:
            cache[r["path"]] = duration_s(os.path.join(music, "train", r["path"]))
    with open(cache_file, "w") as f:
        for p in sorted(cache):
            f.write(f"{p}\t{cache[p]:.3f}\n")

    held, pool = [], []
    by_game = collections.defaultdict(list)
    for r in rows:
        by_game[r["class"]].append(r)
    for game, tracks in sorted(by_game.items()):
        tracks.sort(key=lambda r: (zlib.crc32(r["path"].encode()), r["path"]))
        n = round(len(tracks) * HELD_OUT_PERCENT / 100)
        if len(tracks) >= MIN_TRACKS:
            n = max(n, MIN_HELD_OUT)
        held += tracks[:n]
        pool += tracks[n:]
    pool.sort(key=lambda r: (zlib.crc32(("subset:" + r["path"]).encode()), r["path"]))
    split = {}
    hours = 0.0
    for r in pool:
        split[r["path"]] = "train" if hours < SUBSET_HOURS[0] else "valid" if hours < SUBSET_HOURS[1] else "test"
        hours += cache[r["path"]] / 3600
    def link(tree, r):
        path = os.path.join(study, tree, r["path"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.lexists(path):
            os.symlink(os.path.join(music, "train", r["path"]), path)

    with open(os.path.join(study, "music-labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "class", "split"])
        for r in pool:
            link("music-pool", r)
            w.writerow([r["path"], r["class"], split[r["path"]]])
    for r in held:
        split[r["path"]] = "held out"

    per_game = collections.Counter(r["class"] for r in held)
    scored = sorted(g for g, n in per_game.items() if n >= MIN_HELD_OUT)
    with open(os.path.join(study, "music-eval-labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "class", "split"])
        for r in held:
            if r["class"] in scored:
                link("music-eval", r)
                w.writerow([r["path"], r["class"], "train"])

    games = sorted(set(r["class"] for r in rows))
    table = collections.defaultdict(lambda: collections.Counter())
    for r in rows:
        role = split[r["path"]]
        table[r["class"]][role + " h"] += cache[r["path"]] / 3600
        table[r["class"]][role + " n"] += 1
    roles = ["train", "valid", "test", "held out"]
    with open(os.path.join(study, "splits.md"), "w") as f:
        f.write("| game | " + " | ".join(f"{x} (tracks, h)" for x in roles) + " | scored in game ID |\n")
        f.write("|---" * (len(roles) + 2) + "|\n")
        total = collections.Counter()
        for g in games:
            cells = []
            for x in roles:
                cells.append(f"{table[g][x + ' n']}, {table[g][x + ' h']:.2f}")
                total[x + " n"] += table[g][x + " n"]
                total[x + " h"] += table[g][x + " h"]
            f.write(f"| {g} | " + " | ".join(cells) + f" | {'yes' if g in scored else 'no'} |\n")
        f.write("| **total** | " + " | ".join(f"{total[x + ' n']}, {total[x + ' h']:.2f}" for x in roles) +
                f" | {len(scored)} games |\n")
        cum = [total["train h"], total["train h"] + total["valid h"],
               total["train h"] + total["valid h"] + total["test h"]]
        f.write(f"\nPretraining subsets (cumulative hours): train {cum[0]:.1f}, train+valid {cum[1]:.1f}, "
                f"all three {cum[2]:.1f}. Held-out tracks scored: "
                f"{sum(per_game[g] for g in scored)} of {len(held)}.\n")
    print(open(os.path.join(study, "splits.md")).read())


if __name__ == "__main__":
    main()
