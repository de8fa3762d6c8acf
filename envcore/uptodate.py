"""``envcore create`` answered from this machine alone, before click, pluggy or any plugin is imported.

Starting a step on a machine that already has its environment is the most frequent call of all, so it must
cost little more than starting Python (issue 11: <= 3x ``python -c pass``); a new prefix of an environment
this machine already has should cost little more than ``cp -al`` (<= 2x). :func:`answer` takes the plain form
``envcore [-q] create REF [--name NAME]``, where REF is ``REQ_ID:FULL_ID`` or an immutable alias ``NAME:TAG``
this machine's record already maps to its ids, and finds the prefix the way the full command does:

- complete (its completion marker matches: one small file, no tree walk): nothing to do;
- absent, with a finished prefix of the same environment listed in the machine's prefix index: that prefix
  is cloned (hardlinks, see :mod:`envcore.relocate`), exactly as the full command would clone it.

Anything else (other options, mutable or unknown aliases, an incomplete prefix, a busy lock, configuration it
cannot read) returns None, and the full command runs and reports errors as usual. Unlike the full command, it
does not check unrelated settings: a bad value of a setting that these paths never read does not stop a step.
"""

from __future__ import annotations

import os
import sys
import time

from envcore import TYPE_CHECKING, configfiles
from envcore.platforms import local_arch

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

MUTABLE_TAGS = frozenset({"latest", "candidate", "stable"})  # an alias with another tag is written once
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_/")  # as envcore.naming.parse_alias
_TAG_CHARS = _NAME_CHARS - {"/"}
MARKER = ".metaflowenv"  # written last by hydration: its presence with the right content means complete
PARTIAL = ".envcore-partial"  # written first into a prefix being built; removed once the marker is written
# a prefix's own state: never cloned into another prefix, nor in its signature
STATE_FILES = (MARKER, PARTIAL)
_HEX = frozenset("0123456789abcdef")


def env_dir_name(req_id: str, full_id: str) -> str:
    """The prefix a step runs in."""
    return f"metaflow_{req_id}_{full_id}"


def created_dir_name(req_id: str, full_id: str) -> str:
    """The prefix ``create`` makes without ``--name`` (the original's): a prefix of its own, so that what a user
    installs there never changes the prefix steps run in."""
    return f"metaflowtmp_{req_id}_{full_id}"


def marker_text(req_id: str, full_id: str, arch: str) -> str:
    """``json.dumps([req_id, full_id, arch])``, formatted by hand for ids and archs (json imports re)."""
    fields = (req_id, full_id, arch)
    if all(c.isascii() and (c.isalnum() or c in "-_.") for field in fields for c in field):
        return "[" + ", ".join(f'"{field}"' for field in fields) + "]"
    import json

    return json.dumps(list(fields))


def is_complete(prefix: str, req_id: str, full_id: str, arch: str) -> bool:
    try:
        with open(os.path.join(prefix, MARKER), encoding="utf-8") as fh:
            return fh.read() == marker_text(req_id, full_id, arch)
    except OSError:
        return False


def marker_ids(prefix: str) -> tuple[str, str, str] | None:
    """(req_id, full_id, arch) named by the marker of ``prefix``; None without a readable marker."""
    import json

    try:
        with open(os.path.join(prefix, MARKER), encoding="utf-8") as fh:
            fields = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    if isinstance(fields, list) and len(fields) == 3 and all(isinstance(f, str) for f in fields):
        return fields[0], fields[1], fields[2]
    return None


def write_marker(prefix: str, req_id: str, full_id: str, arch: str) -> None:
    """Mark ``prefix`` complete: the last write of a hydration (atomic)."""
    tmp = os.path.join(prefix, f"{MARKER}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(marker_text(req_id, full_id, arch))
    os.replace(tmp, os.path.join(prefix, MARKER))
    try:
        os.unlink(os.path.join(prefix, PARTIAL))
    except FileNotFoundError:
        pass


def mark_partial(prefix: str, req_id: str, full_id: str, arch: str) -> None:
    """Mark ``prefix`` as envcore's, being built: the first write of a hydration. An interrupted one leaves it,
    so that the next one knows the prefix is its own to re-create (and not a user's folder)."""
    with open(os.path.join(prefix, PARTIAL), "w", encoding="utf-8") as fh:
        fh.write(marker_text(req_id, full_id, arch))


def made_by_envcore(prefix: str) -> bool:
    """Whether envcore made ``prefix``, finished or not (its marker or the partial mark is there)."""
    return any(os.path.lexists(os.path.join(prefix, name)) for name in STATE_FILES)


# The longest --name: its lock file (.NAME.lock) and a replaced prefix (.NAME.replaced-PID) need room too.
MAX_NAME_BYTES = 200


def lock_path(prefix: str) -> str:
    """The lock serialising work on ``prefix`` (next to it: the prefix itself may be removed)."""
    parent, name = os.path.split(prefix)
    return os.path.join(parent, f".{name}.lock")


def index_key(req_id: str, full_id: str, arch: str) -> str:
    """The environment's entry in the prefix index (``<cache>/prefixes/<key>``)."""
    return f"{arch}_{req_id}_{full_id}"


def _marker_stamp(prefix: str, req_id: str, full_id: str, arch: str) -> tuple[int, int] | None:
    """Identity of a finished prefix's marker (inode, mtime), or None when ``prefix`` is not finished."""
    try:
        info = os.stat(os.path.join(prefix, MARKER))
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns) if is_complete(prefix, req_id, full_id, arch) else None


def clone_finished(
    candidates: Sequence[str], prefix: str, req_id: str, full_id: str, arch: str
) -> str | None:
    """Clone the newest finished prefix among ``candidates`` into the absent ``prefix``; the source it came
    from, or None (and nothing left at ``prefix``). The clone arrives marked partial: the caller writes the
    marker."""
    from envcore import relocate

    def mark(build: str) -> None:
        mark_partial(build, req_id, full_id, arch)

    for source in reversed(candidates):
        stamp = _marker_stamp(source, req_id, full_id, arch)
        if source == prefix or stamp is None:
            continue
        if relocate.clone(source, prefix, private=STATE_FILES, prepare=mark):
            # A source re-created while it was copied has a new marker (removed first, written last): the
            # copy may have missed files, so it is not used.
            if _marker_stamp(source, req_id, full_id, arch) == stamp:
                return source
            import shutil

            shutil.rmtree(prefix)
    return None


def _clone_here(
    prefix: str, req_id: str, full_id: str, arch: str, cache: str, timeout_setting: tuple[Any, str] | None
) -> str | None:
    """The full command's warm hydration of the absent ``prefix``, when this machine has a finished prefix of
    the environment and nobody holds the prefix's lock; the source cloned, or None."""
    try:
        timeout = configfiles.LOCK_TIMEOUT if timeout_setting is None else int(timeout_setting[0])
    except (TypeError, ValueError):
        return None  # the full command reports the setting
    from envcore.errors import LockTimeout
    from envcore.locks import file_lock
    from envcore.relocate import PrefixIndex

    index = PrefixIndex.in_cache(cache, timeout)
    key = index_key(req_id, full_id, arch)
    candidates = index.candidates(key)
    if not candidates or os.path.lexists(prefix):
        return None  # nothing to clone from; or an incomplete prefix, which the full command re-creates
    try:  # a busy lock is left to the full command, which waits for it with its notices
        with file_lock(lock_path(prefix), 0):
            if os.path.lexists(prefix):
                return None
            source = clone_finished(candidates, prefix, req_id, full_id, arch)
            if source is not None:
                write_marker(prefix, req_id, full_id, arch)
                index.add(key, prefix)
            return source
    except (LockTimeout, OSError):  # busy, or a name the file system refuses: the full command says which
        return None


def replaced_start(name: str) -> str:
    """How the names begin of the folders a prefix called ``name`` is moved to while ``--force`` or ``--verify``
    replace it (``.NAME.replaced-PID``)."""
    return f".{name}.replaced-"


# How the folders end that a killed create leaves beside a prefix ``NAME``: ``.NAME.clone`` (relocate.clone's
# copy being built) and ``.NAME.rebuild`` (hydrate.rebuild_name: --force or --verify building the new one)
LEFTOVER_ENDS = (".clone", ".rebuild")


def settle_beside(prefix: str) -> bool:
    """One listing of the folder of ``prefix``: removes what killed creates left there (:func:`remove_leftovers`),
    and says whether a prefix replaced by ``--force`` or ``--verify`` was left beside ``prefix`` (the full command
    puts it back or removes it, under the prefix's lock)."""
    parent, name = os.path.split(prefix)
    start = replaced_start(name)
    replaced, left = False, []
    try:
        with os.scandir(parent) as entries:
            for entry in entries:
                if entry.name.startswith(start):
                    replaced = True
                elif entry.name.endswith(LEFTOVER_ENDS) and entry.name[0] == ".":
                    left.append(entry.name)
    except OSError:
        return False
    if left:
        remove_leftovers(parent, left)
    return replaced


def remove_leftovers(parent: str, names: Sequence[str]) -> list[str]:
    """Remove the folders ``names`` (``.NAME.clone``, ``.NAME.rebuild``) of ``parent`` whose owner is provably
    gone: the lock of the prefix ``NAME`` (``.NAME.lock``), which every process building them holds throughout,
    is free, and stays held while they are removed. One that a live process is building (its lock busy), one of
    another user, or one without that lock file beside it (not envcore's) is left alone. Returns those removed."""
    import shutil

    from envcore.errors import LockTimeout
    from envcore.locks import file_lock

    removed = []
    for left in names:
        path, lock = os.path.join(parent, left), os.path.join(parent, f"{left[: left.rindex('.')]}.lock")
        try:
            if os.lstat(path).st_uid != os.getuid() or not os.path.isfile(lock):
                continue
            with file_lock(lock, 0):
                if os.path.lexists(path):  # (not removed by its owner meanwhile)
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(left)
        except (LockTimeout, OSError):
            continue  # busy: a live process's work; or gone meanwhile
    return removed


def _parse(argv: Sequence[str]) -> tuple[bool, str, str | None, str | None] | None:
    """(quiet, ref, name, alias) of ``[-q|--quiet] create REF [--name NAME] [--exist-ok]``, where ``alias`` is
    the record's key of an immutable alias REF (None for ``REQ_ID:FULL_ID``); None for anything else."""
    args = list(argv)
    quiet = bool(args) and args[0] in ("-q", "--quiet")
    if quiet:
        args.pop(0)
    if not args or args.pop(0) != "create":
        return None
    ref: str | None = None
    name: str | None = None
    while args:
        arg = args.pop(0)
        if arg == "--name" and args and name is None:
            name = args.pop(0)
        elif arg.startswith("--name=") and name is None:
            name = arg[len("--name=") :]
        elif arg == "--exist-ok":  # the default
            continue
        elif ref is None and not arg.startswith("-"):
            ref = arg
        else:
            return None
    if ref is None or (name is not None and not _plain_name(name)):
        return None
    if _is_id_pair(ref):
        return quiet, ref, name, None
    alias = _immutable_alias_path(ref)
    return None if alias is None else (quiet, ref, name, alias)


def _is_id_pair(ref: str) -> bool:
    req_id, sep, full_id = ref.partition(":")
    return bool(sep) and len(req_id) == len(full_id) == 40 and _HEX.issuperset(req_id + full_id)


def _immutable_alias_path(ref: str) -> str | None:
    """The record's key (``NAME/TAG``) of ``NAME:TAG`` with an immutable tag; None for any other reference."""
    name, sep, tag = ref.partition(":")
    if not sep or not name or not tag or tag in MUTABLE_TAGS or ref.startswith("step:"):
        return None
    if not (_NAME_CHARS.issuperset(name) and _TAG_CHARS.issuperset(tag)):
        return None
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return None
    return f"{name}/{tag}"


SCOPE_MARK = (
    "|"  # after an immutable alias, the store it is known for: NAME/TAG|<store scope> (names never hold it)
)


def scoped(alias_path: str, scope: str) -> str:
    """The local record's key of the immutable alias ``alias_path`` as the store ``scope`` names binds it."""
    return f"{alias_path}{SCOPE_MARK}{scope}" if scope else alias_path


def alias_ids_file(record_path: str, alias_path: str, scope: str = "") -> str:
    """The file beside the local record holding ``REQ_ID:FULL_ID`` of the immutable alias ``alias_path``
    (``NAME/TAG``, the record's key; ``/`` written as ``%``, which names never hold). The record keeps every
    description, so it grows with each environment the machine knows: a step that starts from an alias reads
    this file of 81 bytes instead of parsing the record (and importing json). An immutable alias never changes
    what it names, so the file can be missing (then the record answers and the file is written) but not stale.
    One file per store (``scope``, :func:`envcore.configfiles.store_scope`): stores may bind a name otherwise."""
    return os.path.join(f"{record_path}.aliases", scoped(alias_path.replace("/", "%"), scope))


def remember_alias_ids(record_path: str, alias_path: str, req_id: str, full_id: str, scope: str = "") -> None:
    """Write :func:`alias_ids_file` atomically; a file that cannot be written only leaves the record to answer."""
    path = alias_ids_file(record_path, alias_path, scope)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(f"{req_id}:{full_id}")
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _recorded_ids(
    path: str, cache: str, environ: Mapping[str, str], files: list[Any]
) -> tuple[str, str] | None:
    """The ids the local record maps the immutable alias ``path`` to, as the full command reads them; None
    when it does not know the alias, or the record is busy or unreadable (the full command then runs)."""
    setting = configfiles.raw_value("CONDA_MAGIC_FILE_V2", environ, files)
    record_path = os.path.join(cache, str(setting[0]) if setting else configfiles.RECORD_FILE)
    scope = configfiles.store_scope(environ, files)
    try:
        with open(alias_ids_file(record_path, path, scope), encoding="ascii") as fh:
            kept = fh.read()
    except (OSError, ValueError):
        kept = ""
    if _is_id_pair(kept):
        req_id, _, full_id = kept.partition(":")
        return req_id, full_id
    from envcore.errors import EnvcoreError
    from envcore.record import LocalRecord

    try:
        found = LocalRecord(record_path, 0).read()["aliases"].get(scoped(path, scope))
    except (EnvcoreError, OSError):
        return None
    if isinstance(found, list) and len(found) == 2 and _is_id_pair(f"{found[0]}:{found[1]}"):
        remember_alias_ids(
            record_path, path, str(found[0]), str(found[1]), scope
        )  # (a record written before)
        return str(found[0]), str(found[1])
    return None


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..") and not name.startswith("-")


def answer(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int | None:
    """Do and print what ``envcore create`` does and prints for a complete prefix or a clone, and return 0;
    None when the full command must run."""
    environ = os.environ if environ is None else environ
    parsed = _parse(argv)
    if parsed is None or configfiles.debug_requested(environ, or_refused=True):
        return None
    quiet, ref, name, alias = parsed
    try:
        files = configfiles.config_files(environ)
        cache = configfiles.configured_cache_dir(environ, files)
        arch = local_arch()
    except Exception:  # the full command reports it
        return None
    req_id, _, full_id = ref.partition(":")
    if alias is not None:
        ids = _recorded_ids(alias, cache, environ, files)
        if ids is None:
            return None
        req_id, full_id = ids
    if name is not None and (
        not name or name[0] == "." or len(os.fsencode(name)) > MAX_NAME_BYTES or not name.isprintable()
    ):
        return None  # refused by the full command
    prefix = os.path.join(cache, "envs", created_dir_name(req_id, full_id) if name is None else name)
    if os.path.normpath(prefix) != prefix:
        return None  # a prefix path pathlib would print differently is left to the full command
    if settle_beside(prefix):
        return None  # what a killed --force left: the full command puts it back or removes it
    verb, took = "already exists and is complete", ""
    if not is_complete(os.path.abspath(prefix), req_id, full_id, arch):
        started = time.monotonic()
        timeout = configfiles.raw_value("CONDA_LOCK_TIMEOUT", environ, files)
        source = _clone_here(os.path.abspath(prefix), req_id, full_id, arch, os.path.abspath(cache), timeout)
        if source is None:
            return None
        if not quiet:
            print(f"    Linked from the same environment at {source}", file=sys.stderr, flush=True)
        verb, took = "created", f" in {time.monotonic() - started:.2f} s"
    python = os.path.join(prefix, "bin", "python")
    if quiet:
        print(python)
    else:
        print(f"Environment {req_id}:{full_id} {verb} at {prefix}{took}; run {python}")
    return 0
