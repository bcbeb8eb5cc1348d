#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test of the
# workspace (unit, property and end-to-end tests against a real nats-server
# that the tests start themselves on free ports, and the Python examples in a
# venv under target/python-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-nats.sh
echo "==> Python venv for examples/python (target/python-venv)" >&2
bash scripts/python-venv.sh >/dev/null
cargo test --workspace "$@"
