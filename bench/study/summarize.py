#!/usr/bin/env python3
"""Summarises an issue-11 study folder (bench/study/study.sh): one row per pretraining setting,
mean +- std over training seeds of each metric (each seed's value is the mean over its probe seeds),
the command that made the row, and curves of the loss and diagnostics (when matplotlib exists).

usage: summarize.py STUDY_DIR OUT.md
"""
import glob
import json
import os
import statistics
import sys

COLUMNS = [  # (eval target, task, metric, header)
    ("music", "classification", "accuracy", "real game cls acc"),
    ("music", "classification", "ROC-AUC", "real game cls ROC"),
    ("demo", "tagging", "ROC-AUC", "demo tag ROC"),
    ("demo", "tagging", "PR-AUC", "demo tag PR"),
    ("demo", "classification", "accuracy", "demo cls acc"),
    ("covers-dev", "covers", "MAP", "real covers MAP (dev)"),
    ("covers-test", "covers", "MAP", "real covers MAP (test)"),
]
# What a choice between rows reads: the probes scored on their valid splits (study.sh valid,
# mart-eval --eval.score_split valid) and the covers' dev half. No test split.
VALID_COLUMNS = [
    ("valid:music", "classification", "accuracy", "real game cls acc (valid)"),
    ("valid:music", "classification", "ROC-AUC", "real game cls ROC (valid)"),
    ("valid:demo", "tagging", "ROC-AUC", "demo tag ROC (valid)"),
    ("valid:demo", "tagging", "PR-AUC", "demo tag PR (valid)"),
    ("valid:demo", "classification", "accuracy", "demo cls acc (valid)"),
    ("covers-dev", "covers", "MAP", "real covers MAP (dev)"),
]


def load(study):
    """{(row, model): {seed: {(target, task, metric): [values over probe seeds]}}}, commands, times"""
    table, commands, times = {}, {}, {}
    for run in sorted(glob.glob(os.path.join(study, "runs", "*", "seed*"))):
        row = os.path.basename(os.path.dirname(run))
        seed = os.path.basename(run)
        if not os.path.exists(os.path.join(run, "done")):
            continue
        with open(os.path.join(run, "command.txt")) as f:
            commands.setdefault(row, f.read().strip())
        try:
            with open(os.path.join(run, "done")) as f:
                times.setdefault(row, []).append(json.load(f))
        except (json.JSONDecodeError, ValueError):
            pass
        for res in glob.glob(os.path.join(run, "eval-*", "results.json")) + \
                glob.glob(os.path.join(run, "valid-*", "results.json")):
            folder = os.path.basename(os.path.dirname(res))
            target = folder[len("eval-"):] if folder.startswith("eval-") else "valid:" + folder[len("valid-"):]
            want_split = "valid" if target.startswith("valid:") else "test"
            for r in json.load(open(res)):
                if r.get("split", "test") != want_split:  # a folder scored on the other split
                    continue
                if r.get("protocol") not in ("", "frozen", "linear", "mlp", None):  # frozen embeddings; not fine-tuning
                    continue
                model = r["model"]
                baselines = row.startswith("baselines")  # "baselines", or e.g. "baselines-levels" (another readout)
                if baselines == (model == "mart"):
                    continue  # a training row's model, or the baselines row's two baselines
                key = (row if model == "mart" else model + row[len("baselines"):], model)
                table.setdefault(key, {}).setdefault(seed, {}).setdefault(
                    (target, r["task"], r["metric"]), []).append(r["value"])
    return table, commands, times


def fmt(values):
    if not values:
        return "-"
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.3f} ± {s:.3f}" + (f" (n={len(values)})" if len(values) != 3 else "")


def margins(values, columns, ref="mart"):
    """The reference row minus every other row, per column; '>' marks a margin larger than two
    standard deviations (the larger of the two rows' spreads over seeds), '<' the same the other way."""
    if ref not in values:
        return []
    out = ["", f"`{ref}` minus each row (mean difference; > / < : more than 2 std of the noisier row):", "",
           "| row | " + " | ".join(c[3] for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row, cols in sorted(values.items()):
        if row == ref:
            continue
        cells = []
        for a, b in zip(values[ref], cols):
            if not a or not b:
                cells.append("-")
                continue
            d = statistics.fmean(a) - statistics.fmean(b)
            sd = max(statistics.stdev(a) if len(a) > 1 else 0.0, statistics.stdev(b) if len(b) > 1 else 0.0)
            mark = " >" if len(a) > 1 and d > 2 * sd else (" <" if len(a) > 1 and -d > 2 * sd else "")
            cells.append(f"{d:+.3f}{mark}")
        out.append(f"| {row} | " + " | ".join(cells) + " |")
    return out


def rows_table(table, columns):
    """The markdown table of `columns` and {row: [per-seed values per column]}."""
    lines = ["| row | " + " | ".join(c[3] for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    values = {}  # row -> [per-seed values per column]
    for (row, model), seeds in sorted(table.items()):
        cells = []
        for target, task, metric, _ in columns:
            per_seed = [statistics.fmean(v[(target, task, metric)]) for v in seeds.values()
                        if (target, task, metric) in v]
            # Baselines have one training "seed": their spread is the probe seeds'.
            if model != "mart" and len(per_seed) == 1:
                per_seed = list(seeds.values())[0].get((target, task, metric), [])
            cells.append(fmt(per_seed))
            values.setdefault(row, []).append(per_seed)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines, values


def main():
    study, out = sys.argv[1], sys.argv[2]
    table, commands, times = load(study)
    lines, values = rows_table(table, COLUMNS)
    lines += margins(values, COLUMNS)
    if any(k[0].startswith("valid:") for seeds in table.values() for v in seeds.values() for k in v):
        valid_lines, valid_values = rows_table(table, VALID_COLUMNS)
        lines += ["", "Scored on the valid splits and the covers' dev half (what a choice reads; "
                  "`study.sh valid NAME SEED`):", ""] + valid_lines + margins(valid_values, VALID_COLUMNS)
    lines.append("")
    lines.append("Commands (each row's seeds differ only in SEED):")
    lines.append("")
    for row, cmd in sorted(commands.items()):
        t = times.get(row)
        took = ""
        if t:
            took = f" — train {statistics.fmean(x['train_s'] for x in t):.0f} s, eval {statistics.fmean(x['eval_s'] for x in t):.0f} s per seed"
        lines.append(f"- `{row}`: `{cmd}`{took}")
    text = "\n".join(lines) + "\n"
    with open(out, "w") as f:
        f.write(text)
    print(text)
    plot_curves(study, os.path.splitext(out)[0] + "-curves.png")


def plot_curves(study, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no matplotlib: curves skipped)")
        return
    keys = ["loss", "top1", "log_pw", "eff_rank", "align", "uniform", "incr0", "incr1"]
    fig, axes = plt.subplots(2, 4, figsize=(18, 8))
    for metrics in sorted(glob.glob(os.path.join(study, "runs", "*", "seed1", "run", "metrics.jsonl"))):
        row = metrics.split(os.sep)[-4]
        if os.path.islink(os.path.dirname(metrics)):
            continue  # a `reeval` row: another row's training, already drawn
        rows = [json.loads(l) for l in open(metrics) if l.strip()]
        if not rows:
            continue
        for ax, k in zip(axes.flat, keys):
            xs = [r["step"] for r in rows if k in r]
            ys = [r[k] for r in rows if k in r]
            if not xs:
                continue
            w = max(1, len(ys) // 40)  # running mean, so the lines can be told apart
            sm = [statistics.fmean(ys[max(0, i - w):i + 1]) for i in range(len(ys))]
            ax.plot(xs, sm, label=row)
            ax.set_title(k)
            ax.set_xlabel("step")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    print(f"curves: {png}")


if __name__ == "__main__":
    main()
