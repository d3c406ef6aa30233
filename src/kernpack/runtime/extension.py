"""``import mylib`` for an exported ``mylib.so``: the library as a Python extension module.

``export_library`` links a small initialization function, ``PyInit_<name>``, into every library
whose name is a Python identifier (see ``kernpack.driver.pyinit``). Python's import system
calls it; it asks this module to fill the new module in: its attributes are the host functions,
and ``module`` is the whole tree as ``load_module`` returns it (device modules included,
decoded on first use).
"""

from __future__ import annotations

import types

from .library import load_library

__all__ = ["populate"]


def populate(module: types.ModuleType) -> None:
    """Give an imported kernpack library ``module`` its functions and its module tree.

    Called by the library's ``PyInit_<name>`` (Python's multi-phase initialization) once the
    import system has set ``module.__file__``.
    """
    root = load_library(module.__file__)
    module.module = root  # type: ignore[attr-defined]
    for name in root.function_names():
        if not name.startswith("__"):
            function = root.get_function(name)
            setattr(module, name, getattr(function, "native_entry", None) or function)
