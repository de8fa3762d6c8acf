"""Write real conda packages, ``.conda`` and ``.tar.bz2``, byte for byte reproducibly.

A package is described by a :class:`CondaPackage` record (metadata plus in-memory :class:`PkgFile`
payload) and written by :func:`write_package`. Everything that could vary between two runs is pinned:
member order, mtimes, owners, zip dates and JSON key order, so the same record always gives the same
sha256. :func:`wheel_to_conda` turns a pure-Python wheel into a ``noarch: python`` package.
"""

from __future__ import annotations

import bz2
import configparser
import email.message
import email.parser
import functools
import hashlib
import io
import json
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

#: conda subdir -> (index.json ``platform``, ``arch``); noarch has neither.
SUBDIRS: dict[str, tuple[str, str] | None] = {
    "linux-64": ("linux", "x86_64"),
    "linux-aarch64": ("linux", "aarch64"),
    "osx-64": ("osx", "x86_64"),
    "osx-arm64": ("osx", "arm64"),
    "win-64": ("win", "x86_64"),
    "noarch": None,
}
FORMATS = (".conda", ".tar.bz2")
#: index.json ``timestamp`` (ms). py-rattler's default timestamp policy wants one on every record.
TIMESTAMP_MS = 1_700_000_000_000
#: The placeholder conda-build writes into text files; installers replace it with the target prefix.
PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"

#: mtime of every tar member and zip entry
MTIME = TIMESTAMP_MS // 1000
_ZIP_DATE = time.gmtime(MTIME)[:6]
# the interpreter package at level 3: 0.1 s, 9.4 MB; at cph's 19: 9.7 s, 8.1 MB
_ZSTD_LEVEL = 3


@dataclass(frozen=True, kw_only=True, slots=True)
class PkgFile:
    """One payload member. ``path`` is relative to the prefix (or to ``site-packages`` for the
    ``site-packages/…`` layout of noarch python). A symlink has ``symlink`` (relative target) and no data."""

    path: str
    data: bytes = b""
    executable: bool = False
    symlink: str | None = None
    prefix_placeholder: str | None = None  # a text placeholder that ``data`` contains


@dataclass(frozen=True, kw_only=True, slots=True)
class CondaPackage:
    """Everything that goes into ``info/`` plus the payload."""

    name: str
    version: str
    build: str = "0"
    build_number: int = 0
    subdir: str = "noarch"
    noarch: str | None = None  # "python" | "generic"
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    license: str = "MIT"
    summary: str = ""
    timestamp: int = TIMESTAMP_MS
    entry_points: tuple[str, ...] = ()  # "name = module:func", noarch python only
    files: tuple[PkgFile, ...] = ()

    @property
    def dist(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"

    def filename(self, fmt: str) -> str:
        return self.dist + fmt


# --- compression -------------------------------------------------------------------------------------


@functools.cache
def _zstd() -> tuple[Callable[[bytes, int], bytes], Callable[[bytes], bytes]]:
    """(compress, decompress) from the stdlib (3.14+), backports.zstd, or zstandard, in that order."""
    try:
        if sys.version_info >= (3, 14):
            from compression import zstd
        else:
            from backports import zstd
    except ImportError:
        import zstandard

        return (
            lambda data, level: zstandard.ZstdCompressor(level=level).compress(data),
            lambda data: zstandard.ZstdDecompressor().decompress(data),
        )
    return (lambda data, level: zstd.compress(data, level=level), zstd.decompress)


def zstd_compress(data: bytes, level: int = _ZSTD_LEVEL) -> bytes:
    return _zstd()[0](data, level)


def zstd_decompress(data: bytes) -> bytes:
    return _zstd()[1](data)


# --- archive building blocks -------------------------------------------------------------------------


def tar_bytes(members: Iterable[PkgFile]) -> bytes:
    """An uncompressed tar of ``members`` in the given order, with fixed mtime and owners."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
            if member.symlink is not None:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, member.symlink, 0o777
                tar.addfile(info)
            else:
                info.size, info.mode = len(member.data), 0o755 if member.executable else 0o644
                tar.addfile(info, io.BytesIO(member.data))
    return buf.getvalue()


def _link_target(files: Mapping[str, PkgFile], link: PkgFile) -> PkgFile | None:
    """The regular file a (chain of) relative symlink(s) ends at, if it is inside the package."""
    seen: set[str] = set()
    current: PkgFile | None = link
    while current is not None and current.symlink is not None and current.path not in seen:
        seen.add(current.path)
        parts = current.path.split("/")[:-1]
        for part in current.symlink.split("/"):
            if part == "..":
                parts = parts[:-1]
            elif part not in ("", "."):
                parts.append(part)
        current = files.get("/".join(parts))
    return current if current is not None and current.symlink is None else None


def _info_files(pkg: CondaPackage, payload: Sequence[PkgFile]) -> list[PkgFile]:
    by_path = {f.path: f for f in payload}
    paths: list[dict[str, object]] = []
    has_prefix: list[str] = []
    for f in payload:
        entry: dict[str, object] = {"_path": f.path, "path_type": "softlink" if f.symlink else "hardlink"}
        # conda-build records a softlink with the hash and size of the file it points to
        content = _link_target(by_path, f) if f.symlink else f
        if content is not None:
            entry["sha256"] = hashlib.sha256(content.data).hexdigest()
            entry["size_in_bytes"] = len(content.data)
        if f.prefix_placeholder and not f.symlink:
            entry["file_mode"] = "text"
            entry["prefix_placeholder"] = f.prefix_placeholder
            has_prefix.append(f"{f.prefix_placeholder} text {f.path}")
        paths.append(entry)

    index: dict[str, object] = {
        "name": pkg.name,
        "version": pkg.version,
        "build": pkg.build,
        "build_number": pkg.build_number,
        "depends": list(pkg.depends),
        "constrains": list(pkg.constrains),
        "license": pkg.license,
        "subdir": pkg.subdir,
        "timestamp": pkg.timestamp,
    }
    platform_arch = SUBDIRS[pkg.subdir]
    if platform_arch is not None:
        index["platform"], index["arch"] = platform_arch
    if pkg.noarch:
        index["noarch"] = pkg.noarch

    info = {
        "info/index.json": _json(index),
        "info/paths.json": _json({"paths": paths, "paths_version": 1}),
        "info/files": "".join(f"{f.path}\n" for f in payload).encode(),
        "info/about.json": _json({"license": pkg.license, "summary": pkg.summary}),
    }
    if has_prefix:
        info["info/has_prefix"] = "".join(f"{line}\n" for line in has_prefix).encode()
    if pkg.noarch == "python":
        link = {"noarch": {"type": "python", "entry_points": list(pkg.entry_points)}}
        info["info/link.json"] = _json({**link, "package_metadata_version": 1})
    return [PkgFile(path=p, data=d) for p, d in sorted(info.items())]


def _json(obj: object) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True).encode() + b"\n"


def zip_bytes(members: Mapping[str, bytes], compress_type: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``members`` in the given order, with fixed dates, modes and creator system."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zi = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            zi.compress_type, zi.external_attr, zi.create_system = compress_type, 0o644 << 16, 3
            zf.writestr(zi, data)
    return buf.getvalue()


# --- public API ----------------------------------------------------------------------------------------


def package_bytes(pkg: CondaPackage, fmt: str = ".conda") -> bytes:
    """The archive of ``pkg`` in ``fmt`` (".conda" or ".tar.bz2") as bytes."""
    if pkg.subdir not in SUBDIRS:
        raise ValueError(f"unknown subdir {pkg.subdir!r}; choose one of {', '.join(SUBDIRS)}")
    payload = sorted(pkg.files, key=lambda f: f.path)
    if len({f.path for f in payload}) != len(payload):
        raise ValueError(f"{pkg.dist}: duplicate payload paths")
    info = _info_files(pkg, payload)
    if fmt == ".tar.bz2":
        # info/ first: streaming readers (and our indexer) stop after index.json
        return bz2.compress(tar_bytes([*info, *payload]), 9)
    if fmt == ".conda":
        members = {
            "metadata.json": b'{"conda_pkg_format_version": 2}',
            f"info-{pkg.dist}.tar.zst": zstd_compress(tar_bytes(info)),
            f"pkg-{pkg.dist}.tar.zst": zstd_compress(tar_bytes(payload)),
        }
        return zip_bytes(members, zipfile.ZIP_STORED)
    raise ValueError(f"unknown package format {fmt!r}; choose one of {', '.join(FORMATS)}")


def write_package(pkg: CondaPackage, channel_dir: Path, fmt: str = ".conda") -> Path:
    """Write ``pkg`` into ``channel_dir/<subdir>/`` and return the archive's path."""
    path = channel_dir / pkg.subdir / pkg.filename(fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(package_bytes(pkg, fmt))
    return path


def _index_json(tar: tarfile.TarFile, path: Path) -> dict[str, object]:
    for member in tar:
        if member.name == "info/index.json":
            extracted = tar.extractfile(member)
            assert extracted is not None
            return dict(json.load(extracted))
    raise ValueError(f"{path}: no info/index.json")


def read_index_json(path: Path, data: bytes | None = None) -> dict[str, object]:
    """``info/index.json`` of a package archive (``data`` saves a second read if the caller has it)."""
    raw = io.BytesIO(path.read_bytes() if data is None else data)
    if not path.name.endswith(".conda"):
        with tarfile.open(fileobj=raw, mode="r|bz2") as tar:  # streamed: info/ comes first
            return _index_json(tar, path)
    with zipfile.ZipFile(raw) as zf:
        info = next(n for n in zf.namelist() if n.startswith("info-"))
        info_tar = zstd_decompress(zf.read(info))
    with tarfile.open(fileobj=io.BytesIO(info_tar), mode="r:") as tar:
        return _index_json(tar, path)


def python_site_packages(version: str) -> str:
    """``lib/pythonX.Y/site-packages`` for a python version like "3.11.7"."""
    major, minor = version.split(".")[:2]
    return f"lib/python{major}.{minor}/site-packages"


def conda_depends_from_metadata(
    metadata: email.message.Message, conda_names: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """conda ``depends`` for a wheel's METADATA: ``python <Requires-Python>`` plus every Requires-Dist
    without a marker (extras and environment-specific requirements have no conda equivalent here),
    renamed through ``conda_names`` (canonical PyPI name -> conda name)."""
    requires_python = metadata.get("Requires-Python")
    depends = [f"python {requires_python}" if requires_python else "python"]
    for line in metadata.get_all("Requires-Dist") or ():
        req = Requirement(line)
        if req.marker is not None:
            continue
        pypi_name = canonicalize_name(req.name)
        depends.append(f"{(conda_names or {}).get(pypi_name, pypi_name)} {req.specifier}".strip())
    return tuple(depends)


def site_packages_package(
    files: Mapping[str, bytes],
    *,
    name: str | None = None,
    depends: Sequence[str] | None = None,
    conda_names: Mapping[str, str] | None = None,
    build: str = "py_0",
    build_number: int = 0,
    subdir: str = "noarch",
    python_version: str | None = None,
    timestamp: int = TIMESTAMP_MS,
) -> CondaPackage:
    """A conda package from the members of a pure wheel (path -> bytes, as in the zip).

    ``noarch`` packages use the ``site-packages/`` + ``python-scripts/`` layout that installers relocate;
    with a platform ``subdir`` the files go to their final ``lib/pythonX.Y/site-packages`` (give
    ``python_version``). RECORD is kept and lists an added ``INSTALLER`` (``conda``), so pip can later
    uninstall or replace the package.
    """
    dist_info = next(p.split("/")[0] for p in files if p.endswith(".dist-info/WHEEL") and p.count("/") == 1)
    parser = email.parser.BytesParser()
    wheel_meta = parser.parsebytes(files[f"{dist_info}/WHEEL"])
    if wheel_meta.get("Root-Is-Purelib", "").strip().lower() != "true":
        raise ValueError(f"{dist_info}: not a pure-Python wheel (Root-Is-Purelib is not true)")
    metadata = parser.parsebytes(files[f"{dist_info}/METADATA"])
    data_dir = dist_info.removesuffix(".dist-info") + ".data/"

    noarch = subdir == "noarch"
    if noarch:
        site, scripts = "site-packages", "python-scripts"
    elif python_version is None:
        raise ValueError("a platform-specific package needs python_version for its site-packages path")
    else:
        site, scripts = python_site_packages(python_version), "bin"

    payload: list[PkgFile] = []
    for path, data in files.items():
        if path.startswith(data_dir):
            scheme, _, rest = path[len(data_dir) :].partition("/")
            target = {
                "purelib": f"{site}/{rest}",
                "platlib": f"{site}/{rest}",
                "scripts": f"{scripts}/{rest}",
                "data": rest,
            }.get(scheme, f"include/{rest}")
            payload.append(PkgFile(path=target, data=data, executable=scheme == "scripts"))
        else:
            if path == f"{dist_info}/RECORD":
                data = data.rstrip(b"\n") + f"\n{dist_info}/INSTALLER,,\n".encode()
            payload.append(PkgFile(path=f"{site}/{path}", data=data))
    payload.append(PkgFile(path=f"{site}/{dist_info}/INSTALLER", data=b"conda\n"))

    entry_points: list[str] = []
    if f"{dist_info}/entry_points.txt" in files:
        config = configparser.ConfigParser(delimiters=("=",), interpolation=None)
        config.optionxform = str  # type: ignore[assignment,method-assign]
        config.read_string(files[f"{dist_info}/entry_points.txt"].decode())
        if config.has_section("console_scripts"):
            # extras ("mod:func [extra]") mean nothing to conda's entry point writer
            entry_points = [f"{k} = {v.split('[')[0].strip()}" for k, v in config["console_scripts"].items()]

    pypi_name = canonicalize_name(metadata["Name"])
    return CondaPackage(
        name=name or (conda_names or {}).get(pypi_name, pypi_name),
        version=metadata["Version"],
        build=build,
        build_number=build_number,
        subdir=subdir,
        noarch="python" if noarch else None,
        depends=tuple(depends) if depends is not None else conda_depends_from_metadata(metadata, conda_names),
        license=metadata.get("License") or "unknown",
        summary=metadata.get("Summary") or "",
        timestamp=timestamp,
        entry_points=tuple(entry_points) if noarch else (),
        files=tuple(payload),
    )


def wheel_to_conda(
    wheel_path: Path,
    *,
    name: str | None = None,
    depends: Sequence[str] | None = None,
    conda_names: Mapping[str, str] | None = None,
    build: str = "py_0",
    build_number: int = 0,
    timestamp: int = TIMESTAMP_MS,
) -> CondaPackage:
    """A ``noarch: python`` package from a pure wheel: console scripts from ``entry_points.txt`` become
    ``info/link.json`` entry points, ``depends`` defaults to ``python <Requires-Python>`` plus the
    unconditional Requires-Dist (renamed through ``conda_names``). Write it with :func:`write_package`."""
    with zipfile.ZipFile(wheel_path) as zf:
        files = {zi.filename: zf.read(zi) for zi in zf.infolist() if not zi.is_dir()}
    return site_packages_package(
        files,
        name=name,
        depends=depends,
        conda_names=conda_names,
        build=build,
        build_number=build_number,
        timestamp=timestamp,
    )
