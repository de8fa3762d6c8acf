"""Running a step on a remote node (Kubernetes, Batch, Argo, Step Functions...).

The node has the code package and the store, nothing else of ours: no envcore, no entry points, no local
record. So:

* :func:`package_files` puts envcore and the plugins this configuration selects (installers, store, naming,
  formats) into the code package, under ``.mf_meta/envcore_node/`` (Metaflow's "other content"), where they
  are not on the task's ``PYTHONPATH`` and cannot shadow the step's own packages;
* :func:`bootstrap_commands` installs their third-party requirements with pip (skipped when
  ``METAFLOW_SKIP_INSTALL_DEPENDENCIES`` is set, as Metaflow does for its own), then runs
  :mod:`.remote_bootstrap`, which loads those plugins by module path (``METAFLOW_ENVCORE_PLUGIN_MODULES``),
  hydrates the environment from the store and links ``__conda_python`` to its python;
* the step then runs with ``./__conda_python`` (:meth:`CondaEnvironment.executable`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metaflow_extensions.envcore.plugins.conda.code_package import PYTHON_LINK

if TYPE_CHECKING:
    from envcore.plugins import PluginInfo, Registry

NODE_DIR = "envcore_node"  # under Metaflow's other-content directory of the code package
BOOTSTRAP = "metaflow_extensions.envcore.plugins.conda.remote_bootstrap"
__all__ = ["NODE_DIR", "PYTHON_LINK", "bootstrap_commands", "node_plugins", "package_files"]


def _node_plugin_infos(registry: Registry) -> list[PluginInfo]:
    config = registry.config
    needed = {
        f"installer:{config.get('ENVCORE_CONDA_INSTALLER')}",
        f"installer:{config.get('ENVCORE_PYPI_INSTALLER')}",
        f"store:{config.get('DEFAULT_DATASTORE')}",
        f"naming:{config.get('ENVCORE_NAMING')}",
    }
    return [
        info
        for info in registry.plugins.values()
        if info.status == "loaded"
        and info.module != "envcore.builtin"
        and any(p in needed or p.startswith("format:") for p in info.provides)
    ]


def node_plugins(registry: Registry) -> dict[str, str]:
    """``{plugin name: module}`` of the plugins a node needs to hydrate: those providing the selected
    installers, store and naming scheme, and every package format (the built-ins come with envcore)."""
    return {info.name: info.module for info in _node_plugin_infos(registry)}


def _package_dir(top: str) -> Path:
    module = importlib.import_module(top)
    if getattr(module, "__file__", None) and Path(str(module.__file__)).name != "__init__.py":
        return Path(str(module.__file__))
    return Path(next(iter(module.__path__)))


def package_files(registry: Registry) -> Iterator[tuple[str, str]]:
    """``(path on disk, name in the package)`` of envcore and the node's plugins' packages."""
    tops = {"envcore", *(module.split(".")[0] for module in node_plugins(registry).values())}
    for top in sorted(tops):
        root = _package_dir(top)
        if root.is_file():
            yield str(root), f"{NODE_DIR}/{root.name}"
            continue
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc":
                if top == "envcore" and rel.parts[0] == "testing":
                    continue  # the test kit (pytest) is not needed to hydrate
                yield str(path), f"{NODE_DIR}/{top}/{rel.as_posix()}"


def node_requirements(registry: Registry) -> list[str]:
    """The third-party requirements of envcore and the node's plugins, pinned to the versions here."""
    from packaging.requirements import Requirement

    dists = {"envcore", *(info.distribution for info in _node_plugin_infos(registry) if info.distribution)}
    wanted: dict[str, str] = {}
    for dist in sorted(dists):
        for text in importlib.metadata.requires(dist) or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if req.name.startswith("envcore"):
                continue
            try:
                wanted[req.name] = f"{req.name}=={importlib.metadata.version(req.name)}"
            except importlib.metadata.PackageNotFoundError:
                wanted[req.name] = str(req)
    return sorted(wanted.values())


def bootstrap_commands(
    flow: str,
    step: str,
    env_id: list[str] | None,
    *,
    fetch: str | None = None,
    arch: str = "linux-64",
    plugins: dict[str, str] | None = None,
    requirements: list[str] | None = None,
    needs: dict[str, str] | None = None,
) -> list[str]:
    """Shell commands run on the node before the step (from the directory the code package is in). A fetched
    environment is checked on the node for ``needs`` (Metaflow's pins: name -> constraint)."""
    if env_id is None and fetch is None:
        return []
    if fetch is not None:
        target = ["--fetch", fetch, "--arch", arch, *(["--needs", json.dumps(needs)] if needs else [])]
    else:
        assert env_id is not None
        target = ["--arch", env_id[2], "--req-id", env_id[0], "--full-id", env_id[1]]
    modules = ",".join(f"{name}={module}" for name, module in sorted((plugins or {}).items()))
    install = (
        "python -m pip install -qqq --no-compile --no-cache-dir --disable-pip-version-check "
        + " ".join(shlex.quote(r) for r in requirements or [])
    )
    args = " ".join(shlex.quote(a) for a in [flow, step, *target])
    return [
        "export CONDA_START=$(date +%s)",
        "echo 'Bootstrapping environment ...'",
        f"if [ -z $METAFLOW_SKIP_INSTALL_DEPENDENCIES ]; then {install}; fi" if requirements else "true",
        f"METAFLOW_ENVCORE_PLUGIN_MODULES={shlex.quote(modules)} python -m {BOOTSTRAP} {args}",
        "export _METAFLOW_CONDA_ENV=$(cat _env_id)",
        "export PYTHONNOUSERSITE=1",
        "if printenv LD_LIBRARY_PATH >/dev/null 2>&1; then "
        "export MF_ORIG_LD_LIBRARY_PATH=$(printenv LD_LIBRARY_PATH); "
        "export LD_LIBRARY_PATH=$(cat _env_path)/lib:$(printenv LD_LIBRARY_PATH); else "
        "export LD_LIBRARY_PATH=$(cat _env_path)/lib; fi",
        "echo 'Environment bootstrapped.'",
        "export CONDA_END=$(date +%s)",
    ]


def env_id_from_environ() -> list[str] | None:
    raw = os.environ.get("_METAFLOW_CONDA_ENV")
    value: Any = json.loads(raw) if raw else None
    return [str(v) for v in value] if isinstance(value, list) and len(value) == 3 else None
