"""Source distributions in a resolution become wheels, built on this machine when the environment is resolved.

A PyPI resolver may lock a package that has no wheel for the target, only an sdist (``.tar.gz``/``.zip``). As
in the original extension, envcore then builds the wheel itself, for this machine's architecture only (a
wheel built here is only known to run here), with the PyPI installer's builder (``uv build`` for the
default), the request's indexes for build dependencies, and the environment's exact python version. The
locked package then holds the built wheel, marked ``built`` and keyed under ``packages/pypi/_fake/...`` in
the store: the store is its only source afterwards, which is why an environment is cached once resolved.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from envcore import pypi
from envcore.errors import EnvcoreError, ResolutionError
from envcore.fetch import PackageCache, ensure_checked, from_url, sha256_file
from envcore.plugins import Registry
from envcore.types import LockedPackage, PackageFile, PackageKind, ResolveRequest, WheelBuilder


def sdists(packages: Sequence[LockedPackage]) -> list[LockedPackage]:
    return [p for p in packages if p.is_sdist]


def build_sdists(
    registry: Registry, request: ResolveRequest, packages: Sequence[LockedPackage], local_arch: str
) -> list[LockedPackage]:
    """``packages`` with every sdist replaced by the wheel built from it (same order)."""
    todo = sdists(packages)
    if not todo:
        return list(packages)
    names = ", ".join(f"{p.name} {p.version}" for p in todo)
    if request.arch != local_arch:
        raise ResolutionError(
            f"{names} {'is' if len(todo) == 1 else 'are'} only available as source distributions for {request.arch}, "
            f"and envcore builds source distributions only for this machine's architecture ({local_arch}): a "
            "wheel built here would not run there. Pin versions that publish wheels for "
            f"{request.arch}, or resolve on a {request.arch} machine."
        )
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
    built = {id(pkg): _build(registry, cache, installer, target, pkg) for pkg in todo}
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
    ensure_checked(registry.package_format(source.url_format), sdist)
    with tempfile.TemporaryDirectory(prefix="envcore-build-", dir=cache.root) as tmp:
        try:
            wheel = builder.build_wheel(sdist, Path(tmp), request)
        except EnvcoreError as exc:
            raise ResolutionError(
                f"Building {pkg.name} {pkg.version} from its source distribution failed: {exc.message}"
            ) from None
        tags = pypi.target_tags(request, request.python_version or "")
        if pypi.best_wheel([wheel.name], tags) is None:
            raise ResolutionError(
                f"The wheel built from {pkg.name} {pkg.version} ({wheel.name}) does not fit {request.arch} with "
                f"python {request.python_version}. Pin a version that publishes a suitable wheel."
            )
        file = PackageFile(
            url_format=".whl",
            url=source.url,
            sha256=sha256_file(wheel),
            size=os.path.getsize(wheel),
            built=True,
        )
        stem = wheel.name[: -len(".whl")]
        final = cache.put_verified(wheel, file, stem + ".whl", f"the build of {pkg.name}")
        ensure_checked(registry.package_format(".whl"), final)
    return replace(pkg, filename=stem, files=(file,))
