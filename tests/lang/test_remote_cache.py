"""The shared cache tier on a real Redis: two "machines" share builds; a Redis that fails never fails a build.

Each test starts its own ``redis-server`` (from Debian, installed by scripts/test) on a free
loopback port, and stops it. A "machine" is a process with a local cache directory of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from benchmarks import manykernels

import kernpack as kp
from kernpack.driver import cache
from kernpack.driver.resp import Connection
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]

# A kernel file and what a process does with it. "forbid" makes every code generator raise,
# so that a build that succeeds there compiled nothing: all came from a cache.
PROGRAM = """
import json, sys, warnings, numpy as np, kernpack as kp
caught = []  # every warning of the process, from its first line
warnings.simplefilter("always")
warnings.showwarning = lambda message, category, *args, **kwargs: caught.append((message, category))

@kp.kernel
def shared_axpy(a: kp.f32, x: kp.f32[:], out: kp.f32[:]):
    for i in kp.grid(x.shape[0]):
        out[i] = a * x[i] + kp.f32(0.25)

if sys.argv[1] == "forbid":
    from kernpack.driver import isolate, llvm
    from kernpack.driver.targets import cpu  # not opencl or vulkan: they import llvmlite.ir
    def boom(*args, **kwargs):
        raise AssertionError("code generation ran despite a cache hit")
    cpu.optimize = cpu.jit_object = llvm.optimize = llvm.jit_object = boom
    isolate._run = boom  # every device target's code generation goes through it
x = np.arange(6, dtype=np.float32); out = np.zeros_like(x)
shared_axpy(np.float32(2), x, out)   # the first call: the kernel index, then the code
lib = kp.build([shared_axpy], cpu="generic", devices=("opencl", "vulkan"))
device = np.zeros_like(x)
lib.device_module("vulkan")["shared_axpy"](np.float32(2), x, device)
print(json.dumps({"out": out.tolist(), "vulkan": device.tolist(), "stats": kp.cache_info()["process"],
                  "warnings": [str(m) for m, c in caught if issubclass(c, kp.CacheWarning)],
                  "llvm": "llvmlite.binding" in sys.modules}))
"""
EXPECTED = [0.25, 2.25, 4.25, 6.25, 8.25, 10.25]
KEY = "the team's secret"  # every "machine" here signs and verifies with it, unless a test says otherwise


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A redis-server of the test's own, on a loopback port, with no persistence."""

    def __init__(self, directory: Path) -> None:
        binary = require_tool(shutil.which("redis-server"), "redis-server", "apt-get install redis-server")
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.client = Connection(self.url, timeout=5)  # kernpack's own client, to poke at it
        for _ in range(100):
            try:
                self.client.command("PING")
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path):
    server = Redis(tmp_path)
    yield server
    server.stop()


def machine(tmp_path: Path, name: str, url: str, mode: str = "build", **env: str | None) -> dict:
    """Run PROGRAM as a process with its own local cache (another "machine") and this shared tier."""
    program = tmp_path / "shared_program.py"
    program.write_text(textwrap.dedent(PROGRAM))
    environment = {**os.environ, "KERNPACK_CACHE_DIR": str(tmp_path / f"cache-{name}"), "KERNPACK_CACHE_URL": url,
                   "KERNPACK_CACHE_KEY": KEY, **env}  # fmt: skip
    for variable, value in env.items():
        if value is None:
            environment.pop(variable)
    run = subprocess.run([sys.executable, str(program), mode], capture_output=True, text=True, env=environment,
                         cwd=ROOT, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_second_machine_builds_nothing(tmp_path, redis_server):
    first = machine(tmp_path, "a", redis_server.url)
    assert first["out"] == EXPECTED and first["vulkan"] == EXPECTED and first["warnings"] == []
    assert first["stats"]["misses"] > 0 and first["stats"]["remote_hits"] == 0
    second = machine(tmp_path, "b", redis_server.url, "forbid")
    assert second["out"] == EXPECTED and second["vulkan"] == EXPECTED and second["warnings"] == []
    assert second["stats"]["misses"] == 0 and second["stats"]["remote_hits"] >= 3
    assert not second["llvm"]  # the CPU code came as a shared object: LLVM never loaded in that process
    # What came from Redis is kept locally: a third run of machine b asks Redis nothing.
    redis_server.stop()
    third = machine(tmp_path, "b", redis_server.url, "forbid")
    assert third["stats"]["remote_hits"] == 0 and third["stats"]["misses"] == 0 and third["warnings"] == []


@pytest.mark.parametrize("mode", ["signed", "trusted unsigned"])
def test_damaged_and_foreign_entries_are_rebuilt_never_loaded(tmp_path, redis_server, mode):
    trust = {} if mode == "signed" else {"KERNPACK_CACHE_KEY": None, "KERNPACK_CACHE_TRUST_UNSIGNED": "1"}
    machine(tmp_path, "a", redis_server.url, **trust)
    redis = redis_server.client
    keys = [k for k in redis.command("KEYS", "kernpack:*") if not k.endswith(b".so")]
    assert len(keys) >= 3
    values = {k: redis.command("GET", k) for k in keys}
    damaged, *others = keys
    redis.command("SET", damaged, values[damaged][:-1] + bytes([values[damaged][-1] ^ 1]))
    for k, v in zip(others, [*others[1:], others[0]], strict=True):
        redis.command("SET", k, values[v])  # every other entry under another's key
    for k in redis.command("KEYS", "kernpack:*.so"):  # and every shared object damaged
        value = redis.command("GET", k)
        redis.command("SET", k, value[:100] + bytes([value[100] ^ 0xFF]) + value[101:])
    second = machine(tmp_path, "b", redis_server.url, **trust)
    assert second["out"] == EXPECTED and second["vulkan"] == EXPECTED
    assert second["stats"]["remote_hits"] == 0
    # Signed, the tag catches all of it; unsigned (trusted), the checksum over key and content.
    counted, said = ("unverified", "not signed by any of this process's keys") if mode == "signed" else (
        "rejected", "failed its checksum")  # fmt: skip
    assert second["stats"][counted] >= 2
    assert len(second["warnings"]) == 1 and said in second["warnings"][0]


def test_a_redis_that_is_down_or_stops_warns_once_and_builds_locally(tmp_path, redis_server):
    redis_server.stop()
    started = time.perf_counter()
    down = machine(tmp_path, "a", redis_server.url, KERNPACK_CACHE_TIMEOUT="0.5")
    assert down["out"] == EXPECTED and down["vulkan"] == EXPECTED
    assert len(down["warnings"]) == 1 and "building without it for the rest of this process" in down["warnings"][0]
    assert time.perf_counter() - started < 60


def test_a_redis_that_hangs_costs_one_timeout(tmp_path, redis_server):
    redis_server.client.command("CLIENT", "PAUSE", "20000", "ALL")  # answers nothing for 20 s
    started = time.perf_counter()
    slow = machine(tmp_path, "a", redis_server.url, KERNPACK_CACHE_TIMEOUT="0.3")
    took = time.perf_counter() - started
    assert slow["out"] == EXPECTED and len(slow["warnings"]) == 1 and "timed out" in slow["warnings"][0]
    assert took < 15, took  # one 0.3 s timeout, then local builds: never the 20 s pause


def test_a_full_redis_is_read_but_not_written(tmp_path, redis_server):
    redis_server.client.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
    redis_server.client.command("CONFIG", "SET", "maxmemory", "1")
    full = machine(tmp_path, "a", redis_server.url)
    assert full["out"] == EXPECTED
    assert len(full["warnings"]) == 1 and "refuses writes" in full["warnings"][0]


def test_an_unwritable_local_cache_still_builds_and_shares(tmp_path, redis_server):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    first = machine(tmp_path, "a", redis_server.url, KERNPACK_CACHE_DIR=str(blocker / "cache"))
    assert first["out"] == EXPECTED and len(first["warnings"]) == 1
    assert "cannot be written" in first["warnings"][0]
    second = machine(tmp_path, "b", redis_server.url, "forbid")  # what the first stored in Redis
    assert second["out"] == EXPECTED and second["stats"]["misses"] == 0


def test_a_full_local_disk_is_a_warning_not_a_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNPACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_warned", set())

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.os, "replace", no_space)
    with pytest.warns(kp.CacheWarning, match="cannot be written .No space left on device"):
        cache.store("ab" * 32, {"part": b"data"})
    assert cache.load("ab" * 32) is None and not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_the_local_cache_is_bounded_least_recently_used_first(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNPACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KERNPACK_CACHE_MAX_BYTES", "10K")
    keys = [f"{i:02x}" * 32 for i in range(7)]  # 2 KB each: five fit in 10 KiB
    for n, key in enumerate(keys[:4]):
        cache.store(key, {"part": bytes(2000)})
        os.utime(cache._entry_path(key), (1000 + n, 1000 + n))  # stored in this order
    assert cache.load(keys[0]) is not None  # used again: now the most recent
    for key in keys[4:]:
        cache.store(key, {"part": bytes(2000)})
    present = [k for k in keys if cache._entry_path(k).exists()]
    assert present == [keys[0], *keys[4:]]  # the oldest went, not the one used again
    assert kp.cache_info()["local"]["bytes"] <= 10 * 1024
    with pytest.raises(ValueError, match="KERNPACK_CACHE_MAX_BYTES='lots'"):
        monkeypatch.setenv("KERNPACK_CACHE_MAX_BYTES", "lots")
        cache.store(keys[0], {"part": b""})


def test_configure_cache_in_code_reaches_build_workers(tmp_path, redis_server, monkeypatch):
    monkeypatch.setenv("KERNPACK_CACHE_DIR", str(tmp_path / "cache"))
    kp.configure_cache(redis_server.url, timeout=2, keys=[KEY])
    try:
        kernels = manykernels.kernels(tmp_path, 20, "configured_many")
        kp.build(kernels, "vulkan", jobs=2)  # stored by the workers
        assert len(redis_server.client.command("KEYS", "kernpack:*")) >= 20
        assert kp.cache_info()["remote"]["url"] == redis_server.url
    finally:
        kp.configure_cache(None)
        cache._config.from_env = True


def test_cache_info_and_clear_on_the_command_line(tmp_path):
    env = {**os.environ, "KERNPACK_CACHE_DIR": str(tmp_path / "cache"), "KERNPACK_CACHE_URL": "redis://:pw@h:1/0"}
    cli = [sys.executable, "-m", "kernpack.cli", "cache"]
    cache_dir = tmp_path / "cache" / "ab"
    cache_dir.mkdir(parents=True)
    (cache_dir / ("ab" * 32)).write_bytes(b"x" * 100)
    shown = subprocess.run([*cli, "info"], capture_output=True, text=True, env=env, check=True).stdout
    assert "1 entries, 100 B of at most 2.0 GiB" in shown and "redis://:***@h:1/0" in shown and "pw" not in shown
    info = json.loads(subprocess.run([*cli, "info", "--json"], capture_output=True, text=True, env=env).stdout)
    assert info["local"]["entries"] == 1 and info["remote"]["url"] == "redis://:***@h:1/0"
    cleared = subprocess.run([*cli, "clear"], capture_output=True, text=True, env=env, check=True).stdout
    assert cleared.startswith("removed 1 files") and not any(cache_dir.iterdir())


def test_redis_stopped_mid_build_warns_once_and_the_build_goes_on(tmp_path, redis_server, monkeypatch):
    monkeypatch.setenv("KERNPACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_warned", set())
    kp.configure_cache(redis_server.url, timeout=0.5, keys=[KEY])
    try:
        kernels = manykernels.kernels(tmp_path, 6, "stopped_many")
        real = cache._Redis.put
        stored = []

        def put_then_stop(self, key, value):  # the server goes away after the build's first store
            real(self, key, value)
            stored.append(key)
            if len(stored) == 1:
                redis_server.stop()

        monkeypatch.setattr(cache._Redis, "put", put_then_stop)
        with pytest.warns(kp.CacheWarning, match="failed") as caught:
            built = kp.build(kernels, "vulkan", jobs=1)
        assert sorted(built.function_names()) == sorted(k.name for k in kernels)
        assert len([w for w in caught if issubclass(w.category, kp.CacheWarning)]) == 1
        assert kp.cache_info()["remote"]["state"] == "failed in this process"
    finally:
        kp.configure_cache(None)
        cache._config.from_env = True


# ---------------------------------------------------------------------- trust (signed entries)
def test_a_forged_entry_is_rejected_and_rebuilt(tmp_path, redis_server):
    machine(tmp_path, "a", redis_server.url)
    redis = redis_server.client
    for k in redis.command("KEYS", "kernpack:*"):
        value = redis.command("GET", k)
        assert value.startswith(cache._SIGNED)
        # Someone who can write to Redis but has no key: the right entry key, a tag of their own.
        forged = cache._SIGNED + bytes(32) + value[len(cache._SIGNED) + 32 :]
        redis.command("SET", k, forged)
    second = machine(tmp_path, "b", redis_server.url)
    assert second["out"] == EXPECTED and second["vulkan"] == EXPECTED
    assert second["stats"]["remote_hits"] == 0 and second["stats"]["unverified"] >= 3
    assert len(second["warnings"]) == 1 and "was not loaded, and was rebuilt here" in second["warnings"][0]


def test_another_keys_entries_are_not_loaded_and_rotation_keeps_old_ones_readable(tmp_path, redis_server):
    machine(tmp_path, "old", redis_server.url, KERNPACK_CACHE_KEY="old key")
    # Rotation: the new key signs, the old one still verifies, so nothing is rebuilt.
    keys = tmp_path / "keys"
    keys.write_text("# the first key signs; every key verifies\nnew key\nold key\n")
    rotated = machine(tmp_path, "rotated", redis_server.url, "forbid", KERNPACK_CACHE_KEY=None,
                      KERNPACK_CACHE_KEY_FILE=str(keys))  # fmt: skip
    assert rotated["stats"]["misses"] == 0 and rotated["stats"]["unverified"] == 0 and rotated["warnings"] == []
    stranger = machine(tmp_path, "stranger", redis_server.url, KERNPACK_CACHE_KEY="someone else's key")
    assert stranger["out"] == EXPECTED and stranger["stats"]["remote_hits"] == 0
    assert stranger["stats"]["unverified"] >= 3 and len(stranger["warnings"]) == 1


def test_without_a_key_the_shared_tier_is_used_only_when_trusted(tmp_path, redis_server):
    unkeyed = machine(tmp_path, "a", redis_server.url, KERNPACK_CACHE_KEY=None)
    assert unkeyed["out"] == EXPECTED and len(unkeyed["warnings"]) == 1
    assert "is not used: its entries are machine code" in unkeyed["warnings"][0]
    assert "KERNPACK_CACHE_TRUST_UNSIGNED=1" in unkeyed["warnings"][0]
    assert redis_server.client.command("KEYS", "kernpack:*") == []
    trusted = machine(tmp_path, "b", redis_server.url, KERNPACK_CACHE_KEY=None, KERNPACK_CACHE_TRUST_UNSIGNED="1")
    assert trusted["warnings"] == [] and redis_server.client.command("KEYS", "kernpack:*")
    again = machine(tmp_path, "c", redis_server.url, "forbid", KERNPACK_CACHE_KEY=None,
                    KERNPACK_CACHE_TRUST_UNSIGNED="1")  # fmt: skip
    assert again["stats"]["misses"] == 0


def test_a_cache_directory_others_can_write_to_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    monkeypatch.setenv("KERNPACK_CACHE_DIR", str(shared))
    monkeypatch.setattr(cache, "_warned", set())
    cache.store("cd" * 32, {"part": b"data"})
    assert cache.load("cd" * 32) is not None
    shared.chmod(0o777)  # as /tmp is: anyone could have put an entry here
    with pytest.warns(kp.CacheWarning, match=r"is not used: others can write to it \(mode 777\).*chmod 700"):
        assert cache.load("cd" * 32) is None
    cache.store("ef" * 32, {"part": b"data"})
    assert not cache._entry_path("ef" * 32).exists()
    shared.chmod(0o700)
    assert cache.load("cd" * 32) is not None


def test_the_cache_kernpack_creates_is_owner_only(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNPACK_CACHE_DIR", str(tmp_path / "new" / "cache"))
    cache.store("ab" * 32, {"part": b"data"})
    path = cache._entry_path("ab" * 32)
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    assert (tmp_path / "new" / "cache").stat().st_mode & 0o777 == 0o700


def test_the_signature_is_rfc_2104_hmac_sha256_over_key_and_content():
    import hashlib
    import hmac

    for secret in (b"short", b"k" * 100):  # a key longer than SHA-256's block is hashed first
        message = (3).to_bytes(8, "little") + b"abc" + b"entry bytes" * 50
        assert cache._hmac(secret, "abc", b"entry bytes" * 50) == hmac.new(secret, message, hashlib.sha256).digest()
