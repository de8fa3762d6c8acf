"""pylock.toml (PEP 751): a lock file as the input of an environment, read without resolving, and the PyPI
part of an environment exported as one.

Input. ``envcore resolve --pylock pylock.toml`` turns a lock file (from ``uv export --format pylock.toml``,
``uv pip compile -o pylock.toml``, or any other tool: unlike the original extension, ``created-by`` is not
checked) into a PyPI-only environment. Python comes from the conda side, as for every PyPI-only environment
(:mod:`envcore.compose`); the resolver ``pylock_toml`` (selected by ``PYLOCK_TOML_DEPENDENCY_RESOLVER``) then
keeps the packages whose markers hold for the target arch and that exact python (which must satisfy the
lock's ``requires-python``), and picks for each the best wheel for the target's tags, or its sdist, which the
core builds for this machine (:mod:`envcore.build`). Nothing is resolved: the versions are the lock's.

How the lock reaches the resolver: the request carries the lock's pins as PyPI requirements (``name==version``
with the package's marker) and one PyPI flag ``--pylock=sha256:<digest>``, the sha256 of the lock's
normalised content; both enter the req id, so different locks give different ids. The normalised lock is kept
under ``<cache dir>/pylock/<digest>.json``, where the resolver reads it.

Export. :func:`export` writes the PyPI packages of a resolved environment as a pylock.toml that uv and pip
install (``uv pip install -r pylock.toml``); conda packages are not in it.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from envcore import pypi
from envcore.config import Config, redact_text, redact_url, secret_query_names
from envcore.errors import ResolutionError, SpecError, UsageError
from envcore.frozen import record
from envcore.stashed import StashedInputReader, stashed_input
from envcore.types import (
    CONDA,
    PYPI,
    EnvType,
    LockedPackage,
    PackageFile,
    PackageKind,
    Requirement,
    ResolvedEnvironment,
    Resolver,
    ResolveRequest,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if TYPE_CHECKING:
    from envcore.plugins import Registry
    from envcore.specs import Spec

NAME = "pylock_toml"
SETTING = "PYLOCK_TOML_DEPENDENCY_RESOLVER"
FLAG = "--pylock=sha256:"
#: PEP 751 file names: ``pylock.toml`` or ``pylock.<name>.toml``
FILE_NAME = r"^pylock\.(?:[^.]+\.)?toml$"
_SHA256 = r"^[0-9a-f]{64}$"
_SDIST_EXTS = (".tar.gz", ".zip")


# --- the lock, normalised --------------------------------------------------------------------------------


@record
class LockFile:
    """A wheel or sdist of the lock: an absolute URL (``path`` entries become ``file://`` URLs)."""

    name: str
    url: str
    sha256: str | None = None
    size: int | None = None


@record
class LockPackage:
    name: str
    version: str | None = None
    marker: str | None = None
    requires_python: str | None = None
    wheels: tuple[LockFile, ...] = ()
    sdist: LockFile | None = None
    unsupported: str | None = None  # "a VCS source (git+https://...)", "a local directory (.)"

    @property
    def requirement(self) -> Requirement:
        return Requirement(category=PYPI, name=self.name, spec=self.version or "", marker=self.marker)


@record
class Pylock:
    origin: str
    lock_version: str
    created_by: str
    requires_python: str | None
    environments: tuple[str, ...]
    default_groups: tuple[str, ...]
    packages: tuple[LockPackage, ...]

    @property
    def digest(self) -> str:
        """sha256 of the content that matters (not the file's comments, layout or location)."""
        data = asdict(self)
        del data["origin"]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Pylock:
        data = json.loads(text)
        packages = tuple(
            LockPackage(
                **{k: v for k, v in p.items() if k not in ("wheels", "sdist")},
                wheels=tuple(LockFile(**w) for w in p["wheels"]),
                sdist=LockFile(**p["sdist"]) if p["sdist"] else None,
            )
            for p in data.pop("packages")
        )
        data["environments"] = tuple(data["environments"])
        data["default_groups"] = tuple(data["default_groups"])
        return cls(**data, packages=packages)


def _bad(origin: str, what: str, fix: str = "") -> SpecError:
    return SpecError(
        f"{origin} is not a usable pylock.toml: {what}. "
        + (fix or "Generate it again (uv export --format pylock.toml, or uv pip compile -o pylock.toml).")
    )


def _str(value: Any, origin: str, where: str, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(origin, f"{where} must be a non-empty string, not {value!r}")
    return value.strip()


def _file(entry: Any, origin: str, where: str, base: Path) -> LockFile:
    if not isinstance(entry, dict):
        raise _bad(origin, f"{where} must be a table with url or path and hashes")
    url, path = entry.get("url"), entry.get("path")
    if url is not None:
        location = _str(url, origin, f"the url of {where}") or ""
        if not urlsplit(location).scheme:
            raise _bad(origin, f"the url of {where} ({redact_url(location)}) is not an absolute URL")
        if redact_url(location) != location or secret_query_names(location):
            raise _bad(
                origin,
                f"the url of {where} ({redact_text(redact_url(location))}) carries credentials, which envcore "
                "does not store in an environment",
                "Write the URL without user:password@ or a token and give the credentials for its host in "
                'METAFLOW_CONDA_SRCS_AUTH_INFO (e.g. {"HOST": ["USER", "PASSWORD"]}).',
            )
    elif path is not None:
        location = (base / (_str(path, origin, f"the path of {where}") or "")).resolve().as_uri()
    else:
        raise _bad(origin, f"{where} has neither url nor path")
    name = _str(entry.get("name"), origin, f"the name of {where}") or pypi.filename_of(location)
    hashes = entry.get("hashes", {})
    if not isinstance(hashes, dict):
        raise _bad(origin, f'the hashes of {where} must be a table such as {{ sha256 = "..." }}')
    sha256 = hashes.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and re.match(_SHA256, sha256.lower())):
        raise _bad(origin, f"the sha256 of {where} ({sha256!r}) is not 64 hex digits")
    size = entry.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise _bad(origin, f"the size of {where} ({size!r}) is not a byte count")
    return LockFile(name=name, url=redact_url(location), sha256=sha256.lower() if sha256 else None, size=size)


def _marker(value: Any, origin: str, where: str) -> str | None:
    text = _str(value, origin, where)
    if text is None:
        return None
    try:
        return str(Marker(text))
    except InvalidMarker as exc:
        raise _bad(origin, f"{where} ({text!r}) is not a valid marker: {exc}") from None


def _specifier(value: Any, origin: str, where: str) -> str | None:
    text = _str(value, origin, where)
    if text is None:
        return None
    try:
        return str(SpecifierSet(text))
    except InvalidSpecifier:
        raise _bad(origin, f"{where} ({text!r}) is not a version specifier such as >=3.10") from None


def _package(entry: Any, index: int, origin: str, base: Path) -> LockPackage:
    if not isinstance(entry, dict):
        raise _bad(origin, f"packages[{index}] must be a table")
    name = _str(entry.get("name"), origin, f"the name of packages[{index}]", required=True) or ""
    where = f"package {name}"
    version = _str(entry.get("version"), origin, f"the version of {where}")
    if version is not None:
        try:
            version = str(Version(version))
        except InvalidVersion:
            raise _bad(origin, f"the version of {where} ({version!r}) is not a PEP 440 version") from None
    wheels_raw = entry.get("wheels", [])
    if not isinstance(wheels_raw, list):
        raise _bad(origin, f"the wheels of {where} must be an array of tables")
    wheels = tuple(_file(w, origin, f"a wheel of {where}", base) for w in wheels_raw)
    sdist = _file(entry["sdist"], origin, f"the sdist of {where}", base) if "sdist" in entry else None
    unsupported = None
    if "archive" in entry:
        archive = _file(entry["archive"], origin, f"the archive of {where}", base)
        if archive.name.endswith(".whl"):
            wheels += (archive,)
        elif archive.name.endswith(_SDIST_EXTS) and not entry["archive"].get("subdirectory"):
            sdist = archive
        else:
            unsupported = f"an archive ({archive.url}) that is neither a wheel nor an sdist"
    for key, what in (("vcs", "a VCS source"), ("directory", "a local directory")):
        if key in entry:
            source = entry[key] if isinstance(entry[key], dict) else {}
            unsupported = f"{what} ({source.get('url') or source.get('path') or '?'})"
    if not (wheels or sdist or unsupported):
        raise _bad(origin, f"{where} has no wheels, sdist, archive, vcs or directory entry")
    for wheel in wheels:
        if not wheel.name.endswith(".whl"):
            raise _bad(origin, f"a wheel of {where} ({wheel.name}) is not a .whl file")
        if version is None:
            try:
                version = str(parse_wheel_filename(wheel.name)[1])
            except InvalidWheelFilename:
                raise _bad(origin, f"{wheel.name} of {where} is not a valid wheel file name") from None
    if sdist is not None and version is None:
        try:
            version = str(parse_sdist_filename(sdist.name)[1])
        except InvalidSdistFilename:
            raise _bad(
                origin, f"the version of {where} is missing and {sdist.name} does not give it"
            ) from None
    return LockPackage(
        name=str(canonicalize_name(name)),
        version=version,
        marker=_marker(entry.get("marker"), origin, f"the marker of {where}"),
        requires_python=_specifier(entry.get("requires-python"), origin, f"requires-python of {where}"),
        wheels=wheels,
        sdist=sdist,
        unsupported=unsupported,
    )


def parse(text: str, origin: str = "pylock.toml", base: Path | None = None) -> Pylock:
    """Read and check a pylock.toml; ``path`` entries are resolved against ``base`` (the file's directory)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _bad(origin, f"it is not valid TOML ({exc})", "Fix the file, or generate it again.") from None
    lock_version = data.get("lock-version")
    if not isinstance(lock_version, str) or not re.fullmatch(r"1(\.\d+)?", lock_version):
        raise _bad(
            origin,
            f'its lock-version is {lock_version!r}, and envcore reads PEP 751 lock files of version 1 ("1.0")',
            "Generate it with a tool that writes PEP 751 lock-version 1.0 (uv 0.6.15 or later).",
        )
    packages_raw = data.get("packages", [])
    if not isinstance(packages_raw, list):
        raise _bad(origin, "packages must be an array of tables ([[packages]])")
    where = base or Path.cwd()
    environments = data.get("environments", [])
    groups = data.get("default-groups", [])
    for key, value in (("environments", environments), ("default-groups", groups)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _bad(origin, f"{key} must be an array of strings")
    lock = Pylock(
        origin=origin,
        lock_version=lock_version,
        created_by=str(data.get("created-by") or "unknown"),
        requires_python=_specifier(data.get("requires-python"), origin, "requires-python"),
        environments=tuple(_marker(e, origin, "an entry of environments") or "" for e in environments),
        default_groups=tuple(groups),
        packages=tuple(_package(p, i, origin, where) for i, p in enumerate(packages_raw)),
    )
    if not lock.packages:
        raise _bad(origin, "it lists no packages, so there is nothing to install", "Check the file.")
    return lock


def load(path: Path) -> Pylock:
    from envcore.specs import read_text

    path = Path(path)
    text = read_text(
        path, f"the lock file {path}"
    )  # (UTF-16 with its byte order mark too, as pip reads files)
    return parse(text, str(path), path.resolve().parent)


# --- from a lock to a request --------------------------------------------------------------------------


def stash(config: Config, lock: Pylock) -> str:
    """Keep ``lock`` where the resolver finds it by digest (content-addressed, so never stale); returns it."""
    from envcore.stashed import stash_input

    digest = lock.digest
    stash_input(config, "pylock", digest, lock.to_json())
    return digest


def to_spec(lock: Pylock, channels: Sequence[str] = ()) -> Spec:
    """The specification of the environment of ``lock``: its pins, and the flag naming the lock by digest.
    ``channels`` are extra conda channels (for python)."""
    from envcore.specs import Spec

    return Spec(
        requirements=tuple(dict.fromkeys(p.requirement for p in lock.packages)),
        sources={CONDA: tuple(dict.fromkeys(channels))} if channels else {},
        extras={PYPI: (FLAG + lock.digest,)},
        origin=f"the lock file {lock.origin}",
    )


def digest_of(request: ResolveRequest) -> str | None:
    """The digest of the lock a request comes from, or None for an ordinary request."""
    flags = [f for f in request.extras.get(PYPI, ()) if f.startswith(FLAG)]
    return flags[0][len(FLAG) :] if flags else None


def is_pylock(request: ResolveRequest) -> bool:
    return digest_of(request) is not None


def without_flag(request: ResolveRequest) -> ResolveRequest:
    """``request`` without the lock's flag, for tools that get the request's flags (the sdist builder)."""
    if not is_pylock(request):
        return request
    flags = tuple(f for f in request.extras.get(PYPI, ()) if not f.startswith(FLAG))
    extras = {k: v for k, v in request.extras.items() if k != PYPI} | ({PYPI: flags} if flags else {})
    return replace(request, extras=extras)


def resolver_for(registry: Registry) -> tuple[str, Resolver]:
    """The resolver ``PYLOCK_TOML_DEPENDENCY_RESOLVER`` names; a PyPI-only one is composed with the conda
    resolver, which provides python."""
    from envcore.compose import ComposedResolver

    name = str(registry.config.get(SETTING))
    entry = registry.resolvers.get(name)
    if entry is None or EnvType.PYPI_ONLY not in entry.record.env_types:
        choices = [n for n, r in registry.resolvers.items() if EnvType.PYPI_ONLY in r.record.env_types]
        raise registry._unknown("pylock.toml resolver", SETTING, name, choices)
    if EnvType.CONDA_ONLY in entry.record.env_types:
        return name, registry.resolver_named(name)
    return ComposedResolver.with_conda(registry, name)


# --- the resolver ---------------------------------------------------------------------------------------


def _environment(lock: Pylock, python_version: str, arch: str) -> dict[str, str | frozenset[str]]:
    from envcore.specs import marker_environments

    env: dict[str, str | frozenset[str]] = dict(marker_environments(python_version, arch)[0])
    env.update(extras=frozenset(), dependency_groups=frozenset(lock.default_groups))
    return env


def _holds(marker: str, env: Mapping[str, str | frozenset[str]], what: str) -> bool:
    try:
        return Marker(marker).evaluate(env, context="lock_file")
    except (UndefinedComparison, UndefinedEnvironmentName, InvalidMarker) as exc:
        raise ResolutionError(f"The marker of {what} ({marker}) cannot be evaluated: {exc}.") from None


def _allows(specifier: str, python_version: str) -> bool:
    return SpecifierSet(specifier).contains(Version(python_version), prereleases=True)


class PylockResolver(StashedInputReader):
    """The ``pylock_toml`` resolver: the PyPI side of an environment, read from a lock file."""

    def lock(self, request: ResolveRequest) -> Pylock:
        digest = digest_of(request)
        if digest is None:
            raise ResolutionError(
                "The pylock_toml resolver reads pylock.toml files (envcore resolve --pylock FILE) and cannot "
                f"resolve requirements. Set METAFLOW_{SETTING} (not METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER) to "
                "it, and use a PyPI resolver such as uv for requirements."
            )
        try:
            return Pylock.from_json(stashed_input(self.config, "pylock", digest))
        except (OSError, ValueError, KeyError, TypeError):
            raise ResolutionError(
                f"The lock file with digest {digest} is not in envcore's cache "
                f"({self.config.cache_dir() / 'pylock'}); it is recorded when "
                "`envcore resolve --pylock FILE` reads the file. Resolve again from the file."
            ) from None

    def resolve(self, request: ResolveRequest) -> Sequence[LockedPackage]:
        lock = self.lock(request)
        python = request.python_version
        if not python:
            raise ResolutionError(
                f"Reading {lock.origin} needs the exact python version of the environment, which the conda side "
                "chooses first. This is a bug in the caller."
            )
        target = f"{request.arch} with python {python}"
        if lock.requires_python and not _allows(lock.requires_python, python):
            raise ResolutionError(
                f"{lock.origin} requires python {lock.requires_python}, and the environment for {request.arch} "
                f"has python {python}. Choose a python that satisfies it with --python (e.g. --python "
                f"{_suggest(lock.requires_python)})."
            )
        env = _environment(lock, python, request.arch)
        if lock.environments and not any(_holds(m, env, lock.origin) for m in lock.environments):
            raise ResolutionError(
                f"{lock.origin} is only for the environments {'; '.join(lock.environments)}, and {target} is not "
                "one of them. Generate a lock that covers it (e.g. uv pip compile --universal)."
            )
        tags = pypi.target_tags(request, python, self.config.cache_dir())
        chosen: dict[str, LockedPackage] = {}
        for pkg in lock.packages:
            if pkg.marker and not _holds(pkg.marker, env, f"{pkg.name} in {lock.origin}"):
                continue
            locked = self._one(lock, pkg, request, tags, target)
            if locked.name in chosen and chosen[locked.name].version != locked.version:
                raise ResolutionError(
                    f"{lock.origin} gives {pkg.name} twice for {target} (versions {chosen[locked.name].version} "
                    f"and {locked.version}): their markers overlap. Generate the lock again."
                )
            chosen[locked.name] = locked
        return list(chosen.values())

    def _one(
        self, lock: Pylock, pkg: LockPackage, request: ResolveRequest, tags: Mapping[Any, int], target: str
    ) -> LockedPackage:
        what = f"{pkg.name} {pkg.version or ''}".strip()
        if pkg.unsupported:
            raise ResolutionError(
                f"{what} in {lock.origin} is {pkg.unsupported}, which envcore cannot install from a lock file "
                "(it installs wheels and builds sdists). Publish it and lock it from an index, or leave the "
                "project itself out (uv export --no-emit-project)."
            )
        if pkg.requires_python and not _allows(pkg.requires_python, request.python_version or ""):
            raise ResolutionError(
                f"{what} in {lock.origin} requires python {pkg.requires_python}, and the environment for "
                f"{target.partition(' with ')[0]} has python {request.python_version}. Choose another python "
                "with --python, or lock again for it."
            )
        wheel_name = pypi.best_wheel([w.name for w in pkg.wheels], tags)
        chosen = next((w for w in pkg.wheels if w.name == wheel_name), None) or pkg.sdist
        if chosen is None:
            names = ", ".join(w.name for w in pkg.wheels)
            raise ResolutionError(
                f"{what} in {lock.origin} has no wheel for {target} (it lists {names}) and no sdist. Generate a "
                f"lock that covers {request.arch} (uv pip compile --universal, or --python-platform), or resolve "
                "for an architecture the lock supports."
            )
        sha256, size = chosen.sha256, chosen.size
        if sha256 is None:  # PEP 751 requires hashes; some tools omit them
            sha256, size = _sha256_of(chosen.url, request.credentials)
        ext = ".whl" if chosen is not pkg.sdist else next(e for e in _SDIST_EXTS if chosen.name.endswith(e))
        return LockedPackage(
            kind=PackageKind.PYPI,
            name=pkg.name,
            version=pkg.version or "",
            filename=chosen.name[: -len(ext)],
            files=(PackageFile(url_format=ext, url=chosen.url, sha256=sha256, size=size),),
        )


def _sha256_of(url: str, credentials: Mapping[str, tuple[str, str]] | None) -> tuple[str, int]:
    try:
        return pypi.sha256_of(url, credentials)
    except OSError as exc:  # file:// URLs
        raise ResolutionError(
            f"Could not read {url} to compute its hash: {exc.strerror or exc}. Check that the file exists."
        ) from None


def _suggest(requires_python: str) -> str:
    for minor in range(8, 20):
        if _allows(requires_python, f"3.{minor}.0"):
            return f"3.{minor}"
    return "3.12"


# --- export ---------------------------------------------------------------------------------------------


def _quote(text: str) -> str:
    """A TOML basic string."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _inline(table: Mapping[str, Any]) -> str:
    items = []
    for key, value in table.items():
        if isinstance(value, Mapping):
            rendered = _inline(value)
        elif isinstance(value, int):
            rendered = str(value)
        else:
            rendered = _quote(str(value))
        items.append(f"{key} = {rendered}")
    return "{ " + ", ".join(items) + " }"


def environment_marker(arch: str) -> str:
    """The marker that holds on ``arch`` only (``sys_platform == 'linux' and platform_machine == 'x86_64'``)."""
    from envcore.specs import marker_environments

    env = marker_environments("3.0.0", arch)[0]
    return f"sys_platform == '{env['sys_platform']}' and platform_machine == '{env['platform_machine']}'"


def _file_table(name: str, file: PackageFile, sha256: str, size: int | None) -> dict[str, Any]:
    table: dict[str, Any] = {"name": name, "url": file.url}
    if size is not None:
        table["size"] = size
    table["hashes"] = {"sha256": sha256}
    return table


def conda_python_distributions(env: ResolvedEnvironment, cache_dir: Path | None = None) -> list[str]:
    """The Python distributions the conda side of ``env`` installs (python aside), as ``NAME VERSION``: a
    pylock.toml of its PyPI side cannot hold them, and its packages may depend on them. A distribution named
    otherwise than its conda package (conda's ``fx-yaml`` installs ``fx-pyyaml``) is named as PyPI names it,
    with its package (``fx-pyyaml 6.0.1 of conda's fx-yaml``), when this machine knows what the package
    installs (``cache_dir``: remembered since a resolution read it, or in the package cache); else the package
    is named."""
    from envcore.condadists import known_names

    conda = [p for p in env.packages if p.kind is PackageKind.CONDA]
    named = []
    for pkg in sorted(pypi.conda_python_packages(conda).values(), key=lambda p: p.name):
        dists = known_names(pkg, cache_dir) if cache_dir is not None else None
        own = str(canonicalize_name(pkg.name))
        if not dists or dists == {own}:
            named.append(f"{pkg.name} {pkg.version}")
        else:
            named += [
                f"{dist} {pkg.version}" if dist == own else f"{dist} {pkg.version} of conda's {pkg.name}"
                for dist in sorted(dists)
            ]
    return named


def export(
    env: ResolvedEnvironment,
    credentials: Mapping[str, tuple[str, str]] | None = None,
    cache_dir: Path | None = None,
) -> str:
    """The PyPI packages of ``env`` as a pylock.toml for its arch and python.

    A wheel envcore built from an sdist exists only in the store, so the sdist is written instead (its hash is
    computed from the sdist's URL, which must be reachable)."""
    packages = sorted((p for p in env.packages if p.kind is PackageKind.PYPI), key=lambda p: p.name)
    if not packages:
        raise UsageError(
            f"Environment {env.req_id}:{env.full_id} ({env.arch}) is {env.env_type.value}: it has no PyPI "
            "packages to export as a pylock.toml. Export a PyPI-only or mixed environment."
        )
    python = next((p for p in env.packages if p.kind is PackageKind.CONDA and p.name == "python"), None)
    lines = [
        f"# The PyPI packages of envcore environment {env.req_id}:{env.full_id} for {env.arch}"
        + (f", python {python.version}" if python else "")
        + ".",
        "# Conda packages (python included) are not part of it. Install with: uv pip install -r pylock.toml",
    ]
    conda_side = conda_python_distributions(env, cache_dir)
    if conda_side:
        lines.append(
            "# The conda side also installs these Python distributions, which the packages below may need and "
            "this file does not hold: " + ", ".join(conda_side)
        )
    lines += [
        'lock-version = "1.0"',
        f"environments = [{_quote(environment_marker(env.arch))}]",
    ]
    if python:
        major, minor = python.version.split(".")[:2]
        lines.append(f"requires-python = {_quote(f'=={major}.{minor}.*')}")
    lines.append('created-by = "envcore"')
    for pkg in packages:
        lines += ["", "[[packages]]", f"name = {_quote(pkg.name)}", f"version = {_quote(pkg.version)}"]
        src = pkg.source
        if src.url_format == ".whl" and not src.built:
            table = _file_table(pkg.filename + ".whl", src, src.sha256, src.size)
            lines.append(f"wheels = [{_inline(table)}]")
            continue
        name = pypi.filename_of(src.url)
        size: int | None
        if src.built and src.sdist_sha256:
            sha256, size = src.sdist_sha256, src.sdist_size
        elif src.built:  # described before sdists' hashes were kept
            try:
                sha256, size = _sha256_of(src.url, credentials)
            except ResolutionError as exc:
                raise ResolutionError(
                    f"{pkg.name} {pkg.version} was built by envcore from its sdist, which a pylock.toml must "
                    f"name instead, and the sdist cannot be read to hash it: {exc.message}"
                ) from None
        else:
            sha256, size = src.sha256, src.size
        lines.append(f"sdist = {_inline(_file_table(name, src, sha256, size))}")
    return "\n".join(lines) + "\n"
