#!/usr/bin/env bash
# Checks the operator files: the Prometheus alerting rules with promtool
# (syntax, then the unit tests in reco-alerts.test.yml). Installs Debian's prometheus package (for promtool) when
# promtool is missing. Run by .ci/run; tests/ops.rs checks the Grafana dashboard
# and that the metric names both use exist in the code.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool is missing: installing Debian's prometheus package (apt-get install -y prometheus)..." >&2
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  if command -v apt-get >/dev/null 2>&1; then
    $sudo_cmd apt-get update -qq || true
    # The package's post-install starts a server where systemd runs; we only
    # want the binary, so keep services from starting.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo_cmd apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  fi
  if ! command -v promtool >/dev/null 2>&1; then
    echo "could not install promtool: apt-get install prometheus" >&2
    exit 1
  fi
fi

promtool check rules ops/prometheus/reco-alerts.yml
promtool test rules ops/prometheus/reco-alerts.test.yml
echo "ops: alerting rules and their unit tests OK (tests/ops.rs checks the dashboard)"
