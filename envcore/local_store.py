"""The built-in store: a directory, on this machine or on a shared POSIX mount.

* Every write goes to a temporary file in ``<root>/.envcore-tmp`` (same file system), is flushed to disk
  (``fsync``, before it gets its name: after a crash an object is whole or absent, never empty) and then
  renamed into place: a reader sees the old object or the whole new one, never a torn one.
* Create-if-absent publishes with ``link(2)``, which fails if the name exists — atomic without a lock.
* Compare-and-swap and plain replacement hold an ``flock`` on a per-key lock file in ``<root>/.envcore-locks``,
  so a replacement cannot slip between another writer's check and its rename.
* An object's version is its inode, size and modification time: each publication is a new inode.
"""

from __future__ import annotations

import hashlib
import os
import stat as stat_mode
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import IO

from envcore.errors import KeyConflict, MissingObject, PreconditionFailed, StorageError
from envcore.locks import file_lock
from envcore.types import ObjectInfo

TMP_DIR, LOCK_DIR = ".envcore-tmp", ".envcore-locks"
LOCK_TIMEOUT = 60.0


def _version(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"


def _new_file(folder: Path) -> tuple[int, str]:
    """A new file of this process in ``folder``, opened for writing, with the permissions of any file the user
    creates (0666 less the umask): a store shared by a team stays readable by it (``mkstemp`` makes 0600)."""
    while True:
        path = os.path.join(folder, f".tmp-{os.getpid()}-{os.urandom(6).hex()}")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:
            continue


# seconds without a write after which a temporary file is abandoned (a writer killed, or cut off by Ctrl-C)
ABANDONED_AFTER = 3600.0


def remove_abandoned(folder: Path, older_than: float = ABANDONED_AFTER) -> None:
    """Remove the files of ``folder`` untouched for ``older_than`` seconds: what killed writers left behind (a
    live writer writes to its file all the time)."""
    import time

    cutoff = time.time() - older_than
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
        except OSError:
            continue  # finished or removed by its owner in between


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self._swept = False

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    @property
    def url(self) -> str:
        return f"file://{self.root}"

    # --- reading ------------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if (
            not key
            or key.startswith("/")
            or any(p in ("", ".", "..") for p in parts)
            or parts[0]
            in (
                TMP_DIR,
                LOCK_DIR,
            )
        ):
            raise StorageError(f"{key!r} is not a valid store key: use relative '/'-separated names.")
        return self.root.joinpath(*parts)

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat_mode.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key=key, size=st.st_size, version=_version(st))

    def open(self, key: str) -> AbstractContextManager[IO[bytes]]:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise MissingObject(f"{self.url}/{key} does not exist.") from None

    def get_file(self, key: str, dest: Path) -> None:
        import shutil  # (here, as download_beside: resolving and reading descriptions copy no file)

        from envcore.fetch import download_beside

        def copy(tmp: str) -> None:
            shutil.copyfile(src.name, tmp)  # by name: in the kernel (sendfile), not through Python's buffers

        def read_error(exc: Exception) -> StorageError:
            return StorageError(
                f"Could not read {self.url}/{key} from the local store: {exc}. Check the store folder "
                "(METAFLOW_CONDA_LOCALROOT) and its permissions."
            )

        with self.open(key) as src:  # a missing key is MissingObject, before anything is written
            download_beside(dest, f"{self.url}/{key}", copy, read_error)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = prefix.rpartition("/")[0]
        start = self._path(base) if base else self.root
        if not start.is_dir():
            return
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            if rel == ".":
                dirnames[:] = [d for d in dirnames if d not in (TMP_DIR, LOCK_DIR)]
                rel = ""
            found.extend(f"{rel}/{name}" if rel else name for name in filenames)
        for key in sorted(k for k in found if k.startswith(prefix)):
            info = self.stat(key)
            if info is not None:
                yield info

    # --- writing ------------------------------------------------------------------------------------

    def _staged(self, content: Callable[[IO[bytes]], None] | Path) -> Path:
        """A new file under the store's temporary folder, written by ``content`` (a writer, or a file copied in
        the kernel), on disk (fsync) before it is returned."""
        tmp_dir = self.root / TMP_DIR
        if not self._swept:  # once per instance: what interrupted writers left
            self._swept = True
            remove_abandoned(tmp_dir)
        try:
            try:
                fd, tmp = _new_file(tmp_dir)
            except FileNotFoundError:  # the first write to this store
                tmp_dir.mkdir(parents=True, exist_ok=True)
                fd, tmp = _new_file(tmp_dir)
        except OSError as exc:
            raise StorageError(
                f"Cannot write to the local store at {self.root}: {exc.strerror or exc}. Point "
                "METAFLOW_CONDA_LOCALROOT (or the datastore root) at a folder you can write."
            ) from None
        try:
            with os.fdopen(fd, "wb") as fh:
                if isinstance(content, Path):
                    import shutil

                    shutil.copyfile(content, tmp)  # by name: sendfile, not through Python's buffers
                else:
                    content(fh)
                    fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp)

    def key_conflict(self, key: str) -> str | None:
        """The key that keeps ``key`` from being written here (keys are files and folders): an object at one
        of its parents, or one under ``key/``; None when it can be written."""
        parts = key.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if (self.root / parent).is_file():
                return parent
        folder = self.root / key
        if folder.is_dir() and not folder.is_symlink():
            return next((info.key for info in self.list(f"{key}/")), f"{key}/")
        return None

    def _lock(self, key: str) -> AbstractContextManager[None]:
        name = hashlib.sha1(key.encode()).hexdigest()
        return file_lock(self.root / LOCK_DIR / name, LOCK_TIMEOUT)

    def _place(self, key: str, path: Path, place: Callable[[], None]) -> None:
        """Run ``place`` (a link or rename to ``path``), creating the parent directories when missing."""
        if path.is_dir() and not path.is_symlink():
            raise KeyConflict(
                f"Cannot write {self.url}/{key}: it is the folder of other objects (keys under {key}/), and a "
                "local store keeps keys as files and folders. Choose a key that is not a prefix of others."
            )
        try:
            try:
                place()
            except FileNotFoundError:  # a new directory (the staged file exists: it is ours)
                path.parent.mkdir(parents=True, exist_ok=True)
                place()
        except (NotADirectoryError, FileExistsError) as exc:
            if isinstance(exc, FileExistsError) and path.parent.is_dir():
                raise
            raise KeyConflict(
                f"Cannot write {self.url}/{key}: a parent of it is an object, and a local store keeps keys as "
                "files and folders. Choose a key that is not nested under an existing object."
            ) from None

    def _publish(self, key: str, staged: Path, *, if_absent: bool, if_version: str | None) -> ObjectInfo:
        path = self._path(key)
        if if_absent:
            try:
                self._place(key, path, lambda: os.link(staged, path))
            except FileExistsError:
                raise PreconditionFailed(f"{self.url}/{key} already exists.") from None
            return self._info(key, path)
        with self._lock(key):
            if if_version is not None:
                current = self.stat(key)
                if current is None or current.version != if_version:
                    raise PreconditionFailed(
                        f"{self.url}/{key} changed since it was read (expected version {if_version}, "
                        f"found {current.version if current else 'no object'})."
                    )
            self._place(key, path, lambda: os.replace(staged, path))
            return self._info(key, path)

    def _info(self, key: str, path: Path) -> ObjectInfo:
        st = path.stat()
        return ObjectInfo(key=key, size=st.st_size, version=_version(st))

    def put_file(self, key: str, src: Path) -> ObjectInfo:
        staged = self._staged(Path(src))
        try:
            return self._publish(key, staged, if_absent=False, if_version=None)
        finally:
            staged.unlink(missing_ok=True)

    def put_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, if_version: str | None = None
    ) -> ObjectInfo:
        if if_absent and if_version is not None:
            raise ValueError("if_absent and if_version are exclusive")

        def write(out: IO[bytes]) -> None:
            out.write(data)

        staged = self._staged(write)
        try:
            return self._publish(key, staged, if_absent=if_absent, if_version=if_version)
        finally:
            staged.unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._lock(key), suppress(FileNotFoundError):
            path.unlink()
