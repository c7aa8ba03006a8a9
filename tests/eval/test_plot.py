#!/usr/bin/python3
"""scripts/plot.py: what it reads from metrics.jsonl and results.json, and that it writes PNGs.

    test_plot.py SOURCE_DIR WORK_DIR   (exit 77 = skipped: no matplotlib)
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

SRC, WORK = sys.argv[1:3]
spec = importlib.util.spec_from_file_location("plot", os.path.join(SRC, "scripts", "plot.py"))
plot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot)

shutil.rmtree(WORK, ignore_errors=True)
run, ev = os.path.join(WORK, "run"), os.path.join(WORK, "eval")
os.makedirs(run), os.makedirs(ev)
with open(os.path.join(run, "metrics.jsonl"), "w") as f:
    for s in range(1, 6):
        f.write(json.dumps({"step": s, "epoch": 0, "loss": 1.0 / s, "lr": 1e-3, "flag": True,
                            "grad": {"total": 2.0 * s, "levels": [s, s + 1]}, "note": "text"}) + "\n")
    f.write(json.dumps({"step": 3, "loss": 9.0}) + "\n")  # a resumed run repeats step 3: the later line wins
    f.write('{"step": 6, "lo')                              # cut by a kill
steps, keys, by_step = plot.read_metrics(os.path.join(run, "metrics.jsonl"))
assert steps == [1, 2, 3, 4, 5], steps
assert keys == ["loss", "lr", "grad.total", "grad.levels[0]", "grad.levels[1]"], keys  # no step/epoch/bool/text
assert by_step[3] == {"loss": 9.0} and by_step[5]["grad.levels[1]"] == 6.0, by_step
with open(os.path.join(ev, "results.json"), "w") as f:
    json.dump([{"model": "mart", "protocol": "linear", "task": "genre", "metric": "accuracy",
                "label_fraction": 1.0, "seed": s, "value": v} for s, v in ((1, 0.5), (2, 0.7))], f)

py = sys.executable
for kind, folder, png in (("curves", run, "curves.png"), ("results", ev, "results.png")):
    p = subprocess.run([py, os.path.join(SRC, "scripts", "plot.py"), kind, folder], capture_output=True, text=True)
    if p.returncode == 3:
        print("SKIPPED: " + p.stderr.strip())
        sys.exit(77)
    assert p.returncode == 0, p.stderr
    out = os.path.join(folder, png)
    assert p.stdout.strip() == out, p.stdout
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{out} is not a PNG"
    assert not [n for n in os.listdir(folder) if ".tmp." in n], os.listdir(folder)
# A folder without the input is an error naming the file, not a crash.
p = subprocess.run([py, os.path.join(SRC, "scripts", "plot.py"), "curves", ev], capture_output=True, text=True)
assert p.returncode == 1 and "metrics.jsonl" in p.stderr, (p.returncode, p.stderr)
print("plot.py: keys, resume, truncation and both images ok")
