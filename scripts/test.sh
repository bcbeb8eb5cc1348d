#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test of the
# workspace (unit, property and end-to-end tests against a real nats-server
# that the tests start themselves on free ports, the Python examples in a venv
# under target/python-venv, and the operator page in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-nats.sh
echo "==> Python venv for examples/python (target/python-venv)" >&2
bash scripts/python-venv.sh >/dev/null
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  # tests/operator_page.rs loads the node's page in headless Chromium.
  echo "chromium is missing: installing Debian's package (apt-get install -y chromium)..." >&2
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  if command -v apt-get >/dev/null 2>&1; then
    $sudo_cmd apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
  fi
  if ! command -v chromium >/dev/null 2>&1; then
    echo "could not install chromium (the operator page test needs it): apt-get install chromium" >&2
    exit 1
  fi
fi
cargo test --workspace "$@"
