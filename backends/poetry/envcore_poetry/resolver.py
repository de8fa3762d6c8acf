"""Resolve PyPI requirements with ``poetry lock`` in a throw-away project, then pick each package's file for the
target platform and python from the (universal) lock.

The project has the request's requirements as PEP 508 ``[project] dependencies``, the exact target python as
``requires-python`` and the request's indexes as ``primary`` sources (so PyPI is never contacted). poetry runs
from its own interpreter (see ``_poetry_main``) with its cache, configuration and home in a temporary
directory, no ``POETRY_*``/``PIP_*`` variables of the user, and the credentials of private indexes as
``POETRY_HTTP_BASIC_<SOURCE>_*`` variables of its process only.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.markers import InvalidMarker, Marker, UndefinedEnvironmentName
from packaging.version import InvalidVersion, Version

from envcore import pypi
from envcore.config import Config, redact_text, redact_url
from envcore.errors import BackendUnavailable, ConfigError, ResolutionError
from envcore.platforms import local_arch
from envcore.specs import marker_environments
from envcore.tools import run_tool, scratch_folder, tail, tool_env
from envcore.types import PYPI, LockedPackage, ResolveRequest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAIN = Path(__file__).with_name("_poetry_main.py")
ROOT = "envcore-request"  # the name of the throw-away project, as poetry's messages call it
_VERSION = re.compile(r"(\d+(?:\.\d+)+\S*)")
_CHECK = "import poetry.console.application, poetry.factory, poetry.utils.env.mock_env"


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


@dataclass(frozen=True)
class _Options:
    """The requirements options (``--pre``, ``--trusted-host H``) poetry can honour."""

    pre: bool = False
    trusted_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, extras: Sequence[str]) -> _Options:
        pre, trusted = False, set()
        for extra in extras:
            option, _, value = extra.replace("=", " ", 1).partition(" ")
            if option == "--pre":
                pre = True
            elif option == "--trusted-host" and value.strip():
                trusted.add(value.strip().split(":")[0])
            elif option in ("--only-binary", "--no-binary", "--prefer-binary"):
                raise ResolutionError(
                    f"The poetry resolver cannot apply {extra!r}: poetry locks every file of a release and has no "
                    "choice between wheels and source distributions. Remove the line, or select "
                    "METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER=uv (or pip)."
                )
            elif extra.startswith(pypi.CONSTRAINT_OPTION):
                raise ResolutionError(
                    f"The poetry resolver cannot apply the constraint {extra[len(pypi.CONSTRAINT_OPTION) :]!r} "
                    "(from a -c FILE line): poetry has no constraints files. Write the versions you need as "
                    "requirements, or select a PyPI resolver that applies constraints with "
                    "METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER=uv (or pip)."
                )
            else:
                raise ResolutionError(
                    f"The poetry resolver does not support the requirements option {extra!r} (poetry reads packages "
                    "from http(s) indexes only: no --no-index, --find-links or local directories). Remove it, or "
                    "select another PyPI resolver with METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER=uv."
                )
        return cls(pre=pre, trusted_hosts=frozenset(trusted))


class PoetryResolver:
    def __init__(self, config: Config) -> None:
        self.config = config

    # -- the executable --

    def _python(self) -> str:
        """The interpreter poetry runs in: ours, or the one of ``METAFLOW_ENVCORE_POETRY_EXE``'s script."""
        configured = self.config.get("ENVCORE_POETRY_EXE")
        if not configured:
            return sys.executable
        exe = Path(str(configured)).expanduser()
        try:
            first = exe.read_bytes()[:512].split(b"\n", 1)[0].decode()
        except (OSError, UnicodeDecodeError):
            first = ""
        words = shlex.split(first[2:]) if first.startswith("#!") else []
        if words and Path(words[0]).name == "env":
            words = [w for w in words[1:] if not w.startswith("-")]
        if not words:
            raise BackendUnavailable(
                f"METAFLOW_ENVCORE_POETRY_EXE is {exe}, which is not a poetry script envcore can read its Python "
                "interpreter from (a '#!' first line). Point it at the `poetry` script of a Python installation with "
                "poetry 2 (pipx's, a venv's bin/poetry), or unset it to use the poetry installed with envcore-poetry."
            )
        return words[0]

    def check(self) -> None:
        python = self._python()
        done = run_tool([python, "-c", _CHECK], what="poetry", timeout=120)
        if done.returncode != 0:
            raise BackendUnavailable(
                f"poetry cannot be imported by {python} ({tail(done.stderr, lines=1)}). Install it there "
                "(the envcore-poetry distribution brings poetry 2), or set METAFLOW_ENVCORE_POETRY_EXE to the `poetry` "
                "script of another installation."
            )
        version = self.version()
        try:
            major = Version(version).major
        except InvalidVersion:
            major = 0
        if major < 2:
            raise BackendUnavailable(
                f"poetry {version} at {python} is too old: envcore needs poetry 2 or newer ([project] tables). "
                "Upgrade it with `pip install -U 'poetry>=2.1'`."
            )

    def version(self) -> str:
        done = run_tool(
            [self._python(), "-m", "poetry", "--version"], what="poetry", env=_env({}), timeout=120
        )
        found = _VERSION.search(done.stdout) if done.returncode == 0 else None
        return found.group(1).rstrip(")") if found else "unknown"

    # -- resolving --

    def resolve(self, request: ResolveRequest) -> Sequence[LockedPackage]:
        if not request.python_version:
            raise ResolutionError(
                "The poetry resolver needs the exact python version of the environment; it is chosen by the conda "
                "side first. This is a bug in the caller."
            )
        sources, credentials = _sources(request)
        options = _Options.parse(request.extras.get(PYPI, ()))
        provided = pypi.conda_python_packages(request.installed, request.installed_distributions)
        pins: dict[str, str] = {}
        # releases the universal lock chose whose wheels need a newer glibc or macOS than the target's, and for
        # another arch those without a wheel for it (their sdists would not be built): left out and locked again,
        # as pip, given the exact tags (and --only-binary there), takes the newest release that fits
        too_new = pypi.TooNewForTarget(request)
        chosen_wheelless: list[tuple[str, str]] = []
        with scratch_folder("poetry") as tmp:
            # conda-installed Python packages must keep their versions, and poetry has no constraints file: a
            # package the lock shares with conda at another version is pinned and the lock made again.
            for _ in range(1 + len(provided) + pypi.TOO_NEW_ROUNDS):
                try:
                    lock, links, yanked = self._lock(
                        request, Path(tmp), sources, credentials, options, pins, too_new.excluded
                    )
                except ResolutionError:
                    if chosen_wheelless:
                        raise _no_wheel(request, chosen_wheelless) from None
                    if too_new:
                        raise too_new.refusal() from None
                    raise
                chosen = _for_target(request, lock)
                moved = {
                    pypi.canonicalize(p["name"]): provided[pypi.canonicalize(p["name"])].version
                    for p in chosen
                    if pypi.canonicalize(p["name"]) in provided
                    and not _same_version(p["version"], provided[pypi.canonicalize(p["name"])].version)
                    and pypi.canonicalize(p["name"]) not in pins
                }
                # only those no other one needs: the exclusions are requirements (see pypi.outermost)
                needs = {pypi.canonicalize(p["name"]): list(p.get("dependencies", {})) for p in chosen}
                releases = _releases(chosen, links)
                misfits = pypi.os_misfits(request, releases)
                unbuildable = self._unbuildable(request, chosen, releases, set(provided), misfits)
                misfits, unbuildable = pypi.outermost(misfits, unbuildable, needs)
                if not moved and not misfits and not unbuildable:
                    break
                pins.update(moved)
                too_new.add(misfits)
                chosen_wheelless += unbuildable
                if not all(too_new.leave_out_wheelless(name, version) for name, version in unbuildable):
                    raise _no_wheel(request, chosen_wheelless)  # no release has a wheel for the target
            else:
                if chosen_wheelless:
                    raise _no_wheel(request, chosen_wheelless)
                raise too_new.rounds_refusal()
        taken = {(pypi.canonicalize(p["name"]), str(p["version"])) for p in chosen}
        for name, version in sorted(taken & set(yanked)):
            pypi.warn_yanked(name, version, yanked[name, version])
        return self._packages(request, chosen, links, set(provided), credentials)

    def _lock(
        self,
        request: ResolveRequest,
        tmp: Path,
        sources: list[tuple[str, str]],
        credentials: Mapping[str, tuple[str, str]],
        options: _Options,
        pins: Mapping[str, str],
        excluded: Sequence[str],
    ) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, str]], dict[tuple[str, str], str]]:
        """poetry's lock, the index links of its files, and the reasons of the releases it took that the index
        marks yanked (PEP 592)."""
        project = tmp / "project"
        project.mkdir(exist_ok=True)
        (project / "poetry.lock").unlink(missing_ok=True)
        (project / "pyproject.toml").write_text(_pyproject(request, sources, options, pins, excluded))
        env: dict[str, str] = {}
        for name, url in sources:
            host = urlsplit(url).hostname or ""
            if host in credentials:
                user, password = credentials[host]
                env[f"POETRY_HTTP_BASIC_{name.upper()}_USERNAME"] = user
                env[f"POETRY_HTTP_BASIC_{name.upper()}_PASSWORD"] = password
            if host in options.trusted_hosts:
                env[f"POETRY_CERTIFICATES_{name.upper()}_CERT"] = "false"
        links_file = tmp / "links.json"
        done = run_tool(
            [self._python(), MAIN, project, request.python_version or "", links_file],
            what="poetry lock",
            env=_env(env, tmp),
            cwd=project,
            debug=self.config.debug,
        )
        if done.returncode != 0:
            unreachable = _UNREACHABLE.search(redact_text(done.stderr or done.stdout))
            if unreachable:
                raise ResolutionError(
                    f"The PyPI index could not be read while resolving for {request.arch} with poetry: "
                    f"{unreachable[0].rstrip('.')}. poetry retried; check the network, the index URL and its "
                    "credentials, then try again."
                )
            raise ResolutionError(
                f"The PyPI requirements cannot be resolved for {request.arch} (python {request.python_version}) with "
                f"poetry: {_poetry_error(done.stderr or done.stdout)}. Change the requirement named above, or check "
                "the index and options."
            )
        lock = tomllib.loads((project / "poetry.lock").read_text())
        listed = json.loads(links_file.read_text())
        links = {(pypi.canonicalize(item["name"]), str(item["version"])): item["links"] for item in listed}
        yanked = {
            (pypi.canonicalize(item["name"]), str(item["version"])): str(item["yanked"])
            for item in listed
            if item.get("yanked") is not None
        }
        return lock, links, yanked

    @staticmethod
    def _unbuildable(
        request: ResolveRequest,
        chosen: list[dict[str, Any]],
        releases: Sequence[tuple[str, str, list[str]]],
        provided: set[str],
        misfits: Mapping[tuple[str, str], tuple[int, int]],
    ) -> list[tuple[str, str]]:
        """For another arch than this machine's: the releases from an index the lock chose (``releases``: theirs,
        :func:`_releases`) with no wheel the target loads (nor one too new for it: ``misfits``), whose source
        distributions would not be built."""
        if request.arch == local_arch():
            return []
        tags = pypi.target_tags(request, request.python_version or "")
        found = []
        for entry, (name, version, files) in zip(chosen, releases, strict=True):
            key = (pypi.canonicalize(name), version)
            from_index = entry.get("source", {}).get("type") in (None, "legacy")
            if (
                from_index
                and key[0] not in provided
                and key not in misfits
                and pypi.best_wheel(files, tags) is None
            ):
                found.append(key)
        return found

    def _packages(
        self,
        request: ResolveRequest,
        chosen: list[dict[str, Any]],
        links: Mapping[tuple[str, str], Mapping[str, str]],
        provided: set[str],
        credentials: Mapping[str, tuple[str, str]],
    ) -> list[LockedPackage]:
        tags = pypi.target_tags(request, request.python_version or "", self.config.cache_dir())
        out: list[LockedPackage] = []
        for entry in chosen:
            name, version = str(entry["name"]), str(entry["version"])
            if pypi.canonicalize(name) in provided:
                continue  # the conda side installs it, at the same version
            hashes = {f["file"]: f.get("hash", "") for f in entry.get("files", [])}
            source = entry.get("source", {})
            kind = source.get("type")
            if kind is None or kind == "legacy":
                urls = dict(links.get((pypi.canonicalize(name), version), {}))
            elif kind in ("url", "file"):
                url = source["url"] if kind == "url" else Path(source["url"]).resolve().as_uri()
                urls = {pypi.filename_of(url): url}
            else:
                raise ResolutionError(
                    f"{name} {version} comes from a {kind} source, which envcore cannot lock as a file with a hash. "
                    "Request it from an index or as a direct URL to a wheel, or select a PyPI resolver that builds "
                    "directories and git repositories: METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER=uv (or pip)."
                )
            usable = [f for f in urls if f in hashes or kind in ("url", "file")]
            best = pypi.best_wheel(usable, tags)
            if (
                best is None
            ):  # a source distribution: the core builds it, for this machine's architecture only
                sdists = [f for f in usable if f.endswith((".tar.gz", ".zip"))]
                if not sdists or request.arch != local_arch():
                    raise _no_wheel(request, [(name, version)])
                best = sdists[0]
            digest = hashes.get(best) or (next(iter(hashes.values()), "") if kind in ("url", "file") else "")
            algorithm, _, value = digest.partition(":")
            size = None
            if algorithm != "sha256" or len(value) != 64:
                value, size = pypi.sha256_of(urls[best], credentials)
            out.append(pypi.locked_wheel(name, version, urls[best], value, size))
        return out


# --- helpers ---------------------------------------------------------------------------------------------


def _env(extra: Mapping[str, str], tmp: Path | None = None) -> dict[str, str]:
    """A scrubbed environment: poetry's cache, configuration, data and home in ``tmp``; no keyring."""
    base = Path(tempfile.gettempdir()) if tmp is None else tmp
    env = {k: v for k, v in tool_env().items() if not k.startswith(("XDG_", "PYTHON"))}
    if tmp is not None:
        env.update(
            HOME=str(base / "home"),
            XDG_CACHE_HOME=str(base / "home" / ".cache"),
            XDG_CONFIG_HOME=str(base / "home" / ".config"),
            XDG_DATA_HOME=str(base / "home" / ".local" / "share"),
            POETRY_CACHE_DIR=str(base / "cache"),
            POETRY_CONFIG_DIR=str(base / "config"),
            POETRY_DATA_DIR=str(base / "data"),
        )
    env.update(
        POETRY_NO_INTERACTION="1",
        POETRY_KEYRING_ENABLED="false",
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
        PIP_CONFIG_FILE="/dev/null",
    )
    env.update(extra)
    return env


def _sources(request: ResolveRequest) -> tuple[list[tuple[str, str]], dict[str, tuple[str, str]]]:
    """(source name, url) for each index, and host -> credentials (the request's, then ``user:pass@``)."""
    credentials = dict(request.credentials)
    sources: list[tuple[str, str]] = []
    for i, url in enumerate(request.sources.get(PYPI, ())):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(
                f"The PyPI index {redact_url(url)} is not an http(s) URL, and poetry reads packages from http(s) "
                "indexes only (a file:// index or a local directory fails in poetry). Serve the index over http "
                "(even `python -m http.server` on 127.0.0.1 works) and set METAFLOW_CONDA_DEFAULT_PYPI_SOURCE (or the "
                "requirements' --index-url) to it, or select another PyPI resolver with "
                "METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER=uv."
            )
        if parts.username and parts.hostname and parts.hostname not in credentials:
            credentials[parts.hostname] = (unquote(parts.username), unquote(parts.password or ""))
        sources.append((f"envcore{i}", redact_url(url)))
    if not sources:
        raise ConfigError(
            "The poetry resolver got no PyPI index. Set METAFLOW_CONDA_DEFAULT_PYPI_SOURCE to an http(s) index."
        )
    return sources, credentials


def _pyproject(
    request: ResolveRequest,
    sources: list[tuple[str, str]],
    options: _Options,
    pins: Mapping[str, str],
    excluded: Sequence[str] = (),
) -> str:
    deps = [
        *(pypi.pep508(r) for r in pypi.for_target(request)),
        *(f"{name}=={version}" for name, version in pins.items()),
        *excluded,  # of packages the lock needs: as dependencies, they add none
    ]
    lines = [
        "[project]",
        f"name = {_toml(ROOT)}",
        'version = "0"',
        f"requires-python = {_toml('==' + (request.python_version or ''))}",
        "dependencies = [" + ", ".join(_toml(d) for d in deps) + "]",
        "",
        "[tool.poetry]",
        "package-mode = false",
        "",
    ]
    if options.pre:  # poetry allows pre-releases per dependency: the direct ones
        lines.append("[tool.poetry.dependencies]")
        lines += [
            f"{_toml(n)} = {{allow-prereleases = true}}"
            for n in dict.fromkeys(r.name for r in request.of(PYPI))
        ]
        lines.append("")
    for name, url in sources:
        # every index is primary: like pip's --extra-index-url, the best version over all of them wins
        lines += [
            "[[tool.poetry.source]]",
            f"name = {_toml(name)}",
            f"url = {_toml(url)}",
            'priority = "primary"',
            "",
        ]
    return "\n".join(lines)


def _no_wheel(request: ResolveRequest, releases: Sequence[tuple[str, str]]) -> ResolutionError:
    """Releases chosen for another arch than this machine's without a wheel for it, and no release to fall back
    to."""
    names = ", ".join(f"{name} {version}" for name, version in releases)
    return ResolutionError(
        f"{names} {'has' if len(releases) == 1 else 'have'} no wheel for {request.arch} (python "
        f"{request.python_version}), nor any release that fits the requirements, and envcore builds source "
        f"distributions only for this machine's architecture ({local_arch()}). Pick versions with wheels for "
        f"{request.arch}, or resolve on a machine of that architecture."
    )


def _releases(
    chosen: list[dict[str, Any]], links: Mapping[tuple[str, str], Mapping[str, str]]
) -> list[tuple[str, str, list[str]]]:
    """(name, version, the file names of its index page) of each chosen package."""
    return [
        (
            str(p["name"]),
            str(p["version"]),
            list(links.get((pypi.canonicalize(str(p["name"])), str(p["version"])), {})),
        )
        for p in chosen
    ]


# the marker poetry writes for a package no platform installs (its EmptyMarker), e.g. torch's nvidia-cusparse
# once other releases took its place: read as a marker it failed to parse, and the package was kept for every
# target (osx targets then asked for a wheel it has not)
_NEVER = "<empty>"


def _for_target(request: ResolveRequest, lock: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The locked packages whose markers hold for the target python and platform."""
    environment: dict[str, str] = {
        "platform_release": "",
        "platform_version": "",
        **marker_environments(request.python_version or "", request.arch)[0],
    }
    chosen = []
    for entry in lock.get("package", []):
        if entry.get("optional"):
            continue
        markers = entry.get("markers", "")
        if isinstance(markers, dict):
            markers = " or ".join(f"({m})" for m in markers.values() if m != _NEVER) or _NEVER
        if markers == _NEVER:
            continue
        if markers:
            try:
                keep = Marker(markers).evaluate(environment)
            except (InvalidMarker, UndefinedEnvironmentName):
                keep = True  # poetry's own marker syntax: keep the package rather than lose it
            if not keep:
                continue
        chosen.append(entry)
    return chosen


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


#: poetry's words when an index does not answer (after its retries), as opposed to an unsatisfiable request
_UNREACHABLE = re.compile(r"All attempts to connect to \S+ failed\.")
_NOISE = ("Updating dependencies", "Resolving dependencies", "Writing lock file", "Creating virtualenv")


def _poetry_error(text: str) -> str:
    """poetry's explanation (``Because … depends on …``, ``… could not be found``) folded into one paragraph."""
    lines = [line.strip() for line in redact_text(text).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(_NOISE)]
    start = next((i for i, line in enumerate(lines) if line.startswith("Because")), None)
    if start is not None:
        lines = lines[start:]
    message = " ".join(lines[:12]) if start is not None else tail("\n".join(lines), lines=8)
    message = message.replace(f"{ROOT} depends on", "the request depends on").replace(ROOT, "the request")
    return message.rstrip(". ")
