#!/usr/bin/env bash
# Create (or reuse) the NVIDIA Warp peer venv at <repo>/benchmarks/.venv-warp (CPU kernels work
# without a GPU). Idempotent: pip is skipped when `import warp` already works. Last stdout line:
# the venv's python.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$repo_root/benchmarks/.venv-warp"
py="$venv/bin/python"
if [ ! -x "$py" ]; then
    python3 -m venv "$venv"
fi
[ -f "$venv/.gitignore" ] || printf '*\n' >"$venv/.gitignore"
if ! "$py" -c "import warp, numpy" >/dev/null 2>&1; then
    "$py" -m pip install -qq --upgrade pip
    "$py" -m pip install -qq "warp-lang==1.10.1" numpy
fi
echo "$py"
