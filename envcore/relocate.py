"""Warm hydration: a finished prefix of the same environment is cloned instead of installed again.

Most files of a prefix do not name the prefix; they are hardlinked (as an installer links them from its package
cache). The few that do are known from standard metadata written at install time: conda's ``conda-meta/*.json``
(files with a ``prefix_placeholder``, python entry points) and wheels' ``RECORD`` (scripts and data outside
``site-packages``). Those are copied with the old prefix replaced by the new one, text files everywhere in
the file, binary files inside their NUL-terminated strings with the length kept (as conda does). The list is
the *relocation manifest*, written next to the completion marker after every install.

A clone is all or nothing: on any problem the partial copy is removed and the caller installs normally. A
source whose files were added or removed since it was made (a user's ``pip install`` or ``rm`` in a created
environment) is not cloned: the manifest keeps a signature of the prefix's paths (``S``: their count and the
sum of a checksum of each; ``__pycache__`` folders, which running the environment's python writes, left out),
which the walk computes again.

Cloning runs in the fast path of ``envcore create`` (:mod:`envcore.uptodate`), so it imports only ``os`` and
``_thread``: no pathlib, shutil, subprocess or threading, and no json (which imports re): together they cost more
than the copy itself. The manifest is therefore NUL-separated text (no path contains NUL): the prefix it names,
then one field per file, its kind first (``T`` text, ``B`` binary, ``L`` symlink). Manifests of earlier versions
(``.envcore-relocate.json``) are still read.

The copy is a walk in Python, not ``cp -al``: the same links with fewer system calls (``cp`` also reads every
file's attributes), made by a second thread while the walk makes the folders. Cloning the bench's 734-file
prefix in-process took 14.8 ms with ``cp -al``, 10.0 ms walking then linking, 7.9 ms with the links made
meanwhile; 25,399 files 401, 267 and 229 ms (best of 31 and 9 on this machine's ext4).
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
_SIGNATURE = "S"  # the manifest's field of the prefix's path signature (see _Signature)
_UNSIGNED = "__pycache__"  # written when the environment's python runs: not a change of the environment
_ENTRY_POINTS = frozenset({"unix_python_entry_point", "windows_python_entry_point_script"})
_MAX_SHEBANG = 127  # bytes of a '#!' line the kernel reads (conda's and rattler's limit)


class _Signature:
    """The set of a prefix's paths, summed up independently of their order: their count and the sum (64 bits)
    of each path's CRC-32 and Adler-32. It tells a prefix as it was made from one with files added or removed."""

    def __init__(self) -> None:
        import zlib

        self._crc32, self._adler32 = zlib.crc32, zlib.adler32
        self.count = self.total = 0

    def add(self, path: str) -> None:
        data = path.encode("utf-8", "surrogateescape")
        self.count += 1
        self.total = (self.total + (self._crc32(data) << 32 | self._adler32(data))) & 0xFFFFFFFFFFFFFFFF

    def text(self) -> str:
        return f"{self.count}:{self.total:016x}"


def _signature_of(prefix: str, private: tuple[str, ...]) -> str:
    """The path signature of ``prefix`` as :class:`_Cloner` computes it while it walks."""
    signature = _Signature()

    def walk(folder: str, rel: str) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                if (not rel and entry.name.startswith(private)) or entry.name == _UNSIGNED:
                    continue
                signature.add(f"{rel}{entry.name}")
                if entry.is_dir(follow_symlinks=False):
                    walk(entry.path, f"{rel}{entry.name}/")

    walk(prefix, "")
    return signature.text()


def write_manifest(prefix: Path, private: tuple[str, ...] = ()) -> None:
    """Record which files of the finished ``prefix`` name it (from the installers' metadata), and the signature
    of its paths; top-level entries starting with a name in ``private`` (the caller's markers) are not signed."""
    import csv
    import json
    from pathlib import Path

    text: set[str] = set()
    binary: set[str] = set()
    # symlinks whose absolute target lies inside the prefix (listed for earlier versions: the walk relinks every
    # such symlink it meets)
    links: set[str] = set()
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
    body = {"text": sorted(text - binary), "binary": sorted(binary), "links": sorted(links)}
    signature = _signature_of(str(prefix), (MANIFEST, _JSON_MANIFEST, *private))
    _write_manifest(prefix, {**body, "signature": signature})


def _write_manifest(
    prefix: str | os.PathLike[str], body: dict[str, Any], named: str | os.PathLike[str] | None = None
) -> None:
    """The manifest names the files of ``prefix`` to rewrite, and the prefix they name (``named``, by default
    ``prefix`` itself), written atomically."""
    fields = [os.fspath(named if named is not None else prefix)]
    fields += [f"{kind}{path}" for kind, name in _KINDS.items() for path in body.get(name, ())]
    if body.get("signature"):
        fields.append(f"{_SIGNATURE}{body['signature']}")
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
        if field[:1] == _SIGNATURE:
            manifest["signature"] = field[1:]
            continue
        if field[:1] not in _KINDS or len(field) < 2:
            raise ValueError(f"bad manifest field {field!r}")
        manifest[_KINDS[field[0]]].append(field[1:])
    return manifest


def _relocate_text(data: bytes, old: bytes, new: bytes) -> bytes:
    """``old`` -> ``new`` everywhere in a text file. A script whose ``#!`` line would then name an interpreter
    path with whitespace, or be longer than the kernel reads, starts as conda and the installers start it for
    such a prefix: ``#!/bin/sh`` running the interpreter (a python script), else ``#!/usr/bin/env <name>``."""
    head = b"#!" + old + b"/"
    if not data.startswith(head):
        return data.replace(old, new)
    end = data.find(b"\n") if b"\n" in data else len(data)
    if b" " not in new and b"\t" not in new and end - len(old) + len(new) <= _MAX_SHEBANG:
        return data.replace(old, new)
    path, _, options = data[len(head) : end].partition(b" ")
    interpreter = new + b"/" + path
    name = path.rsplit(b"/", 1)[-1]
    if name.startswith(b"python"):
        arguments = b'"' + options.strip() + b'" ' if options.strip() else b""
        shebang = b"#!/bin/sh\n'''exec' \"" + interpreter + b'" ' + arguments + b'"$0" "$@" #\'\'\''
    else:
        shebang = b"#!/usr/bin/env " + name + (b" " + options if options else b"")
    return shebang + data[end:].replace(old, new)


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
        manifest: dict[str, Any],
        old: str,
        private: tuple[str, ...],
    ) -> None:
        # the copy is made at ``build`` and names ``dest``, where it is moved once finished
        self.source, self.build, self.dest = source, build, dest
        self.private = (MANIFEST, _JSON_MANIFEST, *private)  # per-prefix state at the top: never copied
        self.old, self.new = old.encode(), str(dest).encode()
        self.old_text = old
        self.rewrite = {**{p: False for p in manifest["text"]}, **{p: True for p in manifest["binary"]}}
        self.expected: str | None = manifest.get(
            "signature"
        )  # None: a manifest of an earlier version, which had none
        self.signature = _Signature()

    def run(self) -> bool:
        """The walk makes the folders, symlinks and rewritten files and hands each folder's other files to a
        :class:`_Linker`, which hardlinks them meanwhile; then the folders get their modes (a read-only folder
        is filled first)."""
        modes: list[tuple[str, int]] = [(self.build, os.stat(self.source).st_mode)]
        linker = _Linker()
        walked = False
        try:
            walked = self._tree(self.source, self.build, "", linker, modes, signed=True)
        finally:
            linker.finish(walked)
        if walked and self.expected is not None and self.signature.text() != self.expected:
            return False  # files were added or removed since it was made: not a copy of the environment
        if walked:
            for folder, mode in reversed(modes):
                os.chmod(folder, stat.S_IMODE(mode))
        return walked

    def _relinked(self, link: str) -> str:
        return self.dest + link[len(self.old_text) :] if link.startswith(self.old_text + "/") else link

    def _tree(
        self, src: str, dst: str, rel: str, linker: _Linker, modes: list[tuple[str, int]], *, signed: bool
    ) -> bool:
        os.mkdir(dst)
        files: list[tuple[str, str]] = []
        folders: list[tuple[str, str, str, bool]] = []
        with os.scandir(src) as entries:
            for entry in entries:
                name = entry.name
                if not rel and name.startswith(self.private):
                    continue
                path = f"{rel}{name}"
                target = f"{dst}/{name}"
                in_signature = signed and name != _UNSIGNED
                if in_signature:
                    self.signature.add(path)
                if entry.is_symlink():
                    os.symlink(self._relinked(os.readlink(entry.path)), target)
                elif entry.is_dir():
                    modes.append((target, entry.stat(follow_symlinks=False).st_mode))
                    folders.append((entry.path, target, f"{path}/", in_signature))
                elif path in self.rewrite:
                    if not self._rewrite(entry.path, target, binary=self.rewrite[path]):
                        return False
                else:
                    files.append((entry.path, target))
        linker.add(files)
        return all(
            self._tree(source, target, path, linker, modes, signed=in_signature)
            for source, target, path, in_signature in folders
        )

    def _rewrite(self, src: str, dst: str, *, binary: bool) -> bool:
        with open(src, "rb") as fh:
            data = fh.read()
        rewritten = (
            _replace_in_c_strings(data, self.old, self.new)
            if binary
            else _relocate_text(data, self.old, self.new)
        )
        if rewritten is None:
            return False
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(rewritten)
        os.chmod(dst, stat.S_IMODE(os.stat(src).st_mode))
        return True


class _Linker:
    """Hardlinks made by a helper thread while the walk goes on (``link`` waits on the file system with the GIL
    released): the walk hands over each folder's files; once it has ended, the walking thread links beside the
    helper. The first OSError stops both and is raised by :meth:`finish`. The thread comes from ``_thread``: the
    fast path of ``envcore create`` imports no ``threading`` (3 ms with functools)."""

    def __init__(self) -> None:
        self._batches: list[list[tuple[str, str]]] = []
        self._guard = _thread.allocate_lock()
        self._wake = _thread.allocate_lock()  # held while the helper waits for work
        self._wake.acquire()
        self._helper_done = _thread.allocate_lock()
        self._helper_done.acquire()
        self._walk_ended = False
        self._errors: list[OSError] = []
        _thread.start_new_thread(self._help, ())

    def add(self, batch: list[tuple[str, str]]) -> None:
        if batch:
            with self._guard:
                self._batches.append(batch)
                self._signal()

    def finish(self, walked: bool) -> None:
        """The walk has ended: link what is left beside the helper and wait for it; raise the first error. A
        walk that did not finish (``walked`` false) gets nothing more linked, and no error raised."""
        with self._guard:
            self._walk_ended = True
            if not walked:
                self._batches.clear()
            self._signal()
        self._link_batches()
        self._helper_done.acquire()
        if walked and self._errors:
            raise self._errors[0]

    def _signal(self) -> None:  # (under the guard)
        if self._wake.locked():
            self._wake.release()

    def _next(self) -> list[tuple[str, str]] | None:
        with self._guard:
            return self._batches.pop() if self._batches and not self._errors else None

    def _link_batches(self) -> None:
        while (batch := self._next()) is not None:
            try:
                for source, target in batch:
                    os.link(source, target)
            except OSError as error:
                with self._guard:
                    self._errors.append(error)

    def _help(self) -> None:
        try:
            while True:
                self._wake.acquire()
                self._link_batches()
                with self._guard:
                    if self._walk_ended:  # what is left, the walking thread links too (finish)
                        return
        finally:
            self._helper_done.release()


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
