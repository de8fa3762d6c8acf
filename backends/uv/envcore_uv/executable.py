"""Which uv binary runs: the configured one, or the one the ``uv`` wheel brings. Its own module so that
installing wheels loads neither the resolver nor ``packaging``."""

from __future__ import annotations

import functools
import os
import sys
import threading

from envcore.config import Config
from envcore.configfiles import recall, remember, remembered_file
from envcore.errors import BackendUnavailable
from envcore.tools import find_executable

SETTING = "ENVCORE_UV_EXE"
SETTING_FIX = (
    f"Set METAFLOW_{SETTING} to the path of a uv executable, or unset it to use the uv that the envcore-uv "
    "distribution brings."
)
NOT_INSTALLED = "The uv package is not installed in this environment. Reinstall the envcore-uv distribution, which brings it."


def uv_executable(config: Config) -> str:
    """The uv that ``METAFLOW_ENVCORE_UV_EXE`` names (a path, or a name on PATH), else the uv wheel's."""
    return find_executable(config, SETTING, (), _misconfigured) or _bundled_uv(str(config.cache_dir()))


def _misconfigured(why: str) -> BackendUnavailable:
    return BackendUnavailable(f"uv cannot run: {why}. {SETTING_FIX}")


_UV_LOCK = threading.Lock()


@functools.cache
def _bundled_uv(cache_dir: str) -> str:
    """The uv binary of the ``uv`` wheel, looked up once per process, under a lock (``find_uv_bin`` reads
    sysconfig lazily, which is not thread-safe on Python 3.11 when several environments resolve in parallel).
    The lookup (``sysconfig``'s variables, five candidate folders, ``fnmatch``: ~10M instructions) is remembered
    in ``cache_dir/tools`` for this interpreter and this install of the ``uv`` package (its module file's
    identity), and given again while the binary it found is still an executable file."""
    from importlib.machinery import PathFinder  # (importlib.util: 1M instructions more)

    with _UV_LOCK:
        spec = PathFinder.find_spec("uv")  # on sys.path, as the wheel installs it
        module = spec.origin if spec is not None else None
        if module is None:  # elsewhere, or not installed: the lookup says which
            return _look_up_uv()
        try:
            info = os.stat(module)
        except OSError:
            info = None
        if info is None:
            return _look_up_uv()
        identity = [sys.executable, sys.prefix, module, *_file_id(info)]
        path = remembered_file(cache_dir, "uv-binary-", identity[:3])  # one file per interpreter and uv
        binary = recall(path, identity)
        if _is_executable(binary):
            return str(binary)
        binary = _look_up_uv()
        remember(path, identity, binary)
        return str(binary)


def _look_up_uv() -> str:
    import sysconfig

    try:
        from uv import find_uv_bin
    except ImportError:
        raise BackendUnavailable(NOT_INSTALLED) from None
    sysconfig.get_config_vars()  # initialise sysconfig once, under the lock, before find_uv_bin reads it
    return str(find_uv_bin())


def _file_id(info: os.stat_result) -> list[int]:
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns]


def _is_executable(path: object) -> bool:
    return isinstance(path, str) and os.path.isfile(path) and os.access(path, os.X_OK)
