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
# Intel's OpenCL CPU runtime ships an .icd file with a placeholder path: write a real one into
# the venv and point the ICD loader at it.
if [[ -f $venv/lib/libintelocl.so ]]; then
  mkdir -p "$venv/etc/OpenCL/vendors-abs"
  echo "$venv/lib/libintelocl.so" >"$venv/etc/OpenCL/vendors-abs/intel-cpu.icd"
  export OCL_ICD_VENDORS="$venv/etc/OpenCL/vendors-abs"
fi
cd "$root"
