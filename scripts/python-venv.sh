#!/usr/bin/env bash
# Makes the Python environment the examples' test runs in: a venv under
# target/python-venv with examples/python/requirements.txt (pinned nats-py and
# msgpack) installed. Installs Debian's python3 and python3-venv when they are
# missing. Prints the venv's python on stdout. Idempotent: an up-to-date venv
# is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${RECO_PYTHON_VENV:-target/python-venv}"
requirements=examples/python/requirements.txt

apt_install() {
  local sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  if ! command -v apt-get >/dev/null 2>&1; then return 1; fi
  echo "installing Debian's $* (apt-get install -y $*)..." >&2
  $sudo_cmd apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "$@" >&2
}

if ! command -v python3 >/dev/null 2>&1; then
  apt_install python3 python3-venv || true
  if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 is missing and could not be installed: install Python 3 (apt-get install python3 python3-venv)" >&2
    exit 1
  fi
fi

stamp="$venv/.requirements"
if [ -x "$venv/bin/python" ] && cmp -s "$requirements" "$stamp" \
  && "$venv/bin/python" -c "import nats, msgpack" 2>/dev/null; then
  echo "$venv/bin/python"
  exit 0
fi

rm -rf "$venv"
if ! python3 -m venv "$venv" >/dev/null 2>&1; then
  rm -rf "$venv"
  apt_install python3-venv || true
  if ! python3 -m venv "$venv" >&2; then
    echo "cannot create a Python venv: install Debian's python3-venv (apt-get install python3-venv)" >&2
    exit 1
  fi
fi
if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" >&2; then
  echo "cannot install $requirements into $venv (pip needs to reach PyPI)" >&2
  exit 1
fi
cp "$requirements" "$stamp"
echo "$venv/bin/python"
