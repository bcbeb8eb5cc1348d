#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test of the
# workspace (unit, property and end-to-end tests against a real nats-server
# that the tests start themselves on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-nats.sh
cargo test --workspace "$@"
