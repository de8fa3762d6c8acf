"""``show --format explicit``: the conda side of an environment as conda's explicit file (``@EXPLICIT`` and one
``URL#md5`` per package, in installation order), which conda, mamba and micromamba install without solving."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..conftest import Run, env_ids


def test_the_conda_side_is_exported_as_an_explicit_file(run: Run) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-app", "--pypi", "fx-extras").stdout)
    done = run("show", ref, "--format", "explicit")
    lines = done.stdout.splitlines()
    assert lines[lines.index("@EXPLICIT") - 1].startswith("# platform: ")
    entries = lines[lines.index("@EXPLICIT") + 1 :]
    described = json.loads(run("show", ref, "--json").stdout)["env"]["packages"]
    conda = {p["envcore"]["name"] for p in described if p["_type"] == "conda"}
    assert len(entries) == len(conda) and Path(urlsplit(entries[0]).path).name.startswith("python-")
    for entry in entries:
        url, _, md5 = entry.partition("#")
        data = Path(unquote(urlsplit(url).path)).read_bytes()
        assert hashlib.md5(data).hexdigest() == md5, entry  # the file the line names, as conda checks it
    assert "1 PyPI package(s), which an explicit file cannot hold" in done.stderr


def test_a_pypi_only_environment_exports_its_python_and_one_env_is_shown(run: Run) -> None:
    """A PyPI-only environment runs on conda's python: that is its conda side."""
    (pypi_only,) = env_ids(run("resolve", "--pypi", "fx-extras").stdout)
    done = run("show", pypi_only, "--format", "explicit")
    (entry,) = done.stdout.splitlines()[done.stdout.splitlines().index("@EXPLICIT") + 1 :]
    assert Path(urlsplit(entry).path).name.startswith("python-")
    assert (
        "PyPI package(s), which an explicit file cannot hold: export them with --format pylock" in done.stderr
    )
    done = run("show", pypi_only, pypi_only, "--format", "explicit", check=False)
    assert done.returncode == 2 and "--format explicit shows one environment" in done.stderr
