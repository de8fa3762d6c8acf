"""Which uv binary runs: the configured one, or the one the ``uv`` wheel brings. Its own module so that
installing wheels loads neither the resolver nor ``packaging``."""

from __future__ import annotations

import functools
import sysconfig
import threading

from envcore.config import Config
from envcore.errors import BackendUnavailable


def uv_executable(config: Config) -> str:
    configured = config.get("ENVCORE_UV_EXE")
    if configured:
        return str(configured)
    return _bundled_uv()


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
