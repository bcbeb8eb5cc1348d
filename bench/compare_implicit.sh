#!/usr/bin/env bash
# Compares reco's ALS with the `implicit` library (and a popularity baseline)
# on exactly the same per-member 80/20 split of MovieLens, in the same run:
# quality at 10 (P, R, NDCG, HR; full catalogue, training items excluded) and
# training seconds, with the ratio.
#
#   bench/compare_implicit.sh [ratings.csv]
#
# EASE on the same split: python bench/ease.py --split DIR (DIR from
# `reco train --write-split DIR`; about a minute per lambda).
#
# Environment: VENV (default bench/.venv), RECO_BIN (default: a release build
# of this checkout), IMPLICIT_VERSION (default 0.7.2), THREADS (default 2),
# ALPHAS / REGS (implicit's tuning grid).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
ratings="${1:-$root/data/ml-latest-small/ratings.csv}"
venv="${VENV:-$here/.venv}"
threads="${THREADS:-2}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ -z "${RECO_BIN:-}" ]]; then
  echo "Building reco (release)..." >&2
  cargo build --release -p reco-supervisors --manifest-path "$root/Cargo.toml" >&2
  RECO_BIN="$root/target/release/reco"
fi
if [[ ! -x "$venv/bin/python" ]]; then
  echo "Creating $venv with implicit ${IMPLICIT_VERSION:-0.7.2}..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "implicit==${IMPLICIT_VERSION:-0.7.2}" numpy scipy >&2
fi

echo "reco: training and writing the split..." >&2
"$RECO_BIN" train --ratings "$ratings" --holdout-fraction 0.2 --split-seed 42 --min-ratings 5 \
  --factors 64 --iterations 15 --threads "$threads" --write-split "$work/split" --json \
  >"$work/reco.json" 2>"$work/reco.log"
echo "implicit: tuning alpha/reg on the same split..." >&2
OPENBLAS_NUM_THREADS=1 "$venv/bin/python" "$here/compare_implicit.py" --split "$work/split" \
  --threads "$threads" --alphas "${ALPHAS:-1,2,3,5,10}" --regs "${REGS:-5,10,20,30,50}" \
  >"$work/implicit.json"

# Timing: reco and implicit (at its tuned alpha/reg) alternate, so both see
# the same machine load; the best of ROUNDS runs of each counts.
read -r best_alpha best_reg < <(python3 -c 'import json,sys; b=json.load(open(sys.argv[1]))["best"]; print(b["alpha"], b["reg"])' "$work/implicit.json")
: >"$work/times"
for i in $(seq "${ROUNDS:-5}"); do
  r=$("$RECO_BIN" train --ratings "$work/split/train.csv" --test "$work/split/test.csv" \
    --factors 64 --iterations 15 --threads "$threads" --json 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["als_seconds"])')
  p=$(OPENBLAS_NUM_THREADS=1 "$venv/bin/python" "$here/compare_implicit.py" --split "$work/split" \
    --threads "$threads" --time-only "$best_alpha" "$best_reg")
  echo "$r $p" >>"$work/times"
  echo "round $i: reco $r s, implicit $p s" >&2
done

python3 - "$work" <<'PY'
import json, sys, os
work = sys.argv[1]
reco = json.load(open(os.path.join(work, "reco.json")))
times = [tuple(map(float, line.split())) for line in open(os.path.join(work, "times"))]
reco_secs = min(t[0] for t in times)
imp = json.load(open(os.path.join(work, "implicit.json")))
best, cg, chol = imp["best"], imp["timing_cg"], imp["timing_cholesky"]
cg["seconds_min"] = min(min(t[1] for t in times), cg["seconds_min"])
t = reco["tiers"]
rows = [
    ("reco ALS (model)", t["model"], reco_secs),
    ("reco nearline fold-in", t["nearline"], None),
    ("reco precomputed", t["precomputed"], None),
    ("reco popular", t["popular"], None),
    (f"implicit {imp['implicit_version']} ALS cg (alpha {best['alpha']:g}, reg {best['reg']:g})", best, cg["seconds_min"]),
    ("implicit ALS cholesky (same alpha/reg)", {"precision": chol["precision"], "ndcg": chol["ndcg"]}, chol["seconds_min"]),
    ("popularity (python)", imp["popular"], None),
]
print(f"{'':58} {'P@10':>7} {'NDCG@10':>8} {'train s':>8}")
for name, m, secs in rows:
    s = f"{secs:8.2f}" if secs is not None else f"{'':8}"
    print(f"{name:58} {m['precision']:7.4f} {m['ndcg']:8.4f} {s}")
print(f"training seconds are the best of {len(times)} alternating runs, {os.cpu_count()} cores")
print(f"training time ratio reco / implicit-cg: {reco_secs / cg['seconds_min']:.2f} "
      f"(reco / implicit-cholesky: {reco_secs / chol['seconds_min']:.2f})")
PY
