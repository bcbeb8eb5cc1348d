#!/usr/bin/env python3
"""Trains `implicit` ALS and a popularity baseline on a train/test split
written by `reco train --write-split DIR` and prints P/R/NDCG/HR@k with the
same protocol as reco (binary interactions, full catalogue, training items
excluded, precision = hits / k, NDCG with binary relevance and an ideal of
min(k, |test|) hits), as JSON on stdout.

Note: implicit >= 0.5 uses confidence = alpha * w for observed pairs, where
reco uses 1 + alpha * w; with binary w, implicit's alpha a matches reco's
alpha a - 1.
"""
import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402


def read(path):
    users, items = [], []
    with open(path) as f:
        next(f)
        for line in f:
            u, i, _r, _t = line.rstrip("\n").split(",")
            users.append(int(u))
            items.append(int(i))
    return users, items


def metrics(recommend, test, k):
    p = r = n = h = 0.0
    for u, rel in test.items():
        recs = recommend(u)[:k]
        hits, dcg, counted = 0, 0.0, set()
        for rank, i in enumerate(recs):
            if i in rel and i not in counted:
                counted.add(i)
                hits += 1
                dcg += 1.0 / math.log2(rank + 2)
        ideal = sum(1.0 / math.log2(j + 2) for j in range(min(k, len(rel))))
        p += hits / k
        r += hits / len(rel)
        n += dcg / ideal
        h += 1.0 if hits else 0.0
    m = len(test)
    return {"precision": p / m, "recall": r / m, "ndcg": n / m, "hit_rate": h / m, "members": m}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", required=True, help="directory with train.csv and test.csv")
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--alphas", default="1,2,5,10,20")
    ap.add_argument("--regs", default="1,10,30,50,100")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--time-only", nargs=2, type=float, metavar=("ALPHA", "REG"),
                    help="fit once with conjugate gradient at ALPHA/REG and print the seconds")
    args = ap.parse_args()

    import implicit
    from implicit.als import AlternatingLeastSquares

    tu, ti = read(os.path.join(args.split, "train.csv"))
    su, si = read(os.path.join(args.split, "test.csv"))
    users = sorted(set(tu))
    items = sorted(set(ti))
    uix = {u: n for n, u in enumerate(users)}
    iix = {i: n for n, i in enumerate(items)}
    pairs = sorted(set(zip(tu, ti)))
    rows = np.array([uix[u] for u, _ in pairs])
    cols = np.array([iix[i] for _, i in pairs])
    ui = sp.csr_matrix((np.ones(len(pairs), dtype=np.float32), (rows, cols)),
                       shape=(len(users), len(items)))
    test = {}
    for u, i in zip(su, si):
        test.setdefault(u, set()).add(i)
    seen = {}
    for u, i in pairs:
        seen.setdefault(u, set()).add(i)
    k = args.k

    counts = np.asarray((ui > 0).sum(axis=0)).ravel()
    order = [items[j] for j in np.lexsort((np.arange(len(items)), -counts))]

    def pop_rec(u):
        s = seen.get(u, set())
        out = []
        for i in order:
            if i not in s:
                out.append(i)
                if len(out) == k:
                    break
        return out

    results = {"implicit_version": implicit.__version__, "popular": metrics(pop_rec, test, k), "grid": []}

    def run(alpha, reg, use_cg):
        model = AlternatingLeastSquares(factors=args.factors, iterations=args.iterations,
                                        regularization=reg, alpha=alpha, use_cg=use_cg,
                                        use_gpu=False, num_threads=args.threads,
                                        calculate_training_loss=False, random_state=42)
        start = time.perf_counter()
        model.fit(ui, show_progress=False)
        seconds = time.perf_counter() - start
        test_users = [u for u in test if u in uix]
        ids, _ = model.recommend(np.array([uix[u] for u in test_users]), ui[[uix[u] for u in test_users]],
                                 N=k, filter_already_liked_items=True)
        recs = {u: [items[j] for j in row if j >= 0] for u, row in zip(test_users, ids)}
        m = metrics(lambda u: recs.get(u, []), test, k)
        return {"alpha": alpha, "reg": reg, "use_cg": use_cg, "seconds": seconds, **m}

    if args.time_only:
        model = AlternatingLeastSquares(factors=args.factors, iterations=args.iterations,
                                        regularization=args.time_only[1], alpha=args.time_only[0],
                                        use_gpu=False, num_threads=args.threads,
                                        calculate_training_loss=False, random_state=42)
        start = time.perf_counter()
        model.fit(ui, show_progress=False)
        print(f"{time.perf_counter() - start:.4f}")
        return

    for a in [float(x) for x in args.alphas.split(",")]:
        for r in [float(x) for x in args.regs.split(",")]:
            res = run(a, r, True)
            results["grid"].append(res)
            print(f"alpha {a:g} reg {r:g}: P@{k} {res['precision']:.4f} NDCG@{k} {res['ndcg']:.4f} "
                  f"({res['seconds']:.2f} s)", file=sys.stderr)
    best = max(results["grid"], key=lambda x: (x["precision"], x["ndcg"]))
    results["best"] = best
    # Timing at the tuned setting, repeated, for both solvers.
    for use_cg in (True, False):
        runs = [run(best["alpha"], best["reg"], use_cg) for _ in range(3)]
        key = "timing_cg" if use_cg else "timing_cholesky"
        results[key] = {"seconds_min": min(x["seconds"] for x in runs),
                        "precision": runs[0]["precision"], "ndcg": runs[0]["ndcg"]}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
