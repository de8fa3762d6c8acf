"""Named environments: aliases written to the store without races, and looked up local-first.

An alias object (``envs/aliases/generic/<name>/<tag>``) holds ``[req_id, full_id]`` as in the original.

* An **immutable** tag (anything but ``latest``, ``candidate``, ``stable``) is written with the store's
  create-if-absent primitive: of any number of concurrent writers exactly one wins; the others get an
  :class:`~envcore.errors.AliasError` naming the alias and what it refers to. Writing the same target again
  is a no-op.
* A **mutable** tag is replaced with compare-and-swap on the object's version, retried on conflict, so two
  writers never interleave a read of one with the write of the other.
* Lookups read the local record first, and the store when the alias is missing locally **or mutable**
  (``:latest`` reflects the shared store). ``step:Flow/Run/Step`` aliases are answered by the local record's
  pathspec mappings, then by a pluggable lookup (the Metaflow integration reads a run's task metadata).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cached_property

from envcore import naming
from envcore.errors import (
    AliasError,
    InvalidAlias,
    KeyConflict,
    MissingObject,
    PreconditionFailed,
    StorageError,
)
from envcore.naming import Alias, AliasKind
from envcore.record import EnvRef, LocalRecord
from envcore.types import Store

PathspecLookup = Callable[[str], EnvRef | None]
CAS_ATTEMPTS = 50


def _encode(ref: EnvRef) -> bytes:
    return json.dumps(list(ref)).encode()


class DamagedAlias(StorageError):
    """An alias object in the store that does not hold a ``[req_id, full_id]`` pair."""


def _decode(raw: bytes, where: str) -> EnvRef:
    try:
        value = json.loads(raw)
        if not (isinstance(value, list) and len(value) == 2 and all(naming.is_env_id(v) for v in value)):
            raise ValueError("not a [req_id, full_id] pair")
    except ValueError as exc:
        raise DamagedAlias(
            f"The alias object {where} is damaged ({exc}). A mutable alias (tag latest, candidate or stable) is "
            "replaced by aliasing an environment to it again (`envcore alias ENV NAME:TAG`); an immutable one "
            "is never overwritten, so delete that object from the store first, then alias again."
        ) from None
    return str(value[0]), str(value[1])


class Aliases:
    def __init__(
        self,
        store: Store | Callable[[], Store | None] | None,
        record: LocalRecord,
        *,
        envs_dirname: str = "envs",
        pathspec_lookup: PathspecLookup | None = None,
        scope: str = "",
    ) -> None:
        """``store`` may be a function that returns it: called when a name is first looked up or written (ids
        and known pathspecs need no store, so no plugin is loaded for them). ``scope`` names the store for the
        record (:func:`envcore.configfiles.store_scope`): an immutable alias is answered from the record only
        as that store bound it."""
        self._store = store
        self.record = record
        self.envs_dirname = envs_dirname
        self.pathspec_lookup = pathspec_lookup
        self.scope = scope

    @cached_property
    def store(self) -> Store | None:
        source = self._store
        return source if source is None or isinstance(source, Store) else source()

    @property
    def store_url(self) -> str:
        return self.store.url if self.store is not None else "the local record"

    def _key(self, alias: Alias) -> str:
        return naming.alias_key(alias, envs_dirname=self.envs_dirname)

    def _where(self, alias: Alias) -> str:
        return f"{self.store.url}/{self._key(alias)}" if self.store else alias.display

    # --- reading ------------------------------------------------------------------------------------

    def remote(self, alias: Alias) -> EnvRef | None:
        """What the store says ``alias`` refers to (None if absent or there is no store)."""
        if self.store is None or alias.kind is not AliasKind.GENERIC:
            return None
        try:
            with self.store.open(self._key(alias)) as fh:
                raw = fh.read()
        except MissingObject:
            return None
        return _decode(raw, self._where(alias))

    def lookup(self, alias: Alias) -> EnvRef | None:
        if alias.kind is AliasKind.IDS:
            return alias.ids
        if alias.kind is AliasKind.PATHSPEC:
            found = self.record.alias(alias.path)
            if found is None and self.pathspec_lookup is not None:
                found = self.pathspec_lookup(alias.path)
            return found
        local = self._recorded(alias)
        if local is not None and not alias.mutable:
            return local
        found = self.remote(alias)
        if found is None:  # a mutable alias written while offline, or an immutable one recorded before scopes
            return local or self.record.alias(alias.path)
        if found != local:  # remember it; an unchanged record is not rewritten
            self.record.set_alias(alias.path, found, mutable=alias.mutable, scope=self.scope)
        return found

    def _recorded(self, alias: Alias) -> EnvRef | None:
        """What the record knows ``alias`` as: an immutable one as this store bound it."""
        return self.record.alias(alias.path, scope=None if alias.mutable else self.scope)

    def resolve(self, text: str) -> EnvRef:
        alias = naming.parse_alias(text)
        found = self.lookup(alias)
        if found is None and alias.kind is AliasKind.PATHSPEC and self.pathspec_lookup is None:
            raise AliasError(
                f"Environment {alias.text!r} names a step of a Metaflow run, and this machine's record does not "
                "know that step's environment: it knows the steps this machine ran, and envcore alone does not "
                "read Metaflow's metadata. Check the pathspec, or use `metaflow environment show "
                f"step:{alias.path}` (also get, create, alias, resolve --using), which reads the run's metadata."
            )
        if found is None:
            where = f" locally or in {self.store.url}" if self.store else " locally"
            raise AliasError(
                f"Environment {alias.display!r} does not refer to a known environment{where}. Check its spelling "
                "(and the store settings), or resolve it with `envcore resolve --alias`."
            )
        return found

    # --- writing ------------------------------------------------------------------------------------

    def check_writable(self, alias: Alias) -> None:
        """Refuse, before any resolution, an alias that can never be written."""
        if alias.kind is not AliasKind.GENERIC:
            raise InvalidAlias(
                f"{alias.text!r} cannot be given as an alias: only names (NAME or NAME:TAG) can; ids and step: "
                "pathspecs already name their environment."
            )
        key_conflict = getattr(self.store, "key_conflict", None)  # stores that keep keys as files and folders
        key = self._key(alias)
        in_the_way = key_conflict(key) if key_conflict is not None else None
        if in_the_way is not None:
            raise self._conflict(alias, in_the_way[len(key) - len(alias.path) :])

    def _conflict(self, alias: Alias, other: str | None) -> AliasError:
        """``other``: the alias path in the way (``team/env/v1``), if known."""
        if other is None:
            nested = f"{alias.path} would be an alias and the folder of others at once"
        elif other.startswith(alias.path + "/"):
            nested = f"{alias.path} is the folder of other aliases ({_displayed(other)})"
        else:
            nested = f"{_displayed(other)} is an alias, whose name {alias.display} would need as a folder"
        return AliasError(
            f"Alias {alias.display!r} cannot be stored next to the aliases already in {self.store_url}: that "
            f"store keeps aliases as files in folders, and {nested} (as with NAME:TAG and NAME/TAG:OTHER). "
            "Choose another name."
        )

    def write(self, alias: Alias, ref: EnvRef) -> bool:
        """Point ``alias`` at ``ref``; return False when it already did. Raises AliasError when an immutable
        alias refers to something else."""
        self.check_writable(alias)
        try:
            changed = (
                self._write_remote(alias, ref) if self.store is not None else self._write_local(alias, ref)
            )
        except KeyConflict:  # (written by another process since it was checked)
            raise self._conflict(alias, None) from None
        self.record.set_alias(alias.path, ref, mutable=alias.mutable, scope=self.scope)
        return changed

    def _refuse(self, alias: Alias, current: EnvRef) -> AliasError:
        return AliasError(
            f"Alias {alias.display!r} is not mutable and already refers to {current[0]}:{current[1]}. Immutable "
            "tags are written once; choose a new tag, or use one of the mutable tags latest, candidate, stable."
        )

    def _write_local(self, alias: Alias, ref: EnvRef) -> bool:
        current = self._recorded(alias)
        if current == ref:
            return False
        if current is not None and not alias.mutable:
            raise self._refuse(alias, current)
        return True

    def _write_remote(self, alias: Alias, ref: EnvRef) -> bool:
        assert self.store is not None
        key, data = self._key(alias), _encode(ref)
        for _ in range(CAS_ATTEMPTS):
            info = self.store.stat(key)
            try:
                if info is None:
                    self.store.put_bytes(key, data, if_absent=True)
                    return True
                try:
                    current = self.remote(alias)
                except DamagedAlias:
                    if not alias.mutable:
                        raise
                    current = None  # replaced, as a mutable alias is (the version check still holds)
                else:
                    if current == ref:
                        return False
                    if current is None:
                        continue  # deleted in between
                    if not alias.mutable:
                        raise self._refuse(alias, current)
                self.store.put_bytes(key, data, if_version=info.version)
                return True
            except PreconditionFailed:
                continue  # someone else wrote it in between: look again
        raise StorageError(
            f"Could not update the alias {alias.display!r} in {self.store.url}: it kept changing during "
            f"{CAS_ATTEMPTS} attempts. Retry."
        )


def _displayed(path: str) -> str:
    """An alias path as it is written: ``team/env/v1`` -> ``team/env:v1``."""
    name, _, tag = path.rstrip("/").rpartition("/")
    return f"{name}:{tag}" if name else tag
