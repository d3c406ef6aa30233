"""Child processes that live across calls: build workers, and the LLVM children of device codegen.

A :class:`Pool` keeps idle children of one command line for the process's later calls. A child
speaks length-prefixed messages on its stdin and on a pipe of its own (its stdout goes to
stderr, so a print cannot break the protocol). One that dies (a signal, an abort in LLVM)
fails the message it was answering with :class:`ChildDied`, which carries the end of what it
printed, and a new one takes its place on the next use.

Build workers (:func:`run`) are ``python -m kernpack.driver.workers``, not
:mod:`multiprocessing`: its ``spawn`` and ``forkserver`` workers import the parent's
``__main__`` again, so a script that calls ``kp.build`` at its top level, with no
``if __name__ == "__main__":`` guard, would start building in every worker; and ``fork`` copies
a process whose threads (and LLVM) may be in any state. A worker imports kernpack and nothing
of the caller's, and runs pickled calls: a module-level function by reference, its arguments.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import queue
import struct
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["ChildDied", "Pool", "run"]

_LENGTH = struct.Struct("<Q")


class ChildDied(Exception):
    """The child process exited before answering.

    Attributes
    ----------
    returncode : int
        Its exit status (negative: killed by that signal).
    stderr : str
        The end of what it printed on stderr (when the pool captures it).
    """

    def __init__(self, message: str, *, returncode: int = 0, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class _Child:
    """One child process and its pipes."""

    def __init__(self, argv: Sequence[str], capture_stderr: bool) -> None:
        import subprocess  # here: a call that needs no child imports nothing
        import tempfile

        env = dict(os.environ)
        source_root = str(Path(__file__).resolve().parents[2])  # kernpack importable as it is here
        env["PYTHONPATH"] = source_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        # A file, not a pipe: a chatty child cannot fill it and stall, and it is there to read
        # after a crash.
        self.stderr = tempfile.TemporaryFile() if capture_stderr else None  # noqa: SIM115 - closed by close()
        self.process = subprocess.Popen(
            [sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env
        )

    def ask(self, message: bytes) -> bytes:
        try:
            self.process.stdin.write(_LENGTH.pack(len(message)) + message)
            self.process.stdin.flush()
            return read_message(self.process.stdout)
        except (OSError, EOFError):
            code = self.process.wait()
            raise ChildDied(
                f"the child process exited ({_exit_status(code)})", returncode=code, stderr=self.stderr_tail()
            ) from None

    def stderr_tail(self, lines: int = 6) -> str:
        """The last lines of its captured stderr ("" when not captured)."""
        if self.stderr is None:
            return ""
        self.stderr.seek(0)
        return "\n".join(self.stderr.read().decode(errors="replace").strip().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        try:
            self.process.stdin.close()  # its loop ends at the end of its input
            self.process.wait(timeout=5)
        except Exception:  # at exit: a child that does not end is killed
            self.process.kill()
        if self.stderr is not None:
            self.stderr.close()


def _exit_status(code: int) -> str:
    if code < 0:
        import signal

        return f"signal {signal.Signals(-code).name}"
    return f"exit status {code}"


def read_message(stream: BinaryIO) -> bytes:
    """One length-prefixed message from ``stream``; EOFError at its end."""
    header = stream.read(_LENGTH.size)
    if len(header) != _LENGTH.size:
        raise EOFError("end of input")
    (size,) = _LENGTH.unpack(header)
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("end of input")
    return data


def write_message(stream: BinaryIO, data: bytes) -> None:
    """Write ``data`` to ``stream`` as one length-prefixed message."""
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def serve(answer: Callable[[bytes], bytes]) -> None:
    """A child's loop: ``answer`` each message of stdin, until its end, on a pipe of its own."""
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what the child or a library prints goes to stderr, not into the answers
    sys.stdout = sys.stderr
    while True:
        try:
            message = read_message(requests)
        except EOFError:
            return
        write_message(answers, answer(message))


class Pool:
    """Idle children of one command line (``["-m", "module", ...]``), taken and given back."""

    def __init__(self, argv: Sequence[str], *, capture_stderr: bool = False) -> None:
        self.argv = tuple(argv)
        self.capture_stderr = capture_stderr
        self._idle: list[_Child] = []
        self._lock = threading.Lock()
        _pools.append(self)

    @contextlib.contextmanager
    def child(self) -> Iterator[_Child]:
        """An idle child (or a new one), given back afterwards if it still lives."""
        child = None
        with self._lock:
            while self._idle and child is None:
                candidate = self._idle.pop()
                child = candidate if candidate.alive() else None
        child = child or _Child(self.argv, self.capture_stderr)
        try:
            yield child
        finally:
            if child.alive():
                with self._lock:
                    self._idle.append(child)

    def ask(self, message: bytes) -> bytes:
        """Send ``message`` to a child and return its answer; :class:`ChildDied` if it died."""
        with self.child() as child:
            return child.ask(message)

    def close(self) -> None:
        with self._lock:
            children, self._idle = self._idle, []
        for child in children:
            child.close()


_pools: list[Pool] = []


@atexit.register
def _close_all() -> None:
    for pool in list(_pools):
        pool.close()


# ---------------------------------------------------------------------- build workers
_workers = Pool(["-m", "kernpack.driver.workers"])


def run(
    fn: Callable[..., Any],
    calls: Sequence[tuple[Any, ...]],
    jobs: int,
    *,
    cost: Callable[[tuple[Any, ...]], float],
    context: Callable[[], object] | None = None,
) -> list[tuple[bool, Any]]:
    """``fn(*args)`` for every ``args`` of ``calls`` on up to ``jobs`` workers; the outcomes in order.

    Each outcome is ``(True, result)`` or ``(False, exception)`` (:class:`ChildDied` for a
    worker that died). The costliest calls start first, so that a long one does not start
    last. ``context``, a callable or None, is called in the worker before each call: what the
    caller set up in code that a fresh process would not have (the cache's tiers).
    """
    order: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in sorted(range(len(calls)), key=lambda i: -cost(calls[i])):
        order.put(i)
    outcomes: list[tuple[bool, Any]] = [(False, ChildDied("not run"))] * len(calls)

    def drain() -> None:
        while True:
            try:
                i = order.get_nowait()
            except queue.Empty:
                return
            request = pickle.dumps((context, fn, calls[i]), protocol=pickle.HIGHEST_PROTOCOL)
            try:
                outcomes[i] = pickle.loads(_workers.ask(request))
            except ChildDied as exc:
                outcomes[i] = (False, exc)

    threads = [threading.Thread(target=drain, name=f"kernpack-build-{n}") for n in range(min(jobs, len(calls)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def _answer(message: bytes) -> bytes:
    """A build worker's answer: the pickled outcome of the pickled call."""
    try:
        context, fn, args = pickle.loads(message)
        if context is not None:
            context()
        outcome: tuple[bool, Any] = (True, fn(*args))
    except Exception as exc:  # every error goes back to the caller, which raises it
        outcome = (False, exc)
    try:
        return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an unpicklable result or exception
        return pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))


if __name__ == "__main__":
    serve(_answer)
