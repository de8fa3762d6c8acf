"""PyPI logic shared by every PyPI backend: requirement strings, target tags, wheel choice, hashes."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from envcore.config import redact_url
from envcore.configfiles import recall, remember, remembered_file
from envcore.errors import ResolutionError
from envcore.platforms import MACOS_TARGET as MACOS_TARGET  # (conda-lock's solver is given it too)
from envcore.types import (
    CONDA_TOKEN_USER,
    PYPI,
    SYS,
    LockedPackage,
    PackageFile,
    PackageKind,
    Requirement,
    ResolvedEnvironment,
    ResolveRequest,
)

if TYPE_CHECKING:
    # packaging is imported where it is used: a repeat resolve reads its answers from the cache (_remembered_tags,
    # remember_wheel_tags) and loads none of its tags, utils and version modules (~17M instructions with sysconfig)
    from packaging.tags import Tag
    from packaging.version import Version

# glibc of the manylinux tags older than PEP 600's manylinux_2_N
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
# re-resolutions that leave out releases too new for the target's glibc or macOS, at most (see os_misfits)
TOO_NEW_ROUNDS = 20
MACHINE = {"64": "x86_64", "aarch64": "aarch64", "arm64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}


def pep508(req: Requirement) -> str:
    """A requirement as pip and uv read it (``name[extra]==1.0; marker`` or ``name @ url``)."""
    name = req.name + (f"[{','.join(req.extras)}]" if req.extras else "")
    if req.url:
        text = f"{name} @ {req.url}"
    elif req.spec:
        spec = req.spec if req.spec[0] in "<>=!~" else f"=={req.spec}"
        text = f"{name}{spec}"
    else:
        text = name
    return f"{text} ; {req.marker}" if req.marker else text


#: a python a marker can be evaluated against: X.Y, X.Y.*, X.Y.Z (a range is not one)
_PLAIN_PYTHON = re.compile(r"=*\d+\.\d+(\.\d+|\.\*)?")


def for_target(request: ResolveRequest) -> tuple[Requirement, ...]:
    """The request's PyPI requirements less those whose markers are false for its target: its arch, and its
    python when it is one version (``python_version``, else ``python`` as ``3.11`` or ``3.11.*``). A resolver
    making one lock for every platform (poetry, conda-lock) otherwise let a requirement for another platform
    (``fx-core<2; platform_machine == "x86_64"``) choose the target's versions, as pip and uv, resolving for the
    target, do not. A marker that cannot be decided here (a python range, a syntax ``packaging`` does not read)
    is kept for the resolver."""
    from packaging.markers import InvalidMarker, Marker, UndefinedEnvironmentName

    from envcore.specs import marker_environments

    python = request.python_version or request.python or ""
    if _PLAIN_PYTHON.fullmatch(python):
        environments = marker_environments(python.lstrip("="), request.arch)
    else:  # python not known: markers naming it are undecided
        python_keys = ("python_version", "python_full_version", "implementation_version")
        environments = [
            {k: v for k, v in marker_environments("3.0", request.arch)[0].items() if k not in python_keys}
        ]
    kept = []
    for req in request.of(PYPI):
        if req.marker:
            try:
                answers = {Marker(req.marker).evaluate(dict(env)) for env in environments}
            except (InvalidMarker, UndefinedEnvironmentName):
                answers = {True}
            if answers == {False}:
                continue
        kept.append(req)
    return tuple(kept)


def glibc_of(request: ResolveRequest) -> tuple[int, int] | None:
    for req in request.of(SYS):
        if req.name == "__glibc":
            major, _, minor = req.spec.partition("=")[0].partition(".")
            try:
                return int(major), int(minor.split(".")[0] or 0)
            except ValueError:
                return None
    return None


def target_glibc(request: ResolveRequest) -> tuple[int, int]:
    """The glibc a linux target is resolved for: the request's ``__glibc``, else 2.17 (manylinux2014)."""
    asked = glibc_of(request)
    return asked if asked and asked[0] == 2 else (2, 17)


def platform_tags(request: ResolveRequest) -> list[str]:
    family, _, machine = request.arch.partition("-")
    floor = target_os(request)
    if floor is not None:
        return _platforms_at(request.arch, floor[1])
    if family == "win":
        return ["win_arm64" if machine == "arm64" else "win_amd64"]
    return []


def target_os(request: ResolveRequest) -> tuple[str, tuple[int, int]] | None:
    """The system whose version limits the wheels a target loads, and the version the target is resolved for:
    ``("glibc", target_glibc)`` on linux, ``("macOS", MACOS_TARGET)`` on osx; None elsewhere."""
    family = request.arch.partition("-")[0]
    if family == "linux":
        return "glibc", target_glibc(request)
    if family == "osx":
        return "macOS", MACOS_TARGET
    return None


def _platforms_at(arch: str, version: tuple[int, int]) -> list[str]:
    """The platform tags of ``arch`` (linux or osx) with glibc or macOS ``version``, best first."""
    family, _, machine = arch.partition("-")
    if family == "osx":
        from packaging.tags import mac_platforms

        return list(mac_platforms(version, _mac_cpu(machine)))
    return _manylinux_platforms(MACHINE.get(machine, machine), version[1])


def _mac_cpu(machine: str) -> str:
    return "arm64" if machine == "arm64" else "x86_64"


def _manylinux_platforms(cpu: str, glibc_minor: int) -> list[str]:
    many = [f"manylinux_2_{m}_{cpu}" for m in range(glibc_minor, 4, -1)]
    return [*many, f"manylinux2014_{cpu}", f"manylinux2010_{cpu}", f"manylinux1_{cpu}", f"linux_{cpu}"]


def wheel_glibc(filename: str, cpu: str) -> tuple[int, int] | None:
    """The oldest glibc the manylinux tags of a wheel for ``cpu`` ask for (None: not a manylinux wheel for it)."""

    def glibc(platform: str) -> tuple[int, int] | None:
        head = platform.removesuffix(f"_{cpu}")
        parts = head.split("_")
        if head == platform:
            return None
        if head in LEGACY_MANYLINUX:
            return LEGACY_MANYLINUX[head]
        if len(parts) == 3 and parts[0] == "manylinux" and parts[1].isdigit() and parts[2].isdigit():
            return int(parts[1]), int(parts[2])
        return None

    return _oldest_platform_version(filename, glibc)


def _oldest_platform_version(
    filename: str, version_of: Callable[[str], tuple[int, int] | None]
) -> tuple[int, int] | None:
    """The oldest system version (``version_of`` a platform tag) a wheel's platform tags ask for."""
    tags = wheel_tags(filename)
    if tags is None:
        return None
    return min(filter(None, (version_of(tag.split("-", 2)[2]) for tag in tags)), default=None)


def os_needed(filenames: Iterable[str], request: ResolveRequest) -> tuple[int, int] | None:
    """When none of ``filenames`` fits a linux or osx target only because of its glibc or macOS version (see
    :func:`target_os`): the oldest version one of them would fit (the release is too new for the target). None
    otherwise."""
    floor = target_os(request)
    if floor is None or not request.python_version:
        return None
    major, minor = (int(x) for x in request.python_version.split(".")[:2])
    needs = []
    for filename in filenames:
        version = _wheel_os(filename, request.arch)
        if version is None or version <= floor[1]:
            continue
        if best_wheel([filename], _ranked_tags(major, minor, tuple(_platforms_at(request.arch, version)))):
            needs.append(version)
    return min(needs, default=None)


def _wheel_os(filename: str, arch: str) -> tuple[int, int] | None:
    """The oldest glibc (a linux ``arch``) or macOS (an osx one) a wheel's tags for ``arch``'s cpu ask for."""
    family, _, machine = arch.partition("-")
    if family == "linux":
        return wheel_glibc(filename, MACHINE.get(machine, machine))

    def macos(platform: str) -> tuple[int, int] | None:
        parts = platform.split("_", 3)
        if len(parts) == 4 and parts[0] == "macosx" and parts[1].isdigit() and parts[2].isdigit():
            version = (int(parts[1]), int(parts[2]))
            from packaging.tags import mac_platforms

            # universal2, intel...: as macOS reads them
            if platform in mac_platforms(version, _mac_cpu(machine)):
                return version
        return None

    return _oldest_platform_version(filename, macos)


def os_misfits(
    request: ResolveRequest, releases: Iterable[tuple[str, str, Sequence[str]]]
) -> dict[tuple[str, str], tuple[int, int]]:
    """Of the ``(name, version, file names)`` a resolver chose, those whose wheels all need a newer glibc or
    macOS than the target's (:func:`target_os`): ``{(canonical name, version): the oldest version they need}``.
    Resolvers that cannot be given the exact tags (uv rounds manylinux ones, poetry locks for every platform)
    leave these out (``NAME!=VERSION``) and resolve again, up to TOO_NEW_ROUNDS times, which takes the newest
    release that fits, as pip does."""
    found = {}
    for name, version, filenames in releases:
        needed = os_needed(filenames, request)  # (None without a python version)
        # the target's tags only then: most resolves need none, or take them from a cache (target_tags)
        if (
            needed is not None
            and best_wheel(filenames, target_tags(request, request.python_version or "")) is None
        ):
            found[(canonicalize(name), version)] = needed
    return found


class TooNewForTarget:
    """Releases a resolver chose whose wheels need a newer glibc or macOS than the target's (:func:`os_misfits`),
    with every other such release of those packages on the indexes (:func:`index_misfits`), and, for another
    arch than this machine's, releases without a wheel for it (:meth:`leave_out_wheelless`): left out
    (:attr:`excluded`), the resolution made again takes the newest release that fits. :meth:`refusal` says why a
    resolution with them left out failed (a pin, mostly). Each index page is read once per resolution
    (:meth:`release_files`)."""

    def __init__(self, request: ResolveRequest) -> None:
        self.request = request
        self.chosen: dict[tuple[str, str], tuple[int, int]] = {}
        self.all: dict[tuple[str, str], tuple[int, int]] = {}
        self.wheelless: dict[tuple[str, str], None] = {}
        # per package, the newest final release with a wheel the target loads, when every newer one is left out:
        # one NAME<=VERSION instead of a NAME!=VERSION each (poetry's solver ran for minutes on torch's dozen)
        self.ceilings: dict[str, str] = {}
        self._pages: dict[str, dict[str, list[str]]] = {}
        self._python = request.python_version  # the target's, or the one the conda side chose (see add)

    def __bool__(self) -> bool:
        return bool(self.all)

    def add(
        self, misfits: Mapping[tuple[str, str], tuple[int, int]], python_version: str | None = None
    ) -> None:
        """``python_version``: the target's, when the request names none (a mixed one: the conda side chose it)."""
        self._python = python_version or self._python
        self.chosen.update(misfits)
        self.all.update(misfits)
        target = self._target(python_version)
        names = {name for name, _ in misfits}
        self.all.update(index_misfits(target, names, self.release_files))
        for name in names:
            self._set_ceiling(target, name)

    def leave_out_wheelless(self, name: str, version: str, python_version: str | None = None) -> bool:
        """Leave out ``name`` ``version``, chosen for another arch than this machine's without a wheel for it,
        with the newer releases without one either (:func:`newer_without_wheels`). False when no release of
        it on the indexes has one (nothing to fall back to)."""
        target = self._target(python_version)
        newer = newer_without_wheels(target, name, self.release_files)
        if newer is None:
            return False
        key = canonicalize(name)
        self.wheelless.update(dict.fromkeys([(key, version), *((key, v) for v in newer)]))
        self._set_ceiling(target, key)
        return True

    @property
    def excluded(self) -> list[str]:
        """``NAME<=VERSION`` for each package with a ceiling, ``NAME!=VERSION`` for the other releases left out."""
        lines = [f"{name}<={version}" for name, version in self.ceilings.items()]
        for name, version in [*self.all, *self.wheelless]:
            ceiling = self.ceilings.get(name)
            if ceiling is None or _version_key(version) <= _version_key(ceiling):
                lines.append(f"{name}!={version}")
        return list(dict.fromkeys(lines))

    def _target(self, python_version: str | None) -> ResolveRequest:
        return replace(self.request, python_version=python_version) if python_version else self.request

    def _set_ceiling(self, target: ResolveRequest, name: str) -> None:
        """The newest final release of ``name`` with a wheel the target loads, when no pre-release newer than it
        has one (``--pre`` would take that)."""
        fitting = [_version_key(v) for v in _with_wheels(target, self.release_files(name))]
        finals = [v for v in fitting if not v.is_prerelease]
        if not finals or any(v.is_prerelease and v > max(finals) for v in fitting):
            return
        newest = max(finals)
        known = self.ceilings.get(canonicalize(name))
        from packaging.version import Version

        self.ceilings[canonicalize(name)] = str(newest if known is None else min(newest, Version(known)))

    def refusal(self) -> ResolutionError:
        return ResolutionError(too_new_refusal(self._target(self._python), self.chosen))

    def rounds_refusal(self) -> ResolutionError:
        """After TOO_NEW_ROUNDS resolutions, each choosing a release too new: :func:`too_new_rounds_refusal`."""
        return ResolutionError(too_new_rounds_refusal(self._target(self._python), self.all))

    def release_files(self, name: str) -> dict[str, list[str]]:
        """:func:`release_files`, each page read once."""
        key = canonicalize(name)
        if key not in self._pages:
            self._pages[key] = release_files(self.request, key)
        return self._pages[key]

    def sdist_wheels(self, name: str, version: str) -> list[str]:
        """The wheels of a release a resolver locked as its sdist, from its index page, where that sdist would
        not be built: for another architecture (envcore builds for this machine's only), or for this machine's
        asked for an older glibc than the machine's (a co-resolve with another linux arch, ``--sys-pkg``; a wheel
        built here needs the machine's). Wheels for a newer glibc or macOS make it a release to leave out
        (:func:`os_misfits`), as pip leaves it, or to name in the refusal of a pin. Otherwise none (nothing is
        read)."""
        from envcore.platforms import local_arch
        from envcore.resolve import host_glibc

        if self.request.arch == local_arch():
            asked, host = glibc_of(self.request), host_glibc().split(".")
            try:
                lowered = asked is not None and asked < (int(host[0]), int(host[1]))
            except (ValueError, IndexError):
                lowered = False
            if not lowered:
                return []
        return [f for f in self.release_files(name).get(version, []) if f.endswith(".whl")]


def outermost(
    misfits: Mapping[tuple[str, str], tuple[int, int]],
    wheelless: Sequence[tuple[str, str]],
    dependencies: Mapping[str, Iterable[str]],
) -> tuple[dict[tuple[str, str], tuple[int, int]], list[tuple[str, str]]]:
    """Of releases to leave out (too new: ``misfits``; without wheels: ``wheelless``; as ``(canonical name,
    version)``), those none of the others depends on, directly or not (``dependencies``: the names each package
    of the lock depends on). For resolvers whose exclusions are requirements (poetry's lock, conda-lock's):
    leaving out torch 2.15.0 drops the nvidia-* packages it brings, which as requirements of their own would be
    installed without it, or fail (none fits glibc 2.17). Those still needed are chosen again, and left out in
    the next round. All of them when none is outermost (a cycle)."""
    graph = {canonicalize(name): {canonicalize(d) for d in deps} for name, deps in dependencies.items()}
    # what the releases depend on, directly or through others (cuda-toolkit's nvidia-*)
    needed: set[str] = set()
    todo = [dep for name, _ in [*misfits, *wheelless] for dep in graph.get(name, ()) if dep != name]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(graph.get(name, ()))
    outer = {key: value for key, value in misfits.items() if key[0] not in needed}
    outer_wheelless = [key for key in wheelless if key[0] not in needed]
    return (outer, outer_wheelless) if outer or outer_wheelless else (dict(misfits), list(wheelless))


def requirement_misfits(
    request: ResolveRequest,
    requirement: str,
    files: Callable[[str], Mapping[str, Sequence[str]]] | None = None,
) -> dict[tuple[str, str], tuple[int, int]]:
    """When every release ``requirement`` (``numpy==2.4.6``, ``numpy>=2.3``) allows on the indexes is too new for
    the target's glibc or macOS (:func:`os_misfits`), the one to name in the refusal: the newest of those needing
    the oldest version. Empty when one fits, none is listed, or it is not a requirement. For resolvers that say only
    that no release fits (pip: 'No matching distribution found')."""
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as Pep508

    if target_os(request) is None:
        return {}
    try:
        wanted = Pep508(requirement)
    except InvalidRequirement:
        return {}
    name = canonicalize(wanted.name)
    listed = (files or functools.partial(release_files, request))(name)
    allowed = [
        (name, v, found) for v, found in listed.items() if wanted.specifier.contains(v, prereleases=True)
    ]
    misfits = os_misfits(request, allowed)
    if not allowed or len(misfits) < len(allowed):
        return {}
    least = min(misfits.values())
    newest = max((key for key, needs in misfits.items() if needs == least), key=lambda k: _version_key(k[1]))
    return {newest: least}


def index_misfits(
    request: ResolveRequest,
    names: Iterable[str],
    files: Callable[[str], Mapping[str, Sequence[str]]] | None = None,
) -> dict[tuple[str, str], tuple[int, int]]:
    """:func:`os_misfits` among *every* release of ``names`` on the request's PyPI indexes (``files``: how to
    read them, :func:`release_files` by default): left out at once, a re-resolution does not step back one
    release at a time (numpy from 2.4.6 to 2.2.6 for glibc 2.24 took 13 rounds of uv). Pages that cannot be
    read add nothing (the rounds then find the rest)."""
    read = files or functools.partial(release_files, request)
    releases = [(n, v, found) for n in names for v, found in read(n).items()]
    return os_misfits(request, releases)


def newer_without_wheels(
    request: ResolveRequest, name: str, files: Callable[[str], Mapping[str, Sequence[str]]] | None = None
) -> list[str] | None:
    """The releases of ``name`` on the request's PyPI indexes newer than the newest with a wheel the target
    loads, and without one themselves; None when no release listed has one (nothing to fall back to). For
    another architecture than this machine's (source distributions are built for this one only), resolvers that
    lock such a release anyway (poetry's universal lock, conda-lock's) leave these out at once and take the
    newest release with wheels, as uv and pip do with ``--only-binary``. Older ones are left alone: a newer
    release is preferred to them, and each ``!=`` slows the solvers down."""
    listed = (files or functools.partial(release_files, request))(name)
    fitting = _with_wheels(request, listed)
    if listed and not fitting:
        return None
    newest = max(map(_version_key, fitting), default=_version_key("0"))
    return [version for version in listed if version not in fitting and _version_key(version) > newest]


def _with_wheels(request: ResolveRequest, listed: Mapping[str, Sequence[str]]) -> set[str]:
    """The versions of ``listed`` (``{version: file names}``) with a wheel the target loads."""
    tags = target_tags(request, request.python_version or "")
    return {version for version, found in listed.items() if best_wheel(found, tags) is not None}


def release_files(request: ResolveRequest, name: str) -> dict[str, list[str]]:
    """``{version: file names}`` of ``name`` on the request's PyPI indexes (their PEP 503 pages) and in its
    ``--find-links`` locations (a folder's files, a page's links), as the resolvers see them."""
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        parse_sdist_filename,
        parse_wheel_filename,
    )

    key = canonicalize(name)
    listed = [
        *(
            f
            for index in read_indexes(request)
            for f in _listed_files(f"{index.rstrip('/')}/{key}/", request.credentials)
        ),
        *(
            f
            for link in find_links(request)
            for f in _listed_files(link, request.credentials, folder_files=True)
        ),
    ]
    found: dict[str, list[str]] = {}
    for filename in listed:
        try:
            if filename.endswith(".whl"):
                project, version, *_ = parse_wheel_filename(filename)
            else:
                project, version = parse_sdist_filename(filename)
        except (InvalidWheelFilename, InvalidSdistFilename):
            continue
        if project == key:
            found.setdefault(str(version), []).append(filename)
    return found


def find_links(request: ResolveRequest) -> list[str]:
    """The request's ``--find-links`` locations (``-f X``, ``--find-links=X``...)."""
    return [
        option.replace("=", " ", 1).partition(" ")[2].strip()
        for option in request.extras.get(PYPI, ())
        if option.startswith(("-f", "--find-links"))
    ]


def _listed_files(
    location: str, credentials: Mapping[str, tuple[str, str]], folder_files: bool = False
) -> list[str]:
    """The file names an HTML page links to (a PEP 503 project page; a ``--find-links`` page), or, with
    ``folder_files``, a local folder holds (a ``--find-links`` folder, as pip and uv read it; an index's project
    folder is read from its ``index.html``). Empty when it cannot be read."""
    return [filename for filename, _ in _listed_links(location, credentials, folder_files)]


def _listed_links(
    location: str, credentials: Mapping[str, tuple[str, str]], folder_files: bool = False
) -> list[tuple[str, str | None]]:
    """:func:`_listed_files`, each with its PEP 592 ``data-yanked`` reason ("" when none is given; None: not
    yanked)."""
    import html
    import re

    parts = urlsplit(location)
    if parts.scheme in ("", "file"):
        path = Path(unquote(parts.path) if parts.scheme else location).expanduser()
        try:
            if path.is_dir() and folder_files:
                return [(entry.name, None) for entry in path.iterdir()]
            page = (path / "index.html" if path.is_dir() else path).read_text(errors="replace")
        except OSError:
            return []
    elif parts.scheme in ("http", "https"):
        import requests

        auth = credentials.get(parts.hostname or "")
        if auth is not None and auth[0] == CONDA_TOKEN_USER:
            auth = None
        try:
            response = requests.get(location, timeout=30, auth=auth, headers={"Accept": "text/html"})
        except requests.RequestException:
            return []
        page = response.text if response.ok else ""
    else:
        return []
    found = []
    # each anchor up to its end tag (a '>' left unescaped in data-requires-python ends no tag here)
    for anchor in re.split(r"<a\s", page, flags=re.IGNORECASE)[1:]:
        anchor = anchor.split("</a", 1)[0]
        href = re.search(r'href\s*=\s*"([^"]+)"', anchor)
        if href is None:
            continue
        yanked = re.search(r'data-yanked(?:\s*=\s*"([^"]*)")?', anchor)
        reason = None if yanked is None else html.unescape(yanked.group(1) or "")
        found.append((filename_of(html.unescape(href.group(1)).partition("#")[0]), reason))
    return found


def exact_pins(request: ResolveRequest) -> set[str]:
    """The canonical names of the request's PyPI requirements pinned with ``==`` or ``===``: the only ones that
    take a yanked release (PEP 592)."""
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as Pep508

    found = set()
    for req in request.of(PYPI):
        try:
            parsed = Pep508(pep508(req))
        except InvalidRequirement:
            continue
        if any(s.operator in ("==", "===") for s in parsed.specifier):
            found.add(canonicalize(parsed.name))
    return found


def yanked_files(request: ResolveRequest, name: str) -> dict[str, str]:
    """``{file name: reason}`` of the files of ``name`` its indexes mark yanked (PEP 592), for resolvers whose
    lock does not say (conda-lock's)."""
    key = canonicalize(name)
    return {
        filename: reason
        for index in read_indexes(request)
        for filename, reason in _listed_links(f"{index.rstrip('/')}/{key}/", request.credentials)
        if reason is not None
    }


def warn_yanked(name: str, version: str, reason: str | None = None) -> None:
    """A resolver chose ``name`` ``version``, which its index marks yanked (PEP 592: only an exact pin takes
    it): an :class:`~envcore.errors.EnvcoreWarning`, as pip and uv warn."""
    import warnings

    from envcore.errors import EnvcoreWarning

    why = f" ({reason})" if reason else ""
    warnings.warn(
        EnvcoreWarning(
            f"{name} {version} is yanked on its index{why}: its publisher withdrew it. A requirement pins it "
            "(==), so it is in the environment; pin another version unless this one is what you need."
        ),
        stacklevel=2,
    )


def too_new_refusal(request: ResolveRequest, releases: Mapping[tuple[str, str], tuple[int, int]]) -> str:
    """Why releases too new for the target's glibc or macOS (:func:`os_misfits`) cannot be left out for older
    ones: the other requirements need them (a pin, mostly)."""
    system, have = _target_os_text(request)

    def listed(keys: Iterable[tuple[str, str]]) -> str:
        return ", ".join(f"{n} {v} ({system} {releases[n, v][0]}.{releases[n, v][1]})" for n, v in keys)

    named, brought = _asked_first(request, releases)
    also = f" (as do those of the {_dependencies(brought)} {listed(brought)})" if brought else ""
    return (
        f"The PyPI requirements cannot be resolved for {request.arch} (python {request.python_version}) with "
        f"{system} {have}: the wheels of {listed(named)} need a newer {system}{also}, and no other version fits "
        "the requirements. " + _ways_out(system, have, max(releases.values()))
    )


def too_new_rounds_refusal(
    request: ResolveRequest, releases: Mapping[tuple[str, str], tuple[int, int]]
) -> str:
    """Why a resolution stopped after leaving out TOO_NEW_ROUNDS releases too new for the target's glibc or
    macOS one resolution at a time (their indexes list no page of every release to leave out at once): a limit,
    not a proof that no release fits."""
    system, have = _target_os_text(request)
    named, brought = _asked_first(request, releases)
    names = sorted({name for name, _ in named})
    oldest = {name: min((v for n, v in named if n == name), key=_version_key) for name in names}
    also = (
        f" (and {len(brought)} of the {_dependencies(brought)} {', '.join(sorted({n for n, _ in brought}))})"
    )
    return (
        f"The PyPI requirements were not resolved for {request.arch} (python {request.python_version}) with "
        f"{system} {have}: envcore left out {len(named)} releases of {', '.join(names)}{also if brought else ''} "
        f"whose wheels need a newer {system}, one resolution at a time, and stopped after {TOO_NEW_ROUNDS} "
        "resolutions (the indexes and --find-links locations list no page of every release to leave them out at "
        "once). An older release may fit: "
        + ", ".join(f"{name}<{version}" for name, version in oldest.items())
        + ". "
        + _ways_out(system, have, max(releases.values()))
    )


def _asked_first(
    request: ResolveRequest, releases: Iterable[tuple[str, str]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``releases`` of the packages asked for, the pins to change, and those of the ones they bring (torch's
    nvidia-*), a refusal's aside; all of them first when none was asked for."""
    asked = {canonicalize(r.name) for r in request.of(PYPI)}
    named = [key for key in releases if key[0] in asked] or list(releases)
    return named, [key for key in releases if key not in named]


def _dependencies(brought: Sequence[tuple[str, str]]) -> str:
    return "dependency" if len({name for name, _ in brought}) == 1 else "dependencies"


def _target_os_text(request: ResolveRequest) -> tuple[str, str]:
    system, version = target_os(request) or ("glibc", target_glibc(request))
    return system, f"{version[0]}.{version[1]}"


def _ways_out(system: str, have: str, newest: tuple[int, int]) -> str:
    if system == "macOS":
        return (
            f"Pin a version with wheels for macOS {have}: envcore resolves osx environments for macOS {have} and "
            "newer, and takes the wheels those load."
        )
    return (
        f"Pin a version with wheels for glibc {have}, or, if the machines it runs on have it, resolve for glibc "
        f"{newest[0]}.{newest[1]}: --sys-pkg __glibc=={newest[0]}.{newest[1]} (envcore resolve, or a line of a "
        "requirements.txt), '- sys:' in an environment.yml, @sys_packages in a flow; "
        "METAFLOW_CONDA_SYS_DEFAULT_PACKAGES sets the default of other architectures."
    )


def _version_key(version: str) -> Version:
    """A release's version to sort by (an invalid one sorts first)."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version)
    except InvalidVersion:
        return Version("0")


def target_tags(
    request: ResolveRequest, python_version: str, cache_dir: Path | None = None
) -> Mapping[Tag, int]:
    """Wheel tags the target interpreter accepts, each with its rank (0 = most specific). With ``cache_dir``, the
    ranking is remembered there (:func:`_remembered_tags`)."""
    major, minor = (int(x) for x in python_version.split(".")[:2])
    platforms = tuple(platform_tags(request))
    if cache_dir is None:
        return _ranked_tags(major, minor, platforms)
    return _remembered_tags(major, minor, platforms, str(cache_dir))


@functools.lru_cache(maxsize=32)
def _ranked_tags(major: int, minor: int, platforms: tuple[str, ...]) -> TagRanks:
    from packaging.tags import compatible_tags, cpython_tags

    # a thousand tags: ranked once per target, not once per wheel looked at
    return _ranking(
        (
            *cpython_tags((major, minor), platforms=platforms),
            *compatible_tags((major, minor), platforms=platforms),
        )
    )


def _ranking(tags: Iterable[Tag]) -> TagRanks:
    return TagRanks({str(tag): i for i, tag in enumerate(tags)})


class TagRanks(Mapping["Tag", int]):
    """Tags and their ranks, kept as the tags' text (``cp311-cp311-manylinux_2_17_x86_64``): read back from a
    cache (:func:`_remembered_tags`), a thousand ``Tag`` objects would cost as much as packaging's ranking."""

    def __init__(self, ranks: dict[str, int]) -> None:
        self._ranks = ranks

    def __getitem__(self, tag: Tag) -> int:
        from packaging.tags import Tag

        if not isinstance(tag, Tag):
            raise KeyError(tag)
        return self._ranks[str(tag)]

    def __contains__(self, tag: object) -> bool:
        from packaging.tags import Tag

        return isinstance(tag, Tag) and str(tag) in self._ranks

    def __iter__(self) -> Iterator[Tag]:
        from packaging.tags import Tag

        return (Tag(*text.split("-")) for text in self._ranks)

    def __len__(self) -> int:
        return len(self._ranks)

    def texts(self) -> list[str]:
        """The tags' text, best first."""
        return list(self._ranks)

    def ranks(self) -> Mapping[str, int]:
        """The tags' text and rank."""
        return self._ranks


@functools.lru_cache(maxsize=32)
def _remembered_tags(major: int, minor: int, platforms: tuple[str, ...], cache_dir: str) -> Mapping[Tag, int]:
    """:func:`_ranked_tags`, remembered in ``cache_dir/tools``: packaging's ranking (~900 tags for a linux
    target) costs ~15M instructions with the sysconfig variables it reads, ~2.5% of a CLI PyPI resolve; read
    back it costs 1.9M. The key holds what packaging's answer depends on besides the target: its own version
    and the interpreter (a debug or free-threaded build adds abis)."""
    from importlib.machinery import EXTENSION_SUFFIXES

    import packaging

    key = [
        packaging.__version__,
        sys.executable,
        sys.version,
        getattr(sys, "abiflags", ""),
        hasattr(sys, "gettotalrefcount"),
        EXTENSION_SUFFIXES,
        major,
        minor,
        list(platforms),
    ]
    path = remembered_file(cache_dir, "wheel-tags-", key)
    texts = recall(path, key)
    if isinstance(texts, list) and all(type(text) is str for text in texts):
        return TagRanks({text: i for i, text in enumerate(texts)})
    ranked = _ranked_tags(major, minor, platforms)
    remember(path, key, ranked.texts())
    return ranked


def best_wheel(filenames: Iterable[str], rank: Mapping[Tag, int]) -> str | None:
    """The wheel whose best tag ranks highest for the target (``rank``: :func:`target_tags`), or None if
    none fits."""
    ranks = rank.ranks() if isinstance(rank, TagRanks) else {str(tag): i for tag, i in rank.items()}
    best: tuple[int, str] | None = None
    for filename in filenames:
        tags = wheel_tags(filename)
        if tags is None:
            continue
        score = min((ranks[t] for t in tags if t in ranks), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, filename)
    return best[1] if best else None


# wheel file name: the text of its tags (``cp311-cp311-manylinux_2_17_x86_64``), None for an invalid name
_WHEEL_TAGS: dict[str, frozenset[str] | None] = {}


def wheel_tags(filename: str) -> frozenset[str] | None:
    """The tags (as text) of a wheel file name as packaging's ``parse_wheel_filename`` reads it; None when it
    finds the name invalid. Read once per name and process, or from :func:`remember_wheel_tags`."""
    if filename not in _WHEEL_TAGS:
        from packaging.utils import InvalidWheelFilename, parse_wheel_filename

        try:
            _WHEEL_TAGS[filename] = frozenset(map(str, parse_wheel_filename(filename)[3]))
        except InvalidWheelFilename:
            _WHEEL_TAGS[filename] = None
    return _WHEEL_TAGS[filename]


def remember_wheel_tags(filenames: Iterable[str], cache_dir: str | os.PathLike[str]) -> None:
    """:func:`wheel_tags` of ``filenames`` (those a resolver locked), remembered in ``cache_dir/tools``: packaging's
    reading of them loads its utils, version and tags modules (~17M instructions with sysconfig, ~3% of a CLI
    PyPI resolve); the same resolve again reads the answers back. The key holds packaging's version (what it finds
    valid changes between versions) and the names."""
    import packaging

    names = sorted({name for name in filenames if name not in _WHEEL_TAGS})
    if not names:
        return
    key = [packaging.__version__, names]
    path = remembered_file(cache_dir, "wheel-names-", key)
    saved = recall(path, key)
    if (
        isinstance(saved, list)
        and len(saved) == len(names)
        and all(
            tags is None or (isinstance(tags, list) and all(type(t) is str for t in tags)) for tags in saved
        )
    ):
        _WHEEL_TAGS.update(
            (name, None if tags is None else frozenset(tags)) for name, tags in zip(names, saved, strict=True)
        )
        return
    remember(path, key, [None if (tags := wheel_tags(name)) is None else sorted(tags) for name in names])


def canonicalize(name: str) -> str:
    """A distribution's name normalised as PEP 503 says, as ``packaging.utils.canonicalize_name`` (without
    ``validate``) does, without loading packaging (``envcore.specs._normalized`` is the same rule for the parser,
    which does not import this module)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def filename_of(url: str) -> str:
    return unquote(Path(urlsplit(url).path).name)


def refused_index(request: ResolveRequest) -> str | None:
    """Why a PyPI resolution may have failed that its resolver's words hide (uv: 'not found in the package
    registry', pip: 'Exception'): an http(s) index of the request that refuses its credentials (401, 403). Asked
    only after a failure (one request per index)."""
    import requests

    for index in request.sources.get(PYPI, ()):
        parts = urlsplit(index)
        if parts.scheme not in ("http", "https"):
            continue
        auth = request.credentials.get(parts.hostname or "")
        if auth is not None and auth[0] == CONDA_TOKEN_USER:
            auth = None
        try:
            status = requests.get(index, timeout=10, auth=auth).status_code
        except requests.RequestException:
            continue  # unreachable: the resolver said so, or will
        if status in (401, 403):
            given = "without credentials" if auth is None else "with the credentials given"
            return (
                f"The PyPI index {redact_url(index)} answers {status} ({'Unauthorized' if status == 401 else 'Forbidden'}) "
                f"{given}: the packages it holds were not seen. Check the index's user and password (user:password@ "
                "in its URL, METAFLOW_CONDA_SRCS_AUTH_INFO or the keyring with METAFLOW_ENVCORE_KEYRING=auto)"
            )
    return None


def sha256_of(url: str, credentials: Mapping[str, tuple[str, str]] | None = None) -> tuple[str, int]:
    """Download ``url`` to hash it (for indexes that publish no hash); returns (sha256, size)."""
    digest, size = hashlib.sha256(), 0
    parts = urlsplit(url)
    if parts.scheme == "file":
        try:
            with open(unquote(parts.path), "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise ResolutionError(
                f"Cannot read {url} to compute its hash: {exc.strerror}. Check that the file exists."
            ) from None
        return digest.hexdigest(), size
    import requests  # here: only hashless http indexes need it

    auth = (credentials or {}).get(parts.hostname or "")
    try:
        with requests.get(url, stream=True, timeout=60, auth=auth) as response:
            response.raise_for_status()
            for chunk in response.iter_content(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except requests.RequestException as exc:
        raise ResolutionError(
            f"Could not download {redact_url(url)} to compute its hash (the index publishes none): "
            f"{type(exc).__name__}. Check the index and your credentials."
        ) from None
    return digest.hexdigest(), size


def locked_wheel(name: str, version: str, url: str, sha256: str, size: int | None) -> LockedPackage:
    filename = filename_of(url)
    ext = (
        ".whl"
        if filename.endswith(".whl")
        else (".tar.gz" if filename.endswith(".tar.gz") else Path(filename).suffix)
    )
    return LockedPackage(
        kind=PackageKind.PYPI,
        name=canonicalize(name),
        version=version,
        filename=filename[: -len(ext)],
        files=(PackageFile(url_format=ext, url=redact_url(url), sha256=sha256, size=size),),
    )


def conda_python_packages(
    packages: Iterable[LockedPackage], distributions: Mapping[str, str] | None = None
) -> dict[str, LockedPackage]:
    """Conda packages that install a Python distribution, by the distribution's canonical PyPI name: the
    package's own name, and those ``distributions`` (PyPI name -> conda name, :mod:`envcore.condadists`) says it
    installs under another name."""
    found: dict[str, LockedPackage] = {}
    for pkg in packages:
        if (
            pkg.kind is PackageKind.CONDA
            and pkg.name != "python"
            and any(d.split()[0] in ("python", "python_abi") for d in pkg.depends)
        ):
            found[canonicalize(pkg.name)] = pkg
    by_name = {pkg.name: pkg for pkg in found.values()}
    for dist, conda_name in (distributions or {}).items():
        if conda_name in by_name:
            found.setdefault(dist, by_name[conda_name])
    return found


def resolver_inputs(request: ResolveRequest, tool: str) -> tuple[str, str]:
    """The text of ``requirements.in`` (the PyPI requirements) and of ``constraints.txt`` (the PyPI equivalents
    of the conda-installed Python packages, pinned so the PyPI side never replaces them) for a PyPI tool run."""
    if not request.python_version:
        raise ResolutionError(
            f"The {tool} resolver needs the exact python version of the environment; it is chosen by the conda "
            "side first. This is a bug in the caller."
        )
    pins = conda_python_packages(request.installed, request.installed_distributions)
    return (
        "".join(pep508(r) + "\n" for r in request.of(PYPI)),
        "".join(f"{name}=={pkg.version}\n" for name, pkg in pins.items())
        + "".join(f"{line}\n" for line in user_constraints(request)),
    )


# a PyPI option of the request per constraint of a -c FILE (envcore.specs)
CONSTRAINT_OPTION = "--constraint="


def user_constraints(request: ResolveRequest) -> list[str]:
    """The constraints the user gave (``-c FILE`` in a requirements file), as lines of a constraints file."""
    return [
        e[len(CONSTRAINT_OPTION) :] for e in request.extras.get(PYPI, ()) if e.startswith(CONSTRAINT_OPTION)
    ]


def tool_options(request: ResolveRequest) -> list[str]:
    """The request's PyPI options a tool takes as arguments (``--pre``, ``--find-links X``...): all but the
    constraints, which go to the tool in its constraints file (:func:`resolver_inputs`)."""
    return [e for e in request.extras.get(PYPI, ()) if not e.startswith(CONSTRAINT_OPTION)]


def write_resolver_inputs(request: ResolveRequest, work: Path, tool: str) -> tuple[Path, Path]:
    """:func:`resolver_inputs` written to ``work``: ``requirements.in`` and ``constraints.txt``."""
    requirements, constraints = work / "requirements.in", work / "constraints.txt"
    for path, text in zip((requirements, constraints), resolver_inputs(request, tool), strict=True):
        path.write_text(text)
    return requirements, constraints


def netrc_env(request: ResolveRequest, work: Path) -> dict[str, str]:
    """``NETRC`` pointing at a private file with the request's credentials, for uv and pip: secrets go to the
    tools by file, never on their command lines."""
    if not request.credentials:
        return {}
    from envcore.tools import write_netrc

    return {"NETRC": str(write_netrc(request.credentials, work / "netrc"))}


def read_indexes(request: ResolveRequest) -> tuple[str, ...]:
    """The request's PyPI indexes the resolvers read: none with ``--no-index``."""
    return () if "--no-index" in request.extras.get(PYPI, ()) else request.sources.get(PYPI, ())


def index_url_args(request: ResolveRequest) -> list[str]:
    """The request's PyPI indexes as pip and uv take them (``--index-url`` the first, ``--extra-index-url`` the
    others); none with ``--no-index``."""
    return index_args(read_indexes(request))


def index_args(sources: Sequence[str]) -> list[str]:
    """PyPI indexes as pip and uv take them: ``--index-url`` the first, ``--extra-index-url`` the others."""
    if not sources:
        return []
    return ["--index-url", sources[0], *(arg for s in sources[1:] for arg in ("--extra-index-url", s))]


# SOURCE_DATE_EPOCH for tools building wheels: 1980-01-01, the zip epoch (build backends that honour it build
# identical wheels from identical sources)
REPRODUCIBLE_EPOCH = "315532800"


def build_one_wheel(
    argv: list[str], request: ResolveRequest, out_dir: Path, *, what: str, env: Mapping[str, str], debug: bool
) -> tuple[str, Path | None]:
    """Run a tool (``argv``) that builds one wheel into ``out_dir``, reproducibly and with the request's index
    credentials (by a netrc file, gone afterwards): its error output, and the wheel, or None unless it succeeded
    with exactly one."""

    from envcore.tools import run_tool, scratch_folder, tool_env

    with scratch_folder("build") as tmp:
        extra = {**env, "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH, **netrc_env(request, Path(tmp))}
        done = run_tool(argv, what=what, env=tool_env(extra), debug=debug)
    wheels = sorted(out_dir.glob("*.whl"))
    return done.stderr, wheels[0] if done.returncode == 0 and len(wheels) == 1 else None


def undeclared_extras(env: ResolvedEnvironment, cache_root: Path) -> list[str]:
    """Warnings for the extras requested of a PyPI package whose wheel does not declare them: uv and pip leave
    such an extra out with a warning of their own (a misspelt ``[extra]`` silently loses its packages). Read
    from the wheels in this machine's package cache (those it has just fetched); a package without one there is
    not checked."""
    from envcore.fetch import PackageCache
    from envcore.resolve import requirements_of

    cache = PackageCache(cache_root)
    wheels = {canonicalize(p.name): p for p in env.packages if p.kind is PackageKind.PYPI}
    warnings = []
    for req in requirements_of(env):
        pkg = wheels.get(canonicalize(req.name)) if req.category == PYPI and req.extras else None
        wheel = pkg.file(".whl") if pkg is not None else None
        path = cache.get(wheel, f"{pkg.filename}.whl") if pkg is not None and wheel is not None else None
        if pkg is None or path is None:
            continue
        declared = declared_extras(path)
        missing = [extra for extra in req.extras if canonicalize(extra) not in declared]
        if missing:
            has = f"it declares {', '.join(sorted(declared))}" if declared else "it declares none"
            warnings.append(
                f"{pkg.name} {pkg.version} has no extra {', '.join(map(repr, missing))} ({has}), so the "
                f"resolver left {'it' if len(missing) == 1 else 'them'} out. Check the spelling of "
                f"{req.name}[{','.join(req.extras)}]."
            )
    return warnings


def declared_extras(wheel: Path) -> set[str]:
    """The extras a wheel declares (``Provides-Extra``, and any named in a ``Requires-Dist`` marker, as metadata
    older than 2.1 may only do), normalised as PEP 685 compares them."""
    import re
    import zipfile
    from email.parser import HeaderParser

    with zipfile.ZipFile(wheel) as archive:
        name = next(
            (n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None
        )
        if name is None:
            return set()
        metadata = HeaderParser().parsestr(archive.read(name).decode("utf-8", "replace"))
    found = set(metadata.get_all("Provides-Extra") or ())
    for requirement in metadata.get_all("Requires-Dist") or ():
        found.update(re.findall(r"""extra\s*==\s*['"]([^'"]+)['"]""", requirement))
    return {canonicalize(extra) for extra in found}
