"""Turning a resolved environment into a working prefix: fetch every file (local package cache, then the
store, then its URL), verify it, check the archive through its format plugin, install conda packages then
wheels, and write the ``.metaflowenv`` marker last.

The marker is the completion flag: a prefix without a marker that matches the environment is incomplete
(an interrupted hydration) and is rebuilt, never used. Work on one prefix is serialised across processes
by a file lock.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from envcore import cache as caching
from envcore import relocate, uptodate
from envcore.config import redact_url
from envcore.errors import (
    EditedDescription,
    EnvcoreError,
    IntegrityError,
    MissingObject,
    StorageError,
    UsageError,
)
from envcore.fetch import (
    PackageCache,
    ensure_checked,
    from_store,
    from_url,
    in_parallel,
    mark_checked,
    mismatch,
)
from envcore.locks import file_lock
from envcore.plugins import Registry
from envcore.progress import Progress, Task, as_progress, done, new_entries, size_text
from envcore.types import (
    CachingInstaller,
    InstallProgress,
    LockedPackage,
    PackageFile,
    PackageKind,
    ResolvedEnvironment,
    Store,
)
from envcore.uptodate import MARKER


def env_dir_name(env: ResolvedEnvironment) -> str:
    return uptodate.env_dir_name(env.req_id, env.full_id)


def is_complete(prefix: Path, env: ResolvedEnvironment) -> bool:
    """The fast "already up to date" check: one small file, no tree walk."""
    return uptodate.is_complete(str(prefix), env.req_id, env.full_id, env.arch)


def _choose(config_preferred: str, pkg: LockedPackage) -> PackageFile:
    return (pkg.file(config_preferred) if config_preferred != "none" else None) or pkg.source


def fetch_packages(
    registry: Registry,
    env: ResolvedEnvironment,
    store: Store | None,
    *,
    verify: bool = False,
    credentials: dict[str, tuple[str, str]] | None = None,
    progress: Progress | None = None,
) -> list[tuple[LockedPackage, Path]]:
    """Every package file of ``env`` as a verified, checked local file (in parallel)."""
    config = registry.config
    show = as_progress(progress)
    pkgs = PackageCache(config.cache_dir(), say=show)
    pkgs.sweep()
    preferred = str(config.get("CONDA_PREFERRED_FORMAT"))
    cached: list[int] = []  # sizes of the files the package cache already held (appended by the workers)
    # a package missing from (or damaged in) a store that keeps the description is put back; one never cached
    # there (a datastore in CONDA_IGNORE_CACHING_DATASTORES, an environment recorded on this machine only) is
    # left as it is
    described = functools.cache(
        lambda: store is not None and store.stat(caching.env_key(config, env)) is not None
    )

    def one(pkg: LockedPackage) -> tuple[LockedPackage, Path]:
        with task.counting():  # a download's bytes count as they come
            return fetch_one(pkg)

    def fetch_one(pkg: LockedPackage) -> tuple[LockedPackage, Path]:
        file, problem, damaged = _choose(preferred, pkg), "", False
        name = pkg.filename + file.url_format
        path = pkgs.get(file, name, verify=verify)
        if path is not None:
            cached.append(_size(file, path))
        else:
            key = caching.package_keys(config, pkg)[file.url_format]
            source = functools.partial(from_url, file.url, pkgs, file, name, credentials)
            if store is not None and store.stat(key) is not None:
                try:
                    path = from_store(store, key, pkgs, file, name)
                    mark_checked(path)  # packages are checked before they enter the store (cache.py)
                except EditedDescription:
                    raise  # the description is wrong, not the store's copy
                except IntegrityError as exc:
                    if file.built:
                        raise  # only the store keeps it
                    found = (
                        mismatch(file.digest[0], exc.actual, file.digest[1]) if exc.actual else exc.message
                    )
                    problem = f"{name} of {pkg.name} {pkg.version} in the store ({store.url}/{key}) is damaged ({found})"
                    damaged = True
                    path = _from_source(source, problem, IntegrityError, _DAMAGED_FIX)
            elif file.built:
                raise MissingObject(
                    f"{name} was built from {file.url} when the environment was resolved, and only the store "
                    f"keeps it, but {'no store is configured' if store is None else f'{store.url} does not have it'}. "
                    "Resolve the environment again with --force to rebuild it."
                )
            elif store is None:
                path = source()
            else:
                problem = f"{name} of {pkg.name} {pkg.version} is missing from the store ({store.url}/{key})"
                path = _from_source(source, problem, StorageError, _MISSING_FIX)
        ensure_checked(functools.partial(registry.package_format, file.url_format), path, again=verify)
        if problem and store is not None:  # checked as cache.py checks uploads: healed
            if described():
                show(_put_back(store, key, path, problem, file.url, damaged=damaged))
            elif damaged:  # (a missing one is no news where the store keeps no description)
                show(f"{problem}: fetched it from its source ({redact_url(file.url)}) instead.")
        task.advance(1, _size(file, path))
        return pkg, path

    def summary(task: Task) -> str:
        if len(cached) == task.done:
            return f"All {task.done} package(s) already in the package cache ({size_text(task.bytes)})"
        fetched, size = task.done - len(cached), size_text(task.bytes - sum(cached))
        also = f"; {len(cached)} other(s) already in the package cache" if cached else ""
        return done(f"Fetching and verifying {fetched} package(s) ({size}{also})", task.started)

    with show.task("Fetching packages", len(env.packages), summary) as task:
        return in_parallel(one, env.packages)


def _size(file: PackageFile, path: Path) -> int:
    """The size of ``file``, fetched to ``path``: as recorded, else (wheels a PyPI resolver did not size) on disk,
    so that fetched wheels are not counted as 0 B."""
    return file.size if file.size is not None else path.stat().st_size


_MISSING_FIX = (
    "Run this again once the source serves it (to put it back), or `envcore resolve --force` its requirements "
    "where a package cache has it."
)
_DAMAGED_FIX = (
    "The damaged object is left in place. Run this again once the source serves the file (to replace it), or "
    "delete the object and `envcore resolve --force` its requirements where a package cache has the file."
)


def _from_source(fetch: Callable[[], Path], problem: str, error: type[EnvcoreError], fix: str) -> Path:
    """``fetch()`` of a package the store lacks or holds damaged (``problem``, said first); when the source
    fails too, one paragraph of both, as ``error`` (a hash mismatch keeps its class: an EditedDescription makes
    the caller forget its copy of the description)."""
    try:
        return fetch()
    except EnvcoreError as exc:
        other = isinstance(exc, IntegrityError)
        raise (type(exc) if other else error)(
            f"{problem}, and its source {'serves another file' if other else 'cannot be read either'}: "
            f"{exc.message} {fix}"
        ) from None


def _put_back(store: Store, key: str, path: Path, problem: str, url: str, *, damaged: bool) -> str:
    """Upload ``path`` (fetched from ``url`` and verified) to ``store`` at ``key``, where it was missing or
    ``damaged`` (atomically: a reader sees the damaged object or the whole good one); the line that tells the
    user."""
    fetched = f"{problem}: fetched it from its source ({redact_url(url)}), whose file has the recorded hash"
    done, do = (
        ("replaced the store's copy", "replace the store's copy")
        if damaged
        else ("put it back in the store",) * 2
    )
    try:
        store.put_file(key, path)
    except (EnvcoreError, OSError) as exc:  # the environment is made all the same
        reason = exc.message if isinstance(exc, EnvcoreError) else str(exc)
        return f"{fetched}, but could not {do}: {reason}"
    return f"{fetched}, and {done}."


def hydrate(
    registry: Registry,
    env: ResolvedEnvironment,
    prefix: Path,
    *,
    store: Store | None,
    force: bool = False,
    verify: bool = False,
    credentials: dict[str, tuple[str, str]] | None = None,
    progress: Progress | Callable[[str], None] | None = None,
) -> bool:
    """Make ``prefix`` hold ``env``; returns False when it already did (nothing was done). ``credentials``
    (host -> (user, password)) fetch the package files the store lacks from their sources."""
    progress = as_progress(progress)
    prefix = prefix.absolute()
    timeout = float(registry.config.get("CONDA_LOCK_TIMEOUT"))
    with file_lock(uptodate.lock_path(str(prefix)), timeout, on_wait=progress):
        _put_back_replaced(prefix, progress)
        complete = is_complete(prefix, env)
        if complete and not force and not verify:
            return False
        for kind in {p.kind for p in env.packages}:
            registry.installer(kind)  # a misconfigured installer fails before anything is touched
        # --force and --verify mean "from the package files", fetched while a working prefix is still in place;
        # otherwise a finished prefix of the same environment on this machine is cloned (hardlinks, prefix
        # rewritten where files name it).
        fresh = force or verify
        files = (
            fetch_packages(registry, env, store, verify=verify, credentials=credentials, progress=progress)
            if fresh
            else None
        )
        index = relocate.PrefixIndex.in_cache(registry.config.cache_dir(), timeout)
        key = uptodate.index_key(env.req_id, env.full_id, env.arch)
        install = functools.partial(
            _install,
            registry,
            env,
            store=store,
            verify=verify,
            credentials=credentials,
            progress=progress,
            files=files,
        )
        if fresh and _rebuilt_beside(env, prefix, progress, install):
            index.add(key, prefix)
            return True
        aside = None
        if prefix.is_symlink() or prefix.exists():
            aside = _make_way(
                prefix, env, force or complete, progress
            )  # complete here: --verify re-creates it
        try:
            source = (
                None
                if fresh
                else uptodate.clone_finished(
                    index.candidates(key), str(prefix), env.req_id, env.full_id, env.arch
                )
            )
            if source is not None:
                progress(f"Linked from the same environment at {source}")
            else:
                install(prefix)
                relocate.write_manifest(prefix, private=uptodate.STATE_FILES)
            uptodate.write_marker(str(prefix), env.req_id, env.full_id, env.arch)
        except BaseException:
            if aside is not None:  # the environment that worked before is put back
                _remove(prefix)
                aside.rename(prefix)
            raise
        if aside is not None:
            _remove(aside)
        index.add(key, prefix)
    return True


def _rebuilt_beside(
    env: ResolvedEnvironment, prefix: Path, progress: Progress, install: Callable[[Path], None]
) -> bool:
    """``--force`` or ``--verify`` of a finished environment at ``prefix``: build the new one beside it
    (``.NAME.rebuild``), clone that to the prefix's path (its files then name the prefix) and swap the two in
    one step where the system can (Linux's ``renameat2``, macOS's ``renamex_np``; else two renames), so that
    processes still running in the old environment (another run's tasks) find every file throughout, and a
    failed build leaves it as it was. False, with ``prefix`` as it was, when ``prefix`` is no finished
    environment of envcore's or the build cannot be cloned (the caller then re-creates it in place).
    ``install(folder)`` installs the environment into the absent ``folder``."""
    if uptodate.marker_ids(str(prefix)) is None or prefix.is_symlink() or not prefix.is_dir():
        return False
    progress(f"Re-creating {prefix}")
    stage = prefix.with_name(rebuild_name(prefix.name))
    aside = prefix.with_name(f"{uptodate.replaced_start(prefix.name)}{os.getpid()}")
    ids = (env.req_id, env.full_id, env.arch)

    def mark_complete(clone: str) -> None:
        uptodate.write_marker(clone, *ids)

    def swap(clone: str, dest: str) -> None:  # the clone is complete and marked so
        _remove(aside)
        if exchange_paths(clone, dest):
            os.rename(clone, aside)  # the old environment, removed below
        else:
            os.rename(dest, aside)  # put back by the next hydration if this process dies now
            os.rename(clone, dest)

    try:
        _remove(stage)
        install(stage)
        relocate.write_manifest(stage, private=uptodate.STATE_FILES)
        if not relocate.clone(stage, prefix, private=uptodate.STATE_FILES, prepare=mark_complete, place=swap):
            if aside.exists() and not prefix.exists():
                aside.rename(prefix)
            return False
    finally:
        _remove_left(stage)
    _remove(aside)
    return True


def exchange_paths(a: str, b: str) -> bool:
    """Swap the files or folders at ``a`` and ``b`` atomically; False when this system cannot (nothing done)."""
    import ctypes
    import sys

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if sys.platform.startswith("linux"):
            at_fdcwd, rename_exchange = -100, 2
            done = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
        elif sys.platform == "darwin":
            rename_swap = 2
            done = libc.renamex_np(os.fsencode(a), os.fsencode(b), rename_swap)
        else:
            return False
    except (AttributeError, OSError):  # an older C library, or none that ctypes can load
        return False
    return bool(done == 0)


def rebuild_name(name: str) -> str:
    """The folder a new environment is built in beside the prefix called ``name`` that it replaces."""
    return f".{name}.rebuild"


def _put_back_replaced(prefix: Path, progress: Progress) -> None:
    """Settle what a process killed while it replaced ``prefix`` left (under the prefix's lock, so no living
    process owns it): the environment it moved aside goes back when ``prefix`` is unfinished or gone, and is
    removed when ``prefix`` was finished; a folder envcore did not make at ``prefix`` leaves both alone."""
    for end in uptodate.LEFTOVER_ENDS:  # an interrupted clone or rebuild beside it
        _remove(prefix.with_name(f".{prefix.name}{end}"))
    for aside in sorted(prefix.parent.glob(f"{glob.escape(uptodate.replaced_start(prefix.name))}*")):
        if uptodate.marker_ids(str(aside)) is None or uptodate.marker_ids(str(prefix)) is not None:
            _remove(aside)  # half removed already, or its replacement was finished
        elif not prefix.exists() or uptodate.made_by_envcore(str(prefix)) or not any(prefix.iterdir()):
            _remove(prefix)  # (an unfinished build)
            aside.rename(prefix)
            progress(
                f"Put back the environment at {prefix} that an interrupted --force or --verify had moved aside"
            )


def _make_way(prefix: Path, env: ResolvedEnvironment, force: bool, progress: Progress) -> Path | None:
    """Clear ``prefix`` for ``env``: with ``force`` anything; otherwise only an interrupted build of envcore's
    or an empty folder. A user's folder, or another environment, is never replaced unasked. A complete
    environment (one :func:`_rebuilt_beside` could not replace) is moved aside, not removed: the path
    returned, put back if the new one cannot be built."""
    held = uptodate.marker_ids(str(prefix))
    if force:
        progress(f"Re-creating {prefix}")
        if held is not None and prefix.is_dir() and not prefix.is_symlink():
            aside = prefix.with_name(f"{uptodate.replaced_start(prefix.name)}{os.getpid()}")
            _remove(aside)  # left by a process killed while it replaced this prefix
            prefix.rename(aside)
            return aside
    elif held is not None and held != (env.req_id, env.full_id, env.arch):
        other = f"{held[0]}:{held[1]}" + (f" for {held[2]}" if held[2] != env.arch else "")
        wanted = f"{env.req_id}:{env.full_id}" + (f" for {env.arch}" if held[2] != env.arch else "")
        raise UsageError(  # (a mutable name such as team/env:latest may have moved since the prefix was made)
            f"Environment at '{prefix}' already exists but holds a different environment ({other}), not "
            f"{wanted}, the one asked for. Use --force to replace it, or choose another --name."
        )
    elif uptodate.made_by_envcore(str(prefix)) or prefix.name in (
        env_dir_name(env),
        uptodate.created_dir_name(env.req_id, env.full_id),
    ):
        progress(f"Environment at '{prefix}' is incomplete -- re-creating")
    elif prefix.is_dir() and not prefix.is_symlink() and not any(prefix.iterdir()):
        prefix.rmdir()
        return None
    else:
        raise UsageError(
            f"'{prefix}' already exists and is not an environment made by envcore (it has no {MARKER} "
            "marker), so it is left alone. Remove it, choose another --name, or use --force to replace it."
        )
    _remove(prefix)
    return None


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        (path / MARKER).unlink(missing_ok=True)  # first: a half-removed prefix is never a clone source
        shutil.rmtree(path)


def _remove_left(path: Path, attempts: int = 20) -> None:
    """``path`` removed after a build that may have failed, without ever raising: an installer's threads can
    still be writing into it after another part of the build failed ("Directory not empty"), and the error
    that stopped the build must be the one reported. What cannot be removed is removed by the next build."""
    for _ in range(attempts):
        try:
            _remove(path)
            return
        except OSError:
            time.sleep(0.1)


def _install(
    registry: Registry,
    env: ResolvedEnvironment,
    prefix: Path,
    *,
    store: Store | None,
    verify: bool,
    progress: Progress,
    credentials: dict[str, tuple[str, str]] | None = None,
    files: list[tuple[LockedPackage, Path]] | None = None,
) -> None:
    """Install ``env`` into the absent ``prefix`` from ``files`` (fetched here when not given)."""
    if files is None:
        files = fetch_packages(
            registry, env, store, verify=verify, credentials=credentials, progress=progress
        )
    prefix.mkdir(parents=True)
    uptodate.mark_partial(str(prefix), env.req_id, env.full_id, env.arch)
    for kind, what in ((PackageKind.CONDA, "conda package(s)"), (PackageKind.PYPI, "wheel(s)")):
        batch = [(p, f) for p, f in files if p.kind is kind]
        if batch:
            installer = registry.installer(kind)
            if verify and isinstance(installer, CachingInstaller):  # its unpacked copies are checked too
                installer.forget(batch)
            poll = (
                installer.install_progress(batch, prefix)
                if isinstance(installer, InstallProgress)
                else _installed_so_far(kind, prefix)
            )
            with progress.task(
                f"Installing {what}", len(batch), functools.partial(_installed, what=what), poll=poll
            ) as task:
                installer.install(batch, prefix)
                task.finish()


def _installed_so_far(kind: PackageKind, prefix: Path) -> Callable[[], int]:
    """Counts, in the standard layout of an installed prefix, the packages of ``kind`` an installer has
    installed since now: conda packages by their ``conda-meta/*.json`` records, wheels by the ``*.dist-info``
    folders of site-packages (uv links wheels all at the end; other installers, one by one)."""
    if kind is PackageKind.CONDA:
        return new_entries(prefix / "conda-meta", ".json")
    site = next(iter(prefix.glob("lib/python3*/site-packages")), prefix / "Lib" / "site-packages")
    return new_entries(site, ".dist-info")


def _installed(task: Task, what: str) -> str:
    return done(f"Installing {task.done} {what}", task.started)
