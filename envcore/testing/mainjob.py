"""End-to-end tests of plugins through the installed ``envcore`` command: :func:`envcore_on` runs it as one
"machine" (its own HOME, Metaflow home and caches; the universe as channel and index; a store shared by the
machines of a test), and :func:`run_main_job` is the main job through any store: resolve a mixed environment on
machine A (caching into the store), then on machine B create it and import a conda-only and a PyPI-only
package of the test universe in it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from envcore.testing.channel import Universe

ENVCORE = str(Path(sys.executable).with_name("envcore"))


def envcore_on(
    work: Path,
    machine: str,
    universe: Universe,
    *args: str,
    path: str | None = None,
    timeout: float = 300,
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    """``envcore ARGS`` on ``machine`` (state under ``work/<machine>``, local store ``work/store``); ``extra``
    adds or overrides environment variables (a resolver, a store, an index). Not checked: the caller asserts."""
    env = {
        "PATH": os.environ["PATH"] if path is None else path,
        "HOME": str(work / machine),
        "METAFLOW_HOME": str(work / machine / "mf"),
        "METAFLOW_CONDA_LOCALROOT": str(work / "store"),
        "METAFLOW_CONDA_CHANNELS": universe.channel_url,
        "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": universe.simple_url,
        "METAFLOW_ENVCORE_CACHE_DIR": str(work / machine / "cache"),
        "PIP_CONFIG_FILE": "/dev/null",
        **extra,
    }
    return subprocess.run([ENVCORE, *args], env=env, capture_output=True, text=True, timeout=timeout)


def run_main_job(
    universe: Universe, work: Path, store_env: Mapping[str, str], root: str, alias: str = "team/store:v1"
) -> Path:
    """``store_env`` selects the store (``METAFLOW_DEFAULT_DATASTORE``, its root, endpoint and credentials);
    ``root`` is the root URL the progress output must name. Returns machine B's prefix."""

    def run(machine: str, *args: str) -> subprocess.CompletedProcess[str]:
        isolated = {"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", **store_env}
        done = envcore_on(work, machine, universe, *args, path="/usr/bin:/bin", **isolated)
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
