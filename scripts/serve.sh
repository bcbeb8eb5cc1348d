#!/usr/bin/env bash
# Try a node by hand: builds reco, trains a model on MovieLens (ml-latest-small),
# starts a private nats-server (unless RECO_NATS_URL names one) and a reco node,
# shows it serving a member before and after a few plays, then keeps serving
# until Ctrl-C (or stops right away when not run from a terminal).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-nats.sh

ratings="${RECO_RATINGS:-data/ml-latest-small/ratings.csv}"
model_dir="${RECO_MODEL_DIR:-target/reco-model}"
if [ ! -f "$ratings" ]; then
  echo "ratings file $ratings not found: set RECO_RATINGS to a MovieLens ratings.csv" >&2
  exit 1
fi

echo "==> Building reco (release)"
cargo build --release -q -p reco
reco=target/release/reco

# Retrained when the ratings or the reco binary are newer than the model (a
# model written by an older reco may lack what the rows below need: item
# data comes with this release's `reco train`, from movies.csv beside the
# ratings).
if [ ! -f "$model_dir/model.bin" ] || [ "$ratings" -nt "$model_dir/model.bin" ] \
  || [ "$reco" -nt "$model_dir/model.bin" ]; then
  echo "==> Training on $ratings"
  "$reco" train --ratings "$ratings" --out "$model_dir"
fi

free_port() {
  local port=$1
  while (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

wait_for() { # file pattern seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1:" >&2
  cat "$1" >&2
  return 1
}

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${RECO_NATS_URL:-}" ]; then
  port=$(free_port 14222)
  nats-server -a 127.0.0.1 -p "$port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
  pids+=($!)
  wait_for "$work/nats.log" "Server is ready" 10
  export RECO_NATS_URL="nats://127.0.0.1:$port"
  echo "==> Private nats-server (JetStream) at $RECO_NATS_URL"
fi

metrics_port=$(free_port "${RECO_METRICS_PORT:-9464}")
echo "==> Starting reco serve (metrics at http://127.0.0.1:$metrics_port/metrics)"
"$reco" serve --model "$model_dir" --metrics-addr "127.0.0.1:$metrics_port" 2>"$work/node.log" &
node=$!
pids+=("$node")
wait_for "$work/node.log" "Node ready." 30
grep "Node ready." "$work/node.log"

member=1
echo "==> Member $member before any event (cold: the precomputed list answers)"
"$reco" recommend --member "$member" --k 5
echo "==> Member $member plays three films"
for item in 1 260 1196; do "$reco" event --member "$member" --item "$item" --kind play --value 5400; done
echo "==> Member $member now (the model answers, watched films left out)"
"$reco" recommend --member "$member" --k 5
echo "==> Rows: comedies for member $member, films near Star Wars (260), and what it started"
"$reco" recommend --member "$member" --k 5 --brief --row genre:Comedy
"$reco" recommend --member "$member" --k 5 --brief --row because:260
"$reco" event --member "$member" --item 2571 --kind play --value 1500
"$reco" recommend --member "$member" --k 5 --brief --row continue

if [ -t 0 ] && [ -z "${CI:-}" ]; then
  echo "==> Serving. Try: $reco recommend --nats $RECO_NATS_URL --member 42"
  echo "    Ctrl-C stops the node (it drains in-flight requests first)."
  trap 'kill -TERM "$node" 2>/dev/null || true' INT
  wait "$node" || true
else
  kill -TERM "$node"
  wait "$node"
  echo "==> Node drained and exited cleanly."
fi
