r"""Kind ``pipeline`` (BINARY_SERIALIZABLE | RUNNABLE): a plan of calls over named buffers.

A pipeline is data, not code: an ordered list of steps, each a function name and the names of
its arguments. Running it binds the names to the arrays and scalars given by keyword, and calls
each step's function, found in the pipeline's imports. Exported as the root of a library, it
is packed into the blob and imports the host library, as TVM's JSON runtimes do.

Byte layout of ``save_to_bytes()``: ``b"KPPIPE\0\1"`` then UTF-8 JSON
``{"name": str, "steps": [{"function": str, "args": [str | int | float, ...]}, ...]}``
with sorted keys (reproducible).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import ArgumentError, FormatError, FunctionNotFoundError
from .module import Module, ModulePropertyMask
from .registry import register_describer, register_loader

__all__ = ["PipelineModule", "Step", "pipeline_module"]

_MAGIC = b"KPPIPE\x00\x01"
Step = tuple[str, Sequence[str | int | float]]


class PipelineModule(Module):
    """A runnable, serializable plan of kernel calls. Create it with :func:`pipeline_module`."""

    kind = "pipeline"
    property_mask = ModulePropertyMask.BINARY_SERIALIZABLE | ModulePropertyMask.RUNNABLE

    def __init__(self, steps: Iterable[Step], name: str = "main") -> None:
        super().__init__()
        self.name = name
        self.steps: tuple[tuple[str, tuple[str | int | float, ...]], ...] = tuple(
            (str(fn), tuple(args)) for fn, args in steps
        )
        for fn, args in self.steps:
            for arg in args:
                if not isinstance(arg, (str, int, float)) or isinstance(arg, bool):
                    raise TypeError(f"pipeline step {fn}: argument {arg!r} must be a buffer name or a number")
        self._resolved: list[Callable[..., Any]] | None = None
        self._lock = threading.Lock()

    @property
    def inputs(self) -> tuple[str, ...]:
        """The buffer and scalar names the pipeline reads, in order of first use."""
        return tuple(dict.fromkeys(a for _, args in self.steps for a in args if isinstance(a, str)))

    def _own_function_names(self) -> tuple[str, ...]:
        return (self.name,)

    def _get_own_function(self, name: str) -> Callable[..., Any] | None:
        return self.run if name == self.name else None

    def run(self, **buffers: Any) -> None:
        """Run every step in order with the named arrays and scalars.

        Raises
        ------
        ArgumentError
            If a name a step needs was not given.
        """
        missing = [n for n in self.inputs if n not in buffers]
        if missing:
            raise ArgumentError(f"pipeline {self.name!r} needs {', '.join(self.inputs)}; missing: {', '.join(missing)}")
        for fn, (_, args) in zip(self._functions(), self.steps, strict=True):
            fn(*[buffers[a] if isinstance(a, str) else a for a in args])

    def _functions(self) -> list[Callable[..., Any]]:
        # Resolved once, through the imports only: a step never calls the pipeline itself.
        if self._resolved is None:
            with self._lock:
                if self._resolved is None:
                    resolved = []
                    for fn, _ in self.steps:
                        for mod in self.imports:
                            if mod.implements_function(fn, query_imports=True):
                                resolved.append(mod.get_function(fn))
                                break
                        else:
                            available = sorted({n for m in self.imports for n in m.tree_function_names()})
                            raise FunctionNotFoundError(
                                f"pipeline {self.name!r} calls {fn!r}, which none of its imports defines; "
                                f"they define: {', '.join(available) or 'nothing'}",
                                name=fn,
                                available=tuple(available),
                            )
                    self._resolved = resolved
        return self._resolved

    def _inspect_source(self, fmt: str | None) -> str:
        lines = [f"pipeline {self.name}({', '.join(self.inputs)}):"]
        lines += [f"  {fn}({', '.join(map(str, args))})" for fn, args in self.steps]
        return "\n".join(lines)

    def _save_to_bytes(self) -> bytes:
        doc = {"name": self.name, "steps": [{"function": fn, "args": list(args)} for fn, args in self.steps]}
        return _MAGIC + json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def __repr__(self) -> str:
        return f"Module[pipeline]({self.name!r}, steps={[fn for fn, _ in self.steps]})"


def pipeline_module(steps: Iterable[Step], name: str = "main") -> PipelineModule:
    """Build a pipeline: an ordered list of calls over named arrays and scalars.

    Parameters
    ----------
    steps : iterable of (str, sequence of str or number)
        Each step: the function to call (found in the pipeline's imports) and its arguments,
        given as the names of buffers passed to ``run`` or as numeric literals.
    name : str, default "main"
        The name under which the pipeline itself is a function of the module.

    Returns
    -------
    PipelineModule
        A module of kind ``pipeline``, mask BINARY_SERIALIZABLE | RUNNABLE.

    Examples
    --------
    >>> import numpy as np
    >>> from kernpack.runtime import python_module
    >>> pipe = pipeline_module([("double", ["x"]), ("double", ["x"])])
    >>> pipe.import_module(python_module({"double": lambda x: x.__imul__(2)}))
    >>> x = np.ones(3)
    >>> pipe["main"](x=x)
    >>> x
    array([4., 4., 4.])
    """
    return PipelineModule(steps, name)


@register_loader("pipeline")
def _load(data: bytes | memoryview) -> PipelineModule:
    doc = _decode(data)
    try:
        return PipelineModule(((s["function"], s["args"]) for s in doc["steps"]), doc["name"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"corrupt pipeline: {exc}") from None


@register_describer("pipeline")
def _describe(data: memoryview) -> list[dict[str, Any]]:
    doc = _decode(data)
    try:
        return [{"name": str(doc["name"]), "steps": [str(s["function"]) for s in doc["steps"]]}]
    except (KeyError, TypeError) as exc:
        raise FormatError(f"corrupt pipeline: {exc}") from None


def _decode(data: bytes | memoryview) -> dict[str, Any]:
    data = bytes(data)
    if not data.startswith(_MAGIC):
        raise FormatError("not a serialized kernpack pipeline (bad magic or version)")
    try:
        doc = json.loads(data[len(_MAGIC) :])
    except ValueError as exc:
        raise FormatError(f"corrupt pipeline: {exc}") from None
    if not isinstance(doc, dict):
        raise FormatError("corrupt pipeline: not a JSON object")
    return doc
