"""What the kernel-language tests share: kernels from source files, the docs' examples, errors."""

from __future__ import annotations

import importlib.util
import re
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

import kernpack as kp

DOCS = Path(__file__).resolve().parents[2] / "docs" / "kernel-language.md"


def import_source(tmp_path: Path, source: str, name: str) -> ModuleType:
    """``source`` written to ``tmp_path/name.py`` and imported (the front end reads kernels from files)."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_documented_example(tmp_path: Path, heading: str) -> ModuleType:
    """Run the one Python example of the docs' section ``heading`` (its asserts check it)."""
    section = DOCS.read_text().split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return import_source(tmp_path, block, "doc_" + re.sub(r"\W+", "_", heading.lower()))


def compile_error(tmp_path: Path, signature: str, body: str, line: int, words: str) -> kp.CompileError:
    """The CompileError of a kernel ``def k(<signature>):`` + ``body``: at ``line``, saying ``words``."""
    source = f"import kernpack as kp\n\n@kp.kernel\ndef k({signature}):\n" + body
    with pytest.raises(kp.CompileError) as info:
        import_source(tmp_path, source, "bad_kernel")
    assert info.value.lineno == line, info.value
    assert words in str(info.value), info.value
    return info.value
