#!/usr/bin/python3
"""Plots a person would look at, from what the stages write (Debian's python3-matplotlib).

  plot.py curves RUN_DIR    RUN_DIR/metrics.jsonl -> RUN_DIR/curves.png (mart-train calls it)
  plot.py results EVAL_DIR  EVAL_DIR/results.json -> EVAL_DIR/results.png (mart-eval calls it)

curves: one panel per numeric key of metrics.jsonl against the step (loss, lr, samples/s and any
diagnostic a run writes), read generically, so a new key gets its panel without a change here.
After a resume the log holds some steps twice: the later line wins.
results: one panel per task and metric; a bar per model and protocol (and label fraction), the
mean over seeds with their standard deviation as the error bar.

Exit codes: 0 written, 1 bad input, 3 matplotlib is not installed (the stages then say so).
"""
import json
import math
import os
import sys

LABELS = {"loss": "loss (eq. 5, global batch)", "lr": "learning rate", "samples_per_s": "samples/s",
          "step_s": "step time (s)", "data_wait_s": "data wait (s)", "comm_s": "communication (s)"}
SKIP = {"step", "epoch"}


def flatten(prefix, value, out):
    """Numeric leaves of a JSON value as 'a.b' keys (nested diagnostics get a panel each)."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        if math.isfinite(value):
            out[prefix] = float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else k, v, out)
    elif isinstance(value, list) and len(value) <= 8:  # short lists: per-level values
        for i, v in enumerate(value):
            flatten(f"{prefix}[{i}]", v, out)


def read_metrics(path):
    by_step = {}
    with open(path) as f:
        lines = f.read().splitlines()
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):  # a last line cut short by a kill: ignore it
                continue
            raise ValueError(f"{path}:{n} is not JSON")
        if not isinstance(row, dict) or "step" not in row:
            continue
        values = {}
        flatten("", {k: v for k, v in row.items() if k not in SKIP}, values)
        by_step[int(row["step"])] = values  # a resumed run rewrites steps: the later wins
    steps = sorted(by_step)
    keys = []
    for s in steps:
        for k in by_step[s]:
            if k not in keys:
                keys.append(k)
    # The JSON writer sorts keys: loss, lr and throughput first, then the rest as they come.
    first = [k for k in LABELS if k in keys]
    return steps, first + [k for k in keys if k not in first], by_step


def smooth(ys, window):
    out, acc = [], 0.0
    for i, y in enumerate(ys):
        acc += y
        if i >= window:
            acc -= ys[i - window]
        out.append(acc / min(i + 1, window))
    return out


def curves(run_dir, plt):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        raise ValueError(f"no {path}: give a mart-train run folder")
    steps, keys, by_step = read_metrics(path)
    if not steps or not keys:
        raise ValueError(f"{path} holds no steps with numeric values")
    cols = min(3, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows), squeeze=False)
    window = max(1, len(steps) // 50)
    for ax, key in zip(axes.flat, keys):
        xs = [s for s in steps if key in by_step[s]]
        ys = [by_step[s][key] for s in xs]
        if window > 1:
            ax.plot(xs, ys, color="tab:blue", alpha=0.25, linewidth=0.8, label="per step")
            ax.plot(xs, smooth(ys, window), color="tab:blue", linewidth=1.6, label=f"mean of {window}")
            ax.legend(fontsize=7)
        else:
            ax.plot(xs, ys, color="tab:blue", marker="." if len(xs) < 60 else None, linewidth=1.4)
        ax.set_title(LABELS.get(key, key), fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"mart-train: {os.path.abspath(run_dir)} ({len(steps)} steps)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (3.2 * rows)))  # room for the title above the top row
    out = os.path.join(run_dir, "curves.png")
    save(fig, out)
    return out


def results(eval_dir, plt):
    path = os.path.join(eval_dir, "results.json")
    if not os.path.exists(path):
        raise ValueError(f"no {path}: give a mart-eval run folder")
    with open(path) as f:
        rows = json.load(f)
    panels = {}  # (task, metric) -> {bar label: [values over seeds]}
    for r in rows:
        label = r["model"] + (f" ({r['protocol']})" if r.get("protocol") else "")
        if float(r.get("label_fraction", 1.0)) < 1.0:
            label += f" @{100 * float(r['label_fraction']):g}%"
        panels.setdefault((r["task"], r["metric"]), {}).setdefault(label, []).append(float(r["value"]))
    if not panels:
        raise ValueError(f"{path} holds no results")
    keys = list(panels)
    cols = min(3, len(keys))
    nrows = (len(keys) + cols - 1) // cols
    widest = max(len(p) for p in panels.values())
    fig, axes = plt.subplots(nrows, cols, figsize=(max(4.2, 0.55 * widest + 1.5) * cols, 3.6 * nrows),
                             squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    models = []
    for (task, metric), bars in panels.items():
        for label in bars:
            m = label.split(" ")[0]
            if m not in models:
                models.append(m)
    for ax, key in zip(axes.flat, keys):
        bars = panels[key]
        labels = list(bars)
        means = [sum(v) / len(v) for v in bars.values()]
        stds = [math.sqrt(sum((x - mu) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
                for v, mu in zip(bars.values(), means)]
        one_seed = all(len(v) == 1 for v in bars.values())  # no spread to show: no empty error bars
        ax.bar(range(len(labels)), means, yerr=None if one_seed else stds, capsize=4,
               color=[colors[models.index(l.split(" ")[0]) % len(colors)] for l in labels])
        for i, (mu, sd, v) in enumerate(zip(means, stds, bars.values())):
            ax.annotate(f"{mu:.3f}" + (f"\n±{sd:.3f}" if len(v) > 1 else ""), (i, mu + sd),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{key[0]}: {key[1]}", fontsize=10)
        ax.margins(y=0.2)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    seeds = max(len(v) for p in panels.values() for v in p.values())
    fig.suptitle(f"mart-eval: {os.path.abspath(eval_dir)} (mean over up to {seeds} seed(s); "
                 "error bars: standard deviation)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (3.6 * nrows)))  # room for the title above the top row
    out = os.path.join(eval_dir, "results.png")
    save(fig, out)
    return out


def save(fig, out):
    tmp = out + f".tmp.{os.getpid()}.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, out)  # a reader never sees half an image


def main(argv):
    if len(argv) != 3 or argv[1] not in ("curves", "results"):
        print(__doc__, file=sys.stderr)
        return 1
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot.py: matplotlib is not installed (Debian: python3-matplotlib; scripts/setup.sh installs it)",
              file=sys.stderr)
        return 3
    try:
        out = (curves if argv[1] == "curves" else results)(argv[2], plt)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"plot.py: {argv[1]} of {argv[2]}: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
