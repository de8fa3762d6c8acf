"""Cross-process locks on local files (``fcntl.flock``), bounded by ``METAFLOW_CONDA_LOCK_TIMEOUT``.

The kernel drops an ``flock`` when its holder dies, even by SIGKILL, so a crashed process never blocks
others. The lock file records the holder's pid and host, for the message shown while waiting.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from envcore.errors import LockTimeout


def _holder(path: str | os.PathLike[str]) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() or "unknown"
    except OSError:
        return "unknown"


@contextmanager
def file_lock(
    path: str | os.PathLike[str],
    timeout: float,
    *,
    shared: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold an exclusive (or shared) lock on ``path`` for the duration of the block."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:  # first lock in this directory
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, flags, 0o644)
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        deadline = time.monotonic() + timeout
        delay, next_notice = 0.005, time.monotonic() + 10
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now >= deadline:
                    raise LockTimeout(
                        f"Timed out after {timeout:.0f} s waiting for the lock {path} (held by {_holder(path)}). If "
                        "that process is gone, retry; raise METAFLOW_CONDA_LOCK_TIMEOUT to wait longer."
                    ) from None
                if on_wait and now >= next_notice:
                    on_wait(f"Waiting for the lock {path} (held by {_holder(path)})")
                    next_notice = now + 30
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        if not shared:
            holder = f"pid {os.getpid()} on {os.uname().nodename}\n".encode()
            if os.pread(fd, len(holder) + 1, 0) != holder:  # rewriting the same text would only cost I/O
                os.ftruncate(fd, 0)
                os.pwrite(fd, holder, 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
