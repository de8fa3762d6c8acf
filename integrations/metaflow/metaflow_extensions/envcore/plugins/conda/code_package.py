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
from pathlib import Path
from typing import Any

from envcore.errors import EnvcoreError

PYTHON_LINK = "__conda_python"
SETUP_SCRIPT = "metaflow_setup.sh"
_HEADER = "# Written by `metaflow environment create --into-dir`: {what}\n"


def step_code(pathspec: str) -> Any:
    """The code package (``MetaflowCode``) of the step ``Flow/Run/Step``; a user error when it has none."""
    from metaflow import Step

    task = Step(pathspec, _namespace_check=False).task
    code = task.code if task is not None else None
    if code is None:
        raise EnvcoreError(
            f"Step {pathspec} has no code package to put into the directory: local runs store one only when "
            "run with METAFLOW_FEAT_ALWAYS_UPLOAD_CODE_PACKAGE=1 (remote runs always do). Run the flow again "
            "with it, or create the environment without --into-dir."
        )
    return code


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


def download_into(directory: Path, python: Path, code: Any | None) -> dict[str, str]:
    """Put ``code`` (a ``MetaflowCode``, if any), ``__conda_python`` and, with code, ``metaflow_setup.sh``
    into ``directory``; returns the settings that import the code (empty without code)."""
    directory.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    if code is not None:
        if hasattr(tarfile, "tar_filter"):  # refuses absolute paths and links out of the directory
            code.tarball.extractall(directory, filter="tar")
        else:
            code.tarball.extractall(directory)
        env = code_env(directory)
        setup = directory / SETUP_SCRIPT
        setup.write_text(
            "# Source this file (`. metaflow_setup.sh`) to run or inspect the flow here in its environment.\n"
            + _HEADER.format(what=f"{code.info.get('script', 'the flow')} with {python}")
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
