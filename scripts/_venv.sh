# Sourced by scripts/demo and scripts/test: make (or reuse) .venv and install kernpack into it.
# KERNPACK_VENV picks another location; the extras to install are passed as arguments.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${KERNPACK_VENV:-$root/.venv}
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
fi
extras=${1:-}
spec="$root"
[[ -n $extras ]] && spec="$root[$extras]"
"$venv/bin/python" -m pip install -qq --disable-pip-version-check -e "$spec"
export PATH="$venv/bin:$PATH"
# OpenCL needs no setup here: kernpack points the ICD loader at the runtime in the venv itself
# (kernpack.runtime.oclsetup), as it does for anyone who pip-installs kernpack[opencl].
cd "$root"
