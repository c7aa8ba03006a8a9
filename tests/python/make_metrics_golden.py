#!/usr/bin/python3
"""Golden metric values from scikit-learn for tests/metrics/test_metrics.cpp.

Run with Debian's python3 (python3-sklearn, python3-numpy); the C++ test calls it at test time:
    /usr/bin/python3 tests/python/make_metrics_golden.py IN OUT

IN (written by the test, little endian):
  b"MTIN", u32 n_cases
  per case: u32 kind, u64 n, u64 m, then
    kind 0 (tagging, double):        f64[n*m] scores, u8[n*m] labels     (row-major [n, m])
    kind 1 (tagging, float):         f32[n*m] scores, u8[n*m] labels
    kind 2 (classification, double): f64[n*m] scores, i64[n] class labels (m classes)
    kind 3 (retrieval):              f32[n*m] embeddings, i64[n] group ids (m = dim)
OUT:
  b"MTGO", u32 n_cases
  per case: u64 count, f64[count]
    kind 0/1: roc_auc_score per column (NaN when the column has one class) x m,
              average_precision_score per column x m,
              roc_auc_score(average="macro") on the columns with both classes,
              average_precision_score(average="macro") on all columns
    kind 2:   accuracy_score(y, argmax), roc_auc_score(one_hot[:, kept], average="macro"),
              average_precision_score(one_hot, average="macro")
    kind 3:   per query: average_precision_score(relevant, cosine similarity), P@10,
              1-based rank of the first relevant item (NaN x 3 when the query has none) x n,
              then MAP, mean P@10, MR1 over the queries that have a relevant item.
              The ranking is similarity descending, ties by item index (numpy lexsort); AP from
              sklearn equals the ranking's AP only without tied similarities, so the test feeds
              tie-free embeddings here.
Exit code 3 when numpy or scikit-learn is missing, so the C++ test can skip naming the package.
"""
import struct
import sys
import warnings

try:
    import numpy as np
    from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score
except ImportError as e:  # the caller turns this into GTEST_SKIP
    print(f"missing package: {e.name} (install python3-sklearn)", file=sys.stderr)
    sys.exit(3)


def read_cases(path):
    buf = open(path, "rb").read()
    assert buf[:4] == b"MTIN", "bad magic"
    (n_cases,) = struct.unpack_from("<I", buf, 4)
    off = 8
    cases = []
    for _ in range(n_cases):
        kind, n, m = struct.unpack_from("<IQQ", buf, off)
        off += 20
        sdtype = np.float64 if kind in (0, 2) else np.float32
        scores = np.frombuffer(buf, sdtype, n * m, off).reshape(n, m)
        off += scores.nbytes
        if kind in (0, 1):
            labels = np.frombuffer(buf, np.uint8, n * m, off).reshape(n, m).astype(int)
        else:
            labels = np.frombuffer(buf, "<i8", n, off)
        off += labels.size * (1 if kind in (0, 1) else 8)
        cases.append((kind, scores, labels))
    return cases


def tagging(scores, y):
    m = y.shape[1]
    kept = [c for c in range(m) if 0 < y[:, c].sum() < y.shape[0]]
    roc = [roc_auc_score(y[:, c], scores[:, c]) if c in kept else np.nan for c in range(m)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No positive class found in y_true"
        ap = [average_precision_score(y[:, c], scores[:, c]) for c in range(m)]
        ap_macro = average_precision_score(y, scores, average="macro")
    roc_macro = roc_auc_score(y[:, kept], scores[:, kept], average="macro")
    return roc + ap + [roc_macro, ap_macro]


def classification(scores, labels):
    m = scores.shape[1]
    y = np.eye(m, dtype=int)[labels]
    kept = [c for c in range(m) if 0 < y[:, c].sum() < y.shape[0]]
    acc = accuracy_score(labels, scores.argmax(axis=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ap = average_precision_score(y, scores, average="macro")
    return [acc, roc_auc_score(y[:, kept], scores[:, kept], average="macro"), ap]


def retrieval(emb, groups):
    e = emb.astype(np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    n = e.shape[0]
    out, kept = [], []
    for q in range(n):
        others = np.array([j for j in range(n) if j != q])
        sim = e[others] @ e[q]
        rel = (groups[others] == groups[q]).astype(int)
        if rel.sum() == 0:
            out += [np.nan] * 3
            continue
        order = np.lexsort((others, -sim))  # similarity descending, then item index
        ranked = rel[order]
        ap = average_precision_score(rel, sim)
        p10 = ranked[:10].sum() / 10.0
        r1 = float(np.argmax(ranked) + 1)
        out += [ap, p10, r1]
        kept.append((ap, p10, r1))
    k = np.array(kept)
    return out + list(k.mean(axis=0))


def main():
    cases = read_cases(sys.argv[1])
    with open(sys.argv[2], "wb") as f:
        f.write(b"MTGO" + struct.pack("<I", len(cases)))
        for kind, scores, labels in cases:
            if kind in (0, 1):
                vals = tagging(scores, labels)
            elif kind == 2:
                vals = classification(scores, labels)
            else:
                vals = retrieval(scores, labels)
            f.write(struct.pack("<Q", len(vals)))
            f.write(np.asarray(vals, dtype="<f8").tobytes())


if __name__ == "__main__":
    main()
