"""Kind ``llvm`` (RUNNABLE | DSO_EXPORTABLE): host code as an LLVM module.

``llvm_module(source)`` parses and verifies the IR, optimizes it once with LLVM's new pass
manager, and keeps the optimized bitcode. From there it is JIT-compiled (MCJIT) into this
process the first time a function is asked for, or written out as an object file, assembly,
IR or bitcode for a C toolchain to link.

The LLVM inside llvmlite is built with assertions: IR that fails them aborts the process.
Everything user-supplied is therefore parsed and verified (``Module.verify``) before any
optimization or code generation touches it, and every LLVM failure becomes a
:class:`CompileError` that carries LLVM's message.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from ..errors import ArgumentError, CompileError, UnsupportedOperationError
from ..runtime import abi
from ..runtime.calling import NativeFunction
from ..runtime.cpufeatures import requirement
from ..runtime.library import load_library
from ..runtime.module import Module, ModulePropertyMask
from ..runtime.registry import register_file_loader
from ..runtime.signature import Signature
from .elfobj import undefined_symbols
from .irsig import UnsupportedSignature, exported_functions, infer_signature, readonly_params
from .triples import normalize_triple
from .util import atomic_write

__all__ = [
    "LLVMModule",
    "ensure_initialized",
    "host_cpu_key",
    "jit_object",
    "llvm_module",
    "optimize",
    "parse_ir",
    "target_machine",
]


@functools.cache
def _llvm() -> Any:
    """The llvmlite binding to LLVM, imported on first use.

    A module run from a shared object (a compile-cache hit) needs none of it, and importing it
    loads LLVM (tens of milliseconds).
    """
    return importlib.import_module("llvmlite.binding")


_init_lock = threading.Lock()
_initialized = False
_BITCODE_MAGIC = b"BC\xc0\xde"
WRITE_FORMATS = ("o", "ll", "bc", "s")


def ensure_initialized() -> None:
    """Initialize LLVM's targets once per process (what llvmlite needs before any code generation)."""
    global _initialized
    with _init_lock:
        if not _initialized:
            _llvm().initialize_native_target()
            _llvm().initialize_native_asmprinter()
            _llvm().initialize_native_asmparser()
            _initialized = True


_all_targets = False


def _ensure_all_targets() -> None:
    """Initialize every target LLVM was built with (cross builds), once per process."""
    global _all_targets
    ensure_initialized()
    with _init_lock:
        if not _all_targets:
            _llvm().initialize_all_targets()
            _llvm().initialize_all_asmprinters()
            _all_targets = True


def host_triple() -> str:
    """The target triple of this process (``x86_64-unknown-linux-gnu``)."""
    ensure_initialized()
    return _llvm().get_process_triple()


def target_machine(cpu: str | None, opt_level: int, *, jit: bool, triple: str | None = None) -> Any:
    """Create a target machine: the host's, or another architecture's for a cross build.

    Parameters
    ----------
    cpu : str or None
        None for this machine's CPU and features; ``"generic"`` for a portable baseline; or
        an LLVM CPU name such as ``"x86-64-v3"`` (its default features).
    opt_level : int
        Code generation optimization level, 0 to 3.
    jit : bool
        True for in-process JIT, False for position-independent object files to link.
    triple : str or None
        A triple from :func:`.triples.normalize_triple`; None for this machine.
    """
    ensure_initialized()
    if triple is not None:
        _ensure_all_targets()
        try:
            target = _llvm().Target.from_triple(triple)
        except RuntimeError as exc:
            raise CompileError(f"cannot build for {triple}: this LLVM has no such target ({exc})") from None
        name, features = cpu or "generic", ""
    elif cpu is None:
        target = _llvm().Target.from_default_triple()
        name, features = _llvm().get_host_cpu_name(), _llvm().get_host_cpu_features().flatten()
    else:
        target = _llvm().Target.from_default_triple()
        name, features = cpu, ""
    return target.create_target_machine(
        cpu=name,
        features=features,
        opt=opt_level,
        reloc="pic",
        codemodel="jitdefault" if jit else "default",
    )


def host_cpu_key(cpu: str | None) -> str:
    """What machine code for ``cpu`` depends on: the CPU name and, for the host, its features."""
    ensure_initialized()
    if cpu is None:
        return (
            f"{_llvm().get_process_triple()}:{_llvm().get_host_cpu_name()}:{_llvm().get_host_cpu_features().flatten()}"
        )
    return f"{_llvm().get_process_triple()}:{cpu}"


# Symbols the JIT's own linker provides, never the process.
_LINKER_SYMBOLS = frozenset({"_GLOBAL_OFFSET_TABLE_"})


@functools.cache
def _process() -> ctypes.CDLL:
    return ctypes.CDLL(None)


def _process_has(symbol: str) -> bool:
    """True if the dynamic linker finds ``symbol`` in this process (what the JIT links against)."""
    return hasattr(_process(), symbol)


class LLVMModule(Module):
    """Host code as an optimized LLVM module; JIT-compiled on first use.

    Create it with :func:`llvm_module`. Close it (or use it as a context manager) to free the
    JIT engine; functions obtained from it keep it alive until they are dropped. A module the
    compile cache also holds as a shared object runs from that instead (``dlopen``), with no
    LLVM in the process until something asks for its IR or an object file.
    """

    kind = "llvm"
    property_mask = ModulePropertyMask.RUNNABLE | ModulePropertyMask.DSO_EXPORTABLE

    def __init__(
        self,
        bitcode: bytes,
        signatures: Mapping[str, Signature],
        unsupported: Mapping[str, str],
        *,
        name: str,
        cpu: str | None,
        opt_level: int,
        object_code: bytes | None = None,
        shared_object: str | None = None,
        cache_key: str | None = None,
        triple: str | None = None,
    ) -> None:
        super().__init__()
        #: The compile-cache entry this code is stored under (None: not cached); the entry's
        #: shared object, once linked, is ``cache.native_path(cache_key)``.
        self.cache_key = cache_key
        self.name = name
        self.cpu = cpu
        self.opt_level = opt_level
        #: The target triple of another architecture (a cross build, exported and run there);
        #: None: this machine's.
        self.triple = triple
        self._bitcode = bitcode
        self._object = object_code  # JIT-ready machine code, when it came from the cache
        self._signatures = dict(signatures)
        self._unsupported = dict(unsupported)
        self._engine: Any = None
        self._shared_object = shared_object  # the same code linked as a .so (from the cache)
        self._library: Any = None
        self._functions: dict[str, NativeFunction] = {}
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ functions
    @property
    def signatures(self) -> dict[str, Signature]:
        """The signature of every function callable from Python, by name."""
        return dict(self._signatures)

    def _own_function_names(self) -> tuple[str, ...]:
        return (*self._signatures, *self._unsupported)

    def _get_own_function(self, name: str) -> NativeFunction | None:
        fn = self._functions.get(name)
        if fn is not None:
            return fn
        if name in self._unsupported:
            raise UnsupportedOperationError(
                f"function {name!r} of {self!r} cannot be called from Python: {self._unsupported[name]}; "
                "give it pointer, integer or floating-point parameters, or call it from other code"
            )
        signature = self._signatures.get(name)
        if signature is None:
            return None
        with self._lock:
            fn = self._functions.get(name)
            if fn is None:
                fn = self._native(signature)
                self._functions[name] = fn
        return fn

    def _refuse_foreign(self) -> None:
        if self.triple is not None:
            raise UnsupportedOperationError(
                f"{self!r} is machine code for {self.triple}, which this machine ({host_triple()}) cannot "
                "run: export it (export_library, with that architecture's C compiler) and load the library there"
            )

    def _native(self, signature: Signature) -> NativeFunction:
        self._refuse_foreign()
        if self._shared_object is not None:
            if self._closed:
                raise UnsupportedOperationError(f"{self!r} is closed; build the module again to run it")
            if self._library is None:
                self._library = load_library(self._shared_object)
            return self._library.bind(signature)  # with its native entry point, as any library's
        engine = self._jit()
        fn = NativeFunction(signature, engine.get_function_address(signature.name), owner=engine)
        definition, table = (engine.get_global_value_address(s) for s in abi.fast_symbols(signature.name)[1:])
        if definition and table:  # a kernel of kp.build: it has a native entry point
            fn.attach_native_entry(definition, table)
        printer, prints = (engine.get_global_value_address(s) for s in abi.print_symbols(signature.name))
        if printer and prints:  # it calls print()
            fn.attach_printer(printer, prints)
        record, sites = (engine.get_global_value_address(s) for s in abi.check_symbols(signature.name))
        if record and sites:  # built with boundscheck
            fn.attach_bounds_check(record, sites)
        return fn

    def _jit(self) -> Any:
        self._refuse_foreign()
        if self._closed:
            raise UnsupportedOperationError(f"{self!r} is closed; build the module again to run it")
        if self._engine is None:
            # One path for fresh and cached code: machine code as an object file, checked for
            # symbols this process cannot provide, then loaded.
            machine = target_machine(self.cpu, self.opt_level, jit=True)
            code = self.jit_object(machine)
            missing = [
                name for name in undefined_symbols(code) if name not in _LINKER_SYMBOLS and not _process_has(name)
            ]
            if missing:
                raise CompileError(
                    f"{self!r} needs {', '.join(missing)}, which this process does not provide; "
                    "load the library that defines them first (e.g. with ctypes.CDLL(path, mode=RTLD_GLOBAL))"
                )
            engine = _llvm().create_mcjit_compiler(_llvm().parse_assembly(""), machine)
            engine.add_object_file(_llvm().ObjectFileRef.from_data(code))
            engine.finalize_object()
            self._engine = engine
        return self._engine

    def jit_object(self, machine: Any = None) -> bytes:
        """Machine code for this process's JIT (what the compile cache stores)."""
        if self._object is None:
            self._object = jit_object(self._bitcode, self.cpu, self.opt_level, machine)
        return self._object

    def jit(self) -> LLVMModule:
        """Compile to machine code now rather than on the first ``get_function``."""
        with self._lock:
            if self._shared_object is not None:
                self._library = self._library or load_library(self._shared_object)
            else:
                self._jit()
        return self

    @property
    def target_arch(self) -> str:
        """The architecture of this module's machine code (``x86_64``, ``aarch64``)."""
        return (self.triple or host_triple()).split("-")[0]

    @property
    def cpu_requirement(self) -> str:
        """The CPU and features this module's machine code is built for (``runtime.cpufeatures``)."""
        if self.cpu is None and self.triple is None:
            ensure_initialized()
            return requirement(_llvm().get_host_cpu_name(), _llvm().get_host_cpu_features().flatten())
        return requirement(self.cpu or "generic", "")

    # ------------------------------------------------------------------ output
    def _inspect_source(self, fmt: str | None) -> str:
        fmt = (fmt or "ll").lstrip(".")
        if fmt == "ll":
            return str(_llvm().parse_bitcode(self._bitcode))
        if fmt in ("s", "asm"):
            return self._emit("s").decode()
        raise UnsupportedOperationError(f"{self!r} shows source as 'll' or 's', not {fmt!r}")

    def _write_to_file(self, path: str, fmt: str | None) -> None:
        fmt = (fmt or os.path.splitext(path)[1] or ".o").lstrip(".")
        if fmt not in WRITE_FORMATS:
            raise UnsupportedOperationError(
                f"{self!r} cannot write {fmt!r} (to {path!r}); formats: {', '.join(WRITE_FORMATS)}"
            )
        atomic_write(path, self._emit(fmt))

    def _emit(self, fmt: str) -> bytes:
        module = _llvm().parse_bitcode(self._bitcode)
        if fmt in ("ll", "bc"):
            # The signatures travel in the IR, so that the file loads back callable as it was.
            text = with_signatures(str(module), self._signatures.values())
            return text.encode() if fmt == "ll" else _llvm().parse_assembly(text).as_bitcode()
        machine = target_machine(self.cpu, self.opt_level, jit=False, triple=self.triple)
        try:
            if fmt == "o":
                return machine.emit_object(module)
            return machine.emit_assembly(module).encode()
        except RuntimeError as exc:
            raise CompileError(f"LLVM could not generate code for {self!r}: {exc}") from None

    # ------------------------------------------------------------------ lifetime
    def _close(self) -> None:
        # Functions already obtained hold the engine, so they stay valid until dropped.
        with self._lock:
            self._closed = True
            self._engine = self._library = None
            self._functions.clear()

    def __repr__(self) -> str:
        return f"Module[llvm]({self.name!r}, functions={list(self._own_function_names())})"


def llvm_module(
    source: str | bytes | Any,
    name: str | None = None,
    opt_level: int = 3,
    cpu: str | None = None,
    *,
    signatures: Mapping[str, str | Signature] | Iterable[str | Signature] | None = None,
    triple: str | None = None,
) -> LLVMModule:
    r"""Build a runnable, exportable module from LLVM IR.

    Parameters
    ----------
    source : str, bytes or llvmlite.ir.Module
        LLVM IR text, LLVM bitcode, or an IR module built with ``llvmlite.ir``.
    name : str, optional
        The module's name in messages and exports; the IR's module name by default.
    opt_level : int, default 3
        Optimization level, 0 to 3, for both the pass pipeline and code generation.
    cpu : str, optional
        Target CPU: this machine's (default), ``"generic"`` for portable code, or an LLVM CPU
        name such as ``"x86-64-v3"``.
    signatures : mapping or iterable of str or Signature, optional
        C prototypes that override what is read from the IR, e.g.
        ``["void scale(float *x, int64_t n)"]``. Needed only where the IR does not tell an
        array's dtype or signedness.
    triple : str, optional
        Build for another architecture, ``"aarch64-linux-gnu"``: the module cannot run here,
        and exports with that architecture's C compiler (``cpu`` then defaults to ``"generic"``).

    Returns
    -------
    LLVMModule
        A module of kind ``llvm``, mask RUNNABLE | DSO_EXPORTABLE.

    Raises
    ------
    CompileError
        If the IR does not parse or verify, targets another architecture, or LLVM fails; the
        message carries LLVM's own.

    Examples
    --------
    >>> m = llvm_module('define i64 @twice(i64 %x) {\n  %y = mul i64 %x, 2\n  ret i64 %y\n}')
    >>> m["twice"](21)
    42
    """
    if opt_level not in (0, 1, 2, 3):
        raise ValueError(f"opt_level must be 0, 1, 2 or 3, not {opt_level!r}")
    try:
        triple = normalize_triple(triple)
    except ValueError as exc:
        raise ValueError(f"llvm_module(): {exc}") from None
    bitcode, label, found, unsupported = optimize(source, name, opt_level, cpu, triple)
    given = _normalize_signatures(signatures)
    for fname, sig in given.items():
        if fname not in found and fname not in unsupported:
            raise CompileError(f"signatures= names {fname!r}, which {label!r} does not define")
        found[fname] = sig
        unsupported.pop(fname, None)
    return LLVMModule(bitcode, found, unsupported, name=label, cpu=cpu, opt_level=opt_level, triple=triple)


def optimize(
    source: str | bytes | Any, name: str | None, opt_level: int, cpu: str | None, triple: str | None = None
) -> tuple[bytes, str, dict[str, Signature], dict[str, str]]:
    """Parse, verify and optimize host IR for ``cpu`` (of ``triple``, None: this machine).

    Returns its bitcode and what its functions take.

    Returns the optimized bitcode, the module's name in messages, the signature read from the
    IR of every exported function that has one (arrays ``const`` where LLVM found them
    read-only), and why the others have none.
    """
    ensure_initialized()
    module = parse_ir(source, name)
    label = name or (module.name if module.name not in ("", "<string>") else "llvm")
    try:
        module.verify()
    except RuntimeError as exc:
        raise CompileError(f"invalid LLVM IR in {label!r}: {str(exc).strip()}") from None
    machine = target_machine(cpu, opt_level, jit=False, triple=triple)
    _set_target(module, label, machine, triple)
    found: dict[str, Signature] = {}
    unsupported: dict[str, str] = {}
    # A file kernpack wrote carries its signatures; other IR has them read from its types.
    carried = {} if not isinstance(source, str | bytes) else signatures_in(source, module, label)
    for fn in exported_functions(module):
        try:
            found[fn.name] = carried.get(fn.name) or infer_signature(fn)
        except UnsupportedSignature as exc:
            unsupported[fn.name] = str(exc)
    _optimize(module, opt_level, machine)
    # Which pointers are read-only is known only after FunctionAttrs ran: read it now.
    for fn in exported_functions(module):
        if fn.name in found:
            sig = found[fn.name]
            if fn.name in carried:
                continue  # its own signature says what it reads
            params = tuple(replace(p, const=ro) for p, ro in zip(sig.params, readonly_params(fn), strict=True))
            found[fn.name] = replace(sig, params=params)
    return module.as_bitcode(), label, found, unsupported


_SIGNATURES = "!kernpack.signatures"
_NODE = re.compile(r'^!(\d+) = !\{!"([^"]*)"\}$', re.M)


def with_signatures(text: str, signatures: Iterable[Signature]) -> str:
    """IR ``text`` with ``signatures`` as its named metadata ``!kernpack.signatures`` (replacing any)."""
    text = re.sub(rf"^{re.escape(_SIGNATURES)} = .*\n?", "", text, flags=re.M)
    first = 1 + max((int(n) for n in re.findall(r"!(\d+)\b", text)), default=-1)
    # Only what reads back: a signature inferred from unnamed arguments (%0) has no C names,
    # and is inferred again from the IR on load anyway.
    readable = [sig for sig in signatures if _readable(str(sig))]
    nodes = [f'!{first + k} = !{{!"{sig}"}}' for k, sig in enumerate(readable)]
    if not nodes:
        return text
    names = ", ".join(f"!{first + k}" for k in range(len(nodes)))
    return text.rstrip("\n") + f"\n\n{_SIGNATURES} = !{{{names}}}\n" + "\n".join(nodes) + "\n"


def _readable(text: str) -> bool:
    try:
        Signature.parse(text)
    except ArgumentError:
        return False
    return True


def signatures_in(source: str | bytes, module: Any, label: str) -> dict[str, Signature]:
    """The signatures a kernpack-written ``.ll`` or ``.bc`` carries, by function name.

    Raises
    ------
    CompileError
        If one of them is not a signature this kernpack reads.
    """
    if isinstance(source, str) and _SIGNATURES not in source:
        return {}  # the common case (IR text from elsewhere) costs no printing of the module
    text = source if isinstance(source, str) else str(module)
    found = re.search(rf"^{re.escape(_SIGNATURES)} = !\{{(.*)\}}$", text, re.M)
    if found is None:
        return {}
    nodes = dict(_NODE.findall(text))
    out = {}
    for ref in re.findall(r"!(\d+)", found.group(1)):
        try:
            signature = Signature.parse(nodes[ref])
        except (KeyError, ArgumentError) as exc:
            raise CompileError(f"{label!r}: its {_SIGNATURES} metadata is damaged ({exc})") from None
        out[signature.name] = signature
    return out


def jit_object(
    bitcode: bytes, cpu: str | None, opt_level: int, machine: Any = None, triple: str | None = None
) -> bytes:
    """Machine code of ``bitcode`` as an object file: for this process's JIT, or to link for ``triple``."""
    ensure_initialized()
    machine = machine or target_machine(cpu, opt_level, jit=triple is None, triple=triple)
    try:
        return machine.emit_object(_llvm().parse_bitcode(bitcode))
    except RuntimeError as exc:
        raise CompileError(f"LLVM could not generate code for {triple or 'this machine'}: {exc}") from None


def parse_ir(source: str | bytes | Any, name: str | None) -> Any:
    """LLVM IR text, bitcode or an ``llvmlite.ir`` module, parsed (not verified).

    Raises
    ------
    CompileError
        If it does not parse; the message names ``name`` and carries LLVM's words.
    """
    label = name or "llvm"
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data.startswith(_BITCODE_MAGIC):
            return parse_ir(data.decode("utf-8", errors="replace"), name)
        try:
            return _llvm().parse_bitcode(data)
        except RuntimeError as exc:
            raise CompileError(f"invalid LLVM bitcode in {label!r}: {str(exc).strip()}") from None
    if not isinstance(source, str):
        # An llvmlite.ir.Module (or anything whose str() is IR text).
        if type(source).__module__.startswith("llvmlite.ir"):
            source = str(source)
        else:
            raise TypeError(
                f"llvm_module() takes IR text, bitcode bytes or an llvmlite.ir.Module, not {type(source).__name__}"
            )
    try:
        module = _llvm().parse_assembly(source)
    except RuntimeError as exc:
        raise CompileError(f"invalid LLVM IR in {label!r}: {str(exc).strip()}") from None
    if name:
        module.name = name
    return module


def _set_target(module: Any, label: str, machine: Any, triple: str | None) -> None:
    wanted = triple or _llvm().get_process_triple()
    given = module.triple
    # llvmlite.ir writes "unknown-unknown-unknown" when no triple was chosen: that is no triple.
    if given and not given.startswith("unknown") and given.split("-")[0] != wanted.split("-")[0]:
        raise CompileError(
            f"{label!r} targets {given!r}, but llvm_module() compiles it for {wanted}; remove the target "
            "triple, pass triple= to build it for that architecture, or build it for a device with kp.build()"
        )
    module.triple = wanted
    module.data_layout = str(machine.target_data)


def _optimize(module: Any, opt_level: int, machine: Any) -> None:
    builder = _llvm().create_pass_builder(machine, _llvm().create_pipeline_tuning_options(speed_level=opt_level))
    try:
        builder.getModulePassManager().run(module, builder)
        if opt_level == 0:
            # The -O0 pipeline infers nothing; this pass alone marks read-only pointers.
            attrs = _llvm().create_new_module_pass_manager()
            attrs.add_post_order_function_attributes_pass()
            attrs.run(module, builder)
    finally:
        builder.close()


def _normalize_signatures(
    signatures: Mapping[str, str | Signature] | Iterable[str | Signature] | None,
) -> dict[str, Signature]:
    if signatures is None:
        return {}
    items = signatures.values() if isinstance(signatures, Mapping) else signatures
    out = {}
    for item in items:
        sig = item if isinstance(item, Signature) else Signature.parse(item)
        out[sig.name] = sig
    return out


@register_file_loader(".ll")
def _load_ll(path: str) -> LLVMModule:
    with open(path, encoding="utf-8", errors="replace") as f:
        return llvm_module(f.read(), name=os.path.basename(path))


@register_file_loader(".bc")
def _load_bc(path: str) -> LLVMModule:
    with open(path, "rb") as f:
        return llvm_module(f.read(), name=os.path.basename(path))
