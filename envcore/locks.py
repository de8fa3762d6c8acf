"""Cross-process locks on local files (``fcntl.flock``), bounded by ``METAFLOW_CONDA_LOCK_TIMEOUT``.

The kernel drops an ``flock`` when its holder dies, even by SIGKILL, so a crashed process never blocks
others. The lock file records the holder's pid and host, for the message shown while waiting. Lock files are
made as any file of the user (0666 less the umask); one another user made and this one cannot write (a store
folder a team shares) is locked through a read-only descriptor, which ``flock`` accepts, without the record.
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


def _open(path: str | os.PathLike[str]) -> tuple[int, bool]:
    """A descriptor of the lock file (made when missing), and whether it can record the holder."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666), True
    except PermissionError:  # another user's lock file: flock needs no write access
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC), False


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
        try:
            fd, writable = _open(self.path)
        except FileNotFoundError:  # first lock in this directory
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd, writable = _open(self.path)
        try:
            self._acquire(fd, record=writable and not self.shared)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing releases the lock

    def _acquire(self, fd: int, *, record: bool) -> None:
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
        if record:
            holder = f"pid {os.getpid()} on {os.uname().nodename}\n".encode()
            if os.pread(fd, len(holder) + 1, 0) != holder:  # rewriting the same text would only cost I/O
                os.ftruncate(fd, 0)
                os.pwrite(fd, holder, 0)
