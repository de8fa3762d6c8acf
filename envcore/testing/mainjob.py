"""The main job through any store, as a store plugin's end-to-end test: resolve a mixed environment on
"machine A" (caching into the store), then on "machine B" (its own HOME and caches, the same store) create it
and import a conda-only and a PyPI-only package of the test universe in it. Runs the installed ``envcore``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from envcore.testing.channel import Universe

ENVCORE = str(Path(sys.executable).with_name("envcore"))


def run_main_job(
    universe: Universe, work: Path, store_env: Mapping[str, str], root: str, alias: str = "team/store:v1"
) -> Path:
    """``store_env`` selects the store (``METAFLOW_DEFAULT_DATASTORE``, its root, endpoint and credentials);
    ``root`` is the root URL the progress output must name. Returns machine B's prefix."""

    def run(machine: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(work / machine),
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            **store_env,
            "METAFLOW_HOME": str(work / machine / "mf"),
            "METAFLOW_CONDA_CHANNELS": universe.channel_url,
            "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": universe.simple_url,
            "METAFLOW_ENVCORE_CACHE_DIR": str(work / machine / "cache"),
            "PIP_CONFIG_FILE": "/dev/null",
        }
        done = subprocess.run([ENVCORE, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    out = run("a", "resolve", "--conda", "fx-app", "--pypi", "fx-extras", "--alias", alias)
    assert "Caching" in out.stderr and root in out.stderr, out.stderr
    run("b", "create", alias, "--name", "w")
    prefix = work / "b" / "cache" / "envs" / "w"
    done = subprocess.run(
        [prefix / "bin" / "python", "-c", "import fx_app, fx_extras; print('ok')"],
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "ok", done.stderr
    return prefix
