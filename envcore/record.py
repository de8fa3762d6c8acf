"""The local record of resolved environments, defaults and aliases (the original's ``conda_v2.cnd``).

Layout of the record file (as the original)::

    {"version": 1, "mappings": {pathspec: [req, full]}, "mutable_aliases": {alias: [req, full]},
     "aliases": {alias_or_full_id: [req, full]},
     "environments": {arch: {req: {full: <description>, "_default": full}}}}

Read under a shared lock, changed under an exclusive lock (``<record>.lock``), so concurrent processes never
lose each other's updates, and every change is on disk (fsync) before it is acknowledged: the record may hold
the only copy of an alias. Two ways to change it:

* :meth:`LocalRecord.update` rewrites the whole file (temporary file, fsync, atomic rename).
* Setting one alias or step mapping appends one line to a journal, ``<record>.log`` (fsync'd append), instead
  of rewriting a record that grows with every alias: a write costs the same with 10 or 10,000 aliases. The
  journal's first line names the record it extends (a hash of its bytes); readers apply the complete lines of
  a journal whose base is the current record and ignore any other (a rewrite folds the journal in, then
  removes it; a crash in between leaves a journal whose base is gone, i.e. one already folded in). A line
  torn by a crash is never acknowledged; the next append cuts it off. After ``COMPACT_AFTER`` lines the
  journal is folded into the record.

An update that changes nothing writes nothing. The record is compact JSON, written by the C encoder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

from envcore import TYPE_CHECKING
from envcore.errors import StorageError
from envcore.locks import file_lock
from envcore.uptodate import SCOPE_MARK, remember_alias_ids, scoped

if TYPE_CHECKING:  # descriptions are imported by the methods that read or write them: the no-op create
    # of an alias (envcore.uptodate) reads the record's aliases only
    from typing import Any, TypeAlias

    from envcore.types import ResolvedEnvironment

    Data: TypeAlias = dict[str, Any]

EnvRef = tuple[str, str]  # (req_id, full_id)
COMPACT_AFTER = 256  # journal lines
JOURNALED = ("aliases", "mutable_aliases", "mappings")


def _empty() -> Data:
    return {"version": 1, "mappings": {}, "mutable_aliases": {}, "aliases": {}, "environments": {}}


def _base(raw: bytes | None) -> str:
    import hashlib  # (with pathlib, kept out of the fast path's imports: envcore.uptodate reads the record)

    return hashlib.blake2b(raw or b"", digest_size=16).hexdigest()


def _header(base: str) -> bytes:
    return json.dumps({"journal": 1, "base": base}, separators=(",", ":")).encode() + b"\n"


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def write_atomic(path: str, data: bytes, *, private: bool = True) -> None:
    """``data`` at ``path`` whole or not at all (a temporary file beside it, fsynced, renamed over it); readable by
    its owner only unless ``private`` is False (a file for the user: the mode ``open()`` gives, the umask's)."""
    import tempfile  # only writers need it

    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        if not private:
            umask = os.umask(0o22)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class LocalRecord:
    def __init__(self, path: str | os.PathLike[str], lock_timeout: float) -> None:
        self.path = path  # as given (messages name it so)
        self._file = os.fspath(path)
        self.lock_path = self._file + ".lock"
        self.log_path = self._file + ".log"
        self.timeout = lock_timeout
        # (record bytes, journal bytes, data) as this process last saw them under the exclusive lock; never
        # handed out, so changing it in place is safe
        self._seen: tuple[bytes | None, bytes, Data] | None = None
        # (record bytes, journal bytes, data) of the last read(): read() returns it again while both files
        # hold the same bytes (reading them costs far less than parsing a record of many environments)
        self._read: tuple[bytes | None, bytes | None, Data] | None = None
        self._base: tuple[bytes | None, bytes] | None = None  # (record bytes, its journal header)

    def _bytes(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def _parse(self, raw: bytes | None) -> Data:
        if raw is None:
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

    def _header(self, raw: bytes | None) -> bytes:
        if self._base is None or self._base[0] != raw:
            self._base = (raw, _header(_base(raw)))
        return self._base[1]

    def _journal(self, raw: bytes | None, log: bytes | None) -> bytes:
        """The complete lines of ``log`` if it extends ``raw`` (header included), else b""."""
        end = log.rfind(b"\n") + 1 if log else 0
        if not end or not log or not log.startswith(self._header(raw)):
            return b""
        return log[:end]

    def _replay(self, data: Data, journal: bytes) -> None:
        lines = journal.splitlines()[1:]
        if not lines:
            return
        try:
            for table, key, value in json.loads(b"[" + b",".join(lines) + b"]"):
                if table not in JOURNALED or not isinstance(key, str):
                    raise ValueError(table)
                data[table][key] = value
        except (ValueError, TypeError):
            raise StorageError(
                f"The local record's journal {self.log_path} is damaged. Move it away: the aliases written last on "
                "this machine are then forgotten here (the store still has them)."
            ) from None

    def _load(self) -> tuple[bytes | None, bytes, Data]:
        raw, log = self._bytes(self._file), self._bytes(self.log_path)
        journal = self._journal(raw, log)
        seen = self._seen
        if seen is not None and seen[0] == raw and seen[1] == journal:
            return raw, journal, seen[2]
        data = self._parse(raw)
        self._replay(data, journal)
        return raw, journal, data

    def read(self) -> Data:
        """The record's data (shared between calls: do not change it; use :meth:`update`)."""
        with file_lock(self.lock_path, self.timeout, shared=True):
            raw, log = self._bytes(self._file), self._bytes(self.log_path)
        last = self._read
        if last is not None and last[0] == raw and last[1] == log:
            return last[2]
        data = self._parse(raw)
        self._replay(data, self._journal(raw, log))
        self._read = (raw, log, data)
        return data

    def update(self, change: Callable[[Data], object]) -> None:
        """Apply ``change`` (which mutates the data in place) and rewrite the record, folding the journal in;
        write nothing when nothing changed."""
        with file_lock(self.lock_path, self.timeout):
            raw, journal, data = self._load()
            self._seen = None  # ``data`` may be changed below: valid again only once written
            change(data)
            self._rewrite(raw, journal, data)

    def _rewrite(self, raw: bytes | None, journal: bytes, data: Data) -> None:
        new = _dumps(data)
        if new != raw:
            write_atomic(self._file, new)
        if journal or new != raw:
            _unlink(self.log_path)  # folded in (a stale one is ignored anyway)
        self._seen = (new, b"", data)

    def _set(self, table: str, key: str, value: list[str]) -> None:
        """``data[table][key] = value``, journaled."""
        assert table in JOURNALED
        with file_lock(self.lock_path, self.timeout):
            raw, journal, data = self._load()
            if data[table].get(key) == value:
                self._seen = (raw, journal, data)
                return
            self._seen = None
            data[table][key] = value
            if journal.count(b"\n") > COMPACT_AFTER:
                self._rewrite(raw, journal, data)
                return
            line = _dumps([table, key, value]) + b"\n"
            if journal:
                self._append(journal, line)
                journal += line
            else:
                journal = self._header(raw) + line
                write_atomic(self.log_path, journal)
            self._seen = (raw, journal, data)

    def _append(self, journal: bytes, line: bytes) -> None:
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_size != len(journal):
                os.ftruncate(fd, len(journal))  # a line torn by a crash, never acknowledged
            view = memoryview(line)
            offset = len(journal)
            while view:
                written = os.pwrite(fd, view, offset)
                view, offset = view[written:], offset + written
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- environments -------------------------------------------------------------------------------

    def add(self, env: ResolvedEnvironment, *, set_default: bool = True) -> None:
        from envcore import description

        body = description.to_dict(env)

        def change(data: Data) -> None:
            slot = data["environments"].setdefault(env.arch, {}).setdefault(env.req_id, {})
            slot[env.full_id] = body
            if set_default:
                slot["_default"] = env.full_id
            data["aliases"][env.full_id] = [env.req_id, env.full_id]

        self.update(change)

    def forget(self, env: ResolvedEnvironment) -> None:
        """Drop the recorded description of ``env`` (a copy of a damaged one); its aliases stay."""

        def change(data: Data) -> None:
            slot = data["environments"].get(env.arch, {}).get(env.req_id, {})
            slot.pop(env.full_id, None)
            if slot.get("_default") == env.full_id:
                del slot["_default"]

        self.update(change)

    def set_default(self, arch: str, req_id: str, full_id: str) -> None:
        self.update(
            lambda data: (
                data["environments"].setdefault(arch, {}).setdefault(req_id, {}).update(_default=full_id)
            )
        )

    def environment(
        self, arch: str, req_id: str, full_id: str | None = None, *, data: Data | None = None
    ) -> ResolvedEnvironment | None:
        """The recorded environment, or the default one for ``req_id`` when ``full_id`` is None; from ``data``
        (what :meth:`read` returned) when given: a batch's lookups read the record once."""
        slot = (self.read() if data is None else data)["environments"].get(arch, {}).get(req_id, {})
        full_id = full_id or slot.get("_default")
        body = slot.get(full_id) if full_id else None
        if body is None or full_id is None:
            return None
        from envcore import description

        return description.from_dict(body, req_id=req_id, full_id=full_id, arch=arch)

    def environments(self, *, data: Data | None = None) -> Iterator[ResolvedEnvironment]:
        from envcore import description

        for arch, reqs in (self.read() if data is None else data)["environments"].items():
            for req_id, slot in reqs.items():
                for full_id, body in slot.items():
                    if full_id != "_default":
                        yield description.from_dict(body, req_id=req_id, full_id=full_id, arch=arch)

    def default_full_id(self, arch: str, req_id: str) -> str | None:
        value = self.read()["environments"].get(arch, {}).get(req_id, {}).get("_default")
        return str(value) if value else None

    # --- aliases ------------------------------------------------------------------------------------

    def set_alias(self, resolved: str, ref: EnvRef, *, mutable: bool, scope: str = "") -> None:
        """Remember an alias; an immutable one for the store ``scope`` names (``configfiles.store_scope``)."""
        if mutable:
            self._set("mutable_aliases", resolved, list(ref))
        else:
            self._set("aliases", scoped(resolved, scope), list(ref))
            remember_alias_ids(self._file, resolved, *ref, scope=scope)

    def set_mapping(self, pathspec: str, ref: EnvRef) -> None:
        """Remember the environment of a step (``Flow/Run/Step``), for ``step:`` aliases."""
        self._set("mappings", pathspec, list(ref))

    def alias(self, resolved: str, *, scope: str | None = None) -> EnvRef | None:
        """What ``resolved`` refers to: with ``scope``, the immutable alias as read from that store only;
        without, an alias known to no store in particular (written before scopes), a mutable alias or a
        step's mapping."""
        data = self.read()
        if scope is not None:
            found = data["aliases"].get(scoped(resolved, scope))
            return (str(found[0]), str(found[1])) if found else None
        for table in ("aliases", "mutable_aliases", "mappings"):
            if resolved in data[table]:
                req, full = data[table][resolved]
                return str(req), str(full)
        return None

    def aliases_of(self, ref: EnvRef, scope: str = "") -> tuple[list[str], list[str]]:
        """(immutable, mutable) aliases pointing at ``ref``, full-id aliases excluded; the immutable ones of the
        store ``scope`` names and those of no store in particular."""
        data = self.read()
        immutable = {
            name
            for name, _, of in (
                a.partition(SCOPE_MARK) for a, v in data["aliases"].items() if tuple(v) == ref
            )
            if name != ref[1] and of in ("", scope)
        }
        mutable = [a for a, v in data["mutable_aliases"].items() if tuple(v) == ref]
        return sorted(immutable), sorted(mutable)
