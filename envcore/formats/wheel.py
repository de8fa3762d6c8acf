"""Wheels (``.whl``) and source distributions (``.tar.gz``, ``.zip``)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envcore.formats import extract_tar, hostile, malformed, member_problem, safe_members

_SIGNATURES = (".dist-info/RECORD", ".dist-info/RECORD.jws", ".dist-info/RECORD.p7s")


def _zip_problem(info: zipfile.ZipInfo) -> str | None:
    problem = member_problem(info.filename)
    if problem:
        return problem
    mode = info.external_attr >> 16
    if mode & 0o170000 == 0o120000:  # a symlink stored in a zip: pip and uv write it as a file; refuse it
        return f"a symlink ({info.filename!r})"
    return None


def _metadata_from_text(text: str) -> dict[str, Any]:
    import email.parser  # (here: installing from checked files never reads metadata)

    message = email.parser.Parser().parsestr(text)
    data: dict[str, Any] = {key: message.get_all(key) for key in set(message.keys())}
    return {
        key: values[0] if len(values) == 1 and key != "Requires-Dist" else values
        for key, values in data.items()
    }


class WheelFormat:
    """Checks a wheel against its ``RECORD`` (every member listed, every hash right) before use."""

    def _open(self, archive: Path) -> zipfile.ZipFile:
        try:
            return zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as exc:
            raise malformed(archive, f"not a zip file ({exc})") from None

    def _record(self, zf: zipfile.ZipFile, archive: Path) -> tuple[str, dict[str, str]]:
        records = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
        if len(records) != 1:
            raise malformed(archive, "it has no (or several) .dist-info/RECORD")
        import csv

        rows = csv.reader(io.StringIO(zf.read(records[0]).decode("utf-8", "replace")))
        return records[0].split("/")[0], {row[0]: row[1] for row in rows if row}

    def check(self, archive: Path) -> None:
        with self._open(archive) as zf:
            _, record = self._record(zf, archive)
            for info in zf.infolist():
                problem = _zip_problem(info)
                if problem:
                    raise hostile(archive, problem)
                if info.is_dir() or info.filename.endswith(_SIGNATURES):
                    continue
                expected = record.get(info.filename)
                if expected is None:
                    raise malformed(archive, f"{info.filename} is not listed in RECORD")
                if expected:
                    algorithm, _, digest = expected.partition("=")
                    if algorithm not in ("sha256", "sha384", "sha512"):
                        raise malformed(
                            archive, f"RECORD uses the weak hash {algorithm!r} for {info.filename}"
                        )
                    actual = hashlib.new(algorithm)
                    with zf.open(info) as fh:
                        while chunk := fh.read(1 << 20):
                            actual.update(chunk)
                    if base64.urlsafe_b64encode(actual.digest()).rstrip(b"=").decode() != digest:
                        raise malformed(archive, f"{info.filename} does not match its RECORD hash")

    def extract(self, archive: Path, dest: Path) -> None:
        self.check(archive)
        with self._open(archive) as zf:
            zf.extractall(dest)

    def metadata(self, archive: Path) -> Mapping[str, Any]:
        with self._open(archive) as zf:
            dist_info, _ = self._record(zf, archive)
            return _metadata_from_text(zf.read(f"{dist_info}/METADATA").decode("utf-8", "replace"))


class SdistFormat:
    """Source distributions: checked for safety; built into wheels by a PyPI backend, never installed as is."""

    def check(self, archive: Path) -> None:
        self._walk(archive, None)

    def extract(self, archive: Path, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        self._walk(archive, dest)

    def _walk(self, archive: Path, dest: Path | None) -> None:
        try:
            if archive.name.endswith(".zip"):
                with zipfile.ZipFile(archive) as zf:
                    for info in zf.infolist():
                        problem = _zip_problem(info)
                        if problem:
                            raise hostile(archive, problem)
                    if dest:
                        zf.extractall(dest)
                return
            # gzip's own reader, read to its end: tarfile's stream stops at the tar's end and never checks the
            # gzip trailer, so a cut or corrupted file passed
            with gzip.open(archive) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
                if dest:
                    extract_tar(tar, archive, dest)
                else:
                    for _ in safe_members(tar, archive):
                        pass
                while stream.read(1 << 20):
                    pass
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
            raise malformed(archive, f"{type(exc).__name__}: {exc}") from None

    def metadata(self, archive: Path) -> Mapping[str, Any]:
        try:
            if archive.name.endswith(".zip"):
                with zipfile.ZipFile(archive) as zf:
                    name = next(
                        (n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/PKG-INFO")), None
                    )
                    text = zf.read(name).decode("utf-8", "replace") if name else None
            else:
                text = None
                with tarfile.open(archive, mode="r|*") as tar:
                    for member in tar:
                        if member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
                            handle = tar.extractfile(member)
                            text = handle.read().decode("utf-8", "replace") if handle else None
                            break
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
            raise malformed(archive, f"{type(exc).__name__}: {exc}") from None
        if text is None:
            raise malformed(archive, "no PKG-INFO at its top level")
        return _metadata_from_text(text)
