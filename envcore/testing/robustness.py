"""Helpers for a plugin's robustness tests (the in-tree stores use them): a listener that never answers, a
file-size limit, the real ``envcore`` command isolated from the machine's settings, and the check that a
failure is one clear paragraph carrying none of the given secrets."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from envcore.testing import kit_needs_pytest

try:
    import pytest
except ImportError as missing:  # the kit is a pytest plugin and pytest test classes
    raise ImportError(kit_needs_pytest(__name__)) from missing

from envcore.errors import StorageError
from envcore.types import Store

__all__ = [
    "ENVCORE",
    "assert_clear_and_secret_free",
    "envcore",
    "file_size_limit",
    "silent_endpoint",
    "stat_at_a_silent_endpoint",
]

ENVCORE = str(Path(sys.executable).with_name("envcore"))


@contextmanager
def silent_endpoint() -> Iterator[int]:
    """A listener on 127.0.0.1 that accepts every connection and never answers; yields its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def stat_at_a_silent_endpoint(open_store: Callable[[int], Store]) -> tuple[str, float, int]:
    """``stat`` of a key in the store ``open_store(port)`` opens at a :func:`silent_endpoint`: it must fail with
    a StorageError; its message, the seconds it took, and the port."""
    with silent_endpoint() as port:
        store = open_store(port)
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            store.stat("x")
        return info.value.message, time.monotonic() - started, port


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """``ulimit -f``: writing past ``limit`` bytes fails with EFBIG (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def envcore(work: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real ``envcore`` command, isolated in ``work``, with ``env`` only (no ambient cloud settings)."""
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(work),
        "METAFLOW_HOME": str(work / "mf"),
        "METAFLOW_ENVCORE_CACHE_DIR": str(work / "cache"),
        "PIP_CONFIG_FILE": os.devnull,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    return subprocess.run(
        [ENVCORE, *args], env={**base, **env}, capture_output=True, text=True, timeout=120, check=False
    )


def assert_clear_and_secret_free(
    done: subprocess.CompletedProcess[str], secrets: list[str], *phrases: str
) -> str:
    """One ``envcore:`` paragraph, no traceback, the phrases said, and none of the secrets anywhere."""
    shown = done.stdout + done.stderr
    for secret in secrets:
        assert secret not in shown, f"{secret!r} leaked: {shown}"
    message = " ".join(done.stderr.split())
    assert done.returncode != 0 and "Traceback" not in shown and message.startswith("envcore: "), shown
    assert all(p in message for p in phrases), message
    return message
