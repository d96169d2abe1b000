#!/usr/bin/env bash
# One-time, idempotent set-up: a virtual environment with the pinned packages and this project installed
# in it (editable), and clang for tinygrad's CPU device. Safe to run before every command; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$python" -m venv .venv

# Reinstall only when requirements.txt changed since the last successful install.
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi

# This checkout installed into the venv (editable, so edits count at once): the Python API imports from any
# folder and the console command `nwp` exists. Nothing is downloaded; redone only when pyproject.toml or the
# checkout's place changed.
stamp=.venv/.project.sha256
want=$(printf '%s %s' "$(sha256sum pyproject.toml | cut -d' ' -f1)" "$PWD" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation --no-index -e . \
    >/dev/null
  echo "$want" > "$stamp"
fi

# tinygrad compiles its CPU kernels with clang.
if ! command -v clang >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang) >/dev/null 2>&1 \
      || echo "setup: could not install clang; tinygrad's CPU device needs it: install clang or use --backend torch" >&2
  else
    echo "setup: clang is missing and installing it needs root: run 'sudo apt-get install -y clang' or use --backend torch" >&2
  fi
fi
