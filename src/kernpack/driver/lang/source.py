"""Where a kernel's (or a device function's) source lives, to turn AST positions into file positions."""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from typing import Any, NoReturn

from ...errors import KernelSyntaxError

__all__ = ["Source"]


class Source:
    """Where a function's source lives, to turn AST positions into file positions."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        try:
            lines, first = inspect.getsourcelines(fn)
        except (OSError, TypeError) as exc:
            raise KernelSyntaxError(
                f"cannot read the source of {getattr(fn, '__qualname__', fn)!r} ({exc}); define kernels in a file"
            ) from None
        self.filename = inspect.getsourcefile(fn) or "<unknown>"
        self.first = first
        self.lines = lines
        self.indent = len(lines[0]) - len(lines[0].lstrip())
        self.text = textwrap.dedent("".join(lines))

    def line(self, node: ast.AST) -> int:
        """The file line of ``node`` (an AST node of this source)."""
        return self.first + getattr(node, "lineno", 1) - 1

    def error(self, node: ast.AST, message: str, cls: type[KernelSyntaxError] = KernelSyntaxError) -> NoReturn:
        lineno = self.line(node)
        col = getattr(node, "col_offset", 0) + self.indent
        index = lineno - self.first
        line = self.lines[index].rstrip("\n") if 0 <= index < len(self.lines) else ""
        raise cls(
            f"{self.filename}:{lineno}:{col}: {message}\n    {line}\n    {' ' * col}^",
            filename=self.filename,
            lineno=lineno,
            col=col,
        )
