"""The parent side of the campaign: worker processes, batches, timeouts, and each case's verdict.

Kernels run in ``multiprocessing`` spawn children (``worker.serve``), a batch of seeds per
request. A worker that dies (a driver's segfault or abort) or stops answering (a hang) is killed
and replaced; the case in flight is a ``crash``, and the rest of the batch goes to the new
worker. Outcome classes per (seed, target): ``right``, ``refused``, ``crash``, ``wrong``,
``exception``, ``ill-conditioned``; also ``rejected`` (the front end refused a generated kernel:
a generator or front-end bug), ``invalid`` (the reference found an out-of-range index: a
generator bug) and ``unavailable`` (the target cannot run here).
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tests.difftest.compare import compare
from tests.difftest.gen import generate
from tests.difftest.worker import TARGETS, serve

CLASSES = ("right", "refused", "crash", "wrong", "exception", "ill-conditioned")
CASE_TIMEOUT = 60.0


@dataclass
class Outcome:
    """What one target did with one seed."""

    seed: int
    target: str
    cls: str
    message: str = ""


class WorkerDied(Exception):
    """The worker process exited or stopped answering."""


class Worker:
    """One spawned worker process and its pipe, restarted after it dies."""

    def __init__(self) -> None:
        self.proc: Any = None
        self.conn: Any = None

    def ensure(self) -> None:
        if self.proc is None or not self.proc.is_alive():
            ctx = multiprocessing.get_context("spawn")
            self.conn, child = ctx.Pipe()
            self.proc = ctx.Process(target=serve, args=(child,), daemon=True)
            self.proc.start()
            child.close()

    def send(self, message: Any) -> None:
        self.ensure()
        self.conn.send(message)

    def recv(self, timeout: float) -> Any:
        try:
            if self.conn.poll(timeout):
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        raise WorkerDied(self.death())

    def death(self) -> str:
        if self.proc.is_alive():
            self.kill()
            return "hang: no answer within the timeout"
        code = self.proc.exitcode
        if code is not None and code < 0:
            try:
                return f"worker died of {signal.Signals(-code).name}"
            except ValueError:
                return f"worker died of signal {-code}"
        return f"worker exited with status {code}"

    def kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.proc = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.proc is not None:
            self.proc.join(5)
            self.kill()


def run_batch(worker: Worker, target: str, seeds: list[int], timeout: float = CASE_TIMEOUT) -> dict[int, Any]:
    """Results of ``seeds`` on ``target``: a worker's answers, or ``crash`` where it died."""
    results: dict[int, Any] = {}
    pending = list(seeds)
    while pending:
        worker.send((target, pending))
        try:
            worker.recv(timeout + 5 * len(pending))  # "built"
        except WorkerDied as died:
            if len(pending) == 1:
                results[pending[0]] = {"class": "crash", "message": f"{died} (building)"}
                return results
            for seed in pending:  # one at a time, to find whose build it was
                results.update(run_batch(worker, target, [seed], timeout))
            return results
        for k, seed in enumerate(pending):
            try:
                _, got_seed, result = worker.recv(timeout)
                assert got_seed == seed
                results[seed] = result
            except WorkerDied as died:
                results[seed] = {"class": "crash", "message": f"{died} (running)"}
                pending = pending[k + 1 :]
                break
        else:
            worker.recv(timeout)  # "done"
            pending = []
    return results


def judge(seed: int, target: str, ref: dict[str, Any], result: dict[str, Any]) -> Outcome:
    """A target's result for ``seed`` turned into an outcome class against the reference's."""
    if ref["class"] != "ok":
        cls = ref["class"] if ref["class"] in ("rejected", "invalid") else "ref-error"
        return Outcome(seed, target, cls, ref.get("message", ""))
    cls = result["class"]
    if cls == "built":
        return Outcome(seed, target, "right", "built; ptxas accepted the PTX")
    if cls != "ok":
        return Outcome(seed, target, cls, result.get("message", ""))
    case = generate(seed)
    names = [a.name for a in case.args if a.role != "scalar"]
    verdict = compare(names, result["arrays"], ref["runs"])
    return Outcome(seed, target, verdict.cls, verdict.message)


def run_campaign(
    seeds: Iterable[int],
    targets: list[str],
    *,
    jobs: int = 1,
    batch: int = 20,
    timeout: float = CASE_TIMEOUT,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Outcome]:
    """Run every seed on every target (and the reference) and judge each result."""
    seeds = list(seeds)
    for target in targets:
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    tasks: queue.Queue[tuple[str, list[int]]] = queue.Queue()
    for target in ["ref", *targets]:
        for i in range(0, len(seeds), batch):
            tasks.put((target, seeds[i : i + batch]))
    total = tasks.qsize()
    raw: dict[str, dict[int, Any]] = {t: {} for t in ["ref", *targets]}
    lock = threading.Lock()
    done = [0]

    def work() -> None:
        worker = Worker()
        try:
            while True:
                try:
                    target, chunk = tasks.get_nowait()
                except queue.Empty:
                    return
                got = run_batch(worker, target, chunk, timeout)
                with lock:
                    raw[target].update(got)
                    done[0] += 1
                    if progress is not None:
                        progress(target, done[0], total)
        finally:
            worker.close()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [judge(s, t, raw["ref"][s], raw[t][s]) for t in targets for s in seeds]
