"""Resolve mixed (conda + PyPI) and conda-only environments with ``conda-lock lock``.

Each resolve writes an ``environment.yml`` in a private temporary directory (channels, conda specs with
python, a ``pip:`` section, the request's PyPI indexes as ``pip-repositories`` with
``allow-pypi-requests: false``), a virtual-package spec for the target subdir and a PyPI-to-conda name
lookup, then runs ``conda-lock lock -p <arch> --lockfile <out>`` with a conda-compatible executable
(``--conda``). conda-lock's *unified* lock format is parsed, not the ``explicit`` one: it carries md5 and
sha256 for every conda package (explicit lines carry one hash) and the per-package dependencies used for
the install order. conda-lock runs with its own ``HOME``, ``TMPDIR`` and caches inside the temporary
directory and without the user's ``CONDA_*``/``PIP_*``/``POETRY_*``/``MAMBA_*`` variables. Credentials never
go on a command line: conda channels get them from a ``netrc`` file, PyPI indexes from ``$VAR`` references
that conda-lock expands from its own environment.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml
from packaging.requirements import Requirement as Pep508
from packaging.version import InvalidVersion, Version

from envcore import pypi
from envcore.build import foreign_sdists_error
from envcore.condadists import renamed_distributions
from envcore.config import Config, redact_text, redact_url
from envcore.errors import BackendUnavailable, ConfigError, EnvcoreError, ResolutionError
from envcore.fetch import in_parallel
from envcore.platforms import DEFAULT_OSX, local_arch
from envcore.tools import (
    ToolNotStarted,
    find_executable,
    run_tool,
    scratch_folder,
    tail,
    tool_env,
    write_netrc,
)
from envcore.types import (
    CONDA,
    NPCONDA,
    PYPI,
    SYS,
    LockedPackage,
    PackageFile,
    PackageKind,
    Requirement,
    ResolveRequest,
)

TOOLS = ("micromamba", "mamba", "conda")  # looked up on PATH in this order
MINIMUM = Version("2.4.0")  # as the original extension
OPERATORS = ("=", "<", ">", "!", "~")
#: virtual packages of each subdir family besides the ones the request sets (conda-lock's defaults, no __cuda)
BASE_VIRTUAL = {
    "linux": {"__unix": "0", "__linux": "5.10", "__glibc": "2.17"},
    "osx": {"__unix": "0"},
    "win": {"__win": "0"},
}
ARCHSPEC = {"64": "x86_64", "aarch64": "aarch64", "arm64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}
_VERSION = re.compile(r"\d+(?:\.\d+)+")
_EXACT_RANGE = re.compile(r">=([^,\s]+),<=\1\b")


@dataclass(frozen=True, slots=True)
class _Tool:
    path: str
    flavor: str  # micromamba | mamba | conda: conda-lock picks the CLI dialect from the file name
    version: str


def conda_spec(req: Requirement) -> str:
    """A conda match spec as conda-lock passes it on. ``1.2.3`` (exact) becomes ``>=1.2.3,<=1.2.3``:
    conda-lock rewrites ``==1.2.3`` to ``1.2.3``, which libmamba reads as exact but strict parsers (rattler)
    refuse; the range means the same and every solver accepts it."""
    spec = req.spec.strip()
    if not spec:
        return req.name
    if spec.startswith("==") and not any(c in spec for c in "*,|"):
        spec = spec[2:]
    version_build = spec.split()
    if len(version_build) == 2 and not spec.startswith(OPERATORS) and not any(c in spec for c in "*,|"):
        return f"{req.name} =={version_build[0]} {version_build[1]}"  # a base's pin: "1.1.0 py_0"
    if spec.startswith(OPERATORS) or any(c in spec for c in "*,| "):
        return f"{req.name} {spec}"
    version, _, build = spec.partition("=")
    return f"{req.name} =={version} {build}" if build else f"{req.name} >={version},<={version}"


def _files(too_new: pypi.TooNewForTarget, entry: Mapping[str, Any]) -> list[str]:
    """The file conda-lock locked for a PyPI package, with, for an sdist that would not be built (another
    arch's; this machine's with a lowered glibc), the wheels of its release (``too_new.sdist_wheels``)."""
    filename = pypi.filename_of(str(entry["url"]))
    if filename.endswith(".whl"):
        return [filename]
    return [filename, *too_new.sdist_wheels(str(entry["name"]), str(entry["version"]))]


def _one_per_name(requirements: Sequence[str]) -> list[str]:
    """PEP 508 requirements with those of one name merged into one (``x`` and ``x!=2`` -> ``x!=2``):
    conda-lock keeps one requirement per name, the last."""
    merged: dict[str, Pep508] = {}
    for text in requirements:
        req = Pep508(text)
        name = pypi.canonicalize(req.name)
        if name in merged and not merged[name].url and not req.url:
            merged[name].specifier &= req.specifier
        else:
            merged[name] = req
    return [str(r) for r in merged.values()]


def _toposort(packages: Sequence[LockedPackage], key: Any = lambda n: n) -> list[LockedPackage]:
    """Dependencies before dependents; otherwise the given order (cycles keep it)."""
    by_name = {key(p.name): p for p in packages}
    done: dict[str, LockedPackage] = {}
    visiting: set[str] = set()

    def visit(pkg: LockedPackage) -> None:
        name = key(pkg.name)
        if name in done or name in visiting:
            return
        visiting.add(name)
        for dep in pkg.depends:
            dep_name = key(dep.split()[0]) if dep.split() else ""
            if dep_name in by_name:
                visit(by_name[dep_name])
        done[name] = pkg

    for pkg in packages:
        visit(pkg)
    return list(done.values())


def _strip_url(url: str) -> str:
    """``url`` without credentials, query-less fragment hashes (``#sha256=``) or an anaconda token."""
    parts = urlsplit(redact_url(url))
    path = re.sub(r"/t/[^/]+/", "/", parts.path, count=1)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _without_unasked_pip(
    request: ResolveRequest,
    conda: Sequence[Mapping[str, Any]],
    entries: Sequence[Mapping[str, Any]],
    credentials: Mapping[str, tuple[str, str]],
) -> list[LockedPackage]:
    """The conda packages of the lock, without the ``pip`` conda-lock adds to every environment with a pip
    section (its parser puts it among the conda dependencies) and what only it brought (setuptools, wheel): an
    environment holds pip only when asked for or when a package of it depends on it, as with every other
    resolver. Kept: what the request's conda packages, python and the wheels reach through their dependencies."""

    def name(entry: Mapping[str, Any]) -> str:
        return str(entry.get("name", "")).lower()

    def needs(entry: Mapping[str, Any]) -> list[str]:
        return [str(dep).split()[0].lower() for dep in (entry.get("dependencies") or {})]

    by_name = {name(e): e for e in conda}
    todo = [req.name.lower() for req in request.of(CONDA, NPCONDA)]
    todo += ["python", *(dep for e in entries if e.get("manager") != "conda" for dep in needs(e))]
    reached: set[str] = set()
    while todo:
        current = todo.pop()
        if current in by_name and current not in reached:
            reached.add(current)
            todo += needs(by_name[current])
    if "pip" in reached or "pip" not in by_name:
        return [conda_package(e, credentials) for e in conda]
    return [conda_package(e, credentials) for e in conda if name(e) in reached]


def conda_package(entry: Mapping[str, Any], credentials: Mapping[str, tuple[str, str]]) -> LockedPackage:
    url = _strip_url(str(entry["url"]))
    fn = pypi.filename_of(url)
    ext = ".tar.bz2" if fn.endswith(".tar.bz2") else Path(fn).suffix
    stem = fn[: -len(ext)]
    name, version = str(entry["name"]), str(entry["version"])
    build = stem[len(name) + len(version) + 2 :] if stem.startswith(f"{name}-{version}-") else ""
    hashes = entry.get("hash") or {}
    sha256, md5 = str(hashes.get("sha256") or ""), hashes.get("md5")
    size = None
    if len(sha256) != 64:  # a channel without sha256 in its repodata: hash the file
        sha256, size = pypi.sha256_of(url, credentials)
    path = urlsplit(url).path.rstrip("/").split("/")
    subdir = path[-2] if len(path) >= 2 else ""
    base = url[: -len(f"/{subdir}/{fn}")] if url.endswith(f"/{subdir}/{fn}") else None
    return LockedPackage(
        kind=PackageKind.CONDA,
        name=name,
        version=version,
        build=build,
        filename=stem,
        files=(
            PackageFile(url_format=ext, url=url, sha256=sha256, md5=str(md5) if md5 else None, size=size),
        ),
        subdir=subdir or None,
        channel=base,
        depends=tuple(f"{k} {v}".strip() for k, v in (entry.get("dependencies") or {}).items()),
    )


def pypi_package(entry: Mapping[str, Any], credentials: Mapping[str, tuple[str, str]]) -> LockedPackage:
    raw = str(entry["url"])
    if not raw.startswith(("http://", "https://", "file://")):
        raise ResolutionError(
            f"conda-lock locked {entry['name']} {entry['version']} from {redact_url(raw)}, which is not a file "
            "envcore can download and verify (a VCS or directory requirement). Request it from an index, or as "
            "a direct URL to a wheel."
        )
    url = _strip_url(raw)
    sha256, size = str((entry.get("hash") or {}).get("sha256") or ""), None
    if len(sha256) != 64:
        sha256, size = pypi.sha256_of(url, credentials)
    locked = pypi.locked_wheel(str(entry["name"]), str(entry["version"]), url, sha256, size)
    deps = tuple(f"{pypi.canonicalize(k)} {v}".strip() for k, v in (entry.get("dependencies") or {}).items())
    return LockedPackage(
        kind=locked.kind,
        name=locked.name,
        version=locked.version,
        filename=locked.filename,
        files=locked.files,
        depends=deps,
    )


class CondaLockResolver:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._tool: _Tool | None = None
        self._conda_lock: tuple[list[str], str] | None = None

    # --- finding and checking the executables -------------------------------------------------------

    def _unavailable(self, what: str) -> BackendUnavailable:
        return BackendUnavailable(
            f"The conda-lock resolver cannot run: {what}. conda-lock solves the conda side with a conda-compatible "
            "executable and would otherwise try to download conda-standalone from anaconda.org. Fix: install "
            "micromamba (https://mamba.readthedocs.io), mamba or conda and put it on PATH, or set "
            "METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE to its path; or choose another mixed resolver with "
            "METAFLOW_CONDA_MIXED_DEPENDENCY_RESOLVER=rattler-uv (needs no binary)."
        )

    @staticmethod
    def _conda_lock_unavailable(what: str) -> BackendUnavailable:
        return BackendUnavailable(
            f"The conda-lock resolver cannot run: {what}. Point METAFLOW_ENVCORE_CONDA_LOCK_EXE at a conda-lock "
            "executable, or unset it to use the conda-lock installed with envcore-conda-lock."
        )

    def _find(self, setting: str, names: Iterable[str]) -> str | None:
        return find_executable(self.config, setting, names, self._unavailable)

    def conda_tool(self) -> _Tool:
        """The conda-compatible executable, checked once with ``--version`` (so conda-lock never falls back
        to downloading conda-standalone)."""
        with self._lock:
            if self._tool is None:
                path = self._find("ENVCORE_CONDA_LOCK_CONDA_EXE", TOOLS)
                if path is None:
                    raise self._unavailable(
                        "no `micromamba`, `mamba` or `conda` executable was found on PATH and "
                        "METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE is not set"
                    )
                base = Path(path).name.lower().removesuffix(".exe")
                flavor = next((t for t in TOOLS if base.endswith(t)), "conda")
                try:  # (run_tool: an interruption stops it)
                    done = run_tool(
                        [path, "--version"],
                        what=f"{flavor} --version",
                        timeout=60,
                        env={**self._base_env(), "HOME": tempfile.gettempdir(), "MAMBA_NO_BANNER": "1"},
                    )
                except ToolNotStarted as exc:
                    raise self._unavailable(f"`{path} --version` could not start ({exc.why})") from None
                except EnvcoreError as exc:  # (it did not answer in time)
                    raise self._unavailable(
                        f"`{path} --version` failed ({exc.message.rstrip('.')})"
                    ) from None
                lines = [line for line in done.stdout.splitlines() if line.strip()]
                line = next((ln for ln in lines if ln.split()[0] == flavor), lines[0] if lines else "")
                found = _VERSION.search(line) if done.returncode == 0 else None
                if found is None:
                    output = " ".join((done.stdout + done.stderr).split())[:200]
                    raise self._unavailable(
                        f"`{path} --version` did not report a version (exit {done.returncode}: {output!r})"
                    )
                self._tool = _Tool(path, flavor, found.group(0))
            return self._tool

    def conda_lock(self) -> tuple[list[str], str]:
        """The conda-lock command prefix and its version."""
        if self._conda_lock is not None:
            return self._conda_lock
        exe = find_executable(self.config, "ENVCORE_CONDA_LOCK_EXE", (), self._conda_lock_unavailable)
        if exe is None:
            if importlib.util.find_spec("conda_lock") is None:
                raise BackendUnavailable(
                    f"conda-lock is not installed for {sys.executable}. Install it (the envcore-conda-lock "
                    "distribution depends on it: reinstall it), or set METAFLOW_ENVCORE_CONDA_LOCK_EXE to a conda-lock executable."
                )
            self._conda_lock = (
                [sys.executable, "-m", "envcore_conda_lock._conda_lock_main"],
                importlib.metadata.version("conda-lock"),
            )
            return self._conda_lock
        done = run_tool([exe, "--version"], what="conda-lock", env=self._base_env(), timeout=120)
        found = (
            _VERSION.search(done.stdout)
            if done.returncode == 0 and re.search(r"conda[-_]lock", done.stdout)
            else None
        )
        if found is None:  # a conda-lock says "conda-lock, version X"; conda says "conda X"
            raise BackendUnavailable(
                f"`{exe} --version` (METAFLOW_ENVCORE_CONDA_LOCK_EXE) did not report a conda-lock version "
                f"({tail(done.stdout + done.stderr, 2)!r}). Point it at a conda-lock executable, or unset it to use "
                "the conda-lock installed with envcore-conda-lock."
            )
        self._conda_lock = ([exe], found.group(0))
        return self._conda_lock

    def check(self) -> None:
        _, version = self.conda_lock()
        try:
            too_old = Version(version) < MINIMUM
        except InvalidVersion:
            too_old = False
        if too_old:
            raise BackendUnavailable(
                f"conda-lock {version} is too old: envcore needs conda-lock {MINIMUM} or newer. Upgrade it "
                "(`pip install -U conda-lock`) or unset METAFLOW_ENVCORE_CONDA_LOCK_EXE."
            )
        self.conda_tool()

    def version(self) -> str:
        tool = self.conda_tool()
        return f"{self.conda_lock()[1]} ({tool.flavor} {tool.version})"

    # --- resolving -----------------------------------------------------------------------------------

    def resolve(self, request: ResolveRequest) -> Sequence[LockedPackage]:
        self.check()
        unsupported = [e for values in request.extras.values() for e in values]
        if unsupported:
            raise ResolutionError(
                f"The conda-lock resolver does not support the requirements options {', '.join(unsupported)}: "
                "conda-lock takes channels, package specs and PyPI indexes only. Remove them, or select "
                "METAFLOW_CONDA_MIXED_DEPENDENCY_RESOLVER=rattler-uv."
            )
        # conda-lock reads a requirement's URL as one only for https://, git+ and ssh://: any other was taken for
        # a local path ('Path /tmp/.../http:/host/x.whl for x does not exist')
        plain_http = [
            f"{r.name} @ {redact_url(r.url)}"
            for r in request.of(PYPI)
            if r.url and r.url.lower().startswith("http:")
        ]
        if plain_http:
            raise ResolutionError(
                f"The conda-lock resolver cannot take {', '.join(plain_http)}: conda-lock reads a requirement's URL "
                "only when it is https://, git+ or ssh:// (it takes an http:// one for a local path). Use the "
                "https:// URL or a file:// one, or select METAFLOW_CONDA_MIXED_DEPENDENCY_RESOLVER=rattler-uv."
            )
        credentials = self._credentials(request)
        pins: dict[str, str] = {}
        # releases conda-lock chose that envcore cannot use: for another architecture, a source distribution
        # (conda-lock takes the newest release, with wheels or not); wheels that need a newer glibc or macOS
        # than the target's. Left out and locked again, which takes the newest release with wheels that fit, as
        # uv and pip do for such targets.
        too_new = pypi.TooNewForTarget(request)
        unbuildable: list[tuple[str, str]] = []  # the sdists it chose (named in a refusal)
        foreign = request.arch != local_arch()
        with scratch_folder("conda-lock") as tmp:
            work = Path(tmp)
            # PyPI packages must not replace conda ones, but conda-lock's poetry only prefers the conda
            # versions: a wheel that would move one is pinned to the conda version and the lock made again.
            for _ in range(4 + pypi.TOO_NEW_ROUNDS):
                try:
                    entries = self._lock_once(request, work, credentials, pins, too_new.excluded)
                except ResolutionError:
                    if unbuildable:
                        raise foreign_sdists_error(unbuildable, request.arch, local_arch()) from None
                    if too_new:
                        raise too_new.refusal() from None
                    raise
                conda = _toposort(
                    _without_unasked_pip(
                        request, [e for e in entries if e.get("manager") == "conda"], entries, credentials
                    )
                )
                # what the conda packages install under other names too (fx-yaml installs fx-pyyaml), read
                # from their files as the built-in composition reads them
                renamed = renamed_distributions(conda, self.config.cache_dir(), credentials)
                provided = pypi.conda_python_packages(conda, renamed)
                wheels = [e for e in entries if e.get("manager") == "pip"]
                # the wheels' python is the one the conda side locked (a mixed request names none)
                python = next((p.version for p in conda if p.name == "python"), request.python_version)
                target = replace(request, python_version=python)
                misfits = pypi.os_misfits(
                    target, [(str(e["name"]), str(e["version"]), _files(too_new, e)) for e in wheels]
                )
                sdists = [  # an sdist of a release too new for the target is one of the misfits
                    (name, str(e["version"]))
                    for e in wheels
                    if foreign
                    and not pypi.filename_of(str(e["url"])).endswith(".whl")
                    and ((name := pypi.canonicalize(str(e["name"]))), str(e["version"])) not in misfits
                ]
                # only those no other one needs: the exclusions are requirements (see pypi.outermost)
                needs = {pypi.canonicalize(str(e["name"])): list(e.get("dependencies") or {}) for e in wheels}
                misfits, sdists = pypi.outermost(misfits, sdists, needs)
                if misfits or sdists:
                    too_new.add(misfits, python)
                    unbuildable += sdists
                    if not all(
                        too_new.leave_out_wheelless(name, version, python) for name, version in sdists
                    ):
                        raise foreign_sdists_error(unbuildable, request.arch, local_arch())  # none has wheels
                    continue
                moved = {
                    name: (str(e["version"]), provided[name].version)
                    for e in wheels
                    if (name := pypi.canonicalize(str(e["name"]))) in provided
                    and not _same(str(e["version"]), provided[name].version)
                }
                if not moved or set(moved) <= set(pins):
                    break
                pins.update({name: conda_version for name, (_, conda_version) in moved.items()})
            else:
                if unbuildable:
                    raise foreign_sdists_error(unbuildable, request.arch, local_arch())
                if too_new:
                    raise too_new.rounds_refusal()
        if moved:
            name, (wheel, conda_version) = next(iter(moved.items()))
            raise ResolutionError(
                f"The PyPI requirements cannot be resolved for {request.arch} by conda-lock without replacing the "
                f"conda package {name} {conda_version} by its wheel {wheel}, which envcore does not allow. Request "
                f"{name} on one side only, or make the constraints agree."
            )
        # conda-lock's lock does not say which releases are yanked; only an exact pin takes one (PEP 592)
        pinned = pypi.exact_pins(request) - set(provided)
        checked = [e for e in wheels if pypi.canonicalize(str(e["name"])) in pinned]
        asked = replace(request, credentials=credentials)
        # their index pages read at once (each 30-50 ms on PyPI), the warnings given here, in the lock's order
        pages = in_parallel(lambda entry: pypi.yanked_files(asked, str(entry["name"])), checked)
        for entry, yanked in zip(checked, pages, strict=True):
            reason = yanked.get(pypi.filename_of(str(entry["url"])))
            if reason is not None:
                pypi.warn_yanked(str(entry["name"]), str(entry["version"]), reason)
        kept = [
            pypi_package(e, credentials) for e in wheels if pypi.canonicalize(str(e["name"])) not in provided
        ]
        return [*conda, *_toposort(kept, pypi.canonicalize)]

    def _credentials(self, request: ResolveRequest) -> dict[str, tuple[str, str]]:
        found = dict(request.credentials)
        for url in (*request.sources.get(CONDA, ()), *request.sources.get(PYPI, ())):
            parts = urlsplit(url)
            if parts.username and parts.hostname and parts.hostname not in found:
                found[parts.hostname] = (unquote(parts.username), unquote(parts.password or ""))
        return found

    def _environment_yml(
        self,
        request: ResolveRequest,
        env: dict[str, str],
        pins: Mapping[str, str],
        excluded: Sequence[str] = (),
    ) -> dict[str, Any]:
        channels = [redact_url(self.config.channel_url(c)) for c in request.sources.get(CONDA, ())]
        specs = []
        for req in request.of(CONDA, NPCONDA):
            if req.channel and "://" not in req.channel and "/" not in req.channel:
                specs.append(
                    f"{req.channel}::{conda_spec(req)}"
                )  # the executable maps the name (channel_alias)
                continue
            if req.channel:  # conda-lock cannot qualify a spec with a URL: the channel goes first in the list
                url = redact_url(self.config.channel_url(req.channel))
                channels = [url, *(c for c in channels if c != url)]
            specs.append(conda_spec(req))
        if not channels:
            raise ResolutionError(
                "No conda channel is configured. Set METAFLOW_CONDA_CHANNELS (e.g. conda-forge) or add channels to "
                "your requirements."
            )
        data: dict[str, Any] = {"channels": channels, "dependencies": specs}
        wanted = [pypi.pep508(r) for r in pypi.for_target(request)]
        if wanted:
            pinned = [*(f"{n}=={v}" for n, v in pins.items()), *excluded]
            data["dependencies"].append({"pip": _one_per_name([*wanted, *pinned])})
            data["allow-pypi-requests"] = False
            data["pip-repositories"] = self._pip_repositories(request, env)
        return data

    def _pip_repositories(self, request: ResolveRequest, env: dict[str, str]) -> list[str]:
        """The request's PyPI indexes; credentials as ``$VAR``s conda-lock expands from its environment."""
        credentials = self._credentials(request)
        repos = []
        for i, url in enumerate(request.sources.get(PYPI, ())):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise ConfigError(
                    f"The PyPI index {redact_url(url)} is not an http(s) URL, and conda-lock's vendored poetry reads "
                    "packages from http(s) indexes only (a file:// index or a local directory fails). Serve the "
                    "index over http (even `python -m http.server` on 127.0.0.1 works) and set "
                    "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE (or --index) to it, or select the built-in mixed resolver "
                    "with METAFLOW_CONDA_MIXED_DEPENDENCY_RESOLVER=rattler-uv."
                )
            clean = urlsplit(redact_url(url))
            host = clean.hostname or ""
            if host in credentials:
                user, password = credentials[host]
                env[f"ENVCORE_PIP_USER_{i}"], env[f"ENVCORE_PIP_PASSWORD_{i}"] = user, password
                clean = clean._replace(
                    netloc=f"$ENVCORE_PIP_USER_{i}:$ENVCORE_PIP_PASSWORD_{i}@{clean.netloc}"
                )
            repos.append(urlunsplit(clean))
        if not repos:
            raise ConfigError(
                "The conda-lock resolver got no PyPI index for the PyPI requirements. Set "
                "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE to an http(s) index."
            )
        return repos

    def _virtual_packages(self, request: ResolveRequest) -> dict[str, Any]:
        family, _, machine = request.arch.partition("-")
        packages = dict(BASE_VIRTUAL.get(family, {}))
        packages["__archspec"] = f"1 {ARCHSPEC.get(machine, machine)}"
        if request.arch in DEFAULT_OSX:
            packages["__osx"] = DEFAULT_OSX[request.arch]
        for req in request.of(SYS):
            packages[req.name] = req.spec.partition("=")[0] or "0"
        return {"subdirs": {request.arch: {"packages": packages}}}

    def _base_env(self) -> dict[str, str]:
        """The caller's environment without configuration that would change what the tools do."""
        env = {
            k: v
            for k, v in tool_env(environ={**os.environ, **self.config.environ}).items()
            if not k.startswith(("XDG_", "PYTHON", "METAFLOW_", "ENVCORE_", "NETRC"))
        }
        env.setdefault("PATH", os.defpath)
        return env

    def _env(self, request: ResolveRequest, work: Path) -> dict[str, str]:
        home = work / "home"
        for sub in ("home/.cache", "home/.config", "home/.local/share", "tmp", "root"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        (work / "condarc").write_text(
            json.dumps({"channel_alias": self.config.channel_alias(), "add_pip_as_python_dependency": False})
            + "\n"
        )
        env = self._base_env()
        env.update(
            HOME=str(home),
            TMPDIR=str(work / "tmp"),
            XDG_CACHE_HOME=str(home / ".cache"),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_DATA_HOME=str(home / ".local" / "share"),
            CONDARC=str(work / "condarc"),
            MAMBARC=str(work / "condarc"),
            MAMBA_ROOT_PREFIX=str(work / "root"),
            MAMBA_NO_BANNER="1",
            CONDA_NUMBER_CHANNEL_NOTICES="0",
            PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
            PYTHONNOUSERSITE="1",
            PYTHONDONTWRITEBYTECODE="1",
            PIP_CONFIG_FILE=os.devnull,
        )
        credentials = self._credentials(request)
        if credentials:  # conda channels: netrc, read by conda (requests) and libmamba (curl)
            env["NETRC"] = str(write_netrc(credentials, work / "netrc", home / ".netrc"))
        return env

    def _lock_once(
        self,
        request: ResolveRequest,
        work: Path,
        credentials: Mapping[str, tuple[str, str]],
        pins: Mapping[str, str],
        excluded: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        tool = self.conda_tool()
        env = self._env(request, work)
        spec = work / "environment.yml"
        spec.write_text(yaml.safe_dump(self._environment_yml(request, env, pins, excluded), sort_keys=False))
        virtual = work / "virtual-packages.yml"
        virtual.write_text(yaml.safe_dump(self._virtual_packages(request)))
        lookup_setting = self.config.get("ENVCORE_CONDA_LOCK_PYPI_TO_CONDA_LOOKUP")
        lookup = str(lookup_setting) if lookup_setting else str(work / "lookup.json")
        if not lookup_setting:
            (work / "lookup.json").write_text("{}\n")  # identical names; never the grayskull download
        out = work / "conda-lock.yml"
        out.unlink(missing_ok=True)
        cmd = [*self.conda_lock()[0], "lock", "--conda", tool.path]
        cmd += {"micromamba": ["--micromamba"], "mamba": ["--mamba"]}.get(tool.flavor, [])
        cmd += ["-f", str(spec), "-p", request.arch, "--lockfile", str(out), "--strip-auth"]
        cmd += ["--virtual-package-spec", str(virtual), "--pypi_to_conda_lookup_file", lookup]
        done = run_tool(cmd, what="conda-lock", env=env, cwd=work, debug=self.config.debug)
        if done.returncode != 0 or not out.exists():
            raise self._failure(request, done.stdout, done.stderr, credentials, pins)
        data = yaml.safe_load(out.read_text()) or {}
        return [
            e
            for e in data.get("package") or []
            if e.get("platform") == request.arch and not str(e.get("name", "")).startswith("__")
        ]

    def _failure(
        self,
        request: ResolveRequest,
        stdout: str,
        stderr: str,
        credentials: Mapping[str, tuple[str, str]],
        pins: Mapping[str, str],
    ) -> ResolutionError:
        text = redact_text(stderr + "\n" + stdout)
        for _user, password in credentials.values():
            if password:
                text = text.replace(password, "********")
        where = f"for {request.arch} by conda-lock {self.conda_lock()[1]}"
        pip = re.search(r"SolverProblemError: (.*?)(?:\n\S[^\n]*Error|\Z)", text, re.S)
        if pip:
            reason = " ".join(pip.group(1).split()).replace("-dummy-package-", "the request").rstrip(". ")
            pinned = ", ".join(f"{n}=={v}" for n, v in pins.items())
            why = (
                f" ({pinned}: the version the conda side installs, which a wheel must not replace)"
                if pinned
                else ""
            )
            return ResolutionError(
                f"The PyPI requirements cannot be resolved {where}: {reason}{why}. Change the requirement named "
                "above, or check the PyPI index."
            )
        if "Could not lock the environment" in text:
            reason = _conda_reason(text)
            reason = _EXACT_RANGE.sub(r"==\1", reason).rstrip(". ")
            return ResolutionError(
                f"The conda requirements cannot be resolved {where} ({self.conda_tool().flavor}): {reason}. Change "
                "the constraint named above, or check that the package exists in the channels "
                f"({', '.join(redact_url(self.config.channel_url(c)) for c in request.sources.get(CONDA, ()))})."
            )
        last = [ln.strip() for ln in text.splitlines() if re.match(r"^[\w.]+(Error|Exception)\b", ln.strip())]
        reason = (last[-1] if last else tail(text, 4)).rstrip(". ")
        hint = (
            " A source could not be reached: check the channel and index URLs, credentials and network."
            if re.search(r"Connection|HTTP|40[134]|Timeout", reason)
            else ""
        )
        return ResolutionError(
            f"conda-lock failed to lock the environment for {request.arch}: {reason[:1500]}.{hint} Run with "
            "METAFLOW_DEBUG_CONDA=1 to see its output."
        )


def _conda_reason(text: str) -> str:
    """The solver's own words from conda-lock's report of a failed conda solve."""
    block = text.split("Could not lock the environment", 1)[1]
    stdout = block.split("STDOUT:", 1)[1].split("STDERR:", 1)[0] if "STDOUT:" in block else ""
    start, end = stdout.find("{"), stdout.rfind("}")
    try:
        data = json.loads(stdout[start : end + 1]) if start >= 0 else {}
    except ValueError:
        data = {}
    if isinstance(data, dict):
        if data.get("solver_problems"):
            text = ""
            for problem in (str(p).strip() for p in data["solver_problems"]):
                glue = " " if text.endswith((":", "require", "requires")) else "; "
                text += glue + problem if text else problem
            return text
        if data.get("exception_name"):
            packages = ", ".join(str(p) for p in data.get("packages") or ())
            detail = f"not available from the channels: {packages}" if packages else data.get("message", "")
            return f"{data['exception_name']}: {' '.join(str(detail).split())}"
    stderr = block.split("STDERR:", 1)[1].split("Traceback", 1)[0] if "STDERR:" in block else block
    lines = [
        ln.strip() for ln in stderr.splitlines() if ln.strip() and "Could not solve for environment" not in ln
    ]
    return "; ".join(lines[:8]) or tail(stdout, 6)


def _same(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b
