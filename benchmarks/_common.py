"""Helpers shared by the benchmarks: timing with medians, result files, plots."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from kernpack.runtime import cpufeatures

ROOT = Path(__file__).resolve().parents[1]
# kernpack bench --results DIR sets this; run by hand, a benchmark writes beside itself.
RESULTS = Path(os.environ.get("KERNPACK_BENCH_RESULTS") or Path(__file__).with_name("results"))
# Apache TVM 0.27 runs in its own venv (its LLVM and ours must not meet in one process):
# peers/setup_tvm.sh makes it and peers/tvm_peer.py measures inside it.
TVM_PEER = ROOT / "benchmarks" / "peers" / "tvm_peer.py"
# The question each benchmark answers: its figure's title, and its section of the report.
QUESTIONS = {
    "export_load": "How long does loading a library take, and does it grow with what the library carries?",
    "build": "How fast does a large library build, on every core and from a shared cache?",
    "calls": "What does calling a kernel cost, beside numba, Warp and Taichi?",
    "kernels": "How fast do kernels run on the CPU, beside numpy, numba, Taichi and Warp?",
    "devices": "What does a device launch cost, beside the runtime's own and Taichi?",
    "foundation": "What do JIT compilation and a call cost, beside bare llvmlite?",
}


def sample_seconds(fn: Callable[[], object], repeat: int, warmup: int = 1) -> list[float]:
    """Wall times of ``fn()`` over ``repeat`` runs, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def median_seconds(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs, after ``warmup`` untimed runs."""
    return statistics.median(sample_seconds(fn, repeat, warmup))


def median_per_call(fn: Callable[[], object], calls: int, repeat: int) -> float:
    """Median over ``repeat`` batches of the mean time of one call in a batch of ``calls``."""

    def batch() -> None:
        for _ in range(calls):
            fn()

    return median_seconds(batch, repeat) / calls


def medians_per_call(fns: dict[str, Callable[[], object]], calls: int, repeat: int) -> dict[str, float]:
    """:func:`median_per_call` of several functions, their batches taking turns.

    Each round times one batch of every function, so that a busy spell of the machine (this
    one's timings drift by 2x over a minute) falls on all of them alike, and their ratios hold.
    """
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - start) / calls)
    return {name: statistics.median(times) for name, times in samples.items()}


def run_json(argv: list[str]) -> dict:
    """Run a command from the repository root; return the JSON object on its last stdout line."""
    out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def peer_python(name: str, setup: bool) -> str | None:
    """A peer venv's python (``"tvm"``, ``"warp"``), or None after printing why there is none.

    With ``setup``, ``peers/setup_<name>.sh`` creates the venv when it is missing (pip, a few
    minutes); without, a missing venv only prints how to create it.
    """
    script = ROOT / "benchmarks" / "peers" / f"setup_{name}.sh"
    python = ROOT / "benchmarks" / f".venv-{name}" / "bin" / "python"
    if not setup:
        if python.exists():
            return str(python)
        print(
            f"({name} peer rows skipped: {python.parents[1].relative_to(ROOT)} is missing; "
            f"create it with `bash {script.relative_to(ROOT)}`)"
        )
        return None
    try:
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as exc:
        print(f"({name} peer not available: {exc.stderr.strip()[-300:]})")
        return None
    return out.stdout.strip().splitlines()[-1]


def tvm_python(setup: bool) -> str | None:
    """The TVM 0.27 peer venv's python (see :func:`peer_python`)."""
    return peer_python("tvm", setup)


def tvm_peer(python: str, *args: str) -> dict:
    """Run one ``peers/tvm_peer.py`` subcommand with the TVM venv's python; return its JSON."""
    return run_json([python, str(TVM_PEER), *args])


def warp_peer(python: str, *args: str) -> dict:
    """Run one ``peers/warp_peer.py`` subcommand with the Warp venv's python; return its JSON."""
    return run_json([python, str(ROOT / "benchmarks" / "peers" / "warp_peer.py"), *args])


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_model": cpufeatures.host_model() or platform.processor() or "unknown CPU",
        "gpu": "an NVIDIA GPU" if os.path.exists("/dev/nvidia0") else "no GPU",
    }


def caption() -> str:
    """The machine, as every figure's caption says it."""
    m = machine()
    return f"{m['cpus']} cores, {m['cpu_model']}, {m['gpu']}; Python {m['python']}"


def _pyplot():
    """matplotlib.pyplot on a file backend, or None where matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(plt, fig, name: str, top: float) -> Path:
    """Caption ``fig`` with the machine, write it to ``results/<name>.png`` and close it."""
    fig.text(0.5, 0.005, caption(), ha="center", fontsize=8, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, top))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(name: str, panels: list[dict], title: str) -> Path | None:
    """One figure of line charts, log axes, medians with min-max bands, the machine in its caption.

    Each panel is ``{"title", "xlabel", "ylabel", "x": [...], "xticks": [labels], "series": {label:
    {"median": [...], "min": [...], "max": [...]}}}``; a series may be shorter than ``x`` (a peer
    measured on fewer points). Returns the PNG's path, or None without matplotlib.
    """
    plt = _pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=True):
        for label, series in panel["series"].items():
            xs = panel["x"][: len(series["median"])]
            ms = [v * 1e3 for v in series["median"]]
            (line,) = ax.plot(xs, ms, marker="o", label=label)
            ax.fill_between(xs, [v * 1e3 for v in series["min"]], [v * 1e3 for v in series["max"]],
                            color=line.get_color(), alpha=0.2)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        if panel.get("xticks"):
            ax.set_xticks(panel["x"], panel["xticks"], rotation=45, fontsize=8)
            ax.minorticks_off()
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(panel["xlabel"])
        ax.set_ylabel(panel.get("ylabel", "milliseconds (median, band: min-max)"))
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    return _save(plt, fig, name, top=0.95)


def save(name: str, rows: list[dict[str, object]], extra: dict[str, object]) -> Path:
    """Write ``results/<name>.json`` and ``results/<name>.md``; return the JSON path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **extra, "rows": rows}, indent=2) + "\n")
    lines = ["| benchmark | kernpack | baseline | ratio |", "|---|---|---|---|"]
    lines += [
        f"| {r['what']} | {r['kernpack']} | {r['baseline']} ({r['baseline_name']}) | {r['ratio']:.2f}x |" for r in rows
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    return path


def plot(name: str, rows: list[dict[str, object]], title: str | None = None) -> Path | None:
    """One chart of every row: kernpack's time beside its baseline's, log scale, the machine in the caption.

    Horizontal bars, a pair per row (the row's own baseline named beside it), so that a question's
    answers read top to bottom in one figure. None without matplotlib.
    """
    plt = _pyplot()
    if plt is None:
        return None
    height = 0.38
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(rows) + 1.6))
    ys = list(range(len(rows)))[::-1]
    ax.barh(
        [y + height / 2 for y in ys], [r["kernpack_s"] * 1e3 for r in rows], height, color="#3b75af", label="kernpack"
    )
    ax.barh([y - height / 2 for y in ys], [r["baseline_s"] * 1e3 for r in rows], height, color="#999999",
            label="baseline (named in each row)")  # fmt: skip
    ax.set_yticks(ys, [f"{r['what']}  [vs {r['baseline_name']}]" for r in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("median time, milliseconds (log scale)")
    ax.grid(True, axis="x", which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    # Over the whole figure, not the axes: the row labels leave them too narrow for a question.
    fig.suptitle(title or name, fontsize=11)  # tight_layout leaves it room
    return _save(plt, fig, name, top=1)


def fmt_time(seconds: float) -> str:
    """Format seconds with a unit that fits."""
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    return f"{seconds * 1e3:.2f} ms"


def report(name: str, rows: list[dict[str, object]], extra: dict[str, object]) -> None:
    """Finish a benchmark: format each row, save JSON/Markdown/PNG, print the table."""
    for row in rows:
        row["kernpack"] = fmt_time(row["kernpack_s"])
        row["baseline"] = fmt_time(row["baseline_s"])
        row["ratio"] = row["kernpack_s"] / row["baseline_s"]
    path = save(name, rows, extra)
    png = plot(name, rows, QUESTIONS.get(name))
    width = max(len(str(row["what"])) for row in rows)
    print(f"{'benchmark':{width}s} {'kernpack':>10s} {'baseline':>10s}   ratio  baseline")
    for row in rows:
        ratio = f"{row['ratio']:.2f}x"
        print(
            f"{row['what']:{width}s} {row['kernpack']:>10s} {row['baseline']:>10s}  {ratio:>6s}  {row['baseline_name']}"
        )
    print(f"results: {path}" + (f", plot: {png}" if png else " (install matplotlib for the plot)"))
