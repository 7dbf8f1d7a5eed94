#!/usr/bin/env bash
# Set up everything the README's commands need, on a fresh machine (also what CI runs first):
#   .venv       the project, its test tools, every package pinned by constraints.txt;
#   .venv-moto  the S3 test server (moto[server], at the version pinned in pyproject.toml's
#               `s3test` extra) in its own environment: it pins python-dateutil < 3, which the
#               project's environment does not allow;
#   chromium    the headless browser of the report test (Debian's package), when missing and
#               this user can install packages; otherwise a line saying how.
# Safe to rerun: existing environments are reused and brought up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]" -c constraints.txt

moto_pin=$(.venv/bin/python - <<'PY'
import tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
print(next(req for req in extras["s3test"] if req.startswith("moto")))
PY
)
[ -x .venv-moto/bin/python ] || "$python" -m venv .venv-moto
.venv-moto/bin/python -m pip install -q "$moto_pin"

if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
      || echo "[setup] could not install chromium: the report test will skip without it"
  else
    echo "[setup] chromium not found: install it (Debian: sudo apt-get install chromium)" \
      "or the report test skips"
  fi
fi
echo "[setup] done: .venv (project), .venv-moto ($moto_pin)"
