"""Fixtures shared by the end-to-end, reliability and integration tests: a private copy of the test universe, a store, and two "machines" (each
its own METAFLOW_HOME and cache), driven through the installed ``envcore`` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from envcore.testing.channel import Universe

from .reliability.report import Summary

ENVCORE = str(Path(sys.executable).with_name("envcore"))
Run = Callable[..., subprocess.CompletedProcess[str]]


def pytest_configure(config: pytest.Config) -> None:
    # The reliability table is printed by the process that reports results: with pytest-xdist, the controlling
    # process, which loads this conftest (``tests`` is a testpath) but not the ones in the folders below it.
    config.pluginmanager.register(Summary(config.rootpath), "reliability-summary")


def snapshot(root: Path) -> dict[str, bytes]:
    return (
        {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        if root.exists()
        else {}
    )


@pytest.fixture
def world(tmp_path: Path, universe: Universe) -> dict[str, Path]:
    """A private copy of the universe (so tests can make it unreachable), a store, and two machines."""
    copy = tmp_path / "universe"
    shutil.copytree(universe.root, copy, symlinks=True)
    return {
        "universe": copy,
        "store": tmp_path / "store",
        "a": tmp_path / "machine-a",
        "b": tmp_path / "machine-b",
    }


@pytest.fixture
def machine_env(world: dict[str, Path]) -> Callable[..., dict[str, str]]:
    """The process environment of ``envcore`` on one machine: its own home and caches, the shared store."""

    def env_for(machine: str = "a", **extra: str) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("METAFLOW_", "CONDA_", "UV_", "PIP_"))
        }
        env.update(
            METAFLOW_HOME=str(world[machine] / "mfhome"),
            METAFLOW_CONDA_LOCALROOT=str(world["store"]),
            METAFLOW_CONDA_CHANNELS=(world["universe"] / "channel").as_uri(),
            METAFLOW_CONDA_DEFAULT_PYPI_SOURCE=(world["universe"] / "simple").as_uri() + "/",
            METAFLOW_ENVCORE_CACHE_DIR=str(world[machine] / "cache"),
            PIP_CONFIG_FILE=os.devnull,
            TMPDIR=str(world[machine] / "tmp"),  # its scratch folders, checked by tests that kill it
        )
        (world[machine] / "tmp").mkdir(parents=True, exist_ok=True)
        env.update(extra)
        return env

    return env_for


@pytest.fixture
def run(machine_env: Callable[..., dict[str, str]]) -> Run:
    def run(
        *args: str, machine: str = "a", check: bool = True, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        env = machine_env(machine, **extra)
        done = subprocess.run([ENVCORE, *args], capture_output=True, text=True, env=env, timeout=300)
        if check:
            assert done.returncode == 0, done.stderr
        return done

    return run


def env_ids(stdout: str) -> list[str]:
    return [line.split()[-1] for line in stdout.splitlines() if " full hash " in line]


def store_moved_resolution(
    store: Path, arch: str, first: dict[str, str], later: dict[str, str], name: str
) -> str:
    """Store, under ``first``'s req id, the resolution its requirements would have once the channel moved on:
    ``first``'s packages with ``name`` as ``later`` has it (``resolve --json`` entries). Returns its full id."""
    import json

    from envcore import description
    from envcore.naming import DefaultNaming

    envs = store / "envs" / arch
    body = json.loads((envs / first["req_id"] / first["full_id"] / "env").read_text())
    other = json.loads((envs / later["req_id"] / later["full_id"] / "env").read_text())
    body["packages"] = [p for p in body["packages"] if p["envcore"]["name"] != name] + [
        p for p in other["packages"] if p["envcore"]["name"] == name
    ]
    moved = description.from_dict(body, req_id=first["req_id"], full_id="", arch=arch)
    moved_full = DefaultNaming().full_id(moved.packages, arch, moved.full_id_unique_keys)
    (envs / first["req_id"] / moved_full).mkdir()
    (envs / first["req_id"] / moved_full / "env").write_text(json.dumps(body))
    return moved_full


def store_another(store: Path, ref: str, *, by: str, on: str, schema: int | None = None) -> str:
    """Store, under the req id of ``ref``, another resolution of its requirements (told apart by a unique key),
    made by ``by`` on ``on``; with ``schema``, as written by envcore 9.1.0 at that description schema. Returns
    its REQ_ID:FULL_ID."""
    import json

    from envcore import description
    from envcore.naming import DefaultNaming

    req, full = ref.split(":")
    (path,) = store.glob(f"envs/*/{req}/{full}/env")
    body = json.loads(path.read_text())
    body.update(resolved_by=by, resolved_on=on, full_id_unique_keys={"by": by})
    env = description.from_dict(body, req_id=req, full_id="", arch=path.parts[-4])
    other = DefaultNaming().full_id(env.packages, env.arch, env.full_id_unique_keys)
    if schema is not None:
        body["envcore"].update(schema=schema, version="9.1.0")
    (path.parent.parent / other).mkdir()
    (path.parent.parent / other / "env").write_text(json.dumps(body))
    return f"{req}:{other}"


def imported_modules(stderr: str) -> set[str]:
    """Module names from ``PYTHONPROFILEIMPORTTIME=1`` output."""
    return {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
