"""Turning a resolved environment into a working prefix: fetch every file (local package cache, then the
store, then its URL), verify it, check the archive through its format plugin, install conda packages then
wheels, and write the ``.metaflowenv`` marker last.

The marker is the completion flag: a prefix without a marker that matches the environment is incomplete
(an interrupted hydration) and is rebuilt, never used. Work on one prefix is serialised across processes
by a file lock.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from envcore import cache as caching
from envcore.fetch import PackageCache, from_store, from_url
from envcore.locks import file_lock
from envcore.plugins import Registry
from envcore.types import LockedPackage, PackageFile, PackageKind, ResolvedEnvironment, Store

MARKER = ".metaflowenv"
WORKERS = 8


def env_dir_name(env: ResolvedEnvironment) -> str:
    return f"metaflow_{env.req_id}_{env.full_id}"


def marker_content(env: ResolvedEnvironment) -> str:
    return json.dumps([env.req_id, env.full_id, env.arch])


def is_complete(prefix: Path, env: ResolvedEnvironment) -> bool:
    """The fast "already up to date" check: one small file, no tree walk."""
    try:
        return (prefix / MARKER).read_text() == marker_content(env)
    except OSError:
        return False


def _choose(config_preferred: str, pkg: LockedPackage) -> PackageFile:
    return (pkg.file(config_preferred) if config_preferred != "none" else None) or pkg.source


def fetch_packages(
    registry: Registry,
    env: ResolvedEnvironment,
    store: Store | None,
    *,
    verify: bool = False,
    credentials: dict[str, tuple[str, str]] | None = None,
) -> list[tuple[LockedPackage, Path]]:
    """Every package file of ``env`` as a verified, checked local file (in parallel)."""
    config = registry.config
    pkgs = PackageCache(config.cache_dir())
    preferred = str(config.get("CONDA_PREFERRED_FORMAT"))

    def one(pkg: LockedPackage) -> tuple[LockedPackage, Path]:
        file = _choose(preferred, pkg)
        name = pkg.filename + file.url_format
        path = pkgs.get(file, name, verify=verify)
        if path is None:
            key = caching.package_keys(config, pkg)[file.url_format]
            if store is not None and store.stat(key) is not None:
                path = from_store(store, key, pkgs, file, name)
            else:
                path = from_url(file.url, pkgs, file, name, credentials)
        checked = path.with_name(path.name + ".checked")
        if not checked.exists():
            registry.package_format(file.url_format).check(path)
            checked.touch()
        return pkg, path

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(one, env.packages))


def hydrate(
    registry: Registry,
    env: ResolvedEnvironment,
    prefix: Path,
    *,
    store: Store | None,
    force: bool = False,
    verify: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> bool:
    """Make ``prefix`` hold ``env``; returns False when it already did (nothing was done)."""
    prefix = prefix.absolute()
    timeout = float(registry.config.get("CONDA_LOCK_TIMEOUT"))
    lock = prefix.parent / f".{prefix.name}.lock"
    with file_lock(lock, timeout, on_wait=progress):
        if not force and is_complete(prefix, env):
            return False
        if prefix.exists():
            progress(
                f"Environment at '{prefix}' is incomplete -- re-creating"
                if not force
                else f"Re-creating {prefix}"
            )
            shutil.rmtree(prefix)
        files = fetch_packages(registry, env, store, verify=verify)
        conda = [(p, f) for p, f in files if p.kind is PackageKind.CONDA]
        wheels = [(p, f) for p, f in files if p.kind is PackageKind.PYPI]
        prefix.mkdir(parents=True)
        registry.installer(PackageKind.CONDA).install(conda, prefix)
        registry.installer(PackageKind.PYPI).install(wheels, prefix)
        tmp = prefix / f"{MARKER}.tmp"
        tmp.write_text(marker_content(env))
        os.replace(tmp, prefix / MARKER)
    return True
