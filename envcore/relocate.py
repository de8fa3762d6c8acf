"""Warm hydration: a finished prefix of the same environment is cloned instead of installed again.

Most files of a prefix do not name the prefix; they are hardlinked (as an installer links them from its package
cache). The few that do are known from standard metadata written at install time: conda's ``conda-meta/*.json``
(files with a ``prefix_placeholder``, python entry points) and wheels' ``RECORD`` (scripts and data outside
``site-packages``). Those are copied with the old prefix replaced by the new one, text files everywhere in
the file, binary files inside their NUL-terminated strings with the length kept (as conda does). The list is
the *relocation manifest*, written next to the completion marker after every install.

A clone is all or nothing: on any problem the partial copy is removed and the caller installs normally.

Cloning runs in the fast path of ``envcore create`` (:mod:`envcore.uptodate`), so it imports only ``os`` and
``_thread``: no pathlib, shutil, subprocess or threading, and no json (which imports re): together they cost more
than the copy itself. The copy is a walk in Python, not ``cp -al``: the same links with fewer system calls (``cp``
also reads every file's attributes), 8.6 against 12.6 ms for the test universe's 734-file prefix, 265 against
364 ms for 25,399 files (in-process, best of 7-15 on this machine's ext4).
The manifest is therefore NUL-separated text (no path contains NUL): the prefix it names, then one field per
file, its kind first (``T`` text, ``B`` binary, ``L`` symlink). Manifests of earlier versions
(``.envcore-relocate.json``) are still read.
"""

from __future__ import annotations

import _thread
import os
import stat

from envcore import TYPE_CHECKING
from envcore.locks import file_lock

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

MANIFEST = ".envcore-relocate"
_JSON_MANIFEST = ".envcore-relocate.json"  # written by earlier versions; read, never written
_KINDS = {"T": "text", "B": "binary", "L": "links"}
# Hardlinks are made in threads from this many on, one thread per this many, at most _LINK_THREADS: ``link``
# waits on the file system with the GIL released (2 threads cut the links' time by a quarter on this 2-core ext4).
_LINKS_PER_THREAD = 256
_LINK_THREADS = min(4, os.cpu_count() or 1)
_ENTRY_POINTS = frozenset({"unix_python_entry_point", "windows_python_entry_point_script"})


def write_manifest(prefix: Path) -> None:
    """Record which files of the finished ``prefix`` name it (from the installers' metadata)."""
    import csv
    import json
    from pathlib import Path

    text: set[str] = set()
    binary: set[str] = set()
    links: set[str] = (
        set()
    )  # symlinks whose absolute target lies inside the prefix (for earlier versions: the
    # walk relinks every such symlink it meets)
    for meta in (prefix / "conda-meta").glob("*.json"):
        try:
            entries = json.loads(meta.read_bytes()).get("paths_data", {}).get("paths", [])
        except (OSError, ValueError):
            continue
        for entry in entries:
            if entry.get("prefix_placeholder"):
                (binary if entry.get("file_mode") == "binary" else text).add(entry["_path"])
            elif entry.get("path_type") in _ENTRY_POINTS:
                text.add(entry["_path"])
            elif entry.get("path_type") == "softlink":
                try:
                    if os.readlink(prefix / entry["_path"]).startswith(f"{prefix}/"):
                        links.add(entry["_path"])
                except OSError:
                    continue
    needle = str(prefix).encode()
    for record in prefix.glob("lib/python*/site-packages/*.dist-info/RECORD"):
        site = record.parent.parent
        with open(record, newline="") as fh:
            for row in csv.reader(fh):
                if not row or not row[0].startswith("../"):
                    continue  # inside site-packages: wheels do not name their install location there
                path = Path(os.path.normpath(site / row[0]))
                try:
                    if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                        text.add(path.relative_to(prefix).as_posix())
                except (OSError, ValueError):
                    continue
    _write_manifest(prefix, {"text": sorted(text - binary), "binary": sorted(binary), "links": sorted(links)})


def _write_manifest(
    prefix: str | os.PathLike[str], body: dict[str, Any], named: str | os.PathLike[str] | None = None
) -> None:
    """The manifest names the files of ``prefix`` to rewrite, and the prefix they name (``named``, by default
    ``prefix`` itself), written atomically."""
    fields = [os.fspath(named if named is not None else prefix)]
    fields += [f"{kind}{path}" for kind, name in _KINDS.items() for path in body.get(name, ())]
    tmp = os.path.join(prefix, f"{MANIFEST}.tmp")
    with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write("\0".join(fields))
    os.replace(tmp, os.path.join(prefix, MANIFEST))


def read_manifest(prefix: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"prefix": str, "text": [...], "binary": [...], "links": [...]}`` of a finished ``prefix``; OSError
    when it has none, ValueError when it cannot be read."""
    try:
        with open(os.path.join(prefix, MANIFEST), encoding="utf-8", errors="surrogateescape") as fh:
            prefix_named, *fields = fh.read().split("\0")
    except FileNotFoundError:
        import json

        with open(os.path.join(prefix, _JSON_MANIFEST), "rb") as fh:
            earlier: object = json.loads(fh.read())
        if not isinstance(earlier, dict):
            raise ValueError("not a manifest") from None
        return earlier
    manifest: dict[str, Any] = {"prefix": prefix_named, **{name: [] for name in _KINDS.values()}}
    for field in fields:
        if field[:1] not in _KINDS or len(field) < 2:
            raise ValueError(f"bad manifest field {field!r}")
        manifest[_KINDS[field[0]]].append(field[1:])
    return manifest


def _replace_in_c_strings(data: bytes, old: bytes, new: bytes) -> bytes | None:
    """``old`` -> ``new`` inside each NUL-terminated string, padded with NULs to keep every offset; None when
    a string would grow (binary files are only relocated to prefixes no longer than their current one)."""
    if len(new) > len(old):
        return None
    out, pos = bytearray(), 0
    while (start := data.find(old, pos)) != -1:
        end = data.find(b"\0", start)
        if end == -1:
            return None
        replaced = data[start:end].replace(old, new)
        out += data[pos:start] + replaced + b"\0" * (end - start - len(replaced))
        pos = end
    return bytes(out + data[pos:])


class _Cloner:
    def __init__(
        self,
        source: str,
        build: str,
        dest: str,
        manifest: dict[str, list[str]],
        old: str,
        private: tuple[str, ...],
    ) -> None:
        # the copy is made at ``build`` and names ``dest``, where it is moved once finished
        self.source, self.build, self.dest = source, build, dest
        self.private = (MANIFEST, _JSON_MANIFEST, *private)  # per-prefix state at the top: never copied
        self.old, self.new = old.encode(), str(dest).encode()
        self.old_text = old
        self.rewrite = {**{p: False for p in manifest["text"]}, **{p: True for p in manifest["binary"]}}

    def run(self) -> bool:
        """The walk makes the folders, symlinks and rewritten files and lists the files to hardlink; they are
        linked after it (in several threads when there are many), then the folders get their modes (a
        read-only folder is filled first)."""
        hardlinks: list[tuple[str, str]] = []
        modes: list[tuple[str, int]] = [(self.build, os.stat(self.source).st_mode)]
        if not self._tree(self.source, self.build, "", hardlinks, modes):
            return False
        link_all(hardlinks)
        for folder, mode in reversed(modes):
            os.chmod(folder, stat.S_IMODE(mode))
        return True

    def _relinked(self, link: str) -> str:
        return self.dest + link[len(self.old_text) :] if link.startswith(self.old_text + "/") else link

    def _tree(
        self, src: str, dst: str, rel: str, hardlinks: list[tuple[str, str]], modes: list[tuple[str, int]]
    ) -> bool:
        os.mkdir(dst)
        with os.scandir(src) as entries:
            for entry in entries:
                name = entry.name
                if not rel and name.startswith(self.private):
                    continue
                path = f"{rel}{name}"
                target = f"{dst}/{name}"
                if entry.is_symlink():
                    os.symlink(self._relinked(os.readlink(entry.path)), target)
                elif entry.is_dir():
                    modes.append((target, entry.stat(follow_symlinks=False).st_mode))
                    if not self._tree(entry.path, target, f"{path}/", hardlinks, modes):
                        return False
                elif path in self.rewrite:
                    if not self._rewrite(entry.path, target, binary=self.rewrite[path]):
                        return False
                else:
                    hardlinks.append((entry.path, target))
        return True

    def _rewrite(self, src: str, dst: str, *, binary: bool) -> bool:
        with open(src, "rb") as fh:
            data = fh.read()
        rewritten = (
            _replace_in_c_strings(data, self.old, self.new) if binary else data.replace(self.old, self.new)
        )
        if rewritten is None:
            return False
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(rewritten)
        os.chmod(dst, stat.S_IMODE(os.stat(src).st_mode))
        return True


def link_all(pairs: list[tuple[str, str]]) -> None:
    """``os.link(source, target)`` for every pair, in up to ``_LINK_THREADS`` threads when there are many; the
    first OSError is raised once every thread has stopped (the others stop at their next file). Threads come
    from ``_thread``: the fast path of ``envcore create`` does not import ``threading`` (3 ms with functools)."""
    shares = max(1, min(_LINK_THREADS, len(pairs) // _LINKS_PER_THREAD))
    errors: list[OSError] = []
    finished: list[_thread.LockType] = []
    for n in range(1, shares):
        done = _thread.allocate_lock()
        done.acquire()
        _thread.start_new_thread(_link_share, (pairs[n::shares], errors, done))
        finished.append(done)
    _link_share(pairs[0::shares], errors, None)
    for done in finished:
        done.acquire()
    if errors:
        raise errors[0]


def _link_share(pairs: list[tuple[str, str]], errors: list[OSError], done: _thread.LockType | None) -> None:
    try:
        for source, target in pairs:
            if errors:
                return
            os.link(source, target)
    except OSError as error:
        errors.append(error)
    finally:
        if done is not None:
            done.release()


def clone(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    private: tuple[str, ...] = (),
    prepare: Callable[[str], None] | None = None,
    place: Callable[[str, str], None] = os.rename,
) -> bool:
    """Clone the finished ``source`` prefix into the absent ``dest``; False (and nothing left) if it cannot.
    Top-level entries starting with a name in ``private`` (the caller's own markers) are not copied.

    The copy is built next to ``dest`` (``.<name>.clone``, the caller holds the prefix's lock) and moved into
    place when finished, after ``prepare(path of the copy)``, by ``place(copy, dest)`` (a rename; a caller
    replacing a prefix that exists swaps them): an interrupted clone never leaves a partial ``dest``."""
    source, dest = os.fspath(source), os.fspath(dest)
    parent, name = os.path.split(dest)
    build = os.path.join(parent, f".{name}.clone")
    os.makedirs(parent, exist_ok=True)
    _remove_tree(build)  # left by an interrupted clone
    try:
        manifest = read_manifest(source)
        old = str(manifest["prefix"])
        if old != source:
            return False  # the prefix was moved since it was installed: its files name another path
        done = _Cloner(source, build, dest, manifest, old, private).run()
        if done:
            _write_manifest(build, manifest, dest)  # the clone names the same files as its source, at dest
            if prepare is not None:
                prepare(build)
            place(build, dest)
    except (OSError, ValueError, KeyError, TypeError):
        done = False
    if not done:
        _remove_tree(build)
    return done


def _remove_tree(path: str) -> None:
    if os.path.lexists(path):
        import shutil

        shutil.rmtree(path, ignore_errors=True)


class PrefixIndex:
    """Where finished prefixes of each environment are, per machine (``<cache>/prefixes/<arch>_<req>_<full>``)."""

    def __init__(self, root: str | os.PathLike[str], lock_timeout: float) -> None:
        self.root = os.fspath(root)
        self.timeout = lock_timeout

    @classmethod
    def in_cache(cls, cache_dir: str | os.PathLike[str], lock_timeout: float) -> PrefixIndex:
        """The machine's index, in envcore's cache directory."""
        return cls(os.path.join(cache_dir, "prefixes"), lock_timeout)

    def add(self, key: str, prefix: str | os.PathLike[str]) -> None:
        """List ``prefix`` last (the newest source); prefixes no longer there are dropped, and the list keeps
        the last 16, so a prefix still there is not pushed out by ones a user removed."""
        path, prefix = os.path.join(self.root, key), os.fspath(prefix)
        with file_lock(f"{path}.lock", self.timeout):
            known = self.candidates(key)
            if prefix in known:
                return
            kept = [p for p in known if os.path.lexists(p)]
            with open(f"{path}.tmp", "w", encoding="utf-8") as fh:
                fh.write("".join(f"{p}\n" for p in [*kept, prefix][-16:]))
            os.replace(f"{path}.tmp", path)

    def candidates(self, key: str) -> list[str]:
        try:
            with open(os.path.join(self.root, key), encoding="utf-8") as fh:
                return [line for line in fh.read().splitlines() if line]
        except OSError:
            return []
