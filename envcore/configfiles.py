"""Where Metaflow keeps configuration, read with ``os`` and ``json`` only.

A key ``NAME`` is the environment variable ``METAFLOW_NAME``, else the nearest directory-local
``.metaflow/config.json``, else ``$METAFLOW_HOME/config[_<METAFLOW_PROFILE>].json``. :mod:`envcore.config`
builds typed, validated settings on these lookups; the no-op ``create`` (:mod:`envcore.uptodate`) uses them
directly, before anything heavier is imported.
"""

from __future__ import annotations

import os

from envcore import TYPE_CHECKING
from envcore.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, TypeAlias

    ConfigFile: TypeAlias = tuple[str, Mapping[str, Any]]

LOCK_TIMEOUT = 3600  # seconds: the default of METAFLOW_CONDA_LOCK_TIMEOUT
RECORD_FILE = "conda_v2.cnd"  # the default of METAFLOW_CONDA_MAGIC_FILE_V2: the local record's file name


TRUE_WORDS = ("1", "true", "yes", "y", "on")  # a boolean setting as envcore reads it (lower case, stripped)
FALSE_WORDS = ("0", "false", "")  # Metaflow's false words; any other word is true to Metaflow


def debug_requested(environ: Mapping[str, str], *, or_refused: bool = False) -> bool:
    """``METAFLOW_DEBUG_CONDA`` as read before the configuration is loaded: true for the words the
    configuration reads as true (1, true, yes, y, on). With ``or_refused``, also for a value it refuses (``no``,
    ``maybe``), which must leave the fast path of create for the full one, where it is refused; tracebacks stay
    off for it, so that the refusal is one paragraph."""
    word = environ.get("METAFLOW_DEBUG_CONDA", "").strip().lower()
    return word in TRUE_WORDS or (or_refused and word not in FALSE_WORDS)


def read_json(path: str) -> dict[str, Any]:
    import json  # only when a file exists (json imports re)

    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"The Metaflow configuration file {path} cannot be read ({exc}). Fix or remove it; it must hold a "
            "JSON object of METAFLOW_* keys."
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"The Metaflow configuration file {path} must hold a JSON object of METAFLOW_* keys."
        )
    return data


def local_config_path(cwd: str) -> str | None:
    """``.metaflow/config.json`` of the nearest folder, from ``cwd`` up, that has a ``.metaflow`` folder."""
    folder = cwd
    while True:
        if os.path.isdir(os.path.join(folder, ".metaflow")):
            path = os.path.join(folder, ".metaflow", "config.json")
            return path if os.path.exists(path) else None
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def profile_config_path(environ: Mapping[str, str]) -> str | None:
    home = os.path.expanduser(environ.get("METAFLOW_HOME", "~/.metaflowconfig"))
    profile = environ.get("METAFLOW_PROFILE")
    path = os.path.join(home, f"config_{profile}.json" if profile else "config.json")
    if os.path.exists(path):
        return path
    if profile:
        raise ConfigError(
            f"METAFLOW_PROFILE is {profile!r} but {path} does not exist. Create that file or unset METAFLOW_PROFILE."
        )
    return None


def config_files(environ: Mapping[str, str], cwd: str | None = None) -> list[ConfigFile]:
    """The configuration files in force, highest precedence first, with their contents."""
    paths = [local_config_path(cwd or os.getcwd()), profile_config_path(environ)]
    return [(path, read_json(path)) for path in paths if path is not None]


def raw_value(name: str, environ: Mapping[str, str], files: list[ConfigFile]) -> tuple[Any, str] | None:
    """The unconverted value of ``METAFLOW_<name>`` and where it came from ("env var" or a file's path)."""
    key = f"METAFLOW_{name}"
    if key in environ:
        return environ[key], "env var"
    for path, data in files:
        if key in data:
            return data[key], path
    return None


_STORE_WORDS = ("ROOT", "DATASTORE", "ENDPOINT")  # in the names of the settings that choose a store


def store_scope(environ: Mapping[str, str], files: list[ConfigFile]) -> str:
    """A fingerprint of the settings that choose the store and where in it (datastores, roots, endpoints, the
    envs folder), as raw values: the same for the full command and the fast path of ``envcore create``. The
    local record answers an immutable alias from its own copy only for the store it was read from or written
    to; another store is asked (the same name may be bound otherwise in a team's dev and prod stores)."""
    import zlib  # (crc32 and adler32: no hashlib, whose OpenSSL costs the fast path milliseconds)

    def of_store(key: str) -> bool:
        return key.startswith("METAFLOW_") and (
            any(word in key for word in _STORE_WORDS) or key == "METAFLOW_CONDA_ENVS_DIRNAME"
        )

    chosen: dict[str, Any] = {}
    for _, data in reversed(files):  # the first file that sets a key wins, and the environment over all
        chosen.update((k, v) for k, v in data.items() if of_store(k))
    chosen.update((k, v) for k, v in environ.items() if of_store(k))
    text = "\n".join(f"{k}={v}" for k, v in sorted(chosen.items())).encode()
    return f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}"


def cache_dir(configured: str | None, environ: Mapping[str, str]) -> str:
    """envcore's local cache: ``METAFLOW_ENVCORE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/envcore``."""
    if configured:
        return os.path.expanduser(configured)
    xdg = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME", "~"), ".cache")
    return os.path.join(os.path.expanduser(xdg), "envcore")


def configured_cache_dir(environ: Mapping[str, str], files: list[ConfigFile]) -> str:
    """:func:`cache_dir` of the raw setting, converted as :class:`envcore.config.Config` converts a string
    setting (a non-string value from a file is its ``str``)."""
    found = raw_value("ENVCORE_CACHE_DIR", environ, files)
    configured = found[0] if found else None
    return cache_dir(None if configured is None else str(configured), environ)


def keep_newest(folder: str | os.PathLike[str], count: int) -> None:
    """Remove all but the ``count`` most recently modified files of a cache ``folder`` (temporary files of
    :func:`remember_json` being written are left alone), at best: other processes may prune at once."""
    files: list[tuple[float, str]] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".tmp"):
                    continue
                try:
                    if entry.is_file():
                        files.append((entry.stat().st_mtime, entry.path))
                except OSError:
                    pass  # removed meanwhile
    except OSError:
        return
    for _, path in sorted(files, reverse=True)[count:]:
        try:
            os.unlink(path)
        except OSError:
            pass  # removed by another process, or not ours to remove


def remember_json(path: str | os.PathLike[str], value: Any) -> None:
    """Keep ``value`` as JSON at ``path`` in the cache directory, atomically (a reader sees the old answer or the
    new one, never half of one; threads and processes may write at once) and at best: a cache that cannot be
    written only makes the next command work the answer out again."""
    import json
    import threading

    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(value, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def remembered_file(cache_dir: str | os.PathLike[str], prefix: str, name: object) -> str:
    """The file in ``cache_dir/tools`` for the answer named by ``name`` (JSON values: one file per tool and
    question, per interpreter and target...), for :func:`recall` and :func:`remember`."""
    import json
    import zlib

    crc = zlib.crc32(json.dumps(name).encode()) & 0xFFFFFFFF
    return os.path.join(cache_dir, "tools", f"{prefix}{crc:08x}.json")


def recall(path: str | os.PathLike[str], identity: object) -> Any:
    """The value :func:`remember` kept at ``path`` for ``identity`` (what the answer depends on: a binary's inode
    and mtime, a library's version...); None when there is none, it was kept for another identity, or the file
    cannot be read."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            saved = json.load(fh)
        return saved["value"] if saved["identity"] == identity else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(path: str | os.PathLike[str], identity: object, value: Any) -> None:
    """Keep ``value`` at ``path`` for ``identity`` (:func:`recall`), as :func:`remember_json` keeps files."""
    remember_json(path, {"identity": identity, "value": value})
