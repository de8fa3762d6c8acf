"""``metaflow environment create --into-dir DIR``: a directory to work in a step's environment.

With ``--pathspec``, DIR gets the step's code package (the flow's files at the top, Metaflow and its
extensions where the package puts them, ``.mf_code/`` for current packages) and ``metaflow_setup.sh``, which
a user sources to run or inspect the flow there with the environment's python (``PYTHONPATH``, as a task
has it, and the environment's ``bin/`` first on ``PATH``). ``__conda_python`` is the executable to use: a
link to the environment's python, or, when the code package needs settings to import Metaflow, a script
that sets them and runs it.
"""

from __future__ import annotations

import os
import shlex
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envcore.errors import EnvcoreError

if TYPE_CHECKING:
    from envcore.config import Config

PYTHON_LINK = "__conda_python"
SETUP_SCRIPT = "metaflow_setup.sh"
METAFLOW_DIR = ".mf_code"  # where a step without a code package gets its run's Metaflow (the original's)
_HEADER = "# Written by `metaflow environment create --into-dir`: {what}\n"


def step_code(pathspec: str) -> Any | None:
    """The code package (``MetaflowCode``) of the step ``Flow/Run/Step``; None when it has none."""
    from metaflow import Step

    task = Step(pathspec, _namespace_check=False).task
    return task.code if task is not None else None


@dataclass(frozen=True)
class RunMetaflow:
    """What ``--into-dir`` installs for a step without a code package (the original's fallback): the Metaflow
    and extension distributions its run used, pinned where they are public releases."""

    requirements: tuple[str, ...]
    problems: tuple[str, ...]  # what cannot be installed as the run had it, and what --no-strict does instead


def run_metaflow(pathspec: str) -> RunMetaflow:
    """The Metaflow version the run of ``pathspec`` recorded (its ``_parameters`` task's metadata, so a run that
    did not finish has it too) and its extensions (the run's ``_graph_info``)."""
    from metaflow import Step

    run = Step(pathspec, _namespace_check=False).parent
    params = Step(f"{run.pathspec}/_parameters", _namespace_check=False).task
    version = str(params.metadata_dict.get("metaflow_version", "")).split("+", 1)[0]
    try:
        extensions = (params["_graph_info"].data.get("extensions") or {}).get("installed") or {}
    except Exception:  # an older run (no such artifact): Metaflow alone
        extensions = {}
    requirements: list[str] = []
    problems: list[str] = []
    for name, recorded, what in (
        ("metaflow", version, "Metaflow"),
        *(
            (
                dist,
                str(info.get("package_version", "")),
                f"the extension {info.get('extension_name', dist)!r}",
            )
            for dist, info in sorted(extensions.items())
        ),
    ):
        if name.startswith("_pythonpath"):  # found on PYTHONPATH: no distribution to install
            problems.append(
                f"{what} came from PYTHONPATH, not from a distribution (left out with --no-strict)"
            )
        elif _public(recorded):
            requirements.append(f"{name}=={recorded}")
        else:
            problems.append(
                f"{what} was {recorded or 'of an unknown version'}, not a public release (its latest with --no-strict)"
            )
            requirements.append(name)
    return RunMetaflow(tuple(requirements), tuple(problems))


def _public(version: str) -> bool:
    """A release an index has: a PEP 440 version without a local part (not ``2.19.1.post3-gitabc123``)."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version).local is None
    except InvalidVersion:
        return False


def install_metaflow(directory: Path, python: Path, wanted: RunMetaflow, config: Config) -> dict[str, str]:
    """``wanted`` installed into ``directory/.mf_code`` (without dependencies: the environment has Metaflow's
    own) from the PyPI sources; returns the settings that import it, and the flow's files in ``directory``."""
    from envcore_uv.executable import uv_executable

    from envcore.config import redact_text
    from envcore.pypi import index_args
    from envcore.tools import run_tool, tail, tool_env

    sources, _ = config.pypi_sources()
    target = directory / METAFLOW_DIR
    done = run_tool(
        [
            uv_executable(config),
            "pip",
            "install",
            "--no-deps",
            "--no-config",
            "--quiet",
            "--cache-dir",
            str(config.cache_dir() / "uv"),
            "--python",
            str(python),
            "--target",
            str(target),
            *index_args(sources),
            *wanted.requirements,
        ],
        what="uv pip install",
        env=tool_env({"UV_NO_PROGRESS": "1"}),
        debug=config.debug,
    )
    if done.returncode != 0:
        raise EnvcoreError(
            f"Installing {', '.join(wanted.requirements)} into {target} failed: {redact_text(tail(done.stderr, 6))}. "
            f"Check that the PyPI sources ({redact_text(', '.join(sources))}) have them, or run the flow with "
            "METAFLOW_FEAT_ALWAYS_UPLOAD_CODE_PACKAGE=1 so that the step keeps its code package."
        )
    return {"PYTHONPATH": os.pathsep.join((str(directory), str(target)))}


def code_env(directory: Path) -> dict[str, str]:
    """What a process needs to import the code package extracted in ``directory`` as a task does: the
    directory first on ``PYTHONPATH`` (the flow's modules), then where the package put Metaflow."""
    from metaflow.packaging_sys import MetaflowCodeContent

    paths = [str(directory)]
    values: dict[str, str] = {}
    for key, value in MetaflowCodeContent.get_env_vars_for_packaged_metaflow(str(directory)).items():
        if key == "PYTHONPATH":
            paths.extend(p for p in value.split(os.pathsep) if p and p not in paths)
        else:
            values[key.removesuffix(":")] = value  # a trailing ':' means "replace" in Metaflow's convention
    return {"PYTHONPATH": os.pathsep.join(paths), **values}


def _exports(env: dict[str, str], bin_dir: Path | None) -> str:
    lines = []
    for key, value in env.items():
        if key == "PYTHONPATH":
            lines.append(f'export PYTHONPATH={shlex.quote(value)}"${{PYTHONPATH:+:$PYTHONPATH}}"')
        else:
            lines.append(f"export {key}={shlex.quote(value)}")
    if bin_dir is not None:
        lines.append(f'export PATH={shlex.quote(str(bin_dir))}":$PATH"')
    return "\n".join(lines) + "\n"


def download_into(
    directory: Path,
    python: Path,
    code: Any | None,
    install: Callable[[Path], dict[str, str]] | None = None,
) -> dict[str, str]:
    """Put ``code`` (a ``MetaflowCode``, if any) or what ``install(directory)`` installs, ``__conda_python``
    and, with either, ``metaflow_setup.sh`` into ``directory``; returns the settings that import them (empty
    without)."""
    directory.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    if code is not None:
        if hasattr(tarfile, "tar_filter"):  # refuses absolute paths and links out of the directory
            code.tarball.extractall(directory, filter="tar")
        else:
            code.tarball.extractall(directory)
        env = code_env(directory)
    elif install is not None:
        env = install(directory)
    if env:
        what = code.info.get("script", "the flow") if code is not None else "the run's Metaflow"
        setup = directory / SETUP_SCRIPT
        setup.write_text(
            "# Source this file (`. metaflow_setup.sh`) to run or inspect the flow here in its environment.\n"
            + _HEADER.format(what=f"{what} with {python}")
            + _exports(env, python.parent)
        )
    link = directory / PYTHON_LINK
    if link.is_symlink() or link.exists():
        link.unlink()
    if env:
        link.write_text(
            "#!/bin/sh\n"
            + _HEADER.format(what="the environment's python, with the code package importable")
            + _exports(env, None)
            + f'exec {shlex.quote(str(python))} "$@"\n'
        )
        link.chmod(0o755)
    else:
        os.symlink(python, link)
    return env


def kernel_env(env: dict[str, str], directory: Path) -> dict[str, str]:
    """The kernel's settings: the code package's (``PYTHONPATH`` replaced, not extended), else DIR."""
    return dict(env) if env else {"PYTHONPATH": str(directory)}
