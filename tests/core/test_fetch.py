"""The local package cache: presence means verified, and a damaged copy is set aside without ever taking a
verified one another process put in its place."""

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

from envcore.fetch import PackageCache
from envcore.types import PackageFile

GOOD = b"the package's bytes" * 1000
FILE = PackageFile(
    url_format=".whl", url="https://h.example/x-1.0-py3-none-any.whl", sha256=hashlib.sha256(GOOD).hexdigest()
)
NAME = "x-1.0-py3-none-any.whl"


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
    cache = PackageCache(tmp_path)
    _damage(cache)
    assert cache.get(FILE, NAME) is not None  # unverified: presence is taken as verified
    assert cache.get(FILE, NAME, verify=True) is None
    assert [p.name.endswith(NAME) for p in (tmp_path / "quarantine").iterdir()] == [True]
    assert _put_good(cache).read_bytes() == GOOD
    assert cache.get(FILE, NAME, verify=True) == cache.path(FILE, NAME)


def test_a_verified_copy_put_in_place_meanwhile_is_never_set_aside(tmp_path: Path) -> None:
    """A process that hashed the damaged copy sets aside only that file: another process may have replaced it
    with a verified copy since (and another one may have set it aside already)."""
    cache = PackageCache(tmp_path)
    damaged = _damage(cache).stat()
    _put_good(cache)  # another process: the damaged copy set aside, a verified one fetched and put in place
    cache._set_aside(cache.path(FILE, NAME), (damaged.st_dev, damaged.st_ino), "0" * 64)
    assert cache.path(FILE, NAME).read_bytes() == GOOD
    cache.path(FILE, NAME).unlink()
    cache._set_aside(
        cache.path(FILE, NAME), (damaged.st_dev, damaged.st_ino), "0" * 64
    )  # gone: nothing to do


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
