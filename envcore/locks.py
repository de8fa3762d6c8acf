"""Cross-process locks on local files (``fcntl.flock``), bounded by ``METAFLOW_CONDA_LOCK_TIMEOUT``.

The kernel drops an ``flock`` when its holder dies, even by SIGKILL, so a crashed process never blocks
others. The lock file records the holder's pid and host, for the message shown while waiting.
"""

from __future__ import annotations

import fcntl
import os
import time

from envcore import TYPE_CHECKING
from envcore.errors import LockTimeout

if TYPE_CHECKING:
    from collections.abc import Callable


def _holder(path: str | os.PathLike[str]) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() or "unknown"
    except OSError:
        return "unknown"


def file_lock(
    path: str | os.PathLike[str],
    timeout: float,
    *,
    shared: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> FileLock:
    """Hold an exclusive (or shared) lock on ``path`` for the duration of a ``with`` block."""
    return FileLock(path, timeout, shared=shared, on_wait=on_wait)


class FileLock:
    """The context manager of :func:`file_lock` (a class, not ``contextlib``: the warm ``envcore create``
    takes a lock before anything else imports contextlib and collections)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        timeout: float,
        *,
        shared: bool = False,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.path, self.timeout, self.shared, self.on_wait = path, timeout, shared, on_wait
        self._fd: int | None = None

    def __enter__(self) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileNotFoundError:  # first lock in this directory
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, flags, 0o644)
        try:
            self._acquire(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing releases the lock

    def _acquire(self, fd: int) -> None:
        path, timeout = self.path, self.timeout
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
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
                if self.on_wait and now >= next_notice:
                    self.on_wait(f"Waiting for the lock {path} (held by {_holder(path)})")
                    next_notice = now + 30
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        if not self.shared:
            holder = f"pid {os.getpid()} on {os.uname().nodename}\n".encode()
            if os.pread(fd, len(holder) + 1, 0) != holder:  # rewriting the same text would only cost I/O
                os.ftruncate(fd, 0)
                os.pwrite(fd, holder, 0)
