"""``export_library``: one module tree in, one shared library out.

1. **Check** (before any work): every module must be DSO-exportable or binary-serializable, a
   serializable kind must have a loader (or it could not be loaded back), and a loaded
   ``library`` cannot be re-exported. The error names the module's kind, mask and path.
2. **Plan** (TVM's two-phase merge): every DSO-exportable module joins one group, the host
   library (``_lib``); every other module is its own group. The groups are numbered so that a
   parent comes before each child, which a tree needing the host library both above and below
   a serializable module cannot satisfy: that is an error naming both modules.
3. **Write** each DSO module (``.o`` for LLVM, ``.c`` for C source), the blob as an ELF object
   (:mod:`.elfobj`), and link them all with the system C compiler into a temporary file beside
   the output, which replaces the output only when complete. A C header declaring the host
   functions is written beside the library.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ExportError, LinkError, LoadError, ShadowingWarning
from ..runtime.blob import HOST_KIND, BlobEntry, encode_chunks
from ..runtime.cpufeatures import SECTION as CPU_SECTION
from ..runtime.cpufeatures import SYMBOL as CPU_SYMBOL
from ..runtime.cpufeatures import required_features
from ..runtime.library import load_library
from ..runtime.module import Module, ModulePropertyMask, mask_name
from ..runtime.registry import lookup_loader, register_exporter, register_file_loader
from ..runtime.signature import Signature
from .elfobj import MACHINES, write_blob_object
from .pyinit import module_name, pyinit_source
from .triples import cross_compiler
from .util import HOST_LIBRARIES, UMASK, c_compiler, write_temp

__all__ = ["ExportPlan", "export_library", "plan_export"]


@dataclass
class ExportPlan:
    """How a tree is laid out in the library: groups in blob order and the import tree (CSR).

    Attributes
    ----------
    groups : list of list of Module
        Group ``i`` is blob module ``i``; the host group lists every DSO-exportable module.
    host : int or None
        The index of the host group, if the tree has DSO-exportable modules.
    row_ptr, children : list of int
        The import tree between groups, in CSR form.
    """

    groups: list[list[Module]] = field(default_factory=list)
    host: int | None = None
    row_ptr: list[int] = field(default_factory=list)
    children: list[int] = field(default_factory=list)

    @property
    def dso_modules(self) -> list[Module]:
        """The modules linked as code into the host library."""
        return self.groups[self.host] if self.host is not None else []


def _describe(module: Module, path: str) -> str:
    return f"{path} [kind {module.kind!r}, mask {mask_name(module.property_mask)}]"


def check_exportable(root: Module) -> list[tuple[str, Module]]:
    """Refuse, before any work, a tree that could not be exported and loaded back."""
    nodes = list(root.walk())
    for path, mod in nodes:
        if not (mod.is_dso_exportable or mod.is_binary_serializable) and mod.export_refusal:
            raise ExportError(f"cannot export {_describe(mod, path)}: {mod.export_refusal}")
        if not (mod.is_dso_exportable or mod.is_binary_serializable):
            raise ExportError(
                f"cannot export {_describe(mod, path)}: it is neither DSO_EXPORTABLE nor "
                "BINARY_SERIALIZABLE, so the library could not carry it. Remove it from the tree "
                "before exporting (import it after loading), or give its kind a save_to_bytes and a loader"
            )
        if not mod.is_dso_exportable and lookup_loader(mod.kind) is None:
            raise ExportError(
                f"cannot export {_describe(mod, path)}: no loader is registered for kind {mod.kind!r}, "
                f"so load_module could not rebuild it; register one with @kernpack.register_loader({mod.kind!r})"
            )
    return nodes


def plan_export(root: Module) -> ExportPlan:
    """Group the tree (DSO modules merged into the host library) and build the import tree.

    Raises
    ------
    ExportError
        If a module cannot be exported, or the merge would need a cycle in the import tree.
    """
    paths = {id(m): p for p, m in check_exportable(root)}
    plan = ExportPlan()
    index: dict[int, int] = {}

    # Phase 0: number the serializable modules reachable without crossing a DSO module; the
    # DSO modules met on the way form the boundary of the host group.
    boundary: list[Module] = []
    stack = [root]
    while stack:
        mod = stack.pop()
        if id(mod) in index or any(m is mod for m in boundary):
            continue
        if mod.is_dso_exportable:
            boundary.append(mod)
            continue
        index[id(mod)] = len(plan.groups)
        plan.groups.append([mod])
        stack.extend(reversed(mod.imports))
    # Phase 1: the host group, then everything reachable from it.
    if boundary:
        plan.host = len(plan.groups)
        plan.groups.append([])
        stack = list(reversed(boundary))
        while stack:
            mod = stack.pop()
            if id(mod) in index:
                continue
            if mod.is_dso_exportable:
                index[id(mod)] = plan.host
                plan.groups[plan.host].append(mod)
            else:
                index[id(mod)] = len(plan.groups)
                plan.groups.append([mod])
            stack.extend(reversed(mod.imports))

    _number_parents_first(plan, index, paths)
    return plan


def _number_parents_first(plan: ExportPlan, index: dict[int, int], paths: dict[int, str]) -> None:
    """Renumber the groups so that each comes after every group importing it, and build the CSR.

    The blob requires it (so that a loader needs no cycle check). The order of the walk is not
    enough once a module has several importers; a depth-first topological sort is. Merging the
    DSO modules into one group is what can make a cycle: a serializable module both imported by
    the host library and importing it.
    """
    kids = []
    for parent, group in enumerate(plan.groups):
        found = dict.fromkeys(index[id(c)] for m in group for c in m.imports)  # import order, once each
        found.pop(parent, None)
        kids.append(list(found))
    postorder: list[int] = []
    state = [0] * len(plan.groups)  # 0 unseen, 1 on the current path, 2 done
    # Children in reverse, so that a tree without shared modules keeps the walk's order.
    stack = [(0, reversed(kids[0]))]
    state[0] = 1
    while stack:
        parent, todo = stack[-1]
        child = next(todo, None)
        if child is None:
            stack.pop()
            state[parent] = 2
            postorder.append(parent)
        elif state[child] == 1:
            first, other = plan.groups[parent][0], plan.groups[child][0]
            raise ExportError(
                "cannot export: the DSO-exportable modules cannot be merged into one host library "
                f"without a cycle in the import tree: {_describe(first, paths[id(first)])} "
                f"imports {_describe(other, paths[id(other)])}, which is (or imports) the host library "
                "above it. Move the DSO modules so that they sit only above (or only below) the "
                "serializable ones"
            )
        elif state[child] == 0:
            state[child] = 1
            stack.append((child, reversed(kids[child])))
    order = postorder[::-1]
    number = {group: i for i, group in enumerate(order)}
    plan.groups = [plan.groups[g] for g in order]
    if plan.host is not None:
        plan.host = number[plan.host]
    plan.row_ptr, plan.children = [0], []
    for group in order:
        plan.children.extend(number[k] for k in kids[group])
        plan.row_ptr.append(len(plan.children))


def _host_signatures(plan: ExportPlan) -> list[Signature]:
    """The host library's function table, refusing a name defined twice (the link would fail)."""
    owner: dict[str, Module] = {}
    signatures: list[Signature] = []
    for mod in plan.dso_modules:
        for name in mod.function_names():
            if name in owner:
                raise ExportError(
                    f"cannot export: function {name!r} is defined by both {owner[name]!r} and {mod!r}; "
                    "the host library can hold one definition"
                )
            owner[name] = mod
        signatures.extend(mod.signatures.values())
    return signatures


@functools.lru_cache(maxsize=8)
def _target_arch(cc: tuple[str, ...]) -> str:
    shown = shlex.join(cc)
    try:
        triple = subprocess.run([*cc, "-dumpmachine"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise LinkError(
            f"the C compiler {shown!r} cannot be run ({exc}); install one (e.g. apt-get install gcc) or pass cc=",
            command=(*cc, "-dumpmachine"),
            returncode=getattr(exc, "returncode", None),
            stderr=getattr(exc, "stderr", "") or "",
        ) from None
    arch = triple.split("-")[0]
    if arch not in MACHINES:
        raise ExportError(f"the C compiler {shown!r} targets {triple!r}; kernpack exports for {', '.join(MACHINES)}")
    return arch


def _compiler_for(modules: Sequence[Module], cc: str | None) -> list[str]:
    """The C compiler to link ``modules``: ``cc`` or ``$CC`` if given, else one for their architecture."""
    arches = sorted({m.target_arch for m in modules} - {None})
    if len(arches) > 1:
        raise ExportError(
            f"cannot export: the modules hold machine code for {' and '.join(arches)}, and one library "
            "is for one architecture; export each architecture's modules to a library of its own"
        )
    if cc or os.environ.get("CC") or not arches or arches[0] == os.uname().machine:
        return c_compiler(cc)
    return [cross_compiler(arches[0])]


def _header_text(name: str, signatures: Sequence[Signature], missing: Sequence[str]) -> str:
    guard = "KERNPACK_" + "".join(c if c.isalnum() else "_" for c in name).upper() + "_H"
    lines = [
        f"/* {name}: functions of the shared library, written by kernpack export_library. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "#include <stdbool.h>",
        "#include <stdint.h>",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        *(f"{sig.c_prototype()};" for sig in signatures),
        *(f"/* {fn}: exported, signature unknown */" for fn in missing),
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        f"#endif /* {guard} */",
        "",
    ]
    return "\n".join(lines)


def cpu_source(modules: Sequence[Module]) -> str | None:
    """C source defining the CPU the modules' machine code needs (None: they say nothing)."""
    needs = [r for r in (m.cpu_requirement for m in modules) if r is not None]
    if not needs:
        return None
    parts = [required_features(r) for r in needs]
    names = "+".join(dict.fromkeys(cpu for cpu, _ in parts))
    features = ",".join(sorted({f for _, fs in parts for f in fs}))
    return (
        f'__attribute__((used, visibility("default"), section("{CPU_SECTION}")))\n'
        f'const char {CPU_SYMBOL}[] = "{names};{features}";\n'
    )


def export_library(
    root: Module,
    path: str | os.PathLike[str],
    *,
    cc: str | None = None,
    options: Sequence[str] = (),
    workspace: str | os.PathLike[str] | None = None,
) -> str:
    """Export ``root`` and everything it imports as one shared library (see the module doc).

    Returns the absolute path of the library. On any failure no file is left at ``path`` (an
    existing one is untouched) and a temporary workspace is removed.
    """
    plan = plan_export(root)
    signatures = _host_signatures(plan)
    out = os.path.abspath(os.fspath(path))
    out_dir = os.path.dirname(out)
    if not os.path.isdir(out_dir):
        raise ExportError(f"cannot export to {out!r}: the directory {out_dir!r} does not exist")
    if os.path.isdir(out):
        raise ExportError(f"cannot export to {out!r}: it is a directory; name the .so file to write")
    archive = out.endswith(".tar")  # objects to link later (TVM's export_library("x.tar")), not a library
    module = None if archive else module_name(out)
    if module is not None:
        _warn_if_shadowing(out, module)
    cc_argv = _compiler_for(plan.dso_modules, cc)
    arch = _target_arch(tuple(cc_argv))
    for mod in plan.dso_modules:
        if mod.target_arch not in (None, arch):
            raise ExportError(
                f"cannot export {mod!r}: its machine code is for {mod.target_arch}, but the C compiler "
                f"{shlex.join(cc_argv)!r} links for {arch}; pass cc= a compiler for {mod.target_arch} "
                f"(apt-get install gcc-{mod.target_arch}-linux-gnu), or build the module for {arch}"
            )

    entries = []
    for i, group in enumerate(plan.groups):
        if i == plan.host:
            table = "".join(f"{sig}\n" for sig in signatures).encode()
            mask = ModulePropertyMask.RUNNABLE
            entries.append(BlobEntry(HOST_KIND, table, int(mask)))
        else:
            mod = group[0]
            entries.append(BlobEntry(mod.kind, mod.save_to_bytes(), int(mod.property_mask)))

    own_workspace = workspace is None
    work = tempfile.mkdtemp(prefix="kernpack-export-") if own_workspace else os.fspath(workspace)
    os.makedirs(work, exist_ok=True)
    temps: list[str] = []  # finished files not yet in place, removed if anything fails
    try:
        inputs = []
        for k, mod in enumerate(plan.dso_modules):
            fmt = mod.dso_format
            file = os.path.join(work, f"lib{k}.{fmt}")
            mod.write_to_file(file, fmt)
            inputs.append(file)
        needs = cpu_source(plan.dso_modules)
        if needs is not None:  # what CPU the code needs, for the loader to check (runtime/cpufeatures.py)
            cpu_c = os.path.join(work, "cpu.c")
            with open(cpu_c, "w") as f:
                f.write(needs)
            inputs.append(cpu_c)
        if module is not None:  # `import <module>` then loads the library (runtime/extension.py)
            init = os.path.join(work, "pyinit.c")
            with open(init, "w") as f:
                f.write(pyinit_source(module))
            inputs.append(init)
        blob_obj = os.path.join(work, "blob.o")
        size, chunks = encode_chunks(entries, plan.row_ptr, plan.children)
        with open(blob_obj, "wb") as f:
            write_blob_object(f, size, chunks, arch)
        inputs.append(blob_obj)

        header = _header_text(os.path.basename(out), signatures, _unsigned(plan))
        if archive:
            temps.append(_write_archive(out_dir, work, inputs, cc_argv, options, header, os.path.basename(out)))
            os.replace(temps.pop(), out)
            return out
        fd, tmp_out = tempfile.mkstemp(prefix=".kernpack-", suffix=".so", dir=out_dir)
        os.close(fd)
        temps.append(tmp_out)
        # No build-id: GNU ld would hash the whole output (a SHA-1 over every blob byte) for
        # it; the blob carries its own checksums.
        command = [
            *cc_argv,
            "-shared",
            "-fPIC",
            "-O2",
            "-o",
            tmp_out,
            *inputs,
            "-Wl,--build-id=none",
            *options,
            *_libraries(inputs),
        ]
        _run(command)
        os.chmod(tmp_out, 0o777 & ~UMASK)
        temps.append(write_temp(out_dir, header, ".h"))
        # Both files are complete: two renames in one directory put them in place, the
        # library first (the header is only a convenience for C callers).
        for tmp, final in zip(temps, (out, os.path.splitext(out)[0] + ".h"), strict=True):
            os.replace(tmp, final)
        temps.clear()
    except OSError as exc:
        # A full disk or a read-only directory: say which file, leave nothing behind.
        raise ExportError(f"cannot export to {out!r}: {exc}") from None
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if own_workspace:
            shutil.rmtree(work, ignore_errors=True)
    return out


_LINK_FILE = "LINK"  # in an archive: the libraries its objects need, one per line


def _libraries(inputs: Sequence[str]) -> list[str]:
    """The libraries the inputs need linked beside them.

    The C library's math and threads; for C++ sources (``.cc``, compiled as C++ by the driver)
    the C++ runtime too, which the C driver does not link.
    """
    return [*HOST_LIBRARIES, *(["-lstdc++"] if any(i.endswith(".cc") for i in inputs) else [])]


def _write_archive(
    out_dir: str, work: str, inputs: list[str], cc: list[str], options: Sequence[str], header: str, name: str
) -> str:
    """A tar of the library's objects (sources compiled), its header and LINK; its temporary path.

    ``cc -shared -o lib.so *.o $(cat LINK)`` makes the library of it; a C program links the
    objects into itself the same way, without ``-shared``.
    """
    objects = []
    for path in inputs:
        if path.endswith(".o"):
            objects.append(path)
            continue
        obj = os.path.splitext(path)[0] + ".o"
        _run([*cc, "-c", "-fPIC", "-O2", *options, "-o", obj, path])
        objects.append(obj)
    stem = os.path.splitext(name)[0]
    files = {f"{stem}.h": header.encode(), _LINK_FILE: "".join(f"{x}\n" for x in _libraries(inputs)).encode()}
    fd, tmp = tempfile.mkstemp(prefix=".kernpack-", suffix=".tar", dir=out_dir)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w") as tar:
            for obj in objects:
                tar.add(obj, arcname=os.path.basename(obj))
            for arcname, data in files.items():
                info = tarfile.TarInfo(arcname)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        os.chmod(tmp, 0o666 & ~UMASK)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


@register_file_loader(".tar")
def load_archive(path: str) -> Module:
    """A library archive (``export_library("x.tar")``): its objects linked with the C toolchain, then loaded.

    Raises
    ------
    LoadError
        If the file is not such an archive.
    """
    work = tempfile.mkdtemp(prefix="kernpack-archive-")
    try:
        try:
            with tarfile.open(path) as tar:
                members = tar.getmembers()
                # Plain files with plain names only: nothing lands outside work, no links.
                if not all(m.isreg() and m.name == os.path.basename(m.name) != ".." for m in members):
                    raise LoadError(f"cannot load {path!r}: the archive holds more than plain files")
                for member in members:
                    with open(os.path.join(work, member.name), "wb") as f:
                        shutil.copyfileobj(tar.extractfile(member), f)
        except (tarfile.TarError, OSError) as exc:
            raise LoadError(f"cannot load {path!r}: not a readable tar archive ({exc})") from None
        names = sorted(os.listdir(work))
        objects = [os.path.join(work, n) for n in names if n.endswith(".o")]
        if not objects or _LINK_FILE not in names:
            raise LoadError(f"cannot load {path!r}: not a kernpack library archive (no objects and {_LINK_FILE})")
        with open(os.path.join(work, _LINK_FILE), encoding="utf-8") as f:
            libraries = [line.strip() for line in f if line.strip().startswith("-l")]
        library = os.path.join(work, os.path.splitext(os.path.basename(path))[0] + ".so")
        _run([*c_compiler(), "-shared", "-o", library, *objects, "-Wl,--build-id=none", *libraries])
        return load_library(library)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _warn_if_shadowing(out: str, module: str) -> None:
    """Warn when ``import <module>`` in the library's directory would now find it, not a source."""
    directory = os.path.dirname(out)
    for source in (f"{module}.py", os.path.join(module, "__init__.py")):
        if os.path.exists(os.path.join(directory, source)):
            warnings.warn(
                f"{os.path.basename(out)} is written beside {source}: `import {module}` from {directory} now "
                f"loads the library (an extension module comes before Python source); name the library "
                f"differently (e.g. {module}_kernels.so) to keep importing {source}",
                ShadowingWarning,
                stacklevel=3,
            )
            return


def _unsigned(plan: ExportPlan) -> list[str]:
    return [name for mod in plan.dso_modules for name in mod.function_names() if name not in mod.signatures]


def _run(command: list[str]) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except OSError as exc:
        raise LinkError(
            f"cannot run the C compiler {command[0]!r}: {exc}; install one or pass cc=",
            command=tuple(command),
        ) from None
    if result.returncode != 0:
        raise LinkError(
            f"linking failed (exit {result.returncode}): {shlex.join(command)}\n{result.stderr.strip()}",
            command=tuple(command),
            returncode=result.returncode,
            stderr=result.stderr,
        )


register_exporter(export_library)


@register_file_loader(".o")
def load_object(path: str) -> Module:
    """An object file (position-independent, as kernpack writes them), linked as a library and loaded.

    Its functions are reached with ``bind`` (an object file carries no signatures). The
    library is linked in a temporary directory, removed once it is mapped.
    """
    work = tempfile.mkdtemp(prefix="kernpack-object-")
    try:
        library = os.path.join(work, os.path.splitext(os.path.basename(path))[0] + ".so")
        _run([*c_compiler(), "-shared", "-o", library, os.path.abspath(path), *HOST_LIBRARIES])
        return load_library(library)
    finally:
        shutil.rmtree(work, ignore_errors=True)
