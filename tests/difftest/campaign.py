"""The differential-testing campaign from the command line.

    .venv/bin/python -m tests.difftest.campaign --count 300 --targets cpu-O0,cpu-O3,opencl,vulkan,cuda
    .venv/bin/python -m tests.difftest.campaign --replay 1234 --show

It prints a table per target, the failures grouped by a normalized message (so that classes
of bugs are visible, not hundreds of lines), and for each failure a command that replays it.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import time
from pathlib import Path

from tests.difftest.gen import generate
from tests.difftest.runner import CLASSES, Outcome, run_campaign
from tests.difftest.worker import TARGETS

FAILING = ("refused", "crash", "wrong", "exception", "rejected", "invalid", "ref-error")
REPLAY = ".venv/bin/python -m tests.difftest.campaign --replay {seed} --show --targets {target}"


def first_line(message: str) -> str:
    """The informative first line: for a driver's build log, its first error line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return ""
    head = lines[0]
    if "clBuildProgram" in head or "LLVM crashed" in head:
        detail = next((line for line in lines[1:] if re.search(r"error|ERROR|Assertion|fault", line)), "")
        if detail:
            head = f"{head[:80]} ... {detail}"
    return head[:300]


def normalize(outcome: Outcome) -> str:
    """A message with seeds, names, paths and numbers taken out, to group failures by cause."""
    text = first_line(outcome.message)
    if outcome.cls == "wrong":
        dtypes = sorted(set(re.findall(r"\((bool|u?int\d+|float\d+)\)", text)))
        notes = [n for n in ("sign of zero only", "beyond the perturbation's tolerance") if n in text]
        return f"wrong {'/'.join(dtypes)} values" + (f" ({', '.join(notes)})" if notes else "")
    text = re.sub(r"/\S+\.py(:\d+)?", "FILE", text)
    text = re.sub(r"\bkern_\d+\b", "kern_N", text)
    text = re.sub(r"\b[a-z]\d+\b", "V", text)  # generated names: x1, o5, t12, ...
    text = re.sub(r"%\w+", "%ID", text)
    text = re.sub(r"0x[0-9a-fA-F]+|\b\d+\b", "N", text)
    return f"{outcome.cls}: {text[:160]}"


def table(outcomes: list[Outcome], targets: list[str]) -> str:
    columns = [*CLASSES, "other"]
    width = max(8, *map(len, targets))
    rows = [f"{'target':<{width}} " + " ".join(f"{c:>17}" for c in columns)]
    for target in targets:
        mine = [o for o in outcomes if o.target == target]
        counts = collections.Counter(o.cls if o.cls in CLASSES else "other" for o in mine)
        n = max(1, len(mine))
        rows.append(f"{target:<{width}} " + " ".join(f"{counts[c]:>8} ({100 * counts[c] / n:5.1f}%)" for c in columns))
    return "\n".join(rows)


def report(outcomes: list[Outcome], targets: list[str], save: Path | None) -> str:
    """The table, the failure groups (largest first) and one replay line per failure."""
    lines = [table(outcomes, targets), ""]
    failures = [o for o in outcomes if o.cls in FAILING]
    groups: dict[str, list[Outcome]] = collections.defaultdict(list)
    for o in failures:
        groups[normalize(o)].append(o)
    lines.append(f"{len(failures)} failures in {len(groups)} groups:")
    for key, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        by_target = collections.Counter(o.target for o in members)
        seeds = sorted({o.seed for o in members})
        lines.append(f"  [{len(members):4}] {key}")
        lines.append(f"         targets {dict(by_target)}; seeds {seeds[:8]}{' ...' if len(seeds) > 8 else ''}")
    lines.append("")
    for o in failures:
        lines.append(f"  seed {o.seed:<6} {o.target:<12} {o.cls:<10} {first_line(o.message)[:150]}")
        lines.append(f"      replay: {REPLAY.format(seed=o.seed, target=o.target)}")
    ill = [o for o in outcomes if o.cls == "ill-conditioned"]
    if ill:
        lines.append(f"ill-conditioned (compared only where the perturbed references agree): {len(ill)}")
    if save is not None and failures:
        save.mkdir(parents=True, exist_ok=True)
        for seed in sorted({o.seed for o in failures}):
            case = generate(seed)
            notes = "".join(f"# {o.target}: {o.cls}: {first_line(o.message)}\n" for o in failures if o.seed == seed)
            (save / f"{case.name}.py").write_text(notes + case.source)
        lines.append(f"failing kernels saved under {save}/")
    return "\n".join(lines)


def replay(seed: int, targets: list[str], show: bool) -> int:
    case = generate(seed)
    if show:
        print(case.source)
        for a in case.args:
            print(f"# {a.name}: {a.t} {a.role} {a.shape if a.shape is not None else a.value!r} {a.profile}")
        print(f"# flags: {sorted(case.flags)}")
    outcomes = run_campaign([seed], targets, batch=1)
    for o in outcomes:
        print(f"{o.target}: {o.cls}\n{o.message}\n")
    return int(any(o.cls in FAILING for o in outcomes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.difftest.campaign", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100, help="kernels to generate")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, from {','.join(TARGETS)}")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes at once")
    parser.add_argument("--batch", type=int, default=20, help="kernels per kp.build")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it is a hang")
    parser.add_argument("--out", type=Path, help="write every outcome as JSON here")
    parser.add_argument("--save-failures", type=Path, help="write the failing kernels' sources here")
    parser.add_argument("--replay", type=int, help="run this one seed and print the full messages")
    parser.add_argument("--show", action="store_true", help="with --replay: print the kernel's source first")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    if args.replay is not None:
        return replay(args.replay, targets, args.show)
    start = time.time()

    def progress(target: str, done: int, total: int) -> None:
        print(f"\r[{time.time() - start:6.0f}s] {done}/{total} batches (last: {target})   ", end="", flush=True)

    seeds = range(args.seed, args.seed + args.count)
    outcomes = run_campaign(seeds, targets, jobs=args.jobs, batch=args.batch, timeout=args.timeout, progress=progress)
    print(f"\n{args.count} kernels, seeds {args.seed}..{args.seed + args.count - 1}, {time.time() - start:.0f}s\n")
    print(report(outcomes, targets, args.save_failures))
    if args.out is not None:
        args.out.write_text(json.dumps([o.__dict__ for o in outcomes], indent=1))
    return int(any(o.cls in FAILING for o in outcomes))


if __name__ == "__main__":
    sys.exit(main())
