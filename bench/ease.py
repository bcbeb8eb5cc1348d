#!/usr/bin/env python3
"""EASE (Steck 2019) on a split written by `reco train --write-split DIR`,
scored with the same protocol as reco and bench/compare_implicit.py (P/R/
NDCG/HR at k, full catalogue, training items excluded). Prints JSON.

    python bench/ease.py --split DIR [--lambdas 100,250,500]

Inverts an items x items matrix (about a minute for ml-latest-small).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_implicit import metrics, read  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", required=True)
    ap.add_argument("--lambdas", default="100,250,500")
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    tu, ti = read(os.path.join(args.split, "train.csv"))
    su, si = read(os.path.join(args.split, "test.csv"))
    users = sorted(set(tu))
    items = sorted(set(ti))
    uix = {u: n for n, u in enumerate(users)}
    iix = {i: n for n, i in enumerate(items)}
    pairs = sorted(set(zip(tu, ti)))
    x = sp.csr_matrix((np.ones(len(pairs)), ([uix[u] for u, _ in pairs], [iix[i] for _, i in pairs])),
                      shape=(len(users), len(items)))
    test = {}
    for u, i in zip(su, si):
        test.setdefault(u, set()).add(i)
    gram = (x.T @ x).toarray()
    results = []
    for lam in [float(v) for v in args.lambdas.split(",")]:
        start = time.perf_counter()
        g = gram.copy()
        g[np.diag_indices_from(g)] += lam
        p = np.linalg.inv(g)
        b = p / (-np.diag(p))
        b[np.diag_indices_from(b)] = 0.0
        seconds = time.perf_counter() - start
        scores = x @ b
        scores[x.nonzero()] = -np.inf
        top = np.argsort(-scores, axis=1)[:, : args.k]
        recs = {u: [items[j] for j in top[uix[u]]] for u in test if u in uix}
        m = metrics(lambda u: recs.get(u, []), test, args.k)
        results.append({"lambda": lam, "seconds": seconds, **m})
        print(f"EASE lambda {lam:g}: P@{args.k} {m['precision']:.4f} NDCG@{args.k} {m['ndcg']:.4f} "
              f"({seconds:.1f} s)", file=sys.stderr)
    best = max(results, key=lambda r: (r["precision"], r["ndcg"]))
    print(json.dumps({"best": best, "grid": results}, indent=2))


if __name__ == "__main__":
    main()
