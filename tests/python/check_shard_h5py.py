#!/usr/bin/python3
"""Reads a mart shard with h5py alone and checks it against what the C++ reader returned.

Usage: check_shard_h5py.py SHARD EXPECTED.json   (EXPECTED is written by tests/data/test_shard)

Checks that h5py sees float16 mel datasets with no help, that the stored halves are numpy's
float16 rounding of the C++ writer's float32 input (both round to nearest even), that the values
equal the C++ reader's, and recomputes every crop from the documented rule (docs/shards.md):
frame t of clip c at level n sits at sample k*hop_0 + c*L_n + t*hop_n; the stored row is that
sample divided by the hop of the level that holds it. Exit 0 when all agree.
"""
import json
import sys

import h5py
import numpy as np


def fail(msg):
    print("check_shard_h5py: " + msg, file=sys.stderr)
    sys.exit(1)


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def feature_sizes(a):
    levels, parts, frames = int(a["levels"]), int(a["parts"]), int(a["frames"])
    clip = int(a["clip_samples"])
    level_samples = [clip // parts**n for n in range(levels)]
    hops = [ls // frames for ls in level_samples]
    return levels, parts, frames, level_samples, hops


def crop(f, a, track, k, view):
    levels, parts, frames, level_samples, hops = feature_sizes(a)
    fixed = text(a["window"]) == "fixed"
    clips = []
    for n in range(levels):
        src = levels - 1 if fixed else n
        g = f["views/%d/level_%d" % (view, src)]
        rows = g["mel"][g["offsets"][track]:g["offsets"][track + 1]].astype(np.float32)
        for c in range(parts**n):
            samples = k * hops[0] + c * level_samples[n] + np.arange(frames) * hops[n]
            assert np.all(samples % hops[src] == 0)
            clips.append(rows[samples // hops[src]].T)  # [n_mels, T]
    return np.stack(clips)


def main():
    shard, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path) as fh:
        exp = json.load(fh)
    with h5py.File(shard, "r") as f:
        a = f.attrs
        if text(a["mart_format"]) != "mart-shard" or int(a["format_version"]) != 1:
            fail("format attributes: %r %r" % (a["mart_format"], a["format_version"]))
        if int(a["complete"]) != 1 or int(a["track_count"]) != len(exp["tracks"]):
            fail("complete/track_count attributes")
        if int(text(a["feature_hash"]), 16) != exp["feature_hash"]:
            fail("feature_hash %s != %x" % (text(a["feature_hash"]), exp["feature_hash"]))
        if int(text(a["config_hash"]), 16) != exp["config_hash"]:
            fail("config_hash")
        n_mels = int(a["n_mels"])
        for name, ds in f["views"].items():
            for level, g in ds.items():
                if g["mel"].dtype != np.float16:
                    fail("views/%s/%s/mel has dtype %s, not float16" % (name, level, g["mel"].dtype))
                if g["mel"].shape[1] != n_mels or g["offsets"].dtype != np.int64:
                    fail("views/%s/%s shape or offsets dtype" % (name, level))
        ids = [text(s) for s in f["tracks/id"][()]]
        tags = f["labels/tags"][()]
        if tags.dtype != np.uint8:
            fail("labels/tags dtype %s" % tags.dtype)
        for i, t in enumerate(exp["tracks"]):
            if ids[i] != t["id"] or text(f["tracks/path"][i]) != t["path"]:
                fail("track %d id/path" % i)
            if text(f["tracks/split"][i]) != t["split"] or int(f["tracks/samples"][i]) != t["samples"]:
                fail("track %d split/samples" % i)
            if list(tags[i]) != t["tags"] or int(f["labels/class"][i]) != t["class"]:
                fail("track %d labels" % i)
            if int(f["labels/cover_group"][i]) != t["cover_group"]:
                fail("track %d cover group" % i)
            for key, values in t["reader"].items():
                view, level = key.split("/")
                g = f["views/%s/level_%s" % (view, level)]
                stored = g["mel"][g["offsets"][i]:g["offsets"][i + 1]]
                if not np.array_equal(stored.astype(np.float32).ravel(), np.array(values, np.float32)):
                    fail("track %d %s: h5py values differ from the C++ reader" % (i, key))
                rounded = np.array(t["input"][key], np.float32).astype(np.float16)
                if not np.array_equal(rounded.view(np.uint16), stored.ravel().view(np.uint16)):
                    fail("track %d %s: stored halves differ from numpy's float16 rounding" % (i, key))
            crops = t.get("crops") or []
            if len(crops) != t["valid_starts"]:
                fail("track %d: %d crops for %d valid starts" % (i, len(crops), t["valid_starts"]))
            for cr in crops:
                mine = crop(f, a, i, cr["k"], cr["view"])
                if not np.array_equal(mine.ravel(), np.array(cr["values"], np.float32)):
                    fail("track %d crop k=%d view=%d differs" % (i, cr["k"], cr["view"]))
    print("check_shard_h5py: OK (%d tracks)" % len(exp["tracks"]))


if __name__ == "__main__":
    main()
