"""Which uv binary runs: the configured one, or the one the ``uv`` wheel brings. Its own module so that
installing wheels loads neither the resolver nor ``packaging``."""

from __future__ import annotations

import functools
import sysconfig
import threading

from envcore.config import Config
from envcore.errors import BackendUnavailable
from envcore.tools import find_executable

SETTING = "ENVCORE_UV_EXE"
SETTING_FIX = (
    f"Set METAFLOW_{SETTING} to the path of a uv executable, or unset it to use the uv that the envcore-uv "
    "distribution brings."
)


def uv_executable(config: Config) -> str:
    """The uv that ``METAFLOW_ENVCORE_UV_EXE`` names (a path, or a name on PATH), else the uv wheel's."""
    return find_executable(config, SETTING, (), _misconfigured) or _bundled_uv()


def _misconfigured(why: str) -> BackendUnavailable:
    return BackendUnavailable(f"uv cannot run: {why}. {SETTING_FIX}")


_UV_LOCK = threading.Lock()


@functools.cache
def _bundled_uv() -> str:
    """The uv binary of the ``uv`` wheel. Cached, and looked up once: ``find_uv_bin`` reads sysconfig lazily,
    which is not thread-safe on Python 3.11 when several environments resolve in parallel."""
    try:
        from uv import find_uv_bin
    except ImportError:
        raise BackendUnavailable(
            "The uv package is not installed in this environment. Reinstall the envcore-uv distribution, which brings it."
        ) from None
    with _UV_LOCK:
        sysconfig.get_config_vars()  # initialise sysconfig once, under a lock, before find_uv_bin reads it
        return str(find_uv_bin())
