"""The C source of ``PyInit_<name>``, which lets ``import <name>`` load an exported library.

Python imports ``<name>.so`` by calling ``PyInit_<name>``. This one uses multi-phase
initialization: it returns a module definition whose one exec slot asks
``kernpack.runtime.extension.populate`` to fill the new module in. It is written without
``Python.h`` (no headers needed at export) against CPython's stable ABI, and every Python symbol
it uses is a weak reference: a C program that ``dlopen``s the library, with no Python in its
process, loads it as before and never calls this function.
"""

from __future__ import annotations

import os

__all__ = ["module_name", "pyinit_source"]

_SOURCE = r"""/* Written by kernpack: `import @NAME@` loads this library (kernpack.runtime.extension). */
typedef struct _object PyObject;
typedef long kp_ssize_t;
typedef struct { kp_ssize_t refcnt; void *type; } kp_head;
typedef struct { kp_head base; PyObject *(*init)(void); kp_ssize_t index; PyObject *copy; } kp_def_base;
typedef struct { int slot; void *value; } kp_slot;
typedef struct {
    kp_def_base base; const char *name; const char *doc; kp_ssize_t size;
    void *methods; kp_slot *slots; void *traverse; void *clear; void *free;
} kp_def;

extern PyObject *PyModuleDef_Init(void *) __attribute__((weak));
extern PyObject *PyImport_ImportModule(const char *) __attribute__((weak));
extern PyObject *PyObject_CallMethod(PyObject *, const char *, const char *, ...) __attribute__((weak));
extern void Py_DecRef(PyObject *) __attribute__((weak));

static int kp_exec(PyObject *module) {
    PyObject *extension = PyImport_ImportModule("kernpack.runtime.extension");
    if (!extension) return -1;
    PyObject *done = PyObject_CallMethod(extension, "populate", "O", module);
    Py_DecRef(extension);
    if (!done) return -1;
    Py_DecRef(done);
    return 0;
}

/* Py_mod_exec is slot 2. The definition is static: a reference count that never reaches 0. */
static kp_slot kp_slots[] = {{2, (void *)kp_exec}, {0, 0}};
static kp_def kp_module = {{{1L << 30, 0}, 0, 0, 0}, "@NAME@", "kernpack library @NAME@", 0, 0, kp_slots, 0, 0, 0};

__attribute__((visibility("default"))) PyObject *PyInit_@NAME@(void) {
    return PyModuleDef_Init(&kp_module);
}
"""


def module_name(library: str) -> str | None:
    """The name ``import`` finds a library under (``lib.so`` -> ``lib``), or None if it has none.

    The part before the first dot of the file name, as CPython reads ``lib.cpython-311-...so``;
    a name that is not an identifier (``my-lib.so``) cannot be imported.
    """
    stem = os.path.basename(library).split(".", 1)[0]
    return stem if stem.isidentifier() and stem.isascii() else None


def pyinit_source(name: str) -> str:
    """The C source of ``PyInit_<name>`` (``name`` an ASCII identifier)."""
    if not (name.isidentifier() and name.isascii()):
        raise ValueError(f"{name!r} is not a module name")
    return _SOURCE.replace("@NAME@", name)
