"""Put the latest benchmark tables into the README (between the bench markers).

Run after any benchmark (``kernpack bench`` does it): ``.venv/bin/python benchmarks/report.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("KERNPACK_BENCH_RESULTS") or ROOT / "benchmarks" / "results")
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
TITLES = {
    "calls": "Calling a kernel",
    "foundation": "JIT and call overhead",
    "export_load": "Export and load",
    "kernels": "Kernels on the CPU",
    "devices": "Device targets",
}


def tables() -> str:
    parts = []
    for name, title in TITLES.items():
        table = RESULTS / f"{name}.md"
        if not table.exists():
            continue
        machine = json.loads((RESULTS / f"{name}.json").read_text()).get("machine", {})
        where = f"{machine.get('cpus', '?')} cores, Python {machine.get('python', '?')}"
        parts.append(f"**{title}** (`benchmarks/bench_{name}.py`, {where}; plot: `benchmarks/results/{name}.png`)\n")
        parts.append(table.read_text().strip() + "\n")
    return "\n".join(parts)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{tables()}{END}{tail}")
    print(f"README.md: benchmark tables updated from {RESULTS}")


if __name__ == "__main__":
    main()
