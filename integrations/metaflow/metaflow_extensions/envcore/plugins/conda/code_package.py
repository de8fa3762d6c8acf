"""``metaflow environment create --into-dir DIR``: a directory to work in a step's environment: the step's
code package (with ``--pathspec``) and ``__conda_python``, a link to the environment's python."""

from __future__ import annotations

import os
from pathlib import Path

PYTHON_LINK = "__conda_python"


def download_into(directory: Path, python: Path, pathspec: str | None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if pathspec:
        from metaflow import Step

        task = Step(pathspec, _namespace_check=False).task
        code = task.code if task is not None else None
        if code is None:
            raise LookupError(
                f"No code package is recorded for {pathspec}: local runs store one only with "
                "METAFLOW_FEAT_ALWAYS_UPLOAD_CODE_PACKAGE=1. The environment was created; run it without --into-dir."
            )
        code.tarball.extractall(directory)
    link = directory / PYTHON_LINK
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(python, link)
    return directory
