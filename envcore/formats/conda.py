"""Conda archives: ``.conda`` (a zip of zstd tars) and ``.tar.bz2``."""

from __future__ import annotations

import json
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from envcore.formats import extract_tar, hostile, malformed, member_problem, safe_members


def _zstd_reader(raw: IO[bytes]) -> IO[bytes]:
    try:
        from compression import zstd  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        from backports import zstd  # type: ignore[no-redef, unused-ignore]
    reader: IO[bytes] = zstd.ZstdFile(raw)
    return reader


@contextmanager
def _conda_tars(archive: Path) -> Iterator[dict[str, tarfile.TarFile]]:
    """The ``info`` and ``pkg`` tars of a ``.conda`` file, streamed."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for name in names:
                if member_problem(name) or "/" in name:
                    raise hostile(archive, f"an unexpected zip member ({name!r})")
            found = {
                kind: next((n for n in names if n.startswith(f"{kind}-") and n.endswith(".tar.zst")), None)
                for kind in ("info", "pkg")
            }
            if not found["info"]:
                raise malformed(archive, "no info-*.tar.zst member")
            tars: dict[str, tarfile.TarFile] = {}
            for kind, member in found.items():
                if member:
                    tars[kind] = tarfile.open(fileobj=_zstd_reader(zf.open(member)), mode="r|")  # noqa: SIM115
            try:
                yield tars
            finally:
                for tar in tars.values():
                    tar.close()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise malformed(archive, f"{type(exc).__name__}: {exc}") from None


@contextmanager
def _bz2_tar(archive: Path) -> Iterator[tarfile.TarFile]:
    try:
        with tarfile.open(archive, mode="r|bz2") as tar:
            yield tar
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise malformed(archive, f"{type(exc).__name__}: {exc}") from None


def _paths_json(data: bytes, archive: Path) -> dict[str, dict[str, Any]]:
    try:
        entries = json.loads(data)["paths"]
        return {e["_path"]: e for e in entries}
    except (ValueError, KeyError, TypeError) as exc:
        raise malformed(archive, f"info/paths.json cannot be read ({exc})") from None


def _compare(
    archive: Path, paths: Mapping[str, dict[str, Any]], payload: Mapping[str, tarfile.TarInfo]
) -> None:
    """The payload must be exactly what ``info/paths.json`` lists (types and sizes)."""
    missing = sorted(set(paths) - set(payload))
    extra = sorted(set(payload) - set(paths))
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unlisted {extra[:3]}"
        raise malformed(archive, f"info/paths.json disagrees with the archive ({detail})")
    for path, entry in paths.items():
        member = payload[path]
        if entry.get("path_type", "hardlink") == "softlink" and not member.issym():
            raise malformed(archive, f"{path} is listed as a symlink but is not one")
        size = entry.get("size_in_bytes")
        if member.isfile() and size is not None and member.size != size:
            raise malformed(archive, f"{path} has {member.size} bytes, info/paths.json says {size}")


class CondaFormat:
    """Reads ``.conda`` and ``.tar.bz2`` archives."""

    def _scan(self, archive: Path, dest: Path | None) -> dict[str, bytes]:
        """Walk (and with ``dest``, extract) the archive; return the ``info/`` files it holds."""
        info: dict[str, bytes] = {}
        payload: dict[str, tarfile.TarInfo] = {}

        def walk(tar: tarfile.TarFile) -> None:
            members = extract_tar(tar, archive, dest) if dest else list(_reading(tar, archive))
            for member in members:
                if member.name.startswith("info/"):
                    if member.name in ("info/paths.json", "info/index.json") and dest is not None:
                        info[member.name] = (dest / member.name).read_bytes()
                elif not member.isdir():
                    payload[member.name] = member

        def _reading(tar: tarfile.TarFile, path: Path) -> Iterator[tarfile.TarInfo]:
            for member in safe_members(tar, path):
                if member.name in ("info/paths.json", "info/index.json"):
                    handle = tar.extractfile(member)
                    info[member.name] = handle.read() if handle else b""
                yield member

        if archive.name.endswith(".conda"):
            with _conda_tars(archive) as tars:
                for tar in tars.values():
                    walk(tar)
        else:
            with _bz2_tar(archive) as tar:
                walk(tar)
        if "info/index.json" not in info:
            raise malformed(archive, "no info/index.json")
        if "info/paths.json" in info:
            _compare(archive, _paths_json(info["info/paths.json"], archive), payload)
        return info

    def check(self, archive: Path) -> None:
        self._scan(archive, None)

    def extract(self, archive: Path, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        self._scan(archive, dest)

    def metadata(self, archive: Path) -> Mapping[str, Any]:
        if archive.name.endswith(".conda"):
            with _conda_tars(archive) as tars:
                data = _first(tars["info"], "info/index.json")
        else:
            with _bz2_tar(archive) as tar:
                data = _first(tar, "info/index.json")
        if data is None:
            raise malformed(archive, "no info/index.json")
        try:
            index: dict[str, Any] = json.loads(data)
        except ValueError as exc:
            raise malformed(archive, f"info/index.json is not JSON ({exc})") from None
        return index


def installed_paths(archive: Path) -> list[str]:
    """The paths a conda package installs, from ``info/paths.json`` (``info/files`` in old packages): what a
    package provides can be read without extracting it."""
    wanted = ("info/paths.json", "info/files")
    found: dict[str, bytes] = {}
    with _conda_tars(archive) if archive.name.endswith(".conda") else _info_of_bz2(archive) as tars:
        for member in tars["info"]:
            if member.name in wanted:
                handle = tars["info"].extractfile(member)
                found[member.name] = handle.read() if handle else b""
    if "info/paths.json" in found:
        return list(_paths_json(found["info/paths.json"], archive))
    return found.get("info/files", b"").decode("utf-8", "replace").splitlines()


@contextmanager
def _info_of_bz2(archive: Path) -> Iterator[dict[str, tarfile.TarFile]]:
    with _bz2_tar(archive) as tar:
        yield {"info": tar}


def _first(tar: tarfile.TarFile, name: str) -> bytes | None:
    for member in tar:
        if member.name == name:
            handle = tar.extractfile(member)
            return handle.read() if handle else None
    return None
