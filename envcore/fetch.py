"""Getting package files: from the local package cache, the store, or the package's own URL — every file
verified against its recorded sha256 before anything uses it.

The local package cache keeps ``<cache>/pkgs/<sha256>/<file name>``; a file is renamed into place only after
its hash matched, and a stamp beside it (``<file name>.verified``) records the file as it was then (size,
times, inode). A file its stamp does not describe (changed, replaced, truncated, or put there by something
else) is hashed again before any use, and set aside when it does not match. A mismatch raises
:class:`IntegrityError` naming the file, both hashes and the source, and the bad bytes are moved to
``<cache>/quarantine`` for inspection; a damaged copy found in the cache is set aside there too, said in one
line (the cache's ``say``: an :class:`~envcore.errors.EnvcoreWarning` by default), and fetched again.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

from envcore.config import redact_url
from envcore.errors import EditedDescription, EnvcoreError, IntegrityError, MissingObject, StorageError
from envcore.progress import moving
from envcore.types import CONDA_TOKEN_USER, PackageFile, PackageFormat, Store

RETRIES = 4
CHUNK = 1 << 20
STREAM_CHUNK = 1 << 16  # read from a response at once: a live bar's bytes move every 64 kB


TRANSFER_WORKERS = 8  # files moved at once between the store, the sources and the package cache
SET_ASIDE_WAIT = 60.0  # seconds to wait for another process setting the same damaged package file aside


Item = TypeVar("Item")
Result = TypeVar("Result")


def in_parallel(work: Callable[[Item], Result], items: Iterable[Item]) -> list[Result]:
    """``[work(item) for item in items]`` on up to :data:`TRANSFER_WORKERS` threads. On the first error the items
    not started are dropped, and the error (of the earliest item that failed) is raised once the transfers under
    way have ended. On Ctrl-C it is raised at once, and the process does not wait for the transfers under way
    when it exits: the threads are daemons (waiting for every file in flight took minutes on a slow link; stores
    publish atomically, so a cut transfer leaves no object behind)."""
    import queue
    import threading

    from envcore.tools import in_this_work, join

    listed = list(items)
    count = len(listed)
    todo: queue.SimpleQueue[tuple[int, Item]] = queue.SimpleQueue()
    for pair in enumerate(listed):
        todo.put(pair)
    results: dict[int, Result] = {}
    errors: dict[int, BaseException] = {}
    failed = threading.Event()

    def worker() -> None:
        while not failed.is_set():
            try:
                index, item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[index] = work(item)
            except BaseException as exc:  # handed to the caller's thread
                errors[index] = exc
                failed.set()

    threads = [
        threading.Thread(target=in_this_work(worker), name=f"envcore-transfer-{n}", daemon=True)
        for n in range(min(TRANSFER_WORKERS, count))
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            join(thread)
    except KeyboardInterrupt:
        failed.set()  # no more items start; those under way end with the process
        raise
    if errors:
        raise errors[min(errors)]
    return [results[index] for index in range(count)]


def mismatch(algorithm: str, actual: str, expected: str) -> str:
    """A file's hash against the recorded one, for a line: the prefixes a person compares."""
    return f"{algorithm} {actual[:12]}... where the environment records {expected[:12]}..."


def _warn(line: str) -> None:
    """A line for a caller without progress of its own (a resolver reading the cache): an
    :class:`~envcore.errors.EnvcoreWarning`, which the CLI and Metaflow show as one line."""
    import warnings

    from envcore.errors import EnvcoreWarning

    warnings.warn(EnvcoreWarning(line), stacklevel=2)


class PackageCache:
    def __init__(self, root: Path, say: Callable[[str], None] = _warn) -> None:
        """The package cache at ``root``; ``say`` is told, in one line, of each damaged copy set aside (an
        :class:`~envcore.errors.EnvcoreWarning` unless the caller shows progress its own way)."""
        self.root, self.say = root, say

    def path(self, file: PackageFile, name: str) -> Path:
        algorithm, expected = file.digest
        return self.root / "pkgs" / (expected if algorithm == "sha256" else f"{algorithm}-{expected}") / name

    def get(self, file: PackageFile, name: str, *, verify: bool = False) -> Path | None:
        path = self.path(file, name)
        try:
            found = path.stat()
        except OSError:
            return None
        if not stat.S_ISREG(found.st_mode):
            return None
        if file.size is not None and found.st_size != file.size:  # truncated (or another file): never used
            why = f"{found.st_size} bytes where the environment records {file.size}"
            self._set_aside(path, (found.st_dev, found.st_ino), f"size-{found.st_size}", why)
            return None
        if not verify and _read_stamp(path) == _signature(found):
            return path  # the very file that was hashed
        try:
            with open(path, "rb") as fh:
                actual, hashed = _digest(fh, file.digest[0]), os.fstat(fh.fileno())
        except FileNotFoundError:
            return None  # set aside by another process meanwhile
        if actual != file.digest[1]:  # a damaged copy: set aside, and fetch again from the source
            why = mismatch(file.digest[0], actual, file.digest[1])
            self._set_aside(path, (hashed.st_dev, hashed.st_ino), actual, why)
            return None
        _write_stamp(path, hashed)
        return path

    def put_verified(
        self,
        tmp: Path,
        file: PackageFile,
        name: str,
        source: str,
        fix: str = "The source holds a different file than when the environment was resolved: resolve again, or "
        "repair the source.",
    ) -> Path:
        """Move a downloaded temp file into the cache if its hash matches, else quarantine it and raise."""
        algorithm, expected = file.digest
        actual = digest_file(tmp, algorithm)
        if actual != expected:
            target = self._quarantine(tmp, actual, name)
            error: type[IntegrityError] = IntegrityError
            if algorithm != "md5" and file.md5 and digest_file(target, "md5") == file.md5:
                error, fix = (
                    EditedDescription,
                    "Its md5 is the one recorded beside, which the environment's full id is made from: most likely "
                    f"the description's {algorithm} was changed after it was written. `envcore resolve --force` of "
                    "the environment writes the description again.",
                )
            raise error(
                f"{name} from {source} has {algorithm} {actual}, but the environment records {expected}. The file "
                f"was not used and is kept in {target}. {fix}",
                actual=actual,
                kept=str(target),
            )
        final = self.path(file, name)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        _write_stamp(final, os.stat(final))
        return final

    def _set_aside(self, path: Path, hashed: tuple[int, int], actual: str, why: str) -> None:
        """Quarantine the damaged file at ``path`` that was hashed (device, inode), but never a verified copy
        that another process checking at the same time has put there meanwhile: processes setting aside take
        turns, and each moves only the file it hashed (and says so: ``why`` it is damaged, and where it went)."""
        from envcore.locks import file_lock

        with file_lock(path.with_name(".set-aside.lock"), SET_ASIDE_WAIT):
            try:
                now = os.stat(path)
            except FileNotFoundError:
                return  # set aside by another process
            if (now.st_dev, now.st_ino) == hashed:
                target = self._quarantine(path, actual)
                self.say(
                    f"The package cache file {path} is damaged ({why}): set aside in {target}; fetching it again."
                )

    def _quarantine(self, path: Path, actual: str, name: str | None = None) -> Path:
        target = self.root / "quarantine" / f"{actual}-{name or path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        return target

    def temp(self) -> Path:
        folder = self.root / "pkgs" / ".incoming"
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder)
        os.close(fd)
        return Path(name)

    def sweep(self) -> None:
        """Remove downloads a killed process left behind."""
        from envcore.local_store import remove_abandoned

        remove_abandoned(self.root / "pkgs" / ".incoming")


def _signature(found: os.stat_result) -> str:
    """What a file's stamp records: any write, truncation or replacement changes it (the change time cannot be
    set back)."""
    return f"{found.st_size} {found.st_mtime_ns} {found.st_ctime_ns} {found.st_ino} {found.st_dev}"


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _read_stamp(path: Path) -> str | None:
    try:
        return _stamp(path).read_text()
    except (OSError, ValueError):
        return None


def _write_stamp(path: Path, hashed: os.stat_result) -> None:
    """Record that the file at ``path``, as ``hashed`` describes it, matched its hash (atomically: a reader
    sees the old stamp or the new one)."""
    stamp = _stamp(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{stamp.name}.", dir=path.parent)
    except OSError:
        return  # (a read-only cache) the file is hashed again next time
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(_signature(hashed))
        os.replace(tmp, stamp)
    except OSError:
        Path(tmp).unlink(missing_ok=True)


def _checked_marker(path: Path) -> Path:
    return path.with_name(path.name + ".checked")


def ensure_checked(package_format: Callable[[], PackageFormat], path: Path, *, again: bool = False) -> None:
    """Run the format's safety check (hostile paths, links, devices, lying manifests) on a local file once;
    a marker next to it records that it passed. ``again`` checks even a marked file (``--verify``). The format
    is asked for only when a check runs (loading its plugin has a cost)."""
    marker = _checked_marker(path)
    if again or not marker.exists():
        package_format().check(path)
        marker.touch()


def mark_checked(path: Path) -> None:
    """Record that ``path`` needs no check here: it came from the store, which only receives checked files."""
    _checked_marker(path).touch()


def sha256_file(path: Path) -> str:
    return digest_file(path, "sha256")


def digest_file(path: Path, algorithm: str) -> str:
    with open(path, "rb") as fh:
        return _digest(fh, algorithm)


def _digest(fh: BinaryIO, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    while chunk := fh.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def from_store(store: Store, key: str, cache: PackageCache, file: PackageFile, name: str) -> Path:
    tmp = cache.temp()
    try:
        store.get_file(key, tmp)
        return cache.put_verified(
            tmp,
            file,
            name,
            f"the store ({store.url}/{key})",
            "The store's copy is damaged: delete that object, and `envcore resolve --force` of the environment "
            "uploads a good one.",
        )
    finally:
        tmp.unlink(missing_ok=True)


def from_url(
    url: str,
    cache: PackageCache,
    file: PackageFile,
    name: str,
    credentials: Mapping[str, tuple[str, str]] | None = None,
) -> Path:
    """Download with retries (5xx, resets, truncated bodies), then verify."""
    tmp = cache.temp()
    try:
        download(url, tmp, credentials)
        return cache.put_verified(tmp, file, name, redact_url(url))
    finally:
        tmp.unlink(missing_ok=True)


def download(url: str, dest: Path, credentials: Mapping[str, tuple[str, str]] | None = None) -> None:
    parts = urlsplit(url)
    if parts.scheme == "file":
        source = unquote(parts.path)
        try:
            shutil.copyfile(source, dest)
        except OSError as exc:
            if exc.filename == source or not os.access(source, os.R_OK):
                raise MissingObject(
                    f"Cannot read {url}: {exc.strerror}. Check that the file exists."
                ) from None
            # the local copy failed (a full disk, a file size limit): this machine's problem, named by its path
            raise OSError(exc.errno, exc.strerror, str(dest)) from None
        return
    import requests  # here: most commands never download over http, and requests costs ~60 ms to import

    auth = (credentials or {}).get(parts.hostname or "")
    fetched = url
    if auth and auth[0] == CONDA_TOKEN_USER:  # a conda channel token: back into the path, where conda puts it
        fetched, auth = parts._replace(path=f"/t/{auth[1]}{parts.path}").geturl(), None
    last = ""
    for attempt in range(RETRIES):
        try:
            with requests.get(fetched, stream=True, timeout=(10, 120), auth=auth) as response:
                if response.status_code in (404, 410):
                    raise MissingObject(f"{redact_url(url)} does not exist (HTTP {response.status_code}).")
                if response.status_code in (401, 403):
                    raise EnvcoreError(
                        f"Access to {redact_url(url)} was denied (HTTP {response.status_code}). Configure credentials "
                        "for its host in METAFLOW_CONDA_SRCS_AUTH_INFO."
                    )
                response.raise_for_status()
                expected = int(response.headers.get("Content-Length", -1))
                written = 0
                moving(0)
                with open(dest, "wb") as fh:
                    for chunk in response.iter_content(STREAM_CHUNK):
                        fh.write(chunk)
                        written += len(chunk)
                        moving(written)
                if expected >= 0 and written != expected:
                    raise requests.ConnectionError(f"truncated body ({written} of {expected} bytes)")
                return
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.HTTPError,
            requests.exceptions.ChunkedEncodingError,  # a body cut short
            requests.exceptions.ContentDecodingError,
        ) as exc:
            last = type(exc).__name__
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status is not None and status < 500 and status != 429:
                break
            time.sleep(min(0.2 * 2**attempt, 2.0))
    raise EnvcoreError(
        f"Could not download {redact_url(url)} after {RETRIES} attempts ({last}). Check the network and retry."
    )


# a local file that cannot be written: the machine's disk or folder, not the store
_LOCAL_ERRNOS = {
    errno.EFBIG,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENAMETOOLONG,
    errno.EIO,
}


def _local_write_error(exc: OSError, dest: Path, source: str) -> StorageError:
    """The paragraph for a download that could not be written here: name the file, not the store."""
    name = errno.errorcode.get(exc.errno or 0, "")
    return StorageError(
        f"Could not write the local file {dest} while downloading {source}: {exc.strerror or exc}"
        f"{f' ({name})' if name else ''}. The store is fine: free disk space (or raise the quota or file-size "
        "limit, `ulimit -f`), and check that the cache folder is writable (METAFLOW_ENVCORE_CACHE_DIR)."
    )


def download_beside(
    dest: Path,
    source: str,
    download: Callable[[str], None],
    remote_error: Callable[[Exception], StorageError],
) -> None:
    """A store's ``get_file``: ``download(tmp)`` into a temporary file beside ``dest``, then moved into place.
    A local write failure (a full disk, a file-size limit, a read-only folder) is named as such, with the local
    file; any other failure is ``remote_error(exc)``, the store's own message."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        os.close(fd)
    except OSError as exc:
        raise _local_write_error(exc, dest, source) from None
    try:
        download(tmp)
        os.replace(tmp, dest)
    except OSError as exc:
        if exc.errno in _LOCAL_ERRNOS:
            raise _local_write_error(exc, dest, source) from None
        raise remote_error(exc) from None
    except Exception as exc:
        raise remote_error(exc) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
