"""The local package cache: a file is used as verified only as its stamp describes it (else it is hashed again),
and a damaged copy is set aside without ever taking a verified one another process put in its place."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from envcore import fetch
from envcore.errors import EnvcoreWarning
from envcore.fetch import PackageCache
from envcore.types import PackageFile

GOOD = b"the package's bytes" * 1000
FILE = PackageFile(
    url_format=".whl", url="https://h.example/x-1.0-py3-none-any.whl", sha256=hashlib.sha256(GOOD).hexdigest()
)
NAME = "x-1.0-py3-none-any.whl"

SET_ASIDE = r"^The package cache file .* is damaged \(sha256 .*\): set aside in .*; fetching it again\.$"


def _damage(cache: PackageCache) -> Path:
    path = cache.path(FILE, NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(GOOD[:-1] + b"!")
    return path


def _put_good(cache: PackageCache) -> Path:
    tmp = cache.temp()
    tmp.write_bytes(GOOD)
    return cache.put_verified(tmp, FILE, NAME, "the test")


def test_a_damaged_copy_is_quarantined_and_fetched_again(tmp_path: Path) -> None:
    said: list[str] = []
    cache = PackageCache(tmp_path, say=said.append)
    path = _damage(cache)
    assert cache.get(FILE, NAME, verify=True) is None
    (aside,) = (tmp_path / "quarantine").iterdir()
    actual = hashlib.sha256(GOOD[:-1] + b"!").hexdigest()
    assert aside.name == f"{actual}-{NAME}"
    assert said == [
        f"The package cache file {path} is damaged (sha256 {actual[:12]}... where the environment records "
        f"{FILE.sha256[:12]}...): set aside in {aside}; fetching it again."
    ]
    assert _put_good(cache).read_bytes() == GOOD
    assert cache.get(FILE, NAME, verify=True) == cache.path(FILE, NAME)


@pytest.mark.parametrize("how", ["same size", "truncated", "replaced", "put there by something else"])
def test_a_copy_changed_since_it_was_verified_is_hashed_again_without_verify(
    tmp_path: Path, how: str
) -> None:
    """A file of the right name whose size is not recorded (wheels) or is unchanged was taken as verified by
    its presence alone, and installed: a wheel edited in the package cache reached the environment."""
    cache = PackageCache(tmp_path)
    if how == "put there by something else":
        path = _damage(cache)
    else:
        path = _put_good(cache)
        os.utime(path, ns=(10**9, 10**9))  # verified long ago (an edit within the file system's clock tick of
        assert cache.get(FILE, NAME) == path  # the stamp is not seen: changes come months later, not in 4 ms)
    if how == "same size":
        with open(path, "r+b") as fh:
            fh.seek(10)
            fh.write(b"!")
    elif how == "truncated":
        os.truncate(path, 100)
    elif how == "replaced":
        path.unlink()
        path.write_bytes(GOOD[:-1] + b"!")
    with pytest.warns(EnvcoreWarning, match=SET_ASIDE) as told:  # said, with no progress of the caller's
        assert cache.get(FILE, NAME) is None and not path.exists()
    assert len(told) == 1
    assert [p.name.endswith(NAME) for p in (tmp_path / "quarantine").iterdir()] == [True]


def test_a_verified_copy_is_not_hashed_again_and_an_older_cache_is_hashed_once(tmp_path: Path) -> None:
    """The stamp is what spares the hash: bits flipped on disk behind the file system's back (the stamp still
    matches) are found by --verify only. A copy without a stamp (a package cache of an earlier envcore) is
    hashed, and stamped when it matches."""
    cache = PackageCache(tmp_path)
    path = _put_good(cache)
    stamp = path.with_name(path.name + ".verified")
    signature = stamp.read_text()
    stamp.unlink()
    assert cache.get(FILE, NAME) == path and stamp.read_text() == signature  # hashed, found good, stamped
    os.chmod(path, 0o600)  # changes the change time only (contents unchanged): hashed again, still good
    assert cache.get(FILE, NAME) == path and stamp.read_text() != signature
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    fetch._write_stamp(path, path.stat())  # as if the stamp had been written after the damage
    assert cache.get(FILE, NAME) == path
    with pytest.warns(EnvcoreWarning, match=SET_ASIDE):
        assert cache.get(FILE, NAME, verify=True) is None and not path.exists()


def test_a_verified_copy_put_in_place_meanwhile_is_never_set_aside(tmp_path: Path) -> None:
    """A process that hashed the damaged copy sets aside only that file: another process may have replaced it
    with a verified copy since (and another one may have set it aside already)."""
    said: list[str] = []
    cache = PackageCache(tmp_path, say=said.append)
    damaged = _damage(cache).stat()
    _put_good(cache)  # another process: the damaged copy set aside, a verified one fetched and put in place
    hashed = (damaged.st_dev, damaged.st_ino)
    cache._set_aside(cache.path(FILE, NAME), hashed, "0" * 64, "damaged")
    assert cache.path(FILE, NAME).read_bytes() == GOOD
    cache.path(FILE, NAME).unlink()
    cache._set_aside(cache.path(FILE, NAME), hashed, "0" * 64, "damaged")  # gone: nothing to do
    assert said == []  # what another process set aside is its news


def _verify_and_repair(root: str) -> None:
    cache = PackageCache(Path(root))
    if cache.get(FILE, NAME, verify=True) is None:
        _put_good(cache)
    path = cache.get(FILE, NAME)
    assert path is not None and path.read_bytes() == GOOD


def test_processes_checking_one_damaged_copy_at_once_all_end_with_a_verified_one(tmp_path: Path) -> None:
    """`create --verify` in 8 processes over one damaged package cache: each failed 1 to 7 of 8, moving a
    file another had just moved or put back (FileNotFoundError)."""
    context = multiprocessing.get_context("fork")
    for _ in range(10):
        _damage(PackageCache(tmp_path))
        workers = [context.Process(target=_verify_and_repair, args=(str(tmp_path),)) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert [w.exitcode for w in workers] == [0] * 8
        assert PackageCache(tmp_path).get(FILE, NAME, verify=True) is not None


def test_a_copy_of_the_wrong_size_is_set_aside_even_without_verify(tmp_path: Path) -> None:
    """A truncated file was taken as verified until --verify hashed it (its size is recorded)."""
    sized = PackageFile(url_format=FILE.url_format, url=FILE.url, sha256=FILE.sha256, size=len(GOOD))
    cache = PackageCache(tmp_path)
    path = cache.path(sized, NAME)
    path.parent.mkdir(parents=True)
    path.write_bytes(GOOD[:100])
    with pytest.warns(EnvcoreWarning, match=r"is damaged \(100 bytes where the environment records \d+\)"):
        assert cache.get(sized, NAME) is None and not path.exists()
    path.write_bytes(GOOD)
    assert cache.get(sized, NAME) == path


def test_ctrl_c_does_not_wait_for_the_transfers_under_way_and_an_error_starts_no_more() -> None:
    from envcore.fetch import TRANSFER_WORKERS, in_parallel

    release, finished, started = threading.Event(), threading.Event(), []

    def transfer(item: int) -> int:
        started.append(item)
        if item == 0:  # a long transfer, under way when Ctrl-C comes
            release.wait(60)
            finished.set()
        elif item == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, which the main thread gets while it waits
        else:
            time.sleep(0.005)  # a short transfer
        return item

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    items = range(TRANSFER_WORKERS * 20)
    before = signal.signal(signal.SIGINT, interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            in_parallel(transfer, items)
        assert not finished.is_set()  # raised while item 0 was still transferring
    finally:
        signal.signal(signal.SIGINT, before)
        release.set()
    assert len(started) < len(items)

    ran = []

    def failing(item: int) -> int:
        ran.append(item)
        if item == 0:
            raise OSError("the store went away")
        time.sleep(0.01)
        return item

    with pytest.raises(OSError, match="went away"):
        in_parallel(failing, items)
    assert len(ran) < len(items)  # the files not started when it failed are not transferred


LIBRARY_USER = """
import sys, time
from envcore.fetch import in_parallel

def transfer(item):
    if item == 0:
        print("started", flush=True)
    time.sleep(60)  # a large file on a slow link

in_parallel(transfer, range(4))
"""


def test_a_process_that_does_not_end_through_os_exit_does_not_wait_for_transfers_after_ctrl_c() -> None:
    """The Metaflow launcher ends as Python does: it joined every transfer under way (a thread pool's workers
    are joined at exit), so Ctrl-C took as long as the largest file in flight."""
    started = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "-c", LIBRARY_USER],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_ctrl_c_as_in_a_terminal,
    ) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code != 0 and time.monotonic() - started < 20


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT as a foreground process gets it: a test suite started in the background (``make test &``) runs
    with SIGINT ignored, which its children inherit, and Python then installs no KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
