#!/usr/bin/python3
"""The demo's numbers under several kernel settings (tests/portability.sh --demo).

Usage: demo_spread.py DEMO_ROOT SETTING... ; reads DEMO_ROOT/SETTING/eval/results.json.
Prints one markdown row per number the demo reports (model, protocol, task, metric, label
fraction): its value per setting (mean over probe seeds, as report.md shows it) and the range.
"""
import collections
import json
import sys


def means(path):
    groups = collections.defaultdict(list)
    for row in json.load(open(path)):
        key = (row["model"], row["protocol"], row["task"], row["metric"], row.get("label_fraction", 1.0))
        groups[key].append(row["value"])
    return {k: sum(v) / len(v) for k, v in groups.items()}


def main():
    root, settings = sys.argv[1], sys.argv[2:]
    per = {s: means(f"{root}/{s}/eval/results.json") for s in settings}
    keys = sorted(set().union(*[set(m) for m in per.values()]))
    print("| model | protocol | task | metric | " + " | ".join(settings) + " | range |")
    print("|---" * (5 + len(settings)) + "|")
    for k in keys:
        vals = [per[s].get(k) for s in settings]
        got = [v for v in vals if v is not None]
        cells = ["%.3f" % v if v is not None else "-" for v in vals]
        frac = "" if k[4] == 1.0 else " @%g%%" % (100 * k[4])
        spread = "%.3f..%.3f" % (min(got), max(got)) if got else "-"
        print(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]}{frac} | " + " | ".join(cells) + f" | {spread} |")


if __name__ == "__main__":
    main()
