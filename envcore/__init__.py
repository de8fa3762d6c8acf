"""envcore: reproducible environments for Metaflow steps, resolved, cached and hydrated by plugins."""

from __future__ import annotations

import pluggy

from envcore.errors import (
    AliasError,
    BackendUnavailable,
    ConfigError,
    EnvcoreError,
    FormatError,
    IntegrityError,
    PluginError,
    ResolutionError,
    StorageError,
)

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("envcore")

__all__ = [
    "AliasError",
    "BackendUnavailable",
    "ConfigError",
    "EnvcoreError",
    "FormatError",
    "IntegrityError",
    "PluginError",
    "ResolutionError",
    "StorageError",
    "__version__",
    "hookimpl",
]
