"""Warm hydration: a finished prefix of the same environment is cloned instead of installed again.

Most files of a prefix do not name the prefix; they are hardlinked (as an installer links them from its package
cache). The few that do are known from standard metadata written at install time: conda's ``conda-meta/*.json``
(files with a ``prefix_placeholder``, python entry points) and wheels' ``RECORD`` (scripts and data outside
``site-packages``). Those are copied with the old prefix replaced by the new one, text files everywhere in
the file, binary files inside their NUL-terminated strings with the length kept (as conda does). The list is
the *relocation manifest*, written next to the completion marker after every install.

A clone is all or nothing: on any problem the partial copy is removed and the caller installs normally.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from envcore.locks import file_lock

MANIFEST = ".envcore-relocate.json"
# GNU cp (Linux) hardlink-copies a tree in C; elsewhere the same copy is made by a Python walk.
_GNU_CP = sys.platform.startswith("linux") and shutil.which("cp") is not None
_ENTRY_POINTS = frozenset({"unix_python_entry_point", "windows_python_entry_point_script"})


def write_manifest(prefix: Path) -> None:
    """Record which files of the finished ``prefix`` name it (from the installers' metadata)."""
    text: set[str] = set()
    binary: set[str] = set()
    links: set[str] = set()  # symlinks whose absolute target lies inside the prefix
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


def _write_manifest(prefix: Path, body: dict[str, Any]) -> None:
    """The manifest names the files of ``prefix`` to rewrite, and the prefix they name (written atomically)."""
    tmp = prefix / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps({**body, "prefix": str(prefix)}, indent=0))
    os.replace(tmp, prefix / MANIFEST)


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
        self, source: Path, dest: Path, manifest: dict[str, list[str]], old: str, private: tuple[str, ...]
    ) -> None:
        self.source, self.dest = str(source), str(dest)
        self.private = (MANIFEST, *private)  # per-prefix state at the top: never copied
        self.old, self.new = old.encode(), str(dest).encode()
        self.old_text = old
        self.rewrite = {**{p: False for p in manifest["text"]}, **{p: True for p in manifest["binary"]}}
        self.links = manifest.get("links", [])

    def run(self) -> bool:
        if _GNU_CP:
            return self._with_cp()
        return self._tree(self.source, self.dest, "")

    def _with_cp(self) -> bool:
        """``cp -al`` (the kernel-speed hardlink copy), then the manifest's files are replaced."""
        done = subprocess.run(["cp", "-al", "--", self.source, self.dest], capture_output=True, check=False)
        if done.returncode != 0:
            return False
        for name in os.listdir(self.dest):
            if name.startswith(self.private):
                os.unlink(f"{self.dest}/{name}")
        for path, binary in self.rewrite.items():
            target = f"{self.dest}/{path}"
            os.unlink(target)  # a hardlink to the source's file: replaced, never written through
            if not self._rewrite(f"{self.source}/{path}", target, binary=binary):
                return False
        for path in self.links:
            target = f"{self.dest}/{path}"
            link = os.readlink(target)
            os.unlink(target)
            os.symlink(self._relinked(link), target)
        return True

    def _relinked(self, link: str) -> str:
        return self.dest + link[len(self.old_text) :] if link.startswith(self.old_text + "/") else link

    def _tree(self, src: str, dst: str, rel: str) -> bool:
        """The portable walk: the same result as :meth:`_with_cp`, file by file."""
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
                    if not self._tree(entry.path, target, f"{path}/"):
                        return False
                elif path in self.rewrite:
                    if not self._rewrite(entry.path, target, binary=self.rewrite[path]):
                        return False
                else:
                    os.link(entry.path, target)
        shutil.copymode(src, dst)
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
        shutil.copymode(src, dst)
        return True


def clone(source: Path, dest: Path, *, private: tuple[str, ...] = ()) -> bool:
    """Clone the finished ``source`` prefix into the absent ``dest``; False (and nothing left) if it cannot.
    Top-level entries starting with a name in ``private`` (the caller's own markers) are not copied."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        manifest = json.loads((source / MANIFEST).read_bytes())
        old = str(manifest["prefix"])
        if old != str(source):
            return False  # the prefix was moved since it was installed: its files name another path
        done = _Cloner(source, dest, manifest, old, private).run()
    except (OSError, ValueError, KeyError, TypeError):
        done = False
    if not done:
        shutil.rmtree(dest, ignore_errors=True)
        return False
    _write_manifest(dest, manifest)  # the clone names the same files as its source, at its own path
    return True


class PrefixIndex:
    """Where finished prefixes of each environment are, per machine (``<cache>/prefixes/<arch>_<req>_<full>``)."""

    def __init__(self, root: Path, lock_timeout: float) -> None:
        self.root = root
        self.timeout = lock_timeout

    def _file(self, key: str) -> Path:
        return self.root / key

    def add(self, key: str, prefix: Path) -> None:
        path = self._file(key)
        with file_lock(path.with_name(path.name + ".lock"), self.timeout):
            known = self.candidates(key)
            if str(prefix) in known:
                return
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(f"{p}\n" for p in [*known, str(prefix)][-16:]))
            os.replace(tmp, path)

    def candidates(self, key: str) -> list[str]:
        try:
            return [line for line in self._file(key).read_text().splitlines() if line]
        except OSError:
            return []
