"""A serializable, runnable kind for export tests, until the device kinds exist.

Importing this module registers its loader; fresh processes that load libraries carrying it
import it first (or deliberately do not, to test a kind with no loader).
"""

from __future__ import annotations

import kernpack as kp
from kernpack import ModulePropertyMask as M


class BlobKind(kp.Module):
    """Holds a name and a constant; its function ``<name>`` returns the constant."""

    kind = "test_blob"
    property_mask = M.BINARY_SERIALIZABLE | M.RUNNABLE

    def __init__(self, name: str, value: int) -> None:
        super().__init__()
        self.name, self.value = name, value

    def _get_own_function(self, name):
        return (lambda: self.value) if name == self.name else None

    def _own_function_names(self):
        return (self.name,)

    def _save_to_bytes(self):
        return f"{self.name}={self.value}".encode()


@kp.register_loader("test_blob")
def _load(data):
    name, value = bytes(data).decode().split("=")
    return BlobKind(name, int(value))


@kp.register_describer("test_blob")
def _describe(payload):
    name, value = bytes(payload).decode().split("=")
    return [{"name": name, "returns": int(value)}]


class Orphan(BlobKind):
    """Serializable, but no loader is registered for its kind."""

    kind = "test_orphan"


class BigKind(kp.Module):
    """A payload of ``count`` consecutive uint64 values (0, 1, 2, ...): for blobs over 2 GiB."""

    kind = "test_big"
    property_mask = M.BINARY_SERIALIZABLE | M.RUNNABLE

    def __init__(self, data) -> None:
        super().__init__()
        self.data = data

    def _get_own_function(self, name):
        return (lambda: self.data) if name == "data" else None

    def _own_function_names(self):
        return ("data",)

    def _save_to_bytes(self):
        return self.data


@kp.register_loader("test_big")
def _load_big(data):
    return BigKind(data)
