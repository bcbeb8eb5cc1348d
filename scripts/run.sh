#!/usr/bin/env bash
# The main command: the one-command demo. Builds reco and reco-sim (release),
# then `reco-sim demo`: a private nats-server (JetStream, free port, temp dir),
# training on MovieLens (ml-latest-small), a `reco serve` node, a few thousand
# synthetic members for about a minute with one injected fault, and the
# report. Extra arguments go to `reco-sim demo` (e.g. --duration 20,
# --json demo.json, --plot demo.svg, --nats URL).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-nats.sh

ratings="${RECO_RATINGS:-data/ml-latest-small/ratings.csv}"
if [ ! -f "$ratings" ]; then
  echo "ratings file $ratings not found: set RECO_RATINGS to a MovieLens ratings.csv" >&2
  exit 1
fi

echo "==> Building reco and reco-sim (release; the first build takes a few minutes)" >&2
cargo build --release -q -p reco -p reco-sim
exec target/release/reco-sim demo --ratings "$ratings" "$@"
