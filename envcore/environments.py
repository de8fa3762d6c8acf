"""The environment workflow shared by the ``envcore`` CLI and the Metaflow integration: resolve (or reuse the
default resolution of a req id), cache into the store, look environments up, hydrate them."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import cached_property
from pathlib import Path

from envcore import TYPE_CHECKING, __version__, naming, resolve, uptodate
from envcore.aliases import Aliases, PathspecLookup
from envcore.config import Config
from envcore.errors import (
    AliasError,
    ConfigError,
    EditedDescription,
    EnvcoreError,
    EnvcoreWarning,
    EnvironmentNotFound,
    IntegrityError,
    MissingObject,
    NewerDescription,
    ResolutionError,
    SpecError,
    StorageError,
    UsageError,
)
from envcore.platforms import runs_here
from envcore.plugins import Registry
from envcore.progress import Progress, as_progress
from envcore.record import LocalRecord
from envcore.tools import in_this_work, new_work, result_of, stop_work
from envcore.types import (
    BatchResolver,
    LockedPackage,
    PackageKind,
    ResolvedEnvironment,
    ResolveRequest,
    Store,
)

if TYPE_CHECKING:
    from envcore.record import Data

RESOLVE_WORKERS = 4
ALIAS_NAMES_LOOKED_UP = 16  # names of an environment whose tags show looks up in the store


class Environments:
    def __init__(
        self,
        registry: Registry | Callable[[], Registry],
        progress: Progress | Callable[[str], None] | None = None,
        pathspec_lookup: PathspecLookup | None = None,
        *,
        config: Config | None = None,
    ) -> None:
        """``registry`` may be a factory (with ``config`` given): commands that end early, such as creating an
        environment that already exists, then never load the plugins."""
        if isinstance(registry, Registry):
            self.__dict__["registry"] = registry
            self.config = registry.config
        elif config is None:
            raise TypeError("Environments(registry_factory) needs config=")
        else:
            self._registry_factory = registry
            self.config = config
        self.progress = as_progress(progress)
        self.pathspec_lookup = pathspec_lookup
        # req id -> the credentials its requests carried (host -> (user, password)), to download its files when
        # caching it: per environment, as each request was checked to carry one credential per host (two steps
        # may hold different ones for a host: a channel's token and an index's password)
        self._credentials: dict[str, dict[str, tuple[str, str]]] = {}
        # (req id, full id) -> the alias :meth:`find` got: messages name a base as the user did
        self.names: dict[tuple[str, str], str] = {}
        self._cache_dir_checked = False

    @cached_property
    def registry(self) -> Registry:
        return self._registry_factory()

    @cached_property
    def record(self) -> LocalRecord:
        path = self.config.cache_dir() / str(self.config.get("CONDA_MAGIC_FILE_V2"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._cache_dir_error(path.parent, exc) from None
        return LocalRecord(path, float(self.config.get("CONDA_LOCK_TIMEOUT")))

    def check_cache_dir(self) -> None:
        """Fail with a clear :class:`ConfigError` when the cache folder cannot be created or written: resolvers
        and the hydration keep their files there, and would fail later with their own, misleading, words.
        Checked once (a folder made and a file written and removed)."""
        if self._cache_dir_checked:
            return
        folder = self.config.cache_dir()
        probe = folder / f".envcore-probe-{os.getpid()}-{threading.get_ident()}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
            probe.unlink()
        except OSError as exc:
            raise self._cache_dir_error(folder, exc) from None
        self._cache_dir_checked = True

    def _cache_dir_error(self, folder: Path, exc: OSError) -> ConfigError:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason += " (it, or a folder above it, is a file)"
        value = self.config.value("ENVCORE_CACHE_DIR")
        if not value.value:
            origin = "the default, as METAFLOW_ENVCORE_CACHE_DIR is not set"
        elif value.source == "env var":
            origin = "set by the environment variable METAFLOW_ENVCORE_CACHE_DIR"
        else:
            origin = f"METAFLOW_ENVCORE_CACHE_DIR, set in {value.source}"
        return ConfigError(
            f"The envcore cache folder {folder} ({origin}) cannot be used: {reason}. Set "
            "METAFLOW_ENVCORE_CACHE_DIR to a folder this user can create and write, or fix that folder."
        )

    @cached_property
    def store(self) -> Store:
        return self.registry.store()

    @property
    def envs_dir(self) -> Path:
        return self.config.cache_dir() / "envs"

    def local_copies(self, env: ResolvedEnvironment) -> list[Path]:
        """The finished prefixes of ``env`` in the environments folder (not envcore's own ``.NAME.*`` work
        beside them, such as a clone an interrupted ``--force`` left)."""
        try:
            names = sorted(os.listdir(self.envs_dir))
        except OSError:
            return []
        return [
            self.envs_dir / name
            for name in names
            if not name.startswith(".")
            and uptodate.is_complete(str(self.envs_dir / name), env.req_id, env.full_id, env.arch)
        ]

    # --- resolving ----------------------------------------------------------------------------------

    def known(self, request: ResolveRequest) -> ResolvedEnvironment | None:
        """The default local resolution of the request's req id, else (with ``CONDA_USE_REMOTE_LATEST``) the
        newest matching one in the store (for an extension, the newest that keeps its base's packages, as
        :meth:`_recorded` reuses; the original used the store's newest extension of any base)."""
        return self._known(request, resolve.req_id(self.registry, request))

    def _known(self, request: ResolveRequest, req_id: str) -> ResolvedEnvironment | None:
        local = self._recorded(request, req_id)
        if local is not None:
            return local
        accept = self._remote_latest_filter()
        store = self._store_or_none()
        if accept is None or store is None:
            return None
        newest = self._newest_stored(store, request, req_id, accept)
        if newest is None:
            return None
        self.progress(
            f"Using {req_id}:{newest.full_id}, resolved by {newest.resolved_by} on {newest.resolved_on}"
        )
        self.record.add(newest, set_default=True)
        return newest

    def _newest_stored(
        self,
        store: Store,
        request: ResolveRequest,
        req_id: str,
        accept: Callable[[str], bool],
        *,
        warn: bool = True,
    ) -> ResolvedEnvironment | None:
        """The newest resolution of ``req_id`` for the request's arch in ``store`` made by a user ``accept``
        takes (for an extension: one that keeps its base's packages). One a newer envcore wrote, which this one
        cannot read, is skipped (with ``warn``, one warning names them and the upgrade)."""
        envs_dirname = str(self.config.get("CONDA_ENVS_DIRNAME"))
        candidates: list[ResolvedEnvironment] = []
        skipped: dict[str, str] = {}  # full id -> the version of the envcore that wrote it ("" unknown)
        for info in store.list(naming.env_prefix(request.arch, req_id, envs_dirname=envs_dirname)):
            full_id = info.key.split("/")[-2]
            if info.key.endswith("/env") and naming.is_env_id(full_id):
                try:
                    env = self.from_store(request.arch, req_id, full_id)
                except NewerDescription as exc:
                    if not exc.resolved_by or accept(_user(exc.resolved_by)):
                        skipped[full_id] = exc.writer
                    continue
                fits = request.base is None or _extends(env, request.base)  # (an extension: of this base)
                if fits and accept(_user(env.resolved_by)):
                    candidates.append(env)
        if skipped and warn:
            _warn_newer(req_id, skipped, used=bool(candidates))
        return max(candidates, key=lambda e: e.resolved_on, default=None)

    def _recorded(
        self, request: ResolveRequest, req_id: str, data: Data | None = None
    ) -> ResolvedEnvironment | None:
        """The recorded default resolution of ``req_id`` for the request's arch. An extension's req id names
        its base's requirements, not the base: when the base is another resolution of them (``team/env``, a
        mutable name, moved to one resolved later), the default is used only if it keeps every package of this
        base, else the newest recorded resolution that does, else none (it is resolved on this base). ``data``:
        the record as read once for a batch."""
        default = self.record.environment(request.arch, req_id, data=data)
        base = request.base
        if base is None or default is None or _extends(default, base):
            return default
        fitting = [
            env
            for env in self.record.environments(data=data)
            if env.arch == request.arch and env.req_id == req_id and _extends(env, base)
        ]
        return max(fitting, key=lambda env: env.resolved_on, default=None)

    def _remote_latest_filter(self) -> Callable[[str], bool] | None:
        value = self.config.value("CONDA_USE_REMOTE_LATEST")
        text = str(value.value or ":none:").strip()
        if text == ":none:":
            return None
        if text == ":any:":
            return lambda _: True
        if text == ":username:":
            me = self.config.username()
            return lambda user: user == me
        users = {u.strip() for u in text.split(",") if u.strip()}
        if not users or any(u.startswith(":") or " " in u for u in users):
            raise ConfigError(
                f"{value.describe()}, but it must be :none:, :username:, :any: or a comma-separated list of user "
                "names (e.g. alice,bob)."
            )
        return lambda user: user in users

    def resolve(
        self, requests: Sequence[ResolveRequest], *, force: bool = False
    ) -> list[tuple[ResolvedEnvironment, bool]]:
        """Lock each request, reusing the default resolution of its req id unless ``force``; distinct
        requirement sets are resolved in parallel. Requests with the same req id for several archs are
        co-resolved: they share one full id."""
        self.check_cache_dir()
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            key = resolve.req_id(self.registry, request)
            groups.setdefault(key, []).append(index)
            self._credentials.setdefault(key, {}).update(request.credentials)
        results: dict[int, tuple[ResolvedEnvironment, bool]] = {}
        solved: dict[int, Sequence[LockedPackage] | EnvcoreError] = {}
        known_here: dict[str, list[ResolvedEnvironment | None]] = {}  # what the record knows, read once

        def lock(req_id: str, indexes: list[int]) -> None:
            if not force:
                known = known_here.get(req_id) or [self._known(requests[i], req_id) for i in indexes]
                if all(known):
                    results.update(
                        (i, (env, False)) for i, env in zip(indexes, known, strict=True) if env is not None
                    )
                    return
            try:
                fresh = [self._resolve_one(requests[i], solved.get(i), req_id) for i in indexes]
            except (ResolutionError, SpecError) as exc:
                hint = self._stored_hint(requests[indexes[0]], req_id)
                if hint is None:
                    raise
                raise type(exc)(f"{exc.message} {hint}") from None
            if len({e.arch for e in fresh}) > 1:
                full_id = self.registry.naming().coresolved_full_id({e.arch: e.packages for e in fresh})
                archs = tuple(sorted(e.arch for e in fresh))
                fresh = [replace(e, full_id=full_id, resolved_archs=archs) for e in fresh]
            results.update((i, (env, True)) for i, env in zip(indexes, fresh, strict=True))

        def counted(group: tuple[str, list[int]]) -> None:
            lock(*group)
            task.advance(len(group[1]))

        with (
            new_work() as work,
            self.progress.task(
                f"Resolving {len(requests)} environment(s)", len(requests), lambda _: ""
            ) as task,
        ):
            solved.update(self._solve_batches(requests, groups, force, known_here))
            # Groups already answered (by a batch, or by the local record) leave only Python work, which threads
            # would slow down (they contend for the GIL): done here. The others solve in worker threads.
            answered = {
                req_id: indexes
                for req_id, indexes in groups.items()
                if all(i in solved for i in indexes) or all(known_here.get(req_id) or (None,))
            }
            to_solve = [group for group in groups.items() if group[0] not in answered]
            pool = ThreadPoolExecutor(min(RESOLVE_WORKERS, len(to_solve) or 1))
            try:
                solving = [pool.submit(in_this_work(counted), group) for group in to_solve]
                for group in answered.items():
                    counted(group)
                for future in solving:  # re-raises the first error
                    result_of(future)
            except KeyboardInterrupt:  # at once: the tools under way are stopped, the threads left to end
                stop_work(pool, solving, work)
                raise
            pool.shutdown()
        _warn_of_ignored_requirements(
            [(requests[i], env) for i, (env, new) in sorted(results.items()) if new]
        )
        return [results[i] for i in range(len(requests))]

    def _stored_hint(self, request: ResolveRequest, req_id: str) -> str | None:
        """When resolving ``request`` failed (its channel or index gone, or changed): the sentence that names the
        stored resolution of the same requirements ``CONDA_USE_REMOTE_LATEST=:any:`` would reuse, if the store
        holds one (looked up on this failure only; a store that cannot be read gives none)."""
        store = self._store_or_none()
        try:
            stored = (
                None
                if store is None
                else self._newest_stored(store, request, req_id, lambda _: True, warn=False)
            )
        except EnvcoreError:
            return None
        if stored is None:
            return None
        return (
            f"The store holds a resolution of these requirements: {req_id}:{stored.full_id}, resolved by "
            f"{_user(stored.resolved_by)} on {stored.resolved_on[:19]}; METAFLOW_CONDA_USE_REMOTE_LATEST=:any: reuses it "
            "(the newest stored one) instead of resolving."
        )

    def _solve_batches(
        self,
        requests: Sequence[ResolveRequest],
        groups: dict[str, list[int]],
        force: bool,
        known_here: dict[str, list[ResolvedEnvironment | None]],
    ) -> dict[int, Sequence[LockedPackage] | EnvcoreError]:
        """The answers of resolvers that lock batches (:class:`~envcore.types.BatchResolver`) for the requests
        that need solving, each resolver asked once; other requests are solved one by one afterwards. Without
        ``force``, what the local record knows of each group goes into ``known_here`` (it is all :meth:`_known`
        reads then). Skipped when the newest resolution in the store may be reused
        (``CONDA_USE_REMOTE_LATEST``): knowing which requests need solving then takes the store."""
        if not force and self._remote_latest_filter() is not None:
            return {}
        batches: dict[str, tuple[BatchResolver, list[int]]] = {}
        recorded = None if force else self.record.read()  # read once for the batch
        for req_id, indexes in groups.items():
            if not force:
                known_here[req_id] = [self._recorded(requests[i], req_id, recorded) for i in indexes]
                if all(known_here[req_id]):
                    continue  # reused, not solved
            for i in indexes:
                found = resolve.batch_resolver(self.registry, requests[i])
                if found is not None:
                    batches.setdefault(found[0], (found[1], []))[1].append(i)
        solved: dict[int, Sequence[LockedPackage] | EnvcoreError] = {}
        for name, (resolver, indexes) in batches.items():
            if len(indexes) > 1:
                self.registry.checked(name, resolver)  # as resolve.resolve does first: check() raises
                answers = resolver.resolve_batch([requests[i] for i in indexes])
                solved.update(zip(indexes, answers, strict=True))
        return solved

    def _resolve_one(
        self, request: ResolveRequest, solved: Sequence[LockedPackage] | EnvcoreError | None, req_id: str
    ) -> ResolvedEnvironment:
        """:func:`resolve.resolve`; a failure to extend a base names it as the user did (its alias)."""
        base = request.base
        name = self.names.get((base.req_id, base.full_id)) if base is not None else None
        return resolve.resolve(
            self.registry, request, base_name=name, solved=solved, progress=self.progress, known_req_id=req_id
        )

    def save(
        self, env: ResolvedEnvironment, *, cache: bool = True, set_default: bool = True, name: str = ""
    ) -> ResolvedEnvironment:
        """Cache ``env`` in the store (packages, then description, then full-id alias), then record it locally.
        ``name``: what the caching lines call it when one run caches several environments."""
        if cache:
            from envcore import cache as caching  # here: what resolving alone needs is imported up front

            self.check_cache_dir()

            env, report = caching.cache_environment(
                self.config,
                self.store,
                env,
                formats=self.registry.package_format,
                credentials=self._credentials.get(env.req_id, {}),
                progress=self.progress,
                name=name,
            )
            if not report.description_written:  # (co-resolved or named: one line each, which names it)
                of = caching.caching_label(env, name)
                self.progress(
                    f"The environment{of} is already cached in {self.store.url}."
                    if of
                    else f"All environments already cached in {self.store.url}."
                )
        self.record.add(env, set_default=set_default)
        return env

    def ensure_stored(self, env: ResolvedEnvironment, *, name: str = "") -> ResolvedEnvironment:
        """``env`` (a resolution reused from this machine's record) cached in the current store when that
        store lacks its description: the store may have changed since it was resolved, and an alias or a
        remote node must find it there."""
        from envcore.cache import env_key

        if self.store.stat(env_key(self.config, env)) is not None:
            return env
        self.progress(f"{env.req_id}:{env.full_id} is not in {self.store.url} yet: caching it there.")
        return self.save(env, set_default=False, name=name)

    # --- looking up ---------------------------------------------------------------------------------

    def from_store(self, arch: str, req_id: str, full_id: str, *, named: str = "") -> ResolvedEnvironment:
        """The description of ``req_id:full_id`` for ``arch`` in the store; ``named``: the alias it was
        looked up by, which a missing environment's error names."""
        key = naming.env_key(arch, req_id, full_id, envs_dirname=str(self.config.get("CONDA_ENVS_DIRNAME")))
        try:
            with self.store.open(key) as fh:
                raw = fh.read()
        except MissingObject:
            raise self._missing(arch, req_id, full_id, named) from None
        where = f"{self.store.url}/{key}"
        from envcore import description  # (a resolve that reads none, --force, does not import it)

        env = description.loads(raw, req_id=req_id, full_id=full_id, arch=arch, where=where)
        self._check_full_id(env, where)
        return env

    def _check_full_id(self, env: ResolvedEnvironment, where: str) -> None:
        """A full id is the hash of the exact package files (and arch) of its environment: a description
        envcore wrote whose packages no longer hash to the id it is stored under was changed after it was
        written, and would install something else than what was resolved. Checked with the default naming
        scheme (a site's own scheme may hash other things) for one-arch environments (a co-resolved id hashes
        every arch's packages); descriptions written by the original extension are read as they are."""
        naming_scheme = self.registry.naming()
        if (
            not env.resolver
            or len(env.resolved_archs) > 1
            or not isinstance(naming_scheme, naming.DefaultNaming)
        ):
            return
        computed = naming_scheme.full_id(env.packages, env.arch, env.full_id_unique_keys)
        if computed != env.full_id:
            raise IntegrityError(
                f"The environment description {where} lists packages whose hashes give the full id {computed}, "
                f"not {env.full_id}, the id it is stored under: it was changed after it was written, so envcore "
                "will not install from it. Remove it from the store and resolve the environment again (or "
                "restore it from a backup)."
            )

    def _missing(self, arch: str, req_id: str, full_id: str, named: str = "") -> EnvironmentNotFound:
        """Why the store lacks ``req_id:full_id`` for ``arch``: it holds it for other archs only, or not at all."""
        envs_dirname = str(self.config.get("CONDA_ENVS_DIRNAME"))
        what = f"Environment {req_id}:{full_id}" + (f" (which {named!r} refers to)" if named else "")
        others = [
            a
            for a in resolve.KNOWN_ARCHS
            if a != arch
            and self.store.stat(naming.env_key(a, req_id, full_id, envs_dirname=envs_dirname)) is not None
        ]
        if others:
            return EnvironmentNotFound(
                f"{what} is not available for {arch} in the store ({self.store.url}), "
                f"only for {', '.join(others)}. Resolve its requirements for {arch} (envcore resolve --from "
                f"{req_id}:{full_id} --arch {arch}), or use it for one of those architectures (show, get and create "
                f"take --arch {others[0]})."
            )
        settings = "METAFLOW_DEFAULT_DATASTORE and its root, METAFLOW_CONDA_ENVS_DIRNAME"
        if named and not named.startswith("step:"):  # the name is bound, its environment is gone
            return EnvironmentNotFound(
                f"{what} is not available in the store ({self.store.url}) for any architecture: the name is "
                "there but its environment's description is not (removed from the store?). A machine that "
                f"knows the environment puts it back with `envcore alias {req_id}:{full_id} {named}`; "
                f"resolving its requirements again also does when they give the same ids. Check the store settings "
                f"({settings}) too."
            )
        return EnvironmentNotFound(
            f"{what} is not available in the store ({self.store.url}) for any architecture. Check the ids "
            f"(envcore show NAME prints those of a named environment) and the store settings ({settings})."
        )

    @cached_property
    def aliases(self) -> Aliases:
        return Aliases(
            self._store_or_none,  # built when a name needs it: ids load no plugin
            self.record,
            envs_dirname=str(self.config.get("CONDA_ENVS_DIRNAME")),
            pathspec_lookup=self.pathspec_lookup,
            scope=self.config.store_scope(),
        )

    def find(self, ref: str, arch: str) -> ResolvedEnvironment:
        """An environment by alias (``name[:tag]``, ``REQ_ID:FULL_ID``, ``step:Flow/Run/Step``): local record
        first, then the store."""
        req_id, full_id = self.aliases.resolve(ref)
        named = "" if ref.strip() == f"{req_id}:{full_id}" else ref.strip()
        if named:
            self.names[(req_id, full_id)] = named
        local = self.record.environment(arch, req_id, full_id)
        if local is not None:
            return local
        env = self.from_store(arch, req_id, full_id, named=named)
        self.record.add(env, set_default=False)
        return env

    def exists(self, req_id: str, full_id: str) -> bool:
        """Whether the environment is known locally or in the store (for any architecture)."""
        if any(e.req_id == req_id and e.full_id == full_id for e in self.record.environments()):
            return True
        store = self._store_or_none()
        key = naming.full_id_alias_key(full_id, envs_dirname=str(self.config.get("CONDA_ENVS_DIRNAME")))
        return store is not None and store.stat(key) is not None

    def alias(self, target: str, names: Sequence[str]) -> list[tuple[str, bool]]:
        """Give the environment ``target`` (any alias form) each of ``names``; [(alias, changed)]. Every name
        is checked before any is written, and the environment is cached in the store first when only this
        machine's record has it (an alias in a store must name an environment that store holds)."""
        parsed = [naming.parse_alias(n) for n in names]
        for alias in parsed:
            self.aliases.check_writable(alias)
        ref = self.aliases.resolve(target)
        if not self.exists(*ref):
            raise AliasError(
                f"Environment {target!r} does not refer to a known environment ({ref[0]}:{ref[1]} is neither "
                "recorded locally nor in the store). Resolve it first."
            )
        self.refuse_bound_aliases(parsed, ref, then="No alias was written.")
        if self._store_or_none() is not None:
            for env in self.record.environments():
                if (env.req_id, env.full_id) == ref:
                    self.ensure_stored(env)
        return [(a.display, changed) for a, changed in self.write_aliases(parsed, ref)]

    def write_aliases(
        self, wanted: Sequence[naming.Alias], ref: tuple[str, str]
    ) -> list[tuple[naming.Alias, bool]]:
        """Point each of ``wanted`` at ``ref``: [(alias, changed)] in the order given, a name given twice once (its
        first spelling). The immutable ones are written first (each only where absent): one that another machine
        took meanwhile fails the call before any mutable tag (``:latest``) has moved to ``ref``."""
        unique: dict[str, naming.Alias] = {}
        for alias in wanted:
            unique.setdefault(alias.path, alias)
        changed = {a: self.aliases.write(a, ref) for a in sorted(unique.values(), key=lambda a: a.mutable)}
        return [(a, changed[a]) for a in unique.values()]

    def refuse_bound_aliases(
        self, wanted: Sequence[naming.Alias], ref: tuple[str, str], *, then: str
    ) -> None:
        """Refuse, before anything is written, an immutable alias bound to another environment than ``ref``;
        ``then`` says what was not done."""
        for alias in wanted:
            current = None if alias.mutable else self.aliases.lookup(alias)
            if current is not None and current != ref:
                what = (
                    "another resolution of these requirements"
                    if current[0] == ref[0]
                    else "an environment of other requirements"
                )
                raise AliasError(
                    f"Alias {alias.display!r} is not mutable and already refers to {current[0]}:{current[1]}, "
                    f"{what} than {ref[0]}:{ref[1]}. Choose a new tag, or one of the mutable tags latest, "
                    f"candidate, stable. {then}"
                )

    def aliases_of(self, req_id: str, full_id: str) -> tuple[list[str], list[str]]:
        """(immutable, mutable) alias paths of an environment: those the local record knows, and in the store
        the other tags of their names, each read once (one listing per name: the store's other names are not
        searched, which would read every alias of a team's store; with more than ``ALIAS_NAMES_LOOKED_UP``
        names, the record's list is shown as it is). Only what the store holds is listed (an alias this machine
        wrote to another store, or that has moved on, is not); a damaged alias object is skipped with a notice."""
        ref = (req_id, full_id)
        immutable, mutable = (set(found) for found in self.record.aliases_of(ref, self.aliases.scope))
        store = self._store_or_none()
        if store is None:
            return sorted(immutable), sorted(mutable)
        names = sorted({path.rpartition("/")[0] for path in immutable | mutable})
        if len(names) > ALIAS_NAMES_LOOKED_UP:  # a listing and reads per name would be too many
            return sorted(immutable), sorted(mutable)
        try:
            return self._stored_aliases_of(ref, store, names)
        except StorageError as exc:  # (unreachable): what is known here, as the original shows
            self.progress(f"Showing the aliases this machine knows: {exc.message}")
            return sorted(immutable), sorted(mutable)

    def _stored_aliases_of(
        self, ref: tuple[str, str], store: Store, names: Sequence[str]
    ) -> tuple[list[str], list[str]]:
        """The aliases of ``ref`` among the tags of ``names`` in ``store``."""
        root = f"{self.config.get('CONDA_ENVS_DIRNAME')}/aliases/generic/"
        immutable: set[str] = set()  # the store's answer: the record may know aliases of another store
        mutable: set[str] = set()
        for name in names:
            for info in store.list(f"{root}{name}/"):
                if "/" in info.key[len(f"{root}{name}/") :]:
                    continue  # another name's alias, nested under this one (team/x and team/x/y): not read
                try:
                    alias = naming.parse_alias(_display(info.key[len(root) :]))
                    target = self.aliases.remote(alias)
                except AliasError:
                    continue  # not written by envcore
                except StorageError as exc:
                    self.progress(f"Skipped an alias: {exc.message}")
                    continue
                if target == ref:
                    (mutable if alias.mutable else immutable).add(alias.path)
        return sorted(immutable), sorted(mutable)

    # --- hydrating ----------------------------------------------------------------------------------

    def prefix_for(self, env: ResolvedEnvironment, name: str | None) -> Path:
        """The prefix named ``name`` in the environments folder; without a name, the one steps run in."""
        if name is not None and (not name.strip() or "/" in name or name.startswith(".")):
            raise UsageError(
                f"Environment name {name!r} is not a plain folder name; use a name such as 'work' "
                "(not empty, no '/', not starting with '.': envcore keeps its own work beside each "
                "environment in .NAME.* folders and files)."
            )
        if name is not None and not name.isprintable():
            raise UsageError(
                f"Environment name {name!r} has a control character (a newline, a tab...); use a name such as 'work'."
            )
        if name is not None and len(os.fsencode(name)) > uptodate.MAX_NAME_BYTES:
            raise UsageError(
                f"Environment name {name[:40]!r}... is {len(os.fsencode(name))} bytes long; use a name of at most "
                f"{uptodate.MAX_NAME_BYTES} (its folder and lock file need room in a file name)."
            )
        return self.envs_dir / (name or uptodate.env_dir_name(env.req_id, env.full_id))

    def create(
        self,
        env: ResolvedEnvironment,
        prefix: Path,
        *,
        force: bool = False,
        verify: bool = False,
        any_arch: bool = False,
        credentials: Mapping[str, tuple[str, str]] | None = None,
    ) -> bool:
        """Hydrate ``env`` into ``prefix``; False when it held it already. One for an architecture that
        cannot run here is created only with ``any_arch`` (``create --arch``; a step's never). A package file
        the store lacks (never cached there: CONDA_IGNORE_CACHING_DATASTORES) is fetched from its source with
        ``credentials`` (those of the request it was resolved from, which its description does not keep),
        those of its resolution in this process, and CONDA_SRCS_AUTH_INFO."""
        if not runs_here(env.arch):
            if not any_arch:
                raise UsageError(
                    f"Environment {env.req_id}:{env.full_id} is for {env.arch}; this machine is "
                    f"{resolve.local_arch()}. Create it on a machine of that architecture."
                )
            self._check_foreign(env)
        replaced = uptodate.settle_beside(str(prefix.absolute()))  # (put back under the prefix's lock)
        if (
            not force
            and not verify
            and not replaced
            and uptodate.is_complete(str(prefix.absolute()), env.req_id, env.full_id, env.arch)
        ):
            return False  # the fast path: one small file read, no plugin loaded
        from envcore import hydrate

        self.check_cache_dir()
        try:
            return hydrate.hydrate(
                self.registry,
                env,
                prefix,
                store=self._store_or_none(),
                force=force,
                verify=verify,
                credentials={
                    **resolve.source_credentials(self.config),
                    **self._credentials.get(env.req_id, {}),
                    **(credentials or {}),
                },
                progress=self.progress,
            )
        except EditedDescription:
            self.record.forget(env)  # this machine's copy of it: the next run reads the store's again
            raise

    def _check_foreign(self, env: ResolvedEnvironment) -> None:
        """``env`` is for an architecture that cannot run here: it is created only when nothing of it has to
        run to install it (conda packages, with an installer that runs no link script)."""
        here = resolve.local_arch()
        wheels = sum(p.kind is PackageKind.PYPI for p in env.packages)
        what = (
            f"Environment {env.req_id}:{env.full_id} for {env.arch} cannot be created on this {here} machine"
        )
        if wheels:
            for_here = (
                f"create it for {here}, for which it was resolved too (leave out --arch)."
                if here in env.resolved_archs
                else f"resolve it for {here} (`envcore resolve --from {env.req_id}:{env.full_id} --arch {here}`) "
                "and create that."
            )
            raise UsageError(
                f"{what}: its {wheels} PyPI package(s) are installed by the environment's own python, which "
                f"cannot run here. Create it on a {env.arch} machine (or in a {env.arch} container), or {for_here}"
            )
        installer = self.registry.installer(PackageKind.CONDA)
        if getattr(installer, "installs_any_arch", False) is not True:
            raise UsageError(
                f"{what}: its conda installer ({type(installer).__name__}) may run the packages' link scripts, "
                f"which cannot run here. Create it on a {env.arch} machine (or in a {env.arch} container), or "
                "install its conda packages with the rattler installer (METAFLOW_ENVCORE_CONDA_INSTALLER=rattler)."
            )

    def _store_or_none(self) -> Store | None:
        try:
            return self.store
        except StorageError:
            return None


def _warn_of_ignored_requirements(resolved: Sequence[tuple[ResolveRequest, ResolvedEnvironment]]) -> None:
    """Said once per call, for all its archs: a reused resolution says nothing (nothing was evaluated)."""
    if not resolved:
        return
    import warnings

    from envcore.errors import EnvcoreWarning

    for line in resolve.ignored_by_markers(resolved):
        warnings.warn(EnvcoreWarning(line), stacklevel=3)


def _extends(env: ResolvedEnvironment, base: ResolvedEnvironment) -> bool:
    """Whether ``env`` has every package of ``base`` (virtual packages aside) at its version, as an extension
    of ``base`` does (a PyPI package of the base may be provided by a conda one of the same version)."""

    def key(pkg: LockedPackage) -> tuple[str, str]:
        return pkg.name.lower().replace("_", "-"), pkg.version

    have = {key(pkg) for pkg in env.packages}
    return all(key(pkg) in have for pkg in base.packages if not pkg.name.startswith("__"))


def _user(resolved_by: str) -> str:
    """Who made a resolution (its description's ``resolved_by`` without " (compatible with ...)")."""
    return resolved_by.split(" (compatible with")[0]


def _warn_newer(req_id: str, skipped: dict[str, str], *, used: bool) -> None:
    """An :class:`EnvcoreWarning`: the stored resolutions of ``req_id`` (full id -> the version of the envcore
    that wrote it) that ``CONDA_USE_REMOTE_LATEST`` passed over, as a newer envcore wrote them."""
    import warnings

    versions = sorted({v for v in skipped.values() if v}, key=_version_key)
    by = f"envcore {', '.join(versions)}" if versions else "a newer envcore"
    to = f" to {versions[-1]} or later" if versions else ""
    ids = ", ".join(f"{req_id}:{full_id}" for full_id in sorted(skipped))
    instead = (
        "the newest one it can read is used"
        if used
        else "no other stored resolution fits, so the requirements are resolved instead"
    )
    warnings.warn(
        EnvcoreWarning(
            f"METAFLOW_CONDA_USE_REMOTE_LATEST skipped {len(skipped)} stored resolution(s) written by {by}, whose "
            f"descriptions this envcore ({__version__}) cannot read ({ids}); {instead}. Upgrade envcore and its "
            f"plugins{to} to reuse them."
        ),
        stacklevel=3,
    )


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))


def _display(path: str) -> str:
    name, _, tag = path.rpartition("/")
    return f"{name}:{tag}"
