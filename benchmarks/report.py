"""The benchmark report: ``results/report.md`` and a self-contained ``results/report.html``.

One section per question, top to bottom: the question, its figures, its table, and the command
that measures it again, from the results the benchmarks last wrote. ``kernpack bench`` runs
this after the benchmarks; ``--readme`` also puts the tables into the README (between the bench
markers), which ``kernpack bench --update-readme`` asks for.

Run by hand: ``.venv/bin/python benchmarks/report.py [--readme]``.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import QUESTIONS, RESULTS  # noqa: E402

START, END = "<!-- bench:start -->", "<!-- bench:end -->"

# (result name, its figures in order); the questions are benchmarks._common.QUESTIONS
SECTIONS = (
    ("export_load", ("load_curves", "export_load")),
    ("build", ("build",)),
    ("calls", ("calls",)),
    ("kernels", ("kernels_curves", "kernels")),
    ("devices", ("devices",)),
    ("foundation", ("foundation",)),
)


def _machine(name: str) -> str:
    m = json.loads((RESULTS / f"{name}.json").read_text()).get("machine", {})
    model = f", {m['cpu_model']}" if m.get("cpu_model") else ""
    gpu = f", {m['gpu']}" if m.get("gpu") else ""
    return f"{m.get('cpus', '?')} cores{model}{gpu}; Python {m.get('python', '?')}"


def _present() -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, question, figures) of every benchmark that has results."""
    return [
        (name, QUESTIONS[name], figures)
        for name, figures in SECTIONS
        if (RESULTS / f"{name}.json").exists() and (RESULTS / f"{name}.md").exists()
    ]


def markdown() -> str:
    """The report as Markdown, figures linked beside it."""
    parts = ["# kernpack benchmarks", "", "Each figure is measured beside its baselines in one run; medians, with "
             "min-max bands on the curves.", ""]  # fmt: skip
    for name, question, figures in _present():
        parts += [f"## {question}", "", f"Measured on {_machine(name)}.", ""]
        parts += [f"![{figure}]({figure}.png)" for figure in figures if (RESULTS / f"{figure}.png").exists()]
        parts += ["", (RESULTS / f"{name}.md").read_text().strip(), "", "Measure it again:", "", "```bash",
                  f".venv/bin/python benchmarks/bench_{name}.py", "```", ""]  # fmt: skip
    return "\n".join(parts)


def _table_html(text: str) -> str:
    rows = [line.strip().strip("|").split("|") for line in text.strip().splitlines() if line.strip()]
    head, body = rows[0], [r for r in rows[2:]]
    out = ["<table><thead><tr>", *(f"<th>{html.escape(c.strip())}</th>" for c in head), "</tr></thead><tbody>"]
    for row in body:
        out += ["<tr>", *(f"<td>{html.escape(c.strip())}</td>" for c in row), "</tr>"]
    return "".join([*out, "</tbody></table>"])


def page() -> str:
    """The report as one HTML page, its figures embedded."""
    body = ["<h1>kernpack benchmarks</h1><p>Each figure is measured beside its baselines in one run; medians, "
            "with min-max bands on the curves.</p>"]  # fmt: skip
    for name, question, figures in _present():
        body.append(f"<h2>{html.escape(question)}</h2><p class=m>Measured on {html.escape(_machine(name))}.</p>")
        for figure in figures:
            png = RESULTS / f"{figure}.png"
            if png.exists():
                data = base64.b64encode(png.read_bytes()).decode()
                body.append(f'<img alt="{figure}" src="data:image/png;base64,{data}">')
        body.append(_table_html((RESULTS / f"{name}.md").read_text()))
        body.append(f"<p>Measure it again: <code>.venv/bin/python benchmarks/bench_{name}.py</code></p>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;line-height:1.4}img{max-width:100%}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%}"
             ".m{color:#555}")  # fmt: skip
    return f"<!doctype html><meta charset=utf-8><title>kernpack benchmarks</title><style>{style}</style>" + "".join(
        body
    )


def tables() -> str:
    """The tables for the README, each with where it comes from."""
    parts = []
    for name, question, _ in _present():
        parts.append(f"**{question}** (`benchmarks/bench_{name}.py`, {_machine(name)})\n")
        parts.append((RESULTS / f"{name}.md").read_text().strip() + "\n")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", action="store_true", help="also put the tables into the README")
    args = parser.parse_args()
    (RESULTS / "report.md").write_text(markdown())
    (RESULTS / "report.html").write_text(page())
    print(f"report: {RESULTS / 'report.md'}, {RESULTS / 'report.html'}")
    if args.readme:
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
