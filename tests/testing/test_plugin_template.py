"""The plugin template, copied and installed into a fresh venv together with envcore (nothing else of this
workspace), passes the conformance kit with zero change to the core.

Marked ``registry``: installing envcore's own dependencies into a fresh venv reads PyPI (through uv, mostly
from its cache); the conformance run itself is offline."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.registry
def test_template_passes_the_kit_in_a_fresh_venv(tmp_path: Path) -> None:
    plugin = tmp_path / "envcore-example"
    shutil.copytree(ROOT / "docs" / "plugin-template", plugin)
    venv = tmp_path / "venv"
    uv = [sys.executable, "-m", "uv"]
    subprocess.run([*uv, "venv", "-q", str(venv), "--python", sys.executable], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = [
        *uv,
        "pip",
        "install",
        "-q",
        "--python",
        str(python),
        "-e",
        str(ROOT),
        "-e",
        str(plugin),
        "pytest",
    ]
    subprocess.run(install, check=True, timeout=600)
    listed = subprocess.run(
        [venv / "bin" / "envcore", "plugins", "--json"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert '"example"' in listed.stdout  # found through its entry point
    done = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "envcore.testing.fixtures", "tests"],
        cwd=plugin,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "17 passed" in done.stdout, done.stdout[-1000:]  # the kit's checks the template's resolver runs
