"""What the installed plugins are, remembered between commands.

Scanning every installed distribution for entry points (``importlib.metadata``) costs a command about a
quarter of its start-up, and listing plugin commands in ``envcore --help`` would mean loading every plugin.
Both answers are kept in the cache directory and reused while nothing that decides them changed: envcore's
version, the interpreter, and the folders on ``sys.path`` with their modification times (installing,
upgrading or removing a distribution adds or removes entries in its site-packages folder). The command list
also depends on the plugin settings and on the plugins' module files. A cache that cannot be read or written
only makes a command slower. Nothing is remembered while a folder or file it depends on was modified in the
last two seconds: file times are coarse (a few milliseconds), so an installation finishing in the same tick
as the scan would otherwise go unnoticed (git's "racy" rule).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import time
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from envcore import __version__, configfiles
from envcore.errors import ConfigError

PLUGIN_SETTINGS = ("ENVCORE_PLUGINS", "ENVCORE_DISABLED_PLUGINS", "ENVCORE_PLUGIN_MODULES")
# (name, value, distribution, version) of one entry point
EntryPoint = tuple[str, str, "str | None", "str | None"]


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _installation() -> dict[str, Any]:
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    return {"envcore": __version__, "python": sys.executable, "path": [[p, _mtime(p)] for p in paths]}


RACY_NS = 2_000_000_000


def _settled(mtimes: Iterable[int | None]) -> bool:
    newest = max((m for m in mtimes if m is not None), default=0)
    return time.time_ns() - newest > RACY_NS


def _file(cache_dir: str, kind: str) -> str:
    # one file per interpreter and path: several virtual environments sharing a cache do not evict each other
    key = zlib.crc32("\0".join([sys.executable, *sys.path]).encode()) & 0xFFFFFFFF
    return os.path.join(cache_dir, "plugins", f"{kind}-{key:08x}.json")


def _read(path: str, state: dict[str, Any]) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            saved = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("state") != json.loads(json.dumps(state)):
        return None
    return saved


def entry_points(group: str, cache_dir: str) -> list[EntryPoint]:
    """The installed entry points of ``group``, sorted by name."""
    path, state = _file(cache_dir, f"entry-points-{group}"), _installation()
    saved = _read(path, state)
    if saved is not None:
        return [(str(n), str(v), d, ver) for n, v, d, ver in saved["entry_points"]]
    found = _read_dist_infos(group)
    if found is None:
        found = _from_importlib_metadata(group)
    if _settled(m for _, m in state["path"]):
        configfiles.remember_json(path, {"state": state, "entry_points": found})
    return found


def _from_importlib_metadata(group: str) -> list[EntryPoint]:
    import importlib.metadata

    found: list[EntryPoint] = []
    for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name):
        dist = ep.dist
        found.append((ep.name, ep.value, dist.name if dist else None, dist.version if dist else None))
    return found


def _read_dist_infos(group: str) -> list[EntryPoint] | None:
    """What :func:`_from_importlib_metadata` answers, read straight from the ``*.dist-info`` folders on
    ``sys.path`` (the first distribution of a name wins, as in importlib.metadata), without importing
    importlib.metadata (~25 ms, on every command of a machine whose cache is new, such as a fresh container).
    None when the installation holds anything else (eggs, zip files), which importlib.metadata then reads."""
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for root in sys.path:
        try:
            children = os.listdir(root or ".")
        except NotADirectoryError:
            return None  # a zip file
        except OSError:
            continue
        for child in children:
            lowered = child.lower()
            if lowered.endswith((".egg-info", ".egg")):
                return None
            if not lowered.endswith(".dist-info"):
                continue
            key = _normalize(child[: -len(".dist-info")].partition("-")[0])
            if key in seen:
                continue
            seen.add(key)
            folder = os.path.join(root, child)
            try:
                with open(os.path.join(folder, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError):
                return None  # unreadable: importlib.metadata decides what it means
            entries = _section(text, group)
            if entries:
                name, version = _name_and_version(folder)
                found += [(ep_name, value, name, version) for ep_name, value in entries]
    return sorted(found, key=lambda e: e[0])


def _normalize(name: str) -> str:
    """PEP 503 normalisation, with underscores (as importlib.metadata compares distribution names); ``re`` is
    loaded already (json imports it)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` pairs of ``[group]`` in an entry_points.txt (importlib.metadata's reading of it)."""
    pairs, current = [], None
    for line in (raw.strip() for raw in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line.strip("[]")
        elif current == group:
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


def _name_and_version(folder: str) -> tuple[str | None, str | None]:
    """``Name`` and ``Version`` from the headers of the distribution's METADATA."""
    fields: dict[str, str] = {}
    try:
        with open(os.path.join(folder, "METADATA"), encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    break  # the end of the headers
                key, sep, value = line.partition(":")
                if sep and key in ("Name", "Version") and key not in fields:
                    fields[key] = value.strip()
    except (OSError, UnicodeDecodeError):
        pass
    return fields.get("Name"), fields.get("Version")


def load(value: str) -> Any:
    """The object an entry point's value names: ``module`` or ``module:attr.attr``."""
    module, _, attr = value.partition(":")
    obj: Any = importlib.import_module(module.strip())
    for part in attr.split("[")[0].strip().split(".") if attr.strip() else []:
        obj = getattr(obj, part)
    return obj


def _commands_state(environ: Mapping[str, str], files: list[configfiles.ConfigFile]) -> dict[str, Any]:
    settings = {name: configfiles.raw_value(name, environ, files) for name in PLUGIN_SETTINGS}
    return {**_installation(), "settings": settings}


def _commands_file(environ: Mapping[str, str], files: list[configfiles.ConfigFile]) -> str:
    return _file(configfiles.configured_cache_dir(environ, files), "commands")


def commands(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The plugin commands (name: summary) remembered for the current state, or None when they must be found
    again."""
    try:
        files = configfiles.config_files(environ)
        saved = _read(_commands_file(environ, files), _commands_state(environ, files))
        if saved is None or any(_mtime(module) != mtime for module, mtime in saved["modules"]):
            return None
        return {str(name): str(summary) for name, summary in saved["commands"].items()}
    except (AttributeError, KeyError, TypeError, ValueError, ConfigError):
        return None  # (a list of names: written by an envcore that kept no summaries)


def remember_commands(
    commands: Mapping[str, str], modules: Iterable[str], environ: Mapping[str, str]
) -> None:
    """Record the plugin commands (name: summary) and the module files of the plugins that were loaded."""
    try:
        files = configfiles.config_files(environ)
    except ConfigError:
        return
    state = _commands_state(environ, files)
    mtimes = [[m, _mtime(m)] for m in sorted(set(modules))]
    if _settled(m for _, m in [*state["path"], *mtimes]):
        path = _commands_file(environ, files)
        content = {"state": state, "modules": mtimes, "commands": dict(sorted(commands.items()))}
        if _read(path, state) != json.loads(json.dumps(content)):  # (every command: write only what changed)
            configfiles.remember_json(path, content)
