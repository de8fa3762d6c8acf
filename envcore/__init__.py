"""envcore: reproducible environments for Metaflow steps, resolved, cached and hydrated by plugins."""

from __future__ import annotations

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

TYPE_CHECKING = False  # not typing's: importing typing costs the no-op `create` a fifth of its time
__version__ = "0.2.0"

if TYPE_CHECKING:
    from typing import Any

    import pluggy

    hookimpl: pluggy.HookimplMarker


def __getattr__(name: str) -> Any:
    """``hookimpl`` (the plugins' marker) is made on first use: commands that load no plugin never import
    pluggy."""
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker("envcore")
        globals()["hookimpl"] = marker
        return marker
    raise AttributeError(f"module 'envcore' has no attribute {name!r}")


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
