#!/usr/bin/env bash
# Create (or reuse) a peer venv at <repo>/benchmarks/.venv-NAME with PACKAGES installed.
# Usage: setup_peer.sh NAME "IMPORTS" PACKAGE... (IMPORTS: the modules `import` must find there).
# Idempotent: pip is skipped when the imports already work. Last stdout line: the venv's python.
set -euo pipefail
name="$1" imports="$2"
shift 2
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$repo_root/benchmarks/.venv-$name"
py="$venv/bin/python"
if [ ! -x "$py" ]; then
    python3 -m venv "$venv"
fi
# Keep the venv out of git even where the repo's .gitignore does not list it.
[ -f "$venv/.gitignore" ] || printf '*\n' >"$venv/.gitignore"
if ! "$py" -c "import $imports" >/dev/null 2>&1; then
    "$py" -m pip install -qq --upgrade pip
    "$py" -m pip install -qq "$@"
fi
echo "$py"
