#!/usr/bin/env bash
# Create (or reuse) the Apache TVM peer venv at <repo>/benchmarks/.venv-tvm.
# Idempotent: pip is skipped when `import tvm` already works. Last stdout line: the venv's python.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$repo_root/benchmarks/.venv-tvm"
py="$venv/bin/python"
if [ ! -x "$py" ]; then
    python3 -m venv "$venv"
fi
# Keep the venv out of git even though the repo's .gitignore only lists `.venv/`.
[ -f "$venv/.gitignore" ] || printf '*\n' >"$venv/.gitignore"
if ! "$py" -c "import tvm, tvm_ffi, numpy" >/dev/null 2>&1; then
    "$py" -m pip install -qq --upgrade pip
    "$py" -m pip install -qq "apache-tvm==0.27.0.post1" numpy
fi
echo "$py"
