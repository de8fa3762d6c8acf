"""The local record of resolved environments, defaults and aliases (the original's ``conda_v2.cnd``).

One JSON file, read under a shared lock and updated read-merge-write under an exclusive lock with an
atomic replace, so concurrent processes never lose each other's updates. Layout (as the original)::

    {"version": 1, "mappings": {pathspec: [req, full]}, "mutable_aliases": {alias: [req, full]},
     "aliases": {alias_or_full_id: [req, full]},
     "environments": {arch: {req: {full: <description>, "_default": full}}}}
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from envcore import description
from envcore.errors import StorageError
from envcore.locks import file_lock
from envcore.types import ResolvedEnvironment

Data = dict[str, Any]
EnvRef = tuple[str, str]  # (req_id, full_id)


def _empty() -> Data:
    return {"version": 1, "mappings": {}, "mutable_aliases": {}, "aliases": {}, "environments": {}}


class LocalRecord:
    def __init__(self, path: Path, lock_timeout: float) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.timeout = lock_timeout

    def _read_unlocked(self) -> Data:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return _empty()
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != 1:
                raise ValueError("unknown layout")
        except ValueError as exc:
            raise StorageError(
                f"The local record {self.path} is damaged ({exc}). Move it away; envcore rebuilds it from the store "
                "as you use environments again."
            ) from None
        merged = _empty()
        merged.update(data)
        return merged

    def read(self) -> Data:
        with file_lock(self.lock_path, self.timeout, shared=True):
            return self._read_unlocked()

    def update(self, change: Callable[[Data], None]) -> Data:
        with file_lock(self.lock_path, self.timeout):
            data = self._read_unlocked()
            change(data)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(data, fh, indent=1, sort_keys=True)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return data

    # --- environments -------------------------------------------------------------------------------

    def add(self, env: ResolvedEnvironment, *, set_default: bool = True) -> None:
        body = description.to_dict(env)

        def change(data: Data) -> None:
            slot = data["environments"].setdefault(env.arch, {}).setdefault(env.req_id, {})
            slot[env.full_id] = body
            if set_default:
                slot["_default"] = env.full_id
            data["aliases"][env.full_id] = [env.req_id, env.full_id]

        self.update(change)

    def set_default(self, arch: str, req_id: str, full_id: str) -> None:
        self.update(
            lambda data: (
                data["environments"].setdefault(arch, {}).setdefault(req_id, {}).update(_default=full_id)
            )
        )

    def environment(self, arch: str, req_id: str, full_id: str | None = None) -> ResolvedEnvironment | None:
        """The recorded environment, or the default one for ``req_id`` when ``full_id`` is None."""
        slot = self.read()["environments"].get(arch, {}).get(req_id, {})
        full_id = full_id or slot.get("_default")
        body = slot.get(full_id) if full_id else None
        if body is None or full_id is None:
            return None
        return description.from_dict(body, req_id=req_id, full_id=full_id, arch=arch)

    def environments(self) -> Iterator[ResolvedEnvironment]:
        for arch, reqs in self.read()["environments"].items():
            for req_id, slot in reqs.items():
                for full_id, body in slot.items():
                    if full_id != "_default":
                        yield description.from_dict(body, req_id=req_id, full_id=full_id, arch=arch)

    def default_full_id(self, arch: str, req_id: str) -> str | None:
        value = self.read()["environments"].get(arch, {}).get(req_id, {}).get("_default")
        return str(value) if value else None

    # --- aliases ------------------------------------------------------------------------------------

    def set_alias(self, resolved: str, ref: EnvRef, *, mutable: bool) -> None:
        table = "mutable_aliases" if mutable else "aliases"
        self.update(lambda data: data[table].update({resolved: list(ref)}))

    def set_mapping(self, pathspec: str, ref: EnvRef) -> None:
        """Remember the environment of a step (``Flow/Run/Step``), for ``step:`` aliases."""
        self.update(lambda data: data["mappings"].update({pathspec: list(ref)}))

    def alias(self, resolved: str) -> EnvRef | None:
        data = self.read()
        for table in ("aliases", "mutable_aliases", "mappings"):
            if resolved in data[table]:
                req, full = data[table][resolved]
                return str(req), str(full)
        return None

    def aliases_of(self, ref: EnvRef) -> tuple[list[str], list[str]]:
        """(immutable, mutable) aliases pointing at ``ref``, full-id aliases excluded."""
        data = self.read()
        immutable = [a for a, v in data["aliases"].items() if tuple(v) == ref and a != ref[1]]
        mutable = [a for a, v in data["mutable_aliases"].items() if tuple(v) == ref]
        return sorted(immutable), sorted(mutable)
