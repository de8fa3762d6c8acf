"""The test universe: one table of ``fx-*`` projects, rendered as a conda channel and a PyPI index.

:data:`PROJECTS` is the single source of truth. :func:`build_universe` turns it into

* ``channel/<subdir>/``: conda packages (``.conda`` and ``.tar.bz2``) plus ``repodata.json`` for every
  subdir, with a ``python`` for each (the real host interpreter on its own platform, stubs elsewhere) and
  ``pip``;
* ``wheels/``: wheels, one sdist per project, PEP 658 ``.metadata`` files;
* ``simple/``: a PEP 503 index linking to ``../../wheels/…``, so the same tree works as
  ``--find-links``, ``file://…/simple/`` and over http.

Run ``python -m envcore.testing.channel --out DIR`` to look at it.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import html
import io
import json
import os
import shutil
import sys
import time
from base64 import urlsafe_b64encode
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name

from envcore.testing import pythonpkg
from envcore.testing.condapkg import (
    FORMATS,
    MTIME,
    PLACEHOLDER,
    SUBDIRS,
    TIMESTAMP_MS,
    CondaPackage,
    PkgFile,
    read_index_json,
    site_packages_package,
    tar_bytes,
    write_package,
    zip_bytes,
)

_DAY_MS = 86_400_000

# --- the table ------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Release:
    version: str
    #: PEP 508 requirements naming projects by their PyPI name; renamed for conda from the table
    deps: tuple[str, ...] = ()
    requires_python: str = ">=3.8"
    #: PyPI yank reason; a yanked release is PyPI-only (conda channels have no yanking)
    yanked: str | None = None
    #: "conda" or "pypi" when this release exists in one ecosystem only
    only: str | None = None
    #: platform tags of this release's binary wheels, instead of its project's
    wheel_platforms: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CondaBuild:
    subdir: str = "noarch"
    variant: str = ""  # build string tag; the build string is ``h<build_number>_<variant>``
    build_number: int = 0
    depends: tuple[str, ...] = ()  # on top of the release's (virtual packages, mostly)


@dataclass(frozen=True, kw_only=True, slots=True)
class Project:
    name: str  # the PyPI name, and the conda name unless conda_name says otherwise
    releases: tuple[Release, ...]
    summary: str  # what the project is for in tests
    ecosystems: str = "both"  # "both" | "conda" | "pypi"
    conda_name: str | None = None
    module: str | None = None  # import name; default: name with "_"
    kind: str = "python"  # "python": an importable module; "tool": a bin/<name> script, no python
    entry_points: tuple[str, ...] = ()  # console scripts "name = module:func"
    conda_builds: tuple[CondaBuild, ...] = (CondaBuild(),)
    conda_formats: tuple[str, ...] | None = None  # None: every format the universe is built with
    wheel_platforms: tuple[str, ...] = ()  # platform tags of binary wheels; empty: one py3-none-any wheel
    prefixed: bool = False  # files carry the conda text prefix placeholder
    sdist_only: bool = False  # PyPI: no wheels, an sdist with an in-tree PEP 517 backend (builds offline)
    sdist_in_tree: bool = False  # sdists with the in-tree backend though wheels exist (else setuptools')

    @property
    def builds_offline(self) -> bool:
        return self.sdist_only or self.sdist_in_tree

    @property
    def conda(self) -> str:
        return self.conda_name or self.name

    @property
    def import_name(self) -> str:
        return self.module or self.name.replace("-", "_")

    @property
    def in_conda(self) -> bool:
        return self.ecosystems in ("both", "conda")

    @property
    def in_pypi(self) -> bool:
        return self.ecosystems in ("both", "pypi")

    def releases_for(self, ecosystem: str) -> tuple[Release, ...]:
        if not (self.in_conda if ecosystem == "conda" else self.in_pypi):
            return ()
        other = "pypi" if ecosystem == "conda" else "conda"
        return tuple(r for r in self.releases if r.only != other and not (ecosystem == "conda" and r.yanked))


_GLIBC = "__glibc >=2.17"
_OSX = "__osx >=11.0"


def _manylinux(pattern: str) -> tuple[str, ...]:
    """``manylinux_<pattern>`` for x86_64 and aarch64 (``{cpu}`` in the pattern)."""
    return tuple(f"manylinux_{pattern.format(cpu=cpu)}" for cpu in ("x86_64", "aarch64"))


#: The universe. Both the conda channel and the wheel index are generated from this list.
PROJECTS: list[Project] = [
    Project(
        name="fx-core",
        summary="bottom of the diamond; 1.x and 2.x majors; a PyPI pre-release",
        releases=(
            Release(version="1.0.0"),
            Release(version="1.1.0"),
            Release(version="2.0.0"),
            Release(version="2.1.0rc1", only="pypi"),
        ),
    ),
    Project(
        name="fx-http",
        summary="diamond side; a yanked release and one that needs a future python",
        releases=(
            Release(version="1.0.0", deps=("fx-core>=1.0,<2",)),
            Release(version="1.1.0", deps=("fx-core>=1.1,<2",)),
            Release(version="1.2.0", deps=("fx-core>=1.1,<3",)),
            Release(version="1.3.0", deps=("fx-core>=1.1,<3",), yanked="broken import"),
            Release(version="1.4.0", deps=("fx-core>=2",), requires_python=">=3.99"),
        ),
    ),
    Project(
        name="fx-web",
        summary="diamond side; its newest release also needs fx-http",
        releases=(
            Release(version="1.9.0", deps=("fx-core>=1.0,<2",)),
            Release(version="2.0.0", deps=("fx-core>=1.1",)),
            Release(version="2.1.0", deps=("fx-core>=1.1", "fx-http>=1.1")),
        ),
    ),
    Project(
        name="fx-app",
        summary="top of the diamond (fx-web + fx-http -> fx-core); a console script; renamed dep",
        releases=(Release(version="1.0.0", deps=("fx-web>=2.0", "fx-http>=1.1", "fx-pyyaml>=5")),),
        entry_points=("fx-app = fx_app:main",),
    ),
    Project(
        name="fx-pyyaml",
        conda_name="fx-yaml",
        module="fx_yaml",
        summary="named fx-pyyaml on PyPI, fx-yaml on conda, imported as fx_yaml",
        releases=(Release(version="5.4.0"), Release(version="6.0.1")),
    ),
    Project(
        name="fx-legacy",
        summary="conflicts with fx-modern (fx-core <2)",
        releases=(Release(version="1.0.0", deps=("fx-core<2",)),),
    ),
    Project(
        name="fx-modern",
        summary="conflicts with fx-legacy (fx-core >=2)",
        releases=(Release(version="1.0.0", deps=("fx-core>=2",)),),
    ),
    Project(
        name="fx-extras",
        ecosystems="pypi",
        summary="PyPI only",
        releases=(
            Release(version="0.3.0", deps=("fx-core>=1.0",)),
            Release(version="0.4.0", deps=("fx-core>=1.1", "fx-pyyaml>=6")),
        ),
    ),
    Project(
        name="fx-src",
        ecosystems="pypi",
        sdist_only=True,
        summary="PyPI sdist only (no wheel): built into a wheel by envcore for this machine's architecture",
        releases=(Release(version="0.9.0", deps=("fx-core>=1.0",)),),
    ),
    Project(
        name="fx-native",
        summary="platform builds: cpu (linux-64, linux-aarch64, osx-arm64), __cuda-gated h1_cuda12, "
        "__glibc/__osx-gated; manylinux + macOS wheels",
        releases=(Release(version="1.0.0"),),
        conda_builds=(
            CondaBuild(subdir="linux-64", variant="cpu", depends=(_GLIBC,)),
            CondaBuild(subdir="linux-64", variant="cuda12", build_number=1, depends=(_GLIBC, "__cuda >=12")),
            CondaBuild(subdir="linux-aarch64", variant="cpu", depends=(_GLIBC,)),
            CondaBuild(subdir="osx-arm64", variant="cpu", depends=(_OSX,)),
        ),
        wheel_platforms=("manylinux_2_17_x86_64.manylinux2014_x86_64", "macosx_11_0_arm64"),
    ),
    Project(
        name="fx-glibc",
        ecosystems="pypi",
        sdist_in_tree=True,
        summary="PyPI only; wheels for ever newer glibc and macOS: 1.0.0 glibc 2.17, macOS 11 (arm64) and 10.9 "
        "(x86_64); 2.0.0 glibc 2.27 (also tagged 2.28, as numpy's are), macOS 12 (arm64) and 13 (x86_64); 3.0.0 "
        "glibc 2.28 only, macOS 14 arm64 only (none for x86_64, as cryptography 50 has none), and needs fx-kernels",
        releases=(
            Release(
                version="1.0.0",
                wheel_platforms=(
                    *_manylinux("2_17_{cpu}.manylinux2014_{cpu}"),
                    "macosx_11_0_arm64",
                    "macosx_10_9_x86_64",
                ),
            ),
            Release(
                version="2.0.0",
                wheel_platforms=(
                    *_manylinux("2_27_{cpu}.manylinux_2_28_{cpu}"),
                    "macosx_12_0_arm64",
                    "macosx_13_0_x86_64",
                ),
            ),
            Release(
                version="3.0.0",
                deps=("fx-kernels>=1",),
                wheel_platforms=(*_manylinux("2_28_{cpu}"), "macosx_14_0_arm64"),
            ),
        ),
    ),
    Project(
        name="fx-kernels",
        ecosystems="pypi",
        sdist_in_tree=True,
        summary="PyPI only; fx-glibc 3.0.0's dependency, with wheels for glibc 2.28 and macOS 14 arm64 only (as "
        "torch's nvidia-* packages): where that release is too new, it has no part in the environment",
        releases=(
            Release(version="1.0.0", wheel_platforms=(*_manylinux("2_28_{cpu}"), "macosx_14_0_arm64")),
        ),
    ),
    Project(
        name="fx-ffmpeg",
        ecosystems="conda",
        kind="tool",
        summary="conda-only binary tool: bin/fx-ffmpeg (Library/bin/fx-ffmpeg.bat on win-64), no python",
        releases=(Release(version="6.1.0"),),
        conda_builds=tuple(
            CondaBuild(subdir=s, depends={"osx": (_OSX,), "linux": (_GLIBC,)}.get(s.split("-")[0], ()))
            for s in ("linux-64", "linux-aarch64", "osx-64", "osx-arm64", "win-64")
        ),
    ),
    Project(
        name="fx-prefixed",
        ecosystems="conda",
        prefixed=True,
        summary="text prefix placeholder in its module and etc/fx-prefixed.conf",
        releases=(Release(version="1.0.0"),),
    ),
    Project(
        name="fx-vintage",
        ecosystems="conda",
        conda_formats=(".tar.bz2",),
        summary="only published as .tar.bz2",
        releases=(Release(version="0.9.0", deps=("fx-core>=1.0",)),),
    ),
]


def _by_name(projects: Iterable[Project]) -> dict[str, Project]:
    return {canonicalize_name(p.name): p for p in projects}


def validate(projects: Sequence[Project]) -> None:
    """Every dependency names a project of the table that exists in the same ecosystem; tools are
    conda-only."""
    table = _by_name(projects)
    for project in projects:
        if project.kind == "tool" and project.in_pypi:
            raise ValueError(f"{project.name}: a tool (no python module) cannot be published on PyPI")
        for ecosystem in ("conda", "pypi"):
            for release in project.releases_for(ecosystem):
                for dep in release.deps:
                    target = table.get(canonicalize_name(Requirement(dep).name))
                    if target is None or not target.releases_for(ecosystem):
                        raise ValueError(
                            f"{project.name} {release.version} depends on {dep!r}, which has no {ecosystem} "
                            "release in the universe table"
                        )


# --- rendering one release ------------------------------------------------------------------------------


def _dist_name(name: str) -> str:
    return canonicalize_name(name).replace("-", "_")


def _module_files(
    project: Project, release: Release, build: str, table: dict[str, Project]
) -> dict[str, bytes]:
    deps = [table[canonicalize_name(Requirement(d).name)] for d in release.deps]
    # importing a module imports its dependencies, so a missing dependency fails loudly
    imports = "".join(f"import {d.import_name}  # noqa: F401\n" for d in deps if d.kind == "python")
    prefix = (
        f"PREFIX = {PLACEHOLDER!r}  # rewritten to the env prefix at install\n" if project.prefixed else ""
    )
    mod = project.import_name
    init = (
        f'"""{project.name} {release.version}: {project.summary}."""\n\n{imports}'
        f"__version__ = {release.version!r}\nBUILD = {build!r}\n{prefix}\n\n"
        f'def main() -> None:\n    print(f"{project.name} {{__version__}} ({{BUILD}})")\n'
    )
    return {
        f"{mod}/__init__.py": init.encode(),
        f"{mod}/__main__.py": f"from {mod} import main\n\nmain()\n".encode(),
    }


def _metadata(project: Project, release: Release) -> bytes:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project.name}",
        f"Version: {release.version}",
        f"Summary: {project.summary}",
        "License: MIT",
        f"Requires-Python: {release.requires_python}",
        *(f"Requires-Dist: {d}" for d in release.deps),
    ]
    return ("\n".join(lines) + "\n").encode()


def _record_hash(data: bytes) -> str:
    return "sha256=" + urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _wheel_files(
    project: Project, release: Release, tag: str, build: str, table: dict[str, Project]
) -> dict[str, bytes]:
    """The members of the wheel for one tag, RECORD last (as installers expect)."""
    files = _module_files(project, release, build, table)
    dist_info = f"{_dist_name(project.name)}-{release.version}.dist-info"
    interpreter, abi, platforms = tag.split("-")
    wheel = [
        "Wheel-Version: 1.0",
        "Generator: envcore.testing",
        f"Root-Is-Purelib: {str(abi == 'none').lower()}",
    ]
    wheel += [f"Tag: {interpreter}-{abi}-{p}" for p in platforms.split(".")]
    files[f"{dist_info}/METADATA"] = _metadata(project, release)
    files[f"{dist_info}/WHEEL"] = ("\n".join(wheel) + "\n").encode()
    if project.entry_points:
        files[f"{dist_info}/entry_points.txt"] = (
            "[console_scripts]\n" + "\n".join(project.entry_points) + "\n"
        ).encode()
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in sorted(files.items()))
    files[f"{dist_info}/RECORD"] = f"{record}{dist_info}/RECORD,,\n".encode()
    return files


# A complete PEP 517 backend, shipped inside sdist-only projects (``backend-path``): building them needs no
# build dependency from an index, so the test universe builds offline. Wheels are reproducible (fixed dates).
IN_TREE_BACKEND = """\
import base64, hashlib, os, zipfile

def _record(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    meta = open("PKG-INFO", "rb").read()
    fields = dict(line.split(": ", 1) for line in meta.decode().splitlines() if ": " in line)
    dist = fields["Name"].replace("-", "_").lower() + "-" + fields["Version"]
    files = {}
    for root, _, names in os.walk(fields["Name"].replace("-", "_")):
        for name in sorted(names):
            files[os.path.join(root, name).replace(os.sep, "/")] = open(os.path.join(root, name), "rb").read()
    files[dist + ".dist-info/METADATA"] = meta
    files[dist + ".dist-info/WHEEL"] = b"Wheel-Version: 1.0\\nGenerator: fxbuild\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    record = "".join("%s,%s,%d\\n" % (p, _record(d), len(d)) for p, d in sorted(files.items()))
    files[dist + ".dist-info/RECORD"] = (record + dist + ".dist-info/RECORD,,\\n").encode()
    name = dist + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as whl:
        for path, data in files.items():
            whl.writestr(zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0)), data)
    return name
"""


def _sdist(project: Project, release: Release, table: dict[str, Project]) -> tuple[str, bytes]:
    base = f"{_dist_name(project.name)}-{release.version}"
    deps = ", ".join(json.dumps(d) for d in release.deps)
    backend = (
        'requires = []\nbuild-backend = "fxbuild"\nbackend-path = ["_build"]\n'
        if project.builds_offline
        else 'requires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    pyproject = (
        f"[build-system]\n{backend}\n"
        f'[project]\nname = "{project.name}"\nversion = "{release.version}"\n'
        f'requires-python = "{release.requires_python}"\ndependencies = [{deps}]\n'
    )
    files = {"PKG-INFO": _metadata(project, release), "pyproject.toml": pyproject.encode()}
    if project.builds_offline:
        files["_build/fxbuild.py"] = IN_TREE_BACKEND.encode()
    files |= _module_files(project, release, "sdist", table)
    tar = tar_bytes(PkgFile(path=f"{base}/{name}", data=data) for name, data in sorted(files.items()))
    out = io.BytesIO()
    # GzipFile, not tarfile's "w:gz": that one stamps the current time into the gzip header
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=MTIME, filename="") as gz:
        gz.write(tar)
    return f"{base}.tar.gz", out.getvalue()


def _host_tags() -> tuple[str, str]:
    """(interpreter, abi) of the running python, e.g. ("cp311", "cp311")."""
    tag = next(iter(sys_tags()))
    return tag.interpreter, tag.abi


def _build_string(build: CondaBuild) -> str:
    if build.subdir == "noarch":
        return f"py_{build.build_number}"
    return f"h{build.build_number}_{build.variant}" if build.variant else f"h{build.build_number}"


def _tool_files(project: Project, release: Release, subdir: str) -> tuple[PkgFile, ...]:
    if subdir.startswith("win-"):
        script = f"@echo {project.conda} {release.version} ({subdir})\r\n"
        return (PkgFile(path=f"Library/bin/{project.conda}.bat", data=script.encode(), executable=True),)
    script = f'#!/bin/sh\necho "{project.conda} {release.version} ({subdir})"\n'
    return (PkgFile(path=f"bin/{project.conda}", data=script.encode(), executable=True),)


def _conda_packages(project: Project, table: dict[str, Project], python_version: str) -> list[CondaPackage]:
    major, minor = (int(x) for x in python_version.split(".")[:2])
    packages = []
    for index, release in enumerate(project.releases_for("conda")):
        timestamp = TIMESTAMP_MS + index * _DAY_MS  # later releases are newer, for exclude-newer tests
        deps = []
        for dep in release.deps:
            req = Requirement(dep)
            deps.append(f"{table[canonicalize_name(req.name)].conda} {req.specifier}".strip())
        for b in project.conda_builds:
            build = _build_string(b)
            if project.kind == "tool":
                pkg = CondaPackage(
                    name=project.conda,
                    version=release.version,
                    build=build,
                    build_number=b.build_number,
                    subdir=b.subdir,
                    noarch="generic" if b.subdir == "noarch" else None,
                    depends=(*deps, *b.depends),
                    summary=project.summary,
                    timestamp=timestamp,
                    files=_tool_files(project, release, b.subdir),
                )
                packages.append(pkg)
                continue
            if b.subdir == "noarch":
                python = f"python {release.requires_python}"
            else:  # compiled against one python: pinned to its minor version
                python = f"python >={major}.{minor},<{major}.{minor + 1}.0a0"
            files = _wheel_files(project, release, "py3-none-any", f"{b.subdir}/{build}", table)
            pkg = site_packages_package(
                files,
                name=project.conda,
                depends=(python, *deps, *b.depends),
                build=build,
                build_number=b.build_number,
                subdir=b.subdir,
                python_version=python_version,
                timestamp=timestamp,
            )
            if project.prefixed:
                conf = PkgFile(path=f"etc/{project.conda}.conf", data=f"prefix = {PLACEHOLDER}\n".encode())
                pkg = replace(pkg, files=(*pkg.files, conf))
            packages.append(_mark_placeholders(pkg))
    return packages


def _mark_placeholders(pkg: CondaPackage) -> CondaPackage:
    needle = PLACEHOLDER.encode()
    if not any(needle in f.data for f in pkg.files):
        return pkg
    marked = (replace(f, prefix_placeholder=PLACEHOLDER) if needle in f.data else f for f in pkg.files)
    return replace(pkg, files=tuple(marked))


@dataclass(frozen=True, kw_only=True, slots=True)
class PypiFile:
    filename: str
    data: bytes
    project: Project
    release: Release
    metadata: bytes | None  # PEP 658 core metadata (wheels only)


def _pypi_files(project: Project, table: dict[str, Project]) -> list[PypiFile]:
    interpreter, abi = _host_tags()
    out = []
    for release in project.releases_for("pypi"):
        base = f"{_dist_name(project.name)}-{release.version}"
        platforms = project.wheel_platforms if release.wheel_platforms is None else release.wheel_platforms
        tags = [f"{interpreter}-{abi}-{p}" for p in platforms] or ["py3-none-any"]
        for tag in () if project.sdist_only else tags:
            files = _wheel_files(project, release, tag, tag, table)
            meta = files[f"{base}.dist-info/METADATA"]
            out.append(
                PypiFile(
                    filename=f"{base}-{tag}.whl",
                    data=zip_bytes(files),
                    project=project,
                    release=release,
                    metadata=meta,
                )
            )
        name, data = _sdist(project, release, table)
        out.append(PypiFile(filename=name, data=data, project=project, release=release, metadata=None))
    return out


# --- indexes --------------------------------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def repodata_record(path: Path) -> dict[str, object]:
    """The repodata entry of one package archive: its index.json plus md5, sha256 and size."""
    data = path.read_bytes()
    record = read_index_json(path, data)
    record.update(md5=hashlib.md5(data).hexdigest(), sha256=_digest(data), size=len(data))
    return record


def index_channel(channel_dir: Path, subdirs: Sequence[str] = tuple(SUBDIRS)) -> dict[str, dict[str, object]]:
    """Write ``<subdir>/repodata.json`` for every subdir (created if missing, noarch included: solvers
    always fetch it) and return the repodata by subdir. Output is deterministic: no index time stamps."""
    archives: list[Path] = []
    for subdir in subdirs:
        (channel_dir / subdir).mkdir(parents=True, exist_ok=True)
        archives += sorted(p for p in (channel_dir / subdir).iterdir() if p.name.endswith(FORMATS))
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        records = dict(zip(archives, pool.map(repodata_record, archives), strict=True))
    repodata: dict[str, dict[str, object]] = {}
    for subdir in subdirs:
        here = {p: r for p, r in records.items() if p.parent.name == subdir}
        repodata[subdir] = {
            "info": {"subdir": subdir},
            "packages": {p.name: r for p, r in here.items() if p.name.endswith(".tar.bz2")},
            "packages.conda": {p.name: r for p, r in here.items() if p.name.endswith(".conda")},
            "removed": [],
            "repodata_version": 1,
        }
        text = json.dumps(repodata[subdir], indent=2, sort_keys=True) + "\n"
        (channel_dir / subdir / "repodata.json").write_text(text)
    return repodata


def _simple_page(title: str, links: Iterable[str]) -> bytes:
    body = "\n".join(links)
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta name="pypi:repository-version" content="1.0">\n'
        f"<title>{html.escape(title)}</title>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    ).encode()


def write_simple_index(simple_dir: Path, wheels_dir: Path, files: Sequence[PypiFile]) -> None:
    """PEP 503 pages with ``#sha256=`` links, ``data-requires-python``, ``data-yanked`` and PEP 658/714
    ``data-core-metadata`` (plus the older ``data-dist-info-metadata``) pointing at ``<file>.metadata``."""
    rel = os.path.relpath(wheels_dir, simple_dir / "x")  # pages live one level below simple/
    by_project: dict[str, list[PypiFile]] = {}
    for f in files:
        by_project.setdefault(canonicalize_name(f.project.name), []).append(f)
    root_links = [f'<a href="{name}/">{name}</a>' for name in sorted(by_project)]
    simple_dir.mkdir(parents=True, exist_ok=True)
    (simple_dir / "index.html").write_bytes(_simple_page("Simple index", root_links))
    for name, project_files in by_project.items():
        links = []
        for f in sorted(project_files, key=lambda f: f.filename):
            attrs = f' data-requires-python="{html.escape(f.release.requires_python)}"'
            if f.release.yanked is not None:
                attrs += f' data-yanked="{html.escape(f.release.yanked)}"'
            if f.metadata is not None:
                meta = f"sha256={_digest(f.metadata)}"
                attrs += f' data-dist-info-metadata="{meta}" data-core-metadata="{meta}"'
            links.append(f'<a href="{rel}/{f.filename}#sha256={_digest(f.data)}"{attrs}>{f.filename}</a><br>')
        (simple_dir / name).mkdir(exist_ok=True)
        (simple_dir / name / "index.html").write_bytes(_simple_page(f"Links for {name}", links))


# --- the universe ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Universe:
    """A built universe. URLs end without a slash except ``simple_url``."""

    root: Path
    channel_dir: Path
    channel_url: str
    wheels_dir: Path
    simple_dir: Path
    simple_url: str
    projects: tuple[Project, ...]
    formats: tuple[str, ...]
    python_version: str
    #: True when the host subdir's ``python`` is the packaged host interpreter, False for a stub
    real_python: bool
    #: why ``python`` is a stub ("" when it is real)
    python_note: str
    host_subdir: str
    conda_packages: tuple[Path, ...] = ()
    pypi_files: tuple[Path, ...] = ()

    def project(self, name: str) -> Project:
        return _by_name(self.projects)[canonicalize_name(name)]


def build_universe(
    out: Path,
    *,
    formats: Sequence[str] = FORMATS,
    real_python: bool = True,
    projects: Sequence[Project] = PROJECTS,
) -> Universe:
    """Build the channel, wheels and simple index under ``out`` (its ``channel``, ``wheels`` and
    ``simple`` subdirectories are replaced). ``python`` and ``pip`` are written in the first format
    only: the interpreter as ``.tar.bz2`` alone costs ~2 s of bz2, and every fx package covers both
    formats anyway."""
    validate(projects)
    formats = tuple(formats)
    if not formats or not set(formats) <= set(FORMATS):
        raise ValueError(f"formats must be a non-empty selection of {FORMATS}, not {formats!r}")
    out = Path(out).resolve()
    channel_dir, wheels_dir, simple_dir = out / "channel", out / "wheels", out / "simple"
    for d in (channel_dir, wheels_dir, simple_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    table = _by_name(projects)
    version = pythonpkg.python_version()
    host = pythonpkg.host_subdir()
    note = (
        "not requested (real_python=False)"
        if not real_python
        else (pythonpkg.host_python_unavailable() or "")
    )
    if host not in SUBDIRS:
        note = note or f"host platform {host} is not a known conda subdir"

    def write_all(make: Callable[[], Iterable[CondaPackage]], fmts: Sequence[str]) -> list[Path]:
        return [write_package(pkg, channel_dir, fmt) for pkg in make() for fmt in fmts]

    def python_packages() -> list[CondaPackage]:
        pkgs = [
            pythonpkg.stub_python_package(s, version)
            for s in SUBDIRS
            if s != "noarch" and (s != host or note)
        ]
        pip = pythonpkg.pip_package()
        return pkgs + ([pip] if pip else [])

    def write_pypi(project: Project) -> list[PypiFile]:
        files = _pypi_files(project, table)
        for f in files:
            (wheels_dir / f.filename).write_bytes(f.data)
            if f.metadata is not None:
                (wheels_dir / f"{f.filename}.metadata").write_bytes(f.metadata)
        return files

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        jobs: list[Future[list[Path]]] = []
        if not note:  # the slowest job goes first
            jobs.append(pool.submit(write_all, lambda: [pythonpkg.host_python_package()], formats[:1]))
        jobs.append(pool.submit(write_all, python_packages, formats[:1]))
        for p in projects:
            if p.in_conda:
                fmts = p.conda_formats or formats
                jobs.append(
                    pool.submit(write_all, functools.partial(_conda_packages, p, table, version), fmts)
                )
        pypi_jobs = [pool.submit(write_pypi, p) for p in projects if p.in_pypi]
        conda_paths = [path for job in jobs for path in job.result()]
        pypi_files = [f for job in pypi_jobs for f in job.result()]

    index_channel(channel_dir)
    write_simple_index(simple_dir, wheels_dir, pypi_files)
    return Universe(
        root=out,
        channel_dir=channel_dir,
        channel_url=channel_dir.as_uri(),
        wheels_dir=wheels_dir,
        simple_dir=simple_dir,
        simple_url=simple_dir.as_uri() + "/",
        projects=tuple(projects),
        formats=formats,
        python_version=version,
        real_python=not note,
        python_note=note,
        host_subdir=host,
        conda_packages=tuple(sorted(conda_paths)),
        pypi_files=tuple(sorted(wheels_dir / f.filename for f in pypi_files)),
    )


def _summary(universe: Universe, seconds: float) -> str:
    counts = Counter(p.parent.name for p in universe.conda_packages)
    size = sum(p.stat().st_size for p in universe.root.rglob("*") if p.is_file())
    wheels = sum(p.name.endswith(".whl") for p in universe.pypi_files)
    python = "real (host interpreter)" if universe.real_python else f"stub ({universe.python_note})"
    lines = [
        f"envcore test universe in {universe.root} ({seconds:.2f} s, {size / 1e6:.1f} MB)",
        f"  projects:  {len(universe.projects)} ({', '.join(p.name for p in universe.projects)})",
        f"  conda:     {len(universe.conda_packages)} packages in {', '.join(universe.formats)}: "
        + ", ".join(f"{s} {counts[s]}" for s in SUBDIRS),
        f"             {universe.channel_url}",
        f"  python:    {universe.python_version} on {universe.host_subdir}, {python}",
        f"  pypi:      {wheels} wheels, {len(universe.pypi_files) - wheels} sdists",
        f"             --find-links {universe.wheels_dir}",
        f"             --index-url {universe.simple_url}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m envcore.testing.channel", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to build into")
    parser.add_argument("--format", dest="formats", action="append", choices=FORMATS, help="repeatable")
    parser.add_argument("--stub-python", action="store_true", help="do not package the host interpreter")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    universe = build_universe(args.out, formats=args.formats or FORMATS, real_python=not args.stub_python)
    print(_summary(universe, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
