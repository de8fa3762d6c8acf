"""``envcore create`` of an environment that is already complete, answered before click, pluggy or any
plugin is imported.

Starting a step on a machine that already has its environment is the most frequent call of all, so it must
cost little more than starting Python (issue 11: <= 3x ``python -c pass``). :func:`answer` takes the plain
form ``envcore [-q] create REQ_ID:FULL_ID [--name NAME]``, finds the prefix the way the full command does and
compares its completion marker (one small file, no tree walk). Anything else (other options, aliases, an
incomplete prefix, configuration it cannot read) returns None, and the full command runs and reports errors
as usual. Unlike the full command, it does not check unrelated settings: a bad value of a setting that the
no-op never reads does not stop a step whose environment is ready.
"""

from __future__ import annotations

import os

from envcore import TYPE_CHECKING, configfiles
from envcore.platforms import local_arch

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

MARKER = ".metaflowenv"  # written last by hydration: its presence with the right content means complete
_HEX = frozenset("0123456789abcdef")


def env_dir_name(req_id: str, full_id: str) -> str:
    return f"metaflow_{req_id}_{full_id}"


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


def _parse(argv: Sequence[str]) -> tuple[bool, str, str | None] | None:
    """(quiet, ref, name) of ``[-q|--quiet] create REF [--name NAME]``; None for anything else."""
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
        elif ref is None and not arg.startswith("-"):
            ref = arg
        else:
            return None
    if ref is None or not _is_id_pair(ref) or (name is not None and not _plain_name(name)):
        return None
    return quiet, ref, name


def _is_id_pair(ref: str) -> bool:
    req_id, sep, full_id = ref.partition(":")
    return bool(sep) and len(req_id) == len(full_id) == 40 and _HEX.issuperset(req_id + full_id)


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..") and not name.startswith("-")


def answer(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int | None:
    """Print what ``envcore create`` prints for a complete environment and return 0; None when the full
    command must run."""
    environ = os.environ if environ is None else environ
    parsed = _parse(argv)
    if parsed is None or environ.get("METAFLOW_DEBUG_CONDA", "").lower() not in ("", "0", "false"):
        return None
    quiet, ref, name = parsed
    req_id, _, full_id = ref.partition(":")
    try:
        files = configfiles.config_files(environ)
        envs_dir = os.path.join(configfiles.configured_cache_dir(environ, files), "envs")
        arch = local_arch()
    except Exception:  # the full command reports it
        return None
    prefix = os.path.join(envs_dir, name or env_dir_name(req_id, full_id))
    if os.path.normpath(prefix) != prefix or not is_complete(os.path.abspath(prefix), req_id, full_id, arch):
        return None  # (a prefix path pathlib would print differently is left to the full command)
    python = os.path.join(prefix, "bin", "python")
    if quiet:
        print(python)
    else:
        print(f"Environment {req_id}:{full_id} already exists and is complete at {prefix}; run {python}")
    return 0
