"""The Python distributions conda packages install, read from their files.

A conda package may install a Python distribution under another name than its own (conda-forge's
``matplotlib-base`` installs ``matplotlib``, ``pytorch`` installs ``torch``). The PyPI side of an environment must
see it, or it installs the distribution again from PyPI over the conda files. The names come from the
``*.dist-info`` / ``*.egg-info`` folders listed in each package's ``info/paths.json``; the answer is kept in the
cache directory by the file's hash, so a package is read once per machine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from envcore.configfiles import remember_json
from envcore.errors import EnvcoreError, ResolutionError
from envcore.types import LockedPackage

# <name>-<version>.dist-info or <name>-<version>[-pyX.Y].egg-info: a name has no "-" there (escaped as "_")
_DIST_FOLDER = r"(?:^|/)site-packages/([^/-]+)-[^/]*\.(?:dist-info|egg-info)(?:/|$)"


def distribution_names(paths: Iterable[str]) -> set[str]:
    """The canonical names of the distributions whose metadata folders ``paths`` hold."""
    from packaging.utils import canonicalize_name

    return {str(canonicalize_name(m.group(1))) for p in paths if (m := re.search(_DIST_FOLDER, p))}


def renamed_distributions(
    packages: Iterable[LockedPackage], cache_dir: Path, credentials: Mapping[str, tuple[str, str]]
) -> dict[str, str]:
    """Canonical name of a distribution -> the conda package that installs it, for the Python packages of the
    conda side whose distribution is named otherwise than the package."""
    from envcore.pypi import canonicalize, conda_python_packages

    python_packages = list(conda_python_packages(packages).values())  # the conda packages of Python code
    # remembered names are read here; threads (and the fetching machinery) only for packages to read
    remembered = [_remembered(p, cache_dir) for p in python_packages]
    unknown = [p for p, known in zip(python_packages, remembered, strict=True) if known is None]
    read: Iterator[set[str]] = iter(())
    if unknown:
        from envcore.fetch import in_parallel

        read = iter(in_parallel(lambda p: _names_of(p, cache_dir, credentials), unknown))
    names = [known if known is not None else next(read) for known in remembered]
    return {
        dist: pkg.name
        for pkg, dists in zip(python_packages, names, strict=True)
        for dist in sorted(dists)
        if dist != canonicalize(pkg.name)
    }


def known_names(pkg: LockedPackage, cache_dir: Path) -> set[str] | None:
    """The distributions the conda package ``pkg`` installs, as this machine knows them without fetching anything:
    remembered since a resolution read them, or read from its archive in the package cache; None when neither
    has them."""
    remembered = _remembered(pkg, cache_dir)
    if remembered is not None:
        return remembered
    from envcore.fetch import PackageCache
    from envcore.formats.conda import installed_paths

    cache = PackageCache(cache_dir)
    for file in pkg.files:
        archive = cache.get(file, pkg.filename + file.url_format)
        if archive is not None:
            try:
                return distribution_names(installed_paths(archive))
            except (OSError, EnvcoreError, ValueError):
                continue
    return None


def _memo(pkg: LockedPackage, cache_dir: Path) -> Path:
    """Where the distributions a conda package installs are remembered, by its archive's hash."""
    return cache_dir / "dists" / f"{pkg.source.sha256 or pkg.source.md5 or ''}.json"


def _remembered(pkg: LockedPackage, cache_dir: Path) -> set[str] | None:
    try:
        return set(json.loads(_memo(pkg, cache_dir).read_text()))
    except (OSError, ValueError):
        return None


def _names_of(pkg: LockedPackage, cache_dir: Path, credentials: Mapping[str, tuple[str, str]]) -> set[str]:
    remembered = _remembered(pkg, cache_dir)
    if remembered is not None:
        return remembered
    from envcore.cache import local_file
    from envcore.fetch import PackageCache
    from envcore.formats.conda import installed_paths

    source = pkg.source
    try:
        archive = local_file(PackageCache(cache_dir), pkg, source, dict(credentials))  # checked by its hash
        names = distribution_names(installed_paths(archive))
    except EnvcoreError as exc:
        raise ResolutionError(
            f"Could not read which Python distributions the conda package {pkg.name} {pkg.version} installs, which "
            f"the PyPI side must not install again: {exc.message}"
        ) from None
    if source.sha256 or source.md5:
        remember_json(_memo(pkg, cache_dir), sorted(names))  # read by threads and processes at once: atomic
    return names
