"""envcore configuration taken from Metaflow's: the same files Metaflow read, then the values
``metaflow.metaflow_config`` holds for envcore's keys (so a site extension's defaults apply), all below the
process environment. Importing this module does not import Metaflow (the worker uses it)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envcore.config import Config

ConfigFiles = list[tuple[str, dict[str, Any]]]


def metaflow_config_files() -> ConfigFiles:
    """The configuration Metaflow itself loaded, as envcore ``(source, mapping)`` layers below the process
    environment: the directory-local file, the profile file, then every envcore key as
    ``metaflow.metaflow_config`` holds it (which includes defaults set by site extensions)."""
    from metaflow import metaflow_config, metaflow_config_funcs

    from envcore.config import CORE_SETTINGS

    metaflow_config_funcs.from_conf("DEFAULT_DATASTORE")  # makes sure both files are loaded
    home = os.path.expanduser(os.environ.get("METAFLOW_HOME", "~/.metaflowconfig"))
    profile = os.environ.get("METAFLOW_PROFILE")
    profile_path = os.path.join(home, f"config_{profile}.json" if profile else "config.json")
    values = {
        f"METAFLOW_{s.name}": getattr(metaflow_config, s.name)
        for s in CORE_SETTINGS
        if getattr(metaflow_config, s.name, None) is not None
    }
    return [
        (".metaflow/config.json", dict(metaflow_config_funcs.METAFLOW_LOCAL_CONFIG or {})),
        (profile_path, dict(metaflow_config_funcs.METAFLOW_CONFIG or {})),
        ("metaflow.metaflow_config", values),
    ]


def build_config(files: ConfigFiles, overrides: Mapping[str, str] | None = None) -> Config:
    from envcore.config import CORE_SETTINGS, Config

    environ = {**os.environ, **(overrides or {})}
    return Config(CORE_SETTINGS, environ, files)
