"""Putting a resolved environment into the store: every package file once, then the description, then the
full-id alias — in that order, so no description ever points at a missing package and no alias at a
missing description.

Packages live under the original's layout (``packages/<conda|pypi>/<host>/<url path>/<file>/<hash>/<file>``)
and are shared by every environment that uses them. With ``CONDA_PREFERRED_FORMAT`` set, conda packages are
also stored in that format (transmuted locally), and the description records both hashes.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from envcore import description, naming
from envcore.config import Config
from envcore.errors import MissingObject, PreconditionFailed, StorageError
from envcore.fetch import PackageCache, ensure_checked, from_url, in_parallel, sha256_file
from envcore.frozen import record
from envcore.progress import Progress, as_progress, done
from envcore.types import LockedPackage, PackageFile, PackageFormat, PackageKind, ResolvedEnvironment, Store


@record(kw_only=False)
class CacheReport:
    uploaded: int
    present: int
    description_written: bool


def key_hash(pkg: LockedPackage, file: PackageFile) -> str:
    """The hash in a package's store key: md5 for conda files (as the original), sha256 for PyPI ones."""
    return file.md5 if pkg.kind is PackageKind.CONDA and file.md5 else file.sha256


def package_keys(config: Config, pkg: LockedPackage) -> dict[str, str]:
    """{format: store key} of every file of ``pkg``: where the description it was read from says the store
    holds it, else derived from the source URL (as the original). Wheels envcore built from an sdist live under
    ``packages/pypi/_fake/...`` (the original's layout)."""
    dirname = str(config.get("CONDA_PACKAGES_DIRNAME"))
    return {
        f.url_format: f.stored_key
        or naming.package_key(
            f"{pkg.kind.value}/_fake" if f.built else pkg.kind.value,
            pkg.source.url,
            pkg.filename + f.url_format,
            key_hash(pkg, f),
            packages_dirname=dirname,
        )
        for f in pkg.files
    }


def env_key(config: Config, env: ResolvedEnvironment) -> str:
    return naming.env_key(
        env.arch, env.req_id, env.full_id, envs_dirname=str(config.get("CONDA_ENVS_DIRNAME"))
    )


def _transmuted(
    config: Config, pkg: LockedPackage, local: Path, target: str, cache: PackageCache
) -> LockedPackage:
    """``pkg`` with a file in the ``target`` conda format added, made from its verified local file."""
    from envcore.formats.transmute import transmute

    out = transmute(local, target, cache.root / "pkgs" / ".transmuted")
    file = PackageFile(
        url_format=target, url=pkg.source.url, sha256=sha256_file(out), md5=_md5(out), size=out.stat().st_size
    )
    final = cache.put_verified(out, file, pkg.filename + target, "transmutation")
    assert final.exists()
    return replace(pkg, files=(*pkg.files, file))


def _md5(path: Path) -> str:
    import hashlib

    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def local_file(
    cache: PackageCache, pkg: LockedPackage, file: PackageFile, credentials: dict[str, tuple[str, str]]
) -> Path:
    """A local copy of ``file`` whose hash was checked just now: from the package cache (hashed again, as
    what goes into the shared store must be right for everyone; a damaged copy is set aside) or its URL."""
    name = pkg.filename + file.url_format
    found = cache.get(file, name, verify=True)
    if found is None and file.built:
        raise MissingObject(
            f"{name} was built when the environment was resolved, but this machine's package cache no longer "
            "has it, so it cannot be put in the store. Resolve the environment again with --force to rebuild it."
        )
    return found or from_url(file.url, cache, file, name, credentials)


def cache_environment(
    config: Config,
    store: Store,
    env: ResolvedEnvironment,
    *,
    formats: Callable[[str], PackageFormat],
    credentials: dict[str, tuple[str, str]] | None = None,
    progress: Progress | Callable[[str], None] | None = None,
    name: str = "",
) -> tuple[ResolvedEnvironment, CacheReport]:
    """Store every package of ``env`` (uploading only what is missing, in parallel), then its description and
    full-id alias. Returns the environment as stored (with transmuted files added) and what was done. ``name``
    tells the environment's lines from others' when one run caches several (e.g. ``step start``).

    Every file passes its format's safety check (``formats(extension).check``) before it is uploaded, so
    hydration trusts files that come from the store and checks only those fetched from elsewhere."""
    show = as_progress(progress)
    cache = PackageCache(config.cache_dir(), say=show)
    preferred = str(config.get("CONDA_PREFERRED_FORMAT"))
    creds = credentials or {}

    def ensure(pkg: LockedPackage) -> tuple[LockedPackage, int, int]:
        with task.counting():  # a download's bytes count as they come
            return ensure_one(pkg)

    def ensure_one(pkg: LockedPackage) -> tuple[LockedPackage, int, int]:
        uploaded = present = 0
        if pkg.kind is PackageKind.CONDA and preferred != "none" and pkg.file(preferred) is None:
            pkg = _transmuted(config, pkg, local_file(cache, pkg, pkg.source, creds), preferred, cache)
        for fmt, key in package_keys(config, pkg).items():
            file = pkg.file(fmt)
            assert file is not None
            info = store.stat(key)
            if info is not None and (file.size is None or info.size == file.size):
                present += 1
                continue
            if info is not None:  # the wrong size: a damaged copy, replaced
                show(f"{store.url}/{key} has {info.size} bytes instead of {file.size}: uploading it again.")
            local = local_file(cache, pkg, file, creds)
            ensure_checked(functools.partial(formats, fmt), local)
            store.put_file(key, local)
            uploaded += 1
            task.advance(0, file.size or 0)
        task.advance()
        return pkg, uploaded, present

    started = time.monotonic()
    with show.task(f"Caching packages in {store.url}", len(env.packages), lambda _: "") as task:
        results = in_parallel(ensure, env.packages)
    stored = replace(env, packages=tuple(p for p, _, _ in results))
    uploaded = sum(u for _, u, _ in results)
    present = sum(p for _, _, p in results)
    of = caching_label(env, name)
    show(
        done(f"Caching {uploaded} item(s){of} to {store.url}", started)
        if uploaded
        else f"All packages{of} already cached in {store.url}."
    )
    keys = {p.filename: package_keys(config, p) for p in stored.packages}
    written = _put_description(store, env_key(config, stored), description.dumps(stored, keys), show)
    # as stored: this machine's record then knows where the store keeps each file, as a reader of the store
    # does (whatever METAFLOW_CONDA_PACKAGES_DIRNAME says later)
    stored = replace(stored, packages=tuple(_kept_at(p, keys[p.filename]) for p in stored.packages))
    envs_dirname = str(config.get("CONDA_ENVS_DIRNAME"))
    _put_once(
        store,
        naming.full_id_alias_key(stored.full_id, envs_dirname=envs_dirname),
        json.dumps([stored.req_id, stored.full_id]).encode(),
    )
    return stored, CacheReport(uploaded=uploaded, present=present, description_written=written)


def caching_label(env: ResolvedEnvironment, name: str = "") -> str:
    """' for NAME' (and its arch when co-resolved for several: one line per arch) in the lines that say what was
    cached: which environment is which when one run caches several; '' when there is nothing to tell apart."""
    arch = env.arch if len(env.resolved_archs) > 1 else ""
    label = f"{name} ({arch})" if name and arch else name or arch
    return f" for {label}" if label else ""


def _kept_at(pkg: LockedPackage, keys: Mapping[str, str]) -> LockedPackage:
    return replace(pkg, files=tuple(replace(f, stored_key=keys[f.url_format]) for f in pkg.files))


def _put_description(store: Store, key: str, data: bytes, show: Progress) -> bool:
    """Descriptions are written once, as other immutable objects; one that cannot be read (damaged: not JSON,
    not a description, a malformed field) or that records its packages otherwise than this resolution of the
    same full id (edited after it was written) is replaced, compare-and-swap on the damaged version. One written
    by a newer envcore (a schema this one does not know) is left alone."""
    if _put_once(store, key, data):
        return True
    info = store.stat(key)
    if info is None:
        return _put_once(store, key, data)  # deleted in between
    try:
        problem = _damage(store, key, data)
    except MissingObject:
        return _put_once(store, key, data)  # deleted in between
    if problem is None:
        return False
    show(f"{store.url}/{key} {problem}: writing the description again.")
    try:
        store.put_bytes(key, data, if_version=info.version)
    except PreconditionFailed:
        return False  # someone else replaced it first
    return True


def _damage(store: Store, key: str, data: bytes) -> str | None:
    """What is wrong with the stored description at ``key`` that ``data`` (a fresh one) would put right."""
    with store.open(key) as fh:
        raw = fh.read()
    try:
        existing = json.loads(raw)
    except ValueError:
        return "is damaged (not JSON)"
    if description.newer_schema(existing):
        return None
    arch, req_id, full_id = key.split("/")[-4:-1]
    try:
        description.parse(existing, req_id=req_id, full_id=full_id, arch=arch, where=key)
    except StorageError:
        return "is damaged"
    edited = description.edited_package(existing, json.loads(data))
    return None if edited is None else f"records {edited} otherwise than it was resolved"


def _put_once(store: Store, key: str, data: bytes) -> bool:
    """Immutable objects are written once; a concurrent writer of the same id wrote equivalent content."""
    try:
        store.put_bytes(key, data, if_absent=True)
        return True
    except PreconditionFailed:
        return False


def stored_packages_missing(config: Config, store: Store, packages: Sequence[LockedPackage]) -> list[str]:
    """Store keys a description needs that are absent (for integrity checks)."""
    return [key for p in packages for key in package_keys(config, p).values() if store.stat(key) is None]
