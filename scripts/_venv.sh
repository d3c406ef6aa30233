# Sourced by scripts/demo and scripts/test: make (or reuse) .venv and install kernpack into it.
# KERNPACK_VENV picks another location; the extras to install are passed as arguments.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${KERNPACK_VENV:-$root/.venv}
# Progress goes to stderr, so that a script's own output stays clean.
say() { printf 'kernpack setup: %s\n' "$*" >&2; }
if [[ ! -x $venv/bin/python ]]; then
  say "creating $venv"
  python3 -m venv "$venv"
fi
extras=${1:-}
spec="$root"
[[ -n $extras ]] && spec="$root[$extras]"
started=$SECONDS
say "installing kernpack${extras:+[$extras]} into $venv (about a minute the first time: llvmlite, numpy, device runtimes)"
"$venv/bin/python" -m pip install -qq --disable-pip-version-check -e "$spec"
say "ready in $((SECONDS - started)) s"
export PATH="$venv/bin:$PATH"
# OpenCL needs no setup here: kernpack points the ICD loader at the runtime in the venv itself
# (kernpack.runtime.oclsetup), as it does for anyone who pip-installs kernpack[opencl].
cd "$root"
