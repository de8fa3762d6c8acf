"""File locks (envcore.locks) in a folder several users share: the lock files' permissions, and another
user's lock file that this one cannot write."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from envcore.errors import LockTimeout
from envcore.locks import file_lock

LOCKER = """
import os, sys
os.umask(int(sys.argv[2], 8))
from envcore.locks import file_lock
with file_lock(sys.argv[1], 5):
    pass
"""


@pytest.mark.parametrize(("umask", "mode"), [("022", 0o644), ("002", 0o664)])
def test_lock_files_get_the_permissions_of_files_the_user_creates(
    tmp_path: Path, umask: str, mode: int
) -> None:
    lock = tmp_path / "locks" / "k.lock"
    subprocess.run([sys.executable, "-c", LOCKER, str(lock), umask], check=True, timeout=60)
    assert lock.stat().st_mode & 0o777 == mode


def test_a_lock_file_this_user_cannot_write_still_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for another user's 0644 lock file (the tests run as root, whom permissions do not stop, so the
    refusal is the kernel's answer replayed): the lock is taken through a read-only descriptor, and holds."""
    lock = tmp_path / "k.lock"
    lock.write_text("pid 1 on elsewhere\n")
    real_open = os.open

    def refusing_write(path: str, flags: int, *args: int) -> int:
        if os.fspath(path) == str(lock) and flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing_write)
    with file_lock(lock, 5):
        assert lock.read_text() == "pid 1 on elsewhere\n"  # the holder's record is left as it was
        other = subprocess.run(  # another process cannot take it meanwhile
            [
                sys.executable,
                "-c",
                f"from envcore.locks import file_lock\nwith file_lock({str(lock)!r}, 0.2): pass",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert other.returncode != 0 and LockTimeout.__name__ in other.stderr, other.stderr
    with file_lock(lock, 5, shared=True):
        pass
