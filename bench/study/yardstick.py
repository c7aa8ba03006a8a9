#!/usr/bin/python3
"""Section 8's yardstick (issue 26): game identification on the held-out music by 5 folds, with a
paired bootstrap over tracks and training seeds for every difference between two rows.

For each row and training seed (bench/study/study.sh folders runs/ROW/seedS), the frozen
embeddings of the held-out tracks (eval-music-eval/embeddings-SOURCE.h5: SOURCE mart, or the
baselines row's random_init and logmel_stats) are probed the same way: 5 folds stratified by game
(the same folds for every row: they depend on the tracks alone), a multinomial logistic regression
(scikit-learn, C = 1, features standardised on the training folds; fixed before any row was seen)
on the crops of 4 folds (at most 16 per track, evenly spaced, so long tracks do not outweigh
short ones), every crop's probabilities averaged per track of the fifth. Every held-out
track thus gets one prediction per row and seed; valid and test are scored together.

A difference A - B is the mean over A's seeds minus the mean over B's seeds; its 95% interval comes
from 2000 paired bootstrap replicates that resample the tracks (the same draw for both rows) and
each row's seeds. Predictions are cached next to the embeddings (yardstick-SOURCE.json).

usage:
  yardstick.py table STUDY ROW [ROW ...]          rows: mean +- std over seeds (accuracy, ROC-AUC)
  yardstick.py diff STUDY A B [A B ...]            A - B with 95% intervals
  (a ROW may be STUDY2:ROW to read another study folder; "random_init" and "logmel_stats" are the
   baselines row's two sources)
"""
import glob
import json
import os
import sys

import numpy as np

FOLDS = 5
REPLICATES = 2000
TRAIN_CROPS = 16  # per track in the training folds


def _folder(study, row):
    if ":" in row:
        study, row = row.split(":", 1)
    source = "mart"
    if row in ("random_init", "logmel_stats"):
        source, row = row, "baselines"
    return study, row, source


def predictions(study, row):
    """{seed: (track ids, classes, probabilities [tracks, classes])} of a row."""
    study, folder, source = _folder(study, row)
    out = {}
    for run in sorted(glob.glob(os.path.join(study, "runs", folder, "seed*"))):
        emb = os.path.join(run, "eval-music-eval", f"embeddings-{source}.h5")
        if not os.path.exists(os.path.join(run, "done")) or not os.path.exists(emb):
            continue
        seed = int(os.path.basename(run)[4:])
        cache = os.path.join(run, "eval-music-eval", f"yardstick-{source}.json")
        if os.path.exists(cache) and os.path.getmtime(cache) >= os.path.getmtime(emb):
            c = json.load(open(cache))
        else:
            c = probe(emb)
            json.dump(c, open(cache, "w"))
        out[seed] = (c["ids"], np.array(c["classes"]), np.array(c["probs"]))
    if not out:
        sys.exit(f"yardstick: no finished seed of {row} under {study}/runs/{folder} with eval-music-eval")
    return out


def probe(path):
    import h5py
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    with h5py.File(path, "r") as f:
        crops = f["crops/level_0"][:]
        offsets = f["crops/offsets"][:]
        classes = f["labels/class"][:]
        ids = [x.decode() if isinstance(x, bytes) else str(x) for x in f["tracks/id"][:]]
    order = sorted(range(len(ids)), key=lambda i: ids[i])  # the same track order whatever wrote the file
    ids = [ids[i] for i in order]
    y = classes[order]
    k = int(classes.max()) + 1
    probs = np.zeros((len(ids), k))
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=0)
    for train, test in folds.split(np.zeros(len(ids)), y):
        def rows(tracks, cap=None):
            x, t = [], []
            for j in tracks:
                i = order[j]
                c = crops[offsets[i]:offsets[i + 1]]
                if cap and len(c) > cap:
                    c = c[np.linspace(0, len(c) - 1, cap).round().astype(int)]
                x.append(c)
                t.append(np.full(len(c), j))
            return np.concatenate(x), np.concatenate(t)
        xt, tt = rows(train, TRAIN_CROPS)
        scaler = StandardScaler().fit(xt)
        lr = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(xt), y[tt])
        xs, ts = rows(test)
        p = lr.predict_proba(scaler.transform(xs))
        full = np.zeros((len(xs), k))
        full[:, lr.classes_] = p
        for j in test:
            probs[j] = full[ts == j].mean(0)
    return {"ids": ids, "classes": y.tolist(), "probs": probs.tolist()}


def accuracy(classes, probs, idx=None):
    if idx is not None:
        classes, probs = classes[idx], probs[idx]
    return float((probs.argmax(1) == classes).mean())


_SORTED = {}  # id(probs) -> what roc_auc needs from the full set's sort, computed once


def _sorted_columns(classes, probs):
    key = id(probs)
    if key not in _SORTED:
        n, games = probs.shape
        order = np.argsort(probs, axis=0, kind="stable")
        scores = np.take_along_axis(probs, order, axis=0)
        group = np.vstack([np.zeros((1, games), dtype=np.int64),
                           np.cumsum(scores[1:] != scores[:-1], axis=0)])  # equal scores share a group
        flat_group = (group + np.arange(games)[None, :] * n).ravel()
        positive = classes[order] == np.arange(games)[None, :]
        _SORTED[key] = (probs, order, group, flat_group, positive)  # probs kept: the id stays theirs
    return _SORTED[key][1:]


def roc_auc(classes, probs, idx=None):
    """Macro one-vs-rest ROC-AUC over the games present in this (re)sample: the mean over games of
    scikit-learn's roc_auc_score (equal to it to 1e-15, checked), computed from one sort of the full
    set. A resample is a weight per track (how often it was drawn); a game's AUC is the weighted
    share of (positive, negative) pairs ranked right, ties counting one half. The bootstrap calls
    this thousands of times."""
    n, games = probs.shape
    order, group, flat_group, positive = _sorted_columns(classes, probs)
    w = np.ones(n) if idx is None else np.bincount(idx, minlength=n).astype(float)
    ws = w[order]
    wp, wn = ws * positive, ws * ~positive
    per_group = np.bincount(flat_group, weights=wn.ravel(), minlength=n * games).reshape(n, games, order="F")
    below = np.cumsum(per_group, axis=0) - per_group  # negatives strictly below each group
    cols = np.arange(games)[None, :]
    pairs = (wp * (below[group, cols] + 0.5 * per_group[group, cols])).sum(0)
    p, q = wp.sum(0), wn.sum(0)
    present = (p > 0) & (q > 0)
    if present.sum() < 2:
        return float("nan")
    return float(np.mean(pairs[present] / (p[present] * q[present])))


METRICS = {"accuracy": accuracy, "ROC-AUC": roc_auc}


def check_same_tracks(a, b, name_a, name_b):
    ia = next(iter(a.values()))[0]
    ib = next(iter(b.values()))[0]
    if ia != ib:
        sys.exit(f"yardstick: {name_a} and {name_b} were scored on different held-out tracks")


def table(study, rows):
    print("| row | seeds | game ID accuracy | game ID ROC-AUC |")
    print("|---|---|---|---|")
    for row in rows:
        p = predictions(study, row)
        cells = []
        for m in METRICS.values():
            v = [m(c, pr) for _, c, pr in p.values()]
            cells.append(f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}")
        print(f"| {row} | {len(p)} | " + " | ".join(cells) + " |")


def bootstrap(pa, pb, metric, rng):
    n = len(next(iter(pa.values()))[1])
    sa, sb = list(pa), list(pb)
    point = np.mean([metric(*pa[s][1:]) for s in sa]) - np.mean([metric(*pb[s][1:]) for s in sb])
    reps = []
    for _ in range(REPLICATES):
        idx = rng.integers(0, n, n)
        da = [metric(*pa[s][1:], idx) for s in rng.choice(sa, len(sa))]
        db = [metric(*pb[s][1:], idx) for s in rng.choice(sb, len(sb))]
        reps.append(np.nanmean(da) - np.nanmean(db))
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return point, lo, hi


def difference(study, a, b, rng_seed=0):
    """({metric: (A - B, lo, hi)}, (A's seeds, B's seeds)); each metric from a fresh rng(rng_seed)."""
    pa, pb = predictions(study, a), predictions(study, b)
    check_same_tracks(pa, pb, a, b)
    res = {name: bootstrap(pa, pb, m, np.random.default_rng(rng_seed)) for name, m in METRICS.items()}
    return res, (len(pa), len(pb))


def interval_cell(point, lo, hi):
    """A difference and its interval as a table cell, marked when the interval excludes 0."""
    mark = " **>0**" if lo > 0 else " **<0**" if hi < 0 else ""
    return f"{point:+.3f} [{lo:+.3f}, {hi:+.3f}]{mark}"


def diff(study, pairs, rng_seed=0):
    print("| A - B | seeds | game ID accuracy [95% interval] | game ID ROC-AUC [95% interval] |")
    print("|---|---|---|---|")
    results = []
    for a, b in pairs:
        res, (na, nb) = difference(study, a, b, rng_seed)
        results.append({"a": a, "b": b, **res})
        print(f"| {a} - {b} | {na} / {nb} | " + " | ".join(interval_cell(*res[n]) for n in METRICS) + " |")
    return results


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("table", "diff"):
        sys.exit(__doc__)
    study = sys.argv[2]
    if sys.argv[1] == "table":
        table(study, sys.argv[3:])
    else:
        rest = sys.argv[3:]
        if len(rest) % 2:
            sys.exit("yardstick: diff takes pairs A B")
        diff(study, list(zip(rest[::2], rest[1::2])))


if __name__ == "__main__":
    main()
