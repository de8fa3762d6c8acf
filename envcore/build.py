"""Source distributions, git repositories and local directories in a resolution become wheels, built on this
machine when the environment is resolved.

A PyPI resolver may lock a package that has no wheel for the target, only an sdist (``.tar.gz``/``.zip``). As
in the original extension, envcore then builds the wheel itself, for this machine's architecture only (a
wheel built here is only known to run here), with the PyPI installer's builder (``uv build`` for the
default), the request's indexes for build dependencies, and the environment's exact python version. The
locked package then holds the built wheel, marked ``built`` and keyed under ``packages/pypi/_fake/...`` in
the store: the store is its only source afterwards, which is why an environment is cached once resolved.

Resolvers that lock a git repository (at a commit) or a local directory build it themselves, with
:func:`checkout_git` and :func:`lock_built_wheel`.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from envcore import pypi
from envcore.config import Config, redact_text, redact_url
from envcore.errors import EnvcoreError, ResolutionError
from envcore.fetch import PackageCache, ensure_checked, from_url, sha256_file
from envcore.plugins import Registry
from envcore.progress import Progress, Task, done
from envcore.tools import run_tool, tail, tool_env
from envcore.types import PYPI, LockedPackage, PackageFile, PackageKind, ResolveRequest, WheelBuilder


def sdists(packages: Sequence[LockedPackage]) -> list[LockedPackage]:
    return [p for p in packages if p.is_sdist]


def foreign_sdists_error(releases: Sequence[tuple[str, str]], arch: str, local_arch: str) -> ResolutionError:
    """Releases resolved for another architecture that only have source distributions there."""
    names = ", ".join(f"{name} {version}" for name, version in releases)
    return ResolutionError(
        f"{names} {'is' if len(releases) == 1 else 'are'} only available as source distributions for {arch}, "
        f"and envcore builds source distributions only for this machine's architecture ({local_arch}): a "
        f"wheel built here would not run there. Pin versions that publish wheels for {arch}, or resolve on a "
        f"machine of that architecture ({arch})."
    )


def build_sdists(
    registry: Registry,
    request: ResolveRequest,
    packages: Sequence[LockedPackage],
    local_arch: str,
    progress: Progress | None = None,
) -> list[LockedPackage]:
    """``packages`` with every sdist replaced by the wheel built from it (same order). Builds can take minutes
    (numpy's): ``progress`` says which start, and counts them."""
    todo = sdists(packages)
    if not todo:
        return list(packages)
    names = ", ".join(f"{p.name} {p.version}" for p in todo)
    if request.arch != local_arch:
        raise foreign_sdists_error([(p.name, p.version) for p in todo], request.arch, local_arch)
    python = next((p for p in packages if p.kind is PackageKind.CONDA and p.name == "python"), None)
    installer = registry.installer(PackageKind.PYPI)
    if not isinstance(installer, WheelBuilder):
        raise ResolutionError(
            f"{names} must be built from source, but the configured PyPI installer cannot build wheels. Install "
            "envcore-uv (the default), or pin versions that publish wheels."
        )
    target = replace(request, python_version=python.version if python else request.python_version)
    if not target.python_version:
        raise ResolutionError(f"Building {names} needs the environment's python, which the resolution lacks.")
    cache = PackageCache(registry.config.cache_dir())
    shown = progress or Progress()
    built = {}
    title = f"Building {len(todo)} source distribution(s)"

    def summary(task: Task) -> str:
        return done(title, task.started)

    with shown.task(title, len(todo), summary) as task:
        for pkg in todo:
            shown(f"Building {pkg.name} {pkg.version} from its source distribution for {request.arch}")
            built[id(pkg)] = _build(registry, cache, installer, target, pkg)
            task.advance()
    return [built.get(id(p), p) for p in packages]


def _build(
    registry: Registry,
    cache: PackageCache,
    builder: WheelBuilder,
    request: ResolveRequest,
    pkg: LockedPackage,
) -> LockedPackage:
    source = pkg.source
    sdist = cache.get(source, pkg.filename + source.url_format) or from_url(
        source.url, cache, source, pkg.filename + source.url_format, request.credentials
    )
    ensure_checked(functools.partial(registry.package_format, source.url_format), sdist)
    with tempfile.TemporaryDirectory(prefix="envcore-build-", dir=cache.root) as tmp:
        try:
            wheel = builder.build_wheel(sdist, Path(tmp), request)
        except EnvcoreError as exc:
            raise ResolutionError(
                f"Building {pkg.name} {pkg.version} from its source distribution failed: {exc.message}"
            ) from None
        file, final = _cache_built(cache, request, wheel, source.url, f"{pkg.name} {pkg.version}")
        ensure_checked(functools.partial(registry.package_format, ".whl"), final)
    # the sdist (verified above) is known by its hash for good: an export names it when the index is gone
    file = replace(
        file,
        sdist_sha256=source.sha256 or sha256_file(sdist),
        sdist_size=source.size or os.path.getsize(sdist),
    )
    return replace(pkg, filename=wheel.name[: -len(".whl")], files=(file,))


def _cache_built(
    cache: PackageCache, request: ResolveRequest, wheel: Path, source: str, what: str
) -> tuple[PackageFile, Path]:
    """A wheel built from ``what`` (found at ``source``, a URL without credentials), checked against the
    request's target, in the package cache: its ``built`` file and the cached path."""
    if pypi.best_wheel([wheel.name], pypi.target_tags(request, request.python_version or "")) is None:
        raise ResolutionError(
            f"The wheel built from {what} ({wheel.name}) does not fit {request.arch} with python "
            f"{request.python_version}. Check the project's python requirement, or require a published wheel."
        )
    file = PackageFile(
        url_format=".whl", url=source, sha256=sha256_file(wheel), size=os.path.getsize(wheel), built=True
    )
    return file, cache.put_verified(wheel, file, wheel.name, f"the build of {what}")


def lock_built_wheel(
    config: Config, request: ResolveRequest, name: str, wheel: Path, source: str, what: str
) -> LockedPackage:
    """The locked package of ``wheel``, which a resolver built from ``what`` (a git repository, a directory)
    whose location is ``source`` (``git+URL@COMMIT``, ``file:///path``): the wheel goes to the package cache and
    from there to the store, its only source afterwards."""
    from packaging.utils import parse_wheel_filename

    file, _ = _cache_built(PackageCache(config.cache_dir()), request, wheel, redact_url(source), what)
    _, version, _, _ = parse_wheel_filename(wheel.name)
    return LockedPackage(
        kind=PackageKind.PYPI,
        name=pypi.canonicalize(name),
        version=str(version),
        filename=wheel.name[: -len(".whl")],
        files=(file,),
    )


def git_source(url: str, commit: str, subdirectory: str = "") -> str:
    """Where a package built from a git repository comes from: ``git+URL@COMMIT[#subdirectory=DIR]``."""
    return f"git+{url}@{commit}" + (f"#subdirectory={subdirectory}" if subdirectory else "")


def checkout_git(name: str, kind: str, url: str, commit: str, dest: Path, *, debug: bool = False) -> None:
    """Clone the repository ``url`` into ``dest`` and check out ``commit``, for building package ``name``, if it
    is a git repository (``kind``, as the resolver's lock names it) locked at a commit; failures are a
    ResolutionError showing the URL without credentials."""
    shown = redact_url(url)
    if kind != "git" or not url or not commit:
        raise ResolutionError(
            f"{name} comes from the {kind or 'unknown'} repository {shown}, and envcore builds only git "
            "repositories locked at a commit. Build a wheel of it and require NAME @ file:///path/to/the.whl."
        )
    git = shutil.which("git")
    if git is None:
        raise ResolutionError(
            f"{name} comes from the git repository {shown}, and git is not on this machine's PATH. Install "
            "git, or build a wheel of it and require NAME @ file:///path/to/the.whl."
        )
    for args in (
        ["clone", "--quiet", "--no-checkout", url, str(dest)],
        ["-C", str(dest), "checkout", "--quiet", commit],
    ):
        done = run_tool(
            [git, *args],
            what="git",
            env=tool_env({"GIT_TERMINAL_PROMPT": "0", "GIT_ADVICE": "0"}),
            debug=debug,
        )
        if done.returncode != 0:
            raise ResolutionError(
                f"Checking out {name} from the git repository {shown} at {commit} failed: "
                f"{redact_text(tail(done.stderr))}. Check the URL and that git can reach it from here."
            )


def refuse_references_to_build(request: ResolveRequest, builds_for: str) -> None:
    """Refuse the direct references of ``request`` that must be built into a wheel (sdists, directories,
    repositories): a resolver calls it for a target other than the one it builds for (``builds_for``, as
    "this machine's architecture (linux-64)"), before its tool says only that it found no usable wheel."""
    built = [r for r in request.of(PYPI) if r.url and not pypi.filename_of(r.url).endswith(".whl")]
    if built:
        names = ", ".join(f"{r.name} @ {redact_url(r.url or '')}" for r in built)
        raise ResolutionError(
            f"{names} must be built into a wheel, and envcore builds only for {builds_for}, not {request.arch} "
            f"with python {request.python_version}: a wheel built here would not run there. Require a wheel for "
            f"{request.arch} (NAME @ URL-of-the.whl), or resolve on a machine of that architecture ({request.arch})."
        )
