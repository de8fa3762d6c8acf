"""The environment workflow shared by the ``envcore`` CLI and the Metaflow integration: resolve (or reuse the
default resolution of a req id), cache into the store, look environments up, hydrate them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path

from envcore import cache as caching
from envcore import description, hydrate, naming, resolve
from envcore.errors import AliasError, MissingObject, StorageError, UsageError
from envcore.plugins import Registry
from envcore.record import LocalRecord
from envcore.types import ResolvedEnvironment, ResolveRequest, Store

Progress = Callable[[str], None]
HEX40 = frozenset("0123456789abcdef")


def _is_id(text: str) -> bool:
    return len(text) == 40 and set(text) <= HEX40


class Environments:
    def __init__(self, registry: Registry, progress: Progress = lambda _: None) -> None:
        self.registry = registry
        self.config = registry.config
        self.progress = progress

    @cached_property
    def record(self) -> LocalRecord:
        path = self.config.cache_dir() / str(self.config.get("CONDA_MAGIC_FILE_V2"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return LocalRecord(path, float(self.config.get("CONDA_LOCK_TIMEOUT")))

    @cached_property
    def store(self) -> Store:
        return self.registry.store()

    @property
    def envs_dir(self) -> Path:
        return self.config.cache_dir() / "envs"

    # --- resolving ----------------------------------------------------------------------------------

    def known(self, request: ResolveRequest) -> ResolvedEnvironment | None:
        """The default local resolution of the request's req id, if any."""
        return self.record.environment(request.arch, resolve.req_id(self.registry, request))

    def resolve(
        self, requests: Sequence[ResolveRequest], *, force: bool = False
    ) -> list[tuple[ResolvedEnvironment, bool]]:
        """Lock each request, reusing the default resolution of its req id unless ``force``. Several archs of
        the same requirements are co-resolved: they share one full id."""
        results: list[tuple[ResolvedEnvironment, bool]] = []
        if not force:
            known = [self.known(r) for r in requests]
            if all(known):
                return [(env, False) for env in known if env is not None]
        resolved = [resolve.resolve(self.registry, r) for r in requests]
        if len(resolved) > 1:
            full_id = self.registry.naming().coresolved_full_id({e.arch: e.packages for e in resolved})
            archs = tuple(sorted(e.arch for e in resolved))
            resolved = [replace(e, full_id=full_id, resolved_archs=archs) for e in resolved]
        results = [(env, True) for env in resolved]
        return results

    def save(
        self, env: ResolvedEnvironment, *, cache: bool = True, set_default: bool = True
    ) -> ResolvedEnvironment:
        """Cache ``env`` in the store (packages, then description, then full-id alias), then record it locally."""
        if cache:
            env, report = caching.cache_environment(self.config, self.store, env, progress=self.progress)
            if not report.description_written:
                self.progress(f"All environments already cached in {self.store.url}.")
        self.record.add(env, set_default=set_default)
        return env

    # --- looking up ---------------------------------------------------------------------------------

    def from_store(self, arch: str, req_id: str, full_id: str) -> ResolvedEnvironment:
        key = naming.env_key(
            arch, req_id, full_id, envs_dirname=str(self.config.get("CONDA_ENVS_DIRNAME"))
        )
        try:
            with self.store.open(key) as fh:
                raw = fh.read()
        except MissingObject:
            raise StorageError(
                f"Environment {req_id}:{full_id} is not available for {arch} in the store ({self.store.url}). "
                "Resolve it for that architecture (envcore resolve --arch ...)."
            ) from None
        return description.loads(
            raw, req_id=req_id, full_id=full_id, arch=arch, where=f"{self.store.url}/{key}"
        )

    def find(self, ref: str, arch: str) -> ResolvedEnvironment:
        """An environment by ``REQ_ID:FULL_ID`` (local record first, then the store)."""
        req_id, sep, full_id = ref.partition(":")
        if not (sep and _is_id(req_id) and _is_id(full_id)):
            raise AliasError(
                f"Environment {ref!r} is not a known environment id: write REQ_ID:FULL_ID (two 40-character hex "
                "ids, as printed by `envcore resolve`)."
            )
        local = self.record.environment(arch, req_id, full_id)
        if local is not None:
            return local
        env = self.from_store(arch, req_id, full_id)
        self.record.add(env, set_default=False)
        return env

    # --- hydrating ----------------------------------------------------------------------------------

    def prefix_for(self, env: ResolvedEnvironment, name: str | None) -> Path:
        if name and ("/" in name or name in (".", "..")):
            raise UsageError(f"Environment name {name!r} cannot contain '/'; use a plain name.")
        return self.envs_dir / (name or hydrate.env_dir_name(env))

    def create(self, env: ResolvedEnvironment, prefix: Path, *, force: bool = False) -> bool:
        if env.arch != resolve.local_arch():
            raise UsageError(
                f"Environment {env.req_id}:{env.full_id} is for {env.arch}; this machine is {resolve.local_arch()}. "
                "Create it on a machine of that architecture."
            )
        return hydrate.hydrate(
            self.registry, env, prefix, store=self._store_or_none(), force=force, progress=self.progress
        )

    def _store_or_none(self) -> Store | None:
        try:
            return self.store
        except StorageError:
            return None
