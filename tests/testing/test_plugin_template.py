"""The plugin template, copied, installed into a fresh venv and tried by running its README's commands as
written (the envcore repository and the test universe's folder put where the README says ``/path/to/...``),
passes the conformance kit with zero change to the core, is listed as available by ``envcore plugins --check``
(which exits 0) and resolves.

Marked ``registry``: installing envcore's own dependencies into a fresh venv reads PyPI (through uv, mostly
from its cache); the conformance run itself is offline."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "docs" / "plugin-template" / "README.md"


def readme_commands(universe: Path) -> str:
    """The README's shell blocks as one script, run from the copy of the template."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 2, blocks  # installing and trying, then resolving
    script = "\n".join(blocks).replace("/path/to/envcore-repo", str(ROOT))
    return script.replace("/tmp/universe", str(universe))


@pytest.mark.slow
@pytest.mark.registry
def test_template_passes_the_kit_in_a_fresh_venv_following_its_readme(tmp_path: Path) -> None:
    plugin = tmp_path / "envcore-example"
    shutil.copytree(ROOT / "docs" / "plugin-template", plugin)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METAFLOW_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(
        # python3 and uv as a user has them: this interpreter's (uv is a dependency of envcore-uv)
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        METAFLOW_ENVCORE_CACHE_DIR=str(tmp_path / "cache"),
    )
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_commands(tmp_path / "universe")],
        cwd=plugin,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert (plugin / ".venv" / "bin" / "envcore").exists()  # all of it ran in the README's fresh venv
    assert re.search(r"\b17 passed\b", out), out[-3000:]  # the kit's checks the template's resolver runs
    assert re.search(r"^example +loaded +envcore-example 0\.1\.0$", out, re.MULTILINE), out
    assert re.search(r"^resolver example +available \(envcore-example 0\.1\.0\)$", out, re.MULTILINE), out
    assert "selected backend unusable" not in out, out
    assert "Resolved with rattler 0.28.0 + example envcore-example 0.1.0" in out, out
    assert "Pypi Packages installed fx-core==2.0.0, fx-extras==0.4.0, fx-pyyaml==6.0.1" in out, out
