"""Kind ``python``: Python callables as a module (RUNNABLE only).

It runs in process and can never be exported: there is nothing to link and nothing to
serialize. It is the plain example of a mask that ``export_library`` must refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .module import Module, ModulePropertyMask

__all__ = ["PythonModule", "python_module"]


class PythonModule(Module):
    """A module whose functions are Python callables."""

    kind = "python"
    property_mask = ModulePropertyMask.RUNNABLE

    def __init__(self, functions: Mapping[str, Callable[..., Any]]) -> None:
        super().__init__()
        for name, fn in functions.items():
            if not isinstance(name, str) or not callable(fn):
                raise TypeError(f"python_module() expects {{name: callable}}; got {name!r}: {fn!r}")
        self._functions = dict(functions)

    def _get_own_function(self, name: str) -> Callable[..., Any] | None:
        return self._functions.get(name)

    def _own_function_names(self) -> tuple[str, ...]:
        return tuple(self._functions)

    def _inspect_source(self, fmt: str | None) -> str:
        import inspect

        parts = []
        for name, fn in self._functions.items():
            try:
                parts.append(inspect.getsource(fn))
            except (OSError, TypeError):
                parts.append(f"# {name}: source not available ({fn!r})\n")
        return "\n".join(parts)


def python_module(functions: Mapping[str, Callable[..., Any]]) -> PythonModule:
    """Wrap Python callables as a runnable module.

    Parameters
    ----------
    functions : mapping of str to callable
        The module's functions by name.

    Returns
    -------
    PythonModule
        A module of kind ``python``, mask RUNNABLE: it runs, but ``export_library`` refuses it.

    Examples
    --------
    >>> m = python_module({"double": lambda x: 2 * x})
    >>> m["double"](21)
    42
    """
    return PythonModule(functions)
