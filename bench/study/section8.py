#!/usr/bin/python3
"""docs/results.md section 8's tables and plot from the study folders (bench/study/study.sh,
prepare-scaling layout): every row scored by bench/study/yardstick.py (game ID on the held-out
tracks, 5 folds, paired bootstrap intervals), the demo corpus' probes from each row's mart-eval
results, the pairing answers, the positive controls and the scaling curves.

usage: section8.py STUDY [LONG_STUDY] OUT.md [OUT.png]
  STUDY       the demo front end's folder (study-scaling)
  LONG_STUDY  the paper front end's folder (6 s, 4 levels, 128 mels), or "-" when not run
"""
import glob
import json
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import yardstick  # noqa: E402

DEMO = [("tagging", "ROC-AUC", "demo tag ROC"), ("tagging", "PR-AUC", "demo tag PR"),
        ("classification", "accuracy", "demo cls acc")]


def demo_scores(study, row):
    """{column: [per-seed mean over probe seeds]} from runs/ROW/seed*/eval-demo/results.json."""
    folder, source = row, "mart"
    if row in ("random_init", "logmel_stats"):
        folder, source = "baselines", row
    out = {}
    for res in sorted(glob.glob(os.path.join(study, "runs", folder, "seed*", "eval-demo", "results.json"))):
        rows = [r for r in json.load(open(res)) if r["model"] == source and r.get("protocol") in ("linear", "")]
        for task, metric, name in DEMO:
            v = [r["value"] for r in rows if r["task"] == task and r["metric"] == metric]
            if v:
                out.setdefault(name, []).append(statistics.mean(v))
    return out


def command(study, row):
    folder = "baselines" if row in ("random_init", "logmel_stats") else row
    f = glob.glob(os.path.join(study, "runs", folder, "seed1", "command.txt"))
    return open(f[0]).read().strip() if f else ""


def fmt(v):
    if not v:
        return "-"
    return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def rows_table(study, rows):
    lines = ["| row | seeds | game ID acc | game ID ROC-AUC | " + " | ".join(n for _, _, n in DEMO) + " |",
             "|---" * (4 + len(DEMO)) + "|"]
    for row in rows:
        try:
            p = yardstick.predictions(study, row)
        except SystemExit:
            continue
        acc = [yardstick.accuracy(c, pr) for _, c, pr in p.values()]
        roc = [yardstick.roc_auc(c, pr) for _, c, pr in p.values()]
        demo = demo_scores(study, row)
        lines.append(f"| {row} | {len(p)} | {fmt(acc)} | {fmt(roc)} | " + " | ".join(fmt(demo.get(n)) for _, _, n in DEMO) + " |")
    return "\n".join(lines)


_DIFFS = {}  # (study, a, b) -> diff(): the scaling table reuses the controls' pairs


def diff(study, a, b):
    """(a, b, {metric: (point, lo, hi)}, seeds), or None when a row is missing."""
    if (study, a, b) not in _DIFFS:
        try:
            res, seeds = yardstick.difference(study, a, b)
            _DIFFS[(study, a, b)] = (a, b, res, seeds)
        except SystemExit:
            _DIFFS[(study, a, b)] = None
    return _DIFFS[(study, a, b)]


def diffs(study, pairs):
    """[(a, b, {metric: (point, lo, hi)}, seeds)] for the pairs whose rows both exist."""
    return [d for d in (diff(study, a, b) for a, b in pairs) if d is not None]


def diff_table(results):
    lines = ["| A - B | seeds A / B | game ID accuracy [95%] | game ID ROC-AUC [95%] |", "|---|---|---|---|"]
    for a, b, res, (na, nb) in results:
        lines.append(f"| {a} - {b} | {na} / {nb} | " + " | ".join(yardstick.interval_cell(*res[n]) for n in yardstick.METRICS) + " |")
    return "\n".join(lines)


# The scaling axes: (axis, point label, study key, MART row, plain row). "long" is LONG_STUDY.
AXES = [
    ("pretraining data", "5 h", "short", "mart-clmr-5h", "plain-clmr-5h"),
    ("pretraining data", "15 h", "short", "mart-clmr", "plain-clmr"),
    ("pretraining data", "23 h", "short", "mart-clmr-all", "plain-clmr-all"),
    ("steps", "x1 (400)", "short", "mart-clmr", "plain-clmr"),
    ("steps", "x4 (1600)", "short", "mart-clmr-x4", "plain-clmr-x4"),
    ("front end", "demo (1.5 s, 3 levels, 64 mels)", "short", "mart-clmr", "plain-clmr"),
    ("front end", "paper (6 s, 4 levels, 128 mels)", "long", "mart-clmr", "plain-clmr"),
]


def scaling(studies):
    points = []
    for axis, label, key, mart, plain in AXES:
        study = studies.get(key)
        if not study:
            continue
        res = diffs(study, [(mart, "logmel_stats"), (mart, plain)])
        if len(res) == 2:
            points.append((axis, label, res[0][2]["accuracy"], res[1][2]["accuracy"], res[0][3][0]))
    return points


def scaling_table(points):
    lines = ["| axis | point | MART - log-mel stats, game ID acc [95%] | MART - plain contrastive [95%] | MART seeds |",
             "|---|---|---|---|---|"]
    for axis, label, vs_logmel, vs_plain, n in points:
        c = [f"{p:+.3f} [{lo:+.3f}, {hi:+.3f}]" for p, lo, hi in (vs_logmel, vs_plain)]
        lines.append(f"| {axis} | {label} | {c[0]} | {c[1]} | {n} |")
    return "\n".join(lines)


def plot(points, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    # An axis with one point has no curve: it stays in the table only.
    axes = [a for a in dict.fromkeys(p[0] for p in points) if sum(p[0] == a for p in points) > 1]
    if not axes:
        return False
    fig, ax = plt.subplots(1, len(axes), figsize=(4.2 * len(axes), 3.6), sharey=True, squeeze=False)
    for i, axis in enumerate(axes):
        pts = [p for p in points if p[0] == axis]
        x = np.arange(len(pts))
        for j, (name, k) in enumerate((("MART - log-mel stats", 2), ("MART - plain contrastive", 3))):
            y = [p[k][0] for p in pts]
            err = [[p[k][0] - p[k][1] for p in pts], [p[k][2] - p[k][0] for p in pts]]
            ax[0][i].errorbar(x + (j - 0.5) * 0.08, y, yerr=err, marker="o", capsize=3, label=name)
        ax[0][i].axhline(0, color="gray", lw=0.8)
        ax[0][i].set_xlim(-0.3, len(pts) - 0.7)
        ax[0][i].set_xticks(x)
        ax[0][i].set_xticklabels([p[1].split(" (")[0] for p in pts])
        ax[0][i].set_title(axis)
    ax[0][0].set_ylabel("game ID accuracy difference")
    ax[0][0].legend(fontsize=8)
    fig.suptitle("MART's margin against budget (95% paired bootstrap intervals)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    study, long_study, out = sys.argv[1], sys.argv[2], sys.argv[3]
    studies = {"short": study, "long": None if long_study == "-" else long_study}
    rows = ["mart", "mart-mask", "mart-sym", "mart-fresh", "mart-indep", "mart-clmr", "plain", "plain-clmr",
            "supervised", "mart-clmr-5h", "plain-clmr-5h", "mart-clmr-all", "plain-clmr-all", "mart-clmr-x4",
            "plain-clmr-x4", "random_init", "logmel_stats"]
    parts = ["## Rows (demo front end; game ID on the held-out tracks, 5 folds; mean ± std over training seeds)",
             "", rows_table(study, rows), ""]
    if studies["long"]:
        parts += ["## Rows (the paper's front end)", "",
                  rows_table(studies["long"], ["mart-clmr", "plain-clmr", "supervised", "random_init", "logmel_stats"]), ""]
    parts += ["## Pairing switches (each against MART's defaults; 95% paired bootstrap intervals)", "",
              diff_table(diffs(study, [("mart-mask", "mart"), ("mart-sym", "mart"), ("mart-fresh", "mart"),
                                       ("mart-indep", "mart"), ("mart-clmr", "mart"), ("plain-clmr", "plain")])), "",
              "## Positive controls and the target", "",
              diff_table(diffs(study, [("supervised", "logmel_stats"), ("supervised", "mart"),
                                       ("plain-clmr", "random_init"), ("plain-clmr", "logmel_stats"),
                                       ("mart", "logmel_stats"), ("mart", "plain"), ("mart", "random_init"),
                                       ("mart-clmr", "logmel_stats"), ("mart-clmr", "plain-clmr"),
                                       ("mart-clmr", "random_init")])), ""]
    points = scaling(studies)
    parts += ["## Scaling curves", "", scaling_table(points), ""]
    parts += ["## Commands", ""] + [f"- `{row}`: `{command(study, row)}`" for row in rows if command(study, row)]
    with open(out, "w") as f:
        f.write("\n".join(parts) + "\n")
    if len(sys.argv) == 5 and points:
        plot(points, sys.argv[4])
    print("\n".join(parts))


if __name__ == "__main__":
    main()
