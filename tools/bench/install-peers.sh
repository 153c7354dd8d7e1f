#!/usr/bin/env bash
# Installs what the "peers" benchmark compares zjournal with: Debian's redis-server
# and the Python clients of the bench extra. Run from the repository root, as root
# (or with sudo) for apt-get; the benchmark runs without them and says so.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v redis-server >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq redis-server
fi
"${PYTHON:-.venv/bin/python}" -m pip install --quiet -e '.[bench]'
