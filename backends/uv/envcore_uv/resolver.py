"""Resolve PyPI requirements with ``uv pip compile`` into exact wheels, for any target platform."""

from __future__ import annotations

import contextlib
import functools
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envcore import pypi
from envcore.config import Config, redact_text, redact_url
from envcore.errors import BackendUnavailable, EnvcoreError, EnvcoreWarning, ResolutionError, clipped
from envcore.tools import ToolNotStarted, run_remembered, run_tool, scratch_folder, tail, tool_env
from envcore.types import LockedPackage, ResolveRequest
from envcore_uv.executable import SETTING, SETTING_FIX, uv_executable

if TYPE_CHECKING:
    from packaging.tags import Tag


# glibc of the manylinux targets uv knows (2_17 is manylinux2014)
UV_MANYLINUX_MINORS = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)


def python_platform(request: ResolveRequest) -> str:
    """uv's ``--python-platform``. A linux target's glibc is rounded *up* to a manylinux target uv knows (2.27 ->
    2_28): uv may then pick a release too new for it, which the wheel check after resolving leaves out; rounded
    down (2_17), uv would never see wheels for 2.24 or 2.27 (numpy's for aarch64) and take older releases
    without a word."""
    family, _, machine = request.arch.partition("-")
    if family == "linux":
        cpu = "aarch64" if machine == "aarch64" else "x86_64"
        minor = pypi.target_glibc(request)[1]
        return f"{cpu}-manylinux_2_{min([m for m in UV_MANYLINUX_MINORS if m >= minor] or [UV_MANYLINUX_MINORS[-1]])}"
    if family == "osx":
        return "aarch64-apple-darwin" if machine == "arm64" else "x86_64-apple-darwin"
    if family == "win":
        return "aarch64-pc-windows-msvc" if machine == "arm64" else "x86_64-pc-windows-msvc"
    raise ResolutionError(f"uv cannot resolve PyPI packages for {request.arch}; use linux-*, osx-* or win-*.")


# Patterns as text, compiled at their first use by re's cache: most resolves meet none of them (a compile is
# ~0.1 ms of every resolve's start).
#: uv's warning of a yanked release it chose (an exact pin): warning: `fx-http==1.3.0` is yanked (reason: "...")
_YANKED = r'(?m)^warning: `([^`=]+)==([^`]+)` is yanked(?: \(reason: "(.*)"\))?'


def resolver_env(request: ResolveRequest, inputs: ToolInputs) -> dict[str, str]:
    """uv's environment: without the user's uv settings, and with ``MACOSX_DEPLOYMENT_TARGET`` (the oldest macOS
    whose wheels uv takes for an osx target) set to envcore's: a conda build shell's, or uv's own default, which
    moves between uv versions, would change what is resolved without changing any id."""
    macos = ".".join(map(str, pypi.MACOS_TARGET))
    netrc = pypi.netrc_env(request, inputs.folder()) if request.credentials else {}
    return tool_env({"UV_NO_PROGRESS": "1", "MACOSX_DEPLOYMENT_TARGET": macos, **netrc})


class ToolInputs:
    """The files a ``uv pip compile`` run reads besides its requirements (which it reads from stdin; its lock goes
    to stdout): constraints and a netrc file, in a scratch folder made when the first is needed (a PyPI-only
    resolve without credentials needs none), removed on leaving the ``with`` block."""

    def __init__(self) -> None:
        self._scratch = contextlib.ExitStack()
        self._folder: Path | None = None

    def folder(self) -> Path:
        if self._folder is None:
            self._folder = Path(self._scratch.enter_context(scratch_folder("uv")))
        return self._folder

    def file(self, name: str, text: str) -> Path:
        path = self.folder() / name
        path.write_text(text)
        return path

    def __enter__(self) -> ToolInputs:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._scratch.close()


def local_arch() -> str:
    from envcore.resolve import local_arch as arch

    return arch()


_CHOICES_OF_FILES = ("--only-binary", "--no-binary", "--prefer-binary")  # (uv pip compile's, not uv build's)


def index_args(request: ResolveRequest, *, resolving: bool = True) -> list[str]:
    """The request's PyPI indexes and requirements options as uv arguments (for ``uv build``, without
    ``resolving``: not the choice between wheels and sources, which ``uv build`` spells otherwise)."""
    options = [o for o in pypi.tool_options(request) if resolving or not o.startswith(_CHOICES_OF_FILES)]
    return [*_option_args(options), *pypi.index_url_args(request)]


def _option_args(extras: Sequence[str]) -> list[str]:
    """requirements.txt options (``--pre``, ``--find-links X``...) as uv arguments."""
    args: list[str] = []
    for extra in extras:
        option, _, value = extra.replace("=", " ", 1).partition(" ")
        value = value.strip()
        if option == "--pre":
            args += ["--prerelease", "allow"]
        elif option == "--no-index":
            args.append("--no-index")
        elif option in ("-f", "--find-links"):
            args += ["--find-links", value]
        elif option == "--trusted-host":
            args += ["--allow-insecure-host", value]
        elif option in ("--only-binary", "--no-binary"):
            args += [option, value]
        elif option == "--prefer-binary":
            continue  # uv has no such choice: warned of by UvResolver.resolve
        else:
            raise ResolutionError(f"uv does not support the requirements option {extra!r}; remove it.")
    return args


class UvResolver:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.cache_dir = config.cache_dir() / "uv"

    @functools.cached_property
    def _version_run(self) -> subprocess.CompletedProcess[str]:
        """``uv --version``, asked once per resolver (check() and version() both need it)."""
        exe = uv_executable(self.config)
        return run_remembered([exe, "--version"], self.config.cache_dir(), what="uv", debug=self.config.debug)

    def check(self) -> None:
        exe = uv_executable(self.config)
        configured = self.config.value(SETTING)
        fix = (
            f"{configured.describe()}, which is not a working uv. {SETTING_FIX}"
            if configured.value
            else "Reinstall envcore-uv."
        )
        try:
            done = self._version_run
        except ToolNotStarted as exc:  # (a file that is no program: Exec format error)
            raise BackendUnavailable(f"`{exe} --version` could not start: {exc.why}. {fix}") from None
        if done.returncode != 0 or done.stdout.split()[:1] != ["uv"]:
            output = clipped(tail(done.stderr) or " ".join(done.stdout.split())) or "no output"
            raise BackendUnavailable(
                f"`{exe} --version` did not report a uv version (exit {done.returncode}: {output}). {fix}"
            )

    def version(self) -> str:
        done = self._version_run
        return done.stdout.split()[1] if done.returncode == 0 and done.stdout.split()[1:] else "unknown"

    def resolve(self, request: ResolveRequest) -> Sequence[LockedPackage]:
        if request.arch != local_arch():
            from envcore.build import refuse_references_to_build

            refuse_references_to_build(request, f"this machine's architecture ({local_arch()})")
        if "--prefer-binary" in pypi.tool_options(request):
            _warn_of_prefer_binary()
        requirements, pins = pypi.resolver_inputs(request, "uv")
        # releases uv chose whose wheels need a newer glibc or macOS than the target's (uv's manylinux target
        # is rounded up):
        # left out and resolved again, as pip, given the exact tags, takes the newest release that fits
        too_new = pypi.TooNewForTarget(request)
        with ToolInputs() as inputs:
            env = resolver_env(request, inputs)  # (a netrc written once for every round)
            for _ in range(pypi.TOO_NEW_ROUNDS):
                constraints = pins + "".join(f"{line}\n" for line in too_new.excluded)
                constraints_file = inputs.file("constraints.txt", constraints) if constraints else None
                done = run_tool(
                    [uv_executable(self.config), *self._args(request, constraints_file)],
                    what="uv pip compile",
                    env=env,
                    debug=self.config.debug,
                    stdin=requirements,
                )
                if done.returncode != 0 and too_new:
                    raise too_new.refusal()
                if done.returncode != 0:
                    raise self._failure(request, done.stderr, too_new)
                lock = _toml(done.stdout)
                pypi.remember_wheel_tags(_wheel_names(lock), self.config.cache_dir())
                entries = {pypi.canonicalize(e["name"]): e for e in lock.get("packages", [])}
                misfits = pypi.os_misfits(request, _releases(too_new, entries))
                if not misfits:
                    yanked = re.findall(_YANKED, done.stderr) if "` is yanked" in done.stderr else []
                    for name, version, reason in yanked:
                        pypi.warn_yanked(name, version, reason)
                    return self._packages(request, lock)
                too_new.add(misfits)
        raise too_new.rounds_refusal()

    def _failure(
        self, request: ResolveRequest, stderr: str, too_new: pypi.TooNewForTarget
    ) -> ResolutionError:
        """uv's failure, for a person. A pinned release with no usable wheels may have wheels for a newer glibc
        or macOS than the target's, which uv's target does not show: then that is said."""
        unusable = re.search(_NO_USABLE_WHEELS, stderr)
        if unusable:
            name, version = pypi.canonicalize(unusable[1]), unusable[2]
            files = too_new.release_files(name).get(version, [])
            misfits = pypi.os_misfits(request, [(name, version, files)])
            if misfits:
                too_new.add(misfits)
                return too_new.refusal()
        hint = (
            " envcore builds source distributions only for this machine's architecture "
            f"({local_arch()}): pin versions that publish wheels for {request.arch}."
            if "no usable wheels" in stderr and request.arch != local_arch()
            else ""
        )
        if "Git operation failed" in stderr:
            return ResolutionError(
                f"A git requirement could not be fetched while resolving for {request.arch}: "
                f"{_uv_error(stderr)}. Check the repository URL and the revision (branch, tag or "
                "commit) after its @, and that git can reach the repository from here."
            )
        if any(marker in stderr for marker in _NETWORK_FAILURES):
            return ResolutionError(
                f"The PyPI index could not be read while resolving for {request.arch}: "
                f"{_uv_error(stderr)}. uv retried; check the network, the index URL and its "
                "credentials, then try again."
            )
        constraints = pypi.user_constraints(request)
        if constraints:  # (uv names a constraint as a requirement: "depends on a>=1.1 and a<1.1")
            hint += f" The constraints of -c files apply too: {', '.join(constraints)}."
        return ResolutionError(
            f"The PyPI requirements cannot be resolved for {request.arch} (python {request.python_version}): "
            f"{_uv_error(stderr)}. Change the requirement named above, or check the index and options." + hint
        )

    def _args(self, request: ResolveRequest, constraints: Path | None) -> list[str]:
        args = [
            "pip",
            "compile",
            "--no-config",  # (not --quiet: it keeps uv's warnings of yanked pins from envcore)
            "--no-header",
            "--cache-dir",
            str(self.cache_dir),
            "--python-version",
            request.python_version or "",
            "--python-platform",
            python_platform(request),
            # the interpreter for builds during resolution: without it uv searches PATH for one of exactly
            # --python-version, and runs each candidate (pyenv shims: 0.15 s each; 12 s for a version they
            # lack) or downloads one
            "--python",
            sys.executable,
            # sdists only where envcore can build them (envcore.build): this machine's architecture
            *(() if request.arch == local_arch() else ("--only-binary", ":all:")),
            "--index-strategy",
            "unsafe-best-match",  # pip's behaviour (the original resolves with pip): best version over all indexes
            *(("--constraint", str(constraints)) if constraints else ()),
            "--format",
            "pylock.toml",  # on stdout
            *index_args(request),
        ]
        return [*args, "-"]  # the requirements: on stdin

    def _packages(self, request: ResolveRequest, lock: dict[str, object]) -> list[LockedPackage]:
        tags = pypi.target_tags(request, request.python_version or "", self.config.cache_dir())
        provided = set(pypi.conda_python_packages(request.installed, request.installed_distributions))
        out: list[LockedPackage] = []
        entries = lock.get("packages", [])
        assert isinstance(entries, list)
        for entry in entries:
            name, version = entry["name"], entry.get("version", "")
            if pypi.canonicalize(name) in provided:
                continue  # the conda side installs it; the constraint kept the versions equal
            if isinstance(entry.get("archive"), dict):  # a direct reference: NAME @ URL-or-path of a file
                out.append(_archive(request, name, version, entry["archive"], tags))
                continue
            if isinstance(entry.get("directory"), dict):  # NAME @ file:///a/directory: built here
                out.append(self._directory(request, name, entry["directory"]))
                continue
            if isinstance(entry.get("vcs"), dict):  # NAME @ git+URL[@REV]: built at the commit uv locked
                out.append(self._repository(request, name, entry["vcs"]))
                continue
            wheels = {pypi.filename_of(w["url"]): w for w in entry.get("wheels", []) if "url" in w}
            chosen = pypi.best_wheel(wheels, tags)
            sdist = entry.get("sdist")
            if chosen is None and isinstance(sdist, dict) and "url" in sdist:
                wheel = sdist  # built into a wheel by the core (envcore.build), on this machine only
            elif chosen is None:
                raise ResolutionError(
                    f"{name} {version} has no wheel for {request.arch} (python {request.python_version}), and envcore "
                    "builds source distributions only for this machine's architecture. Pick a version with wheels."
                )
            else:
                wheel = wheels[chosen]
            sha256 = wheel.get("hashes", {}).get("sha256")
            size = wheel.get("size")
            if not sha256:
                sha256, size = pypi.sha256_of(wheel["url"], request.credentials)
            out.append(pypi.locked_wheel(name, version, wheel["url"], sha256, size))
        return out

    def _directory(self, request: ResolveRequest, name: str, directory: dict[str, object]) -> LockedPackage:
        """A local project directory, built into a wheel now (as the original builds local directories, for
        this machine's architecture only)."""
        # a relative path would be to the current folder (uv writes absolute ones)
        path = Path(str(directory.get("path", ""))).resolve()
        return self._built(request, name, path, path.as_uri(), f"the directory {path}")

    def _repository(self, request: ResolveRequest, name: str, vcs: dict[str, object]) -> LockedPackage:
        """A git repository at the commit uv locked (a branch or tag is pinned to its commit now), checked out
        and built into a wheel, as the original builds repositories."""
        from envcore.build import checkout_git, git_source

        kind, url, commit = str(vcs.get("type", "")), str(vcs.get("url", "")), str(vcs.get("commit-id", ""))
        subdirectory = str(vcs.get("subdirectory") or "")
        with scratch_folder("uv-git") as tmp:
            checkout = Path(tmp) / "checkout"
            checkout_git(name, kind, url, commit, checkout, debug=self.config.debug)
            return self._built(
                request,
                name,
                checkout / subdirectory,
                git_source(url, commit, subdirectory),
                f"the git repository {redact_url(url)} at {commit[:12]}",
            )

    def _built(
        self, request: ResolveRequest, name: str, project: Path, source: str, what: str
    ) -> LockedPackage:
        """``project`` (a directory) built into a wheel for ``request`` (``source`` names where it came from)."""
        from envcore.build import lock_built_wheel
        from envcore_uv.installer import UvInstaller

        with scratch_folder("uv-dir") as tmp:
            try:
                wheel = UvInstaller(self.config).build_wheel(project, Path(tmp), request)
            except EnvcoreError as exc:
                raise ResolutionError(
                    f"Building {name} from {what} failed: {exc.message}. Fix the project, or build a wheel "
                    "yourself and require NAME @ file:///path/to/the.whl."
                ) from None
            return lock_built_wheel(self.config, request, name, wheel, source, what)


def _releases(
    too_new: pypi.TooNewForTarget, entries: Mapping[str, Mapping[str, Any]]
) -> list[tuple[str, str, list[str]]]:
    """(name, version, the file names of its wheels) of each package of uv's lock. uv lists only the wheels that
    fit its target: a release locked as its sdist gets those of its index page (``too_new.sdist_wheels``)."""
    out = []
    for name, entry in entries.items():
        version = str(entry.get("version", ""))
        wheels = [pypi.filename_of(w["url"]) for w in entry.get("wheels", []) if "url" in w]
        if not wheels and "sdist" in entry:
            wheels = too_new.sdist_wheels(name, version)
        out.append((name, version, wheels))
    return out


def _toml(text: str) -> dict[str, Any]:
    # imported here: a command that loads the resolver without resolving (a cached environment) reads no TOML
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    read: dict[str, Any] = tomllib.loads(text)
    return read


def _wheel_names(lock: Mapping[str, Any]) -> list[str]:
    """The file names of the wheels of uv's lock, for :func:`envcore.pypi.remember_wheel_tags`."""
    return [
        pypi.filename_of(w["url"])
        for e in lock.get("packages", [])
        for w in e.get("wheels", [])
        if "url" in w
    ]


def _archive(
    request: ResolveRequest,
    name: str,
    version: str,
    archive: dict[str, object],
    tags: Mapping[Tag, int],
) -> LockedPackage:
    """``NAME @ URL`` of a wheel or an sdist (``archive = {url|path, hashes}`` in uv's lock). A local file stays
    a ``file://`` URL; its sha256 is computed and checked against uv's. An sdist is built by the core."""
    # a relative path would be to the current folder (uv writes absolute ones)
    url = str(archive["url"]) if "url" in archive else Path(str(archive.get("path", ""))).resolve().as_uri()
    filename = pypi.filename_of(url)
    if filename.endswith(".whl") and pypi.best_wheel([filename], tags) is None:
        raise ResolutionError(
            f"The wheel {filename} ({name}) does not fit {request.arch} with python {request.python_version}. "
            f"Require a wheel built for {request.arch}."
        )
    hashes = archive.get("hashes")
    sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
    size = archive.get("size")
    if not sha256 or url.startswith("file:"):
        computed, size = pypi.sha256_of(url, request.credentials)
        if sha256 and computed != sha256:
            raise ResolutionError(
                f"{redact_url(url)} changed while it was resolved (sha256 {computed}, uv read {sha256}). "
                "Resolve again once it no longer changes."
            )
        sha256 = computed
    if not version and filename.endswith(".whl"):
        from packaging.utils import parse_wheel_filename

        version = str(parse_wheel_filename(filename)[1])
    return pypi.locked_wheel(name, version, url, str(sha256), size if isinstance(size, int) else None)


_NOISE = r"^(hint:|help:)"
_NO_USABLE_WHEELS = r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?) has no usable wheels"
# uv's words when an index does not answer (after its own retries), as opposed to an unsatisfiable request
_NETWORK_FAILURES = ("Failed to fetch", "Request failed after", "error sending request", "Could not connect")


def _warn_of_prefer_binary() -> None:
    import warnings

    warnings.warn(
        EnvcoreWarning(
            "--prefer-binary is ignored by the uv resolver: uv takes the newest release that fits, building a "
            "source distribution where it has no wheel for the target. Pin the release whose wheels you want, use "
            "--only-binary :all: (or NAME), or select METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER=pip."
        ),
        stacklevel=2,
    )


def _uv_error(stderr: str) -> str:
    text = redact_text(stderr)
    box_drawing = " \u00d7\u2570\u2500\u25b6\u2502"  # uv decorates its errors with these
    lines = [line.strip(box_drawing) for line in text.splitlines()]
    # (16 lines: uv's explanation starts with "Because ..." after a list of available versions; 8 cut it)
    return tail("\n".join(line for line in lines if line and not re.match(_NOISE, line)), lines=16)
