"""Source distributions: a package with no wheel is built into one on this machine when the environment is
resolved, cached under the original's ``packages/pypi/_fake/`` layout, and hydrated elsewhere from the store."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from envcore.resolve import local_arch

from ..conftest import env_ids

Run = Callable[..., subprocess.CompletedProcess[str]]


def test_sdist_is_built_cached_and_hydrated_from_the_store(run: Run, world: dict[str, Path]) -> None:
    out = run("resolve", "--pypi", "fx-src", "--conda", "fx-yaml")
    (ref,) = env_ids(out.stdout)
    assert "fx-src==0.9.0" in out.stdout
    # a build can take minutes (numpy's): which one runs is said as it starts, and its time when done
    assert f"Building fx-src 0.9.0 from its source distribution for {local_arch()}\n" in out.stderr
    assert "Building 1 source distribution(s) ... done in " in out.stderr
    built = sorted(
        p.relative_to(world["store"]).as_posix() for p in world["store"].rglob("*.whl") if p.is_file()
    )
    fake = [k for k in built if "/_fake/" in k]
    assert len(fake) == 1 and fake[0].startswith("packages/pypi/_fake/_local/")
    assert "/fx_src-0.9.0.tar.gz/fx_src-0.9.0-py3-none-any.whl/" in fake[0]
    described = json.loads(run("show", ref, "--json").stdout)
    assert "fx-src" in json.dumps(described)

    shutil.rmtree(world["universe"])  # machine B: only the store
    run("create", ref, "--name", "src", machine="b")
    python = world["b"] / "cache" / "envs" / "src" / "bin" / "python"
    done = subprocess.run(
        [python, "-c", "import fx_src; print(fx_src.__version__)"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "0.9.0"


def test_builds_are_reproducible_so_ids_are_stable(run: Run) -> None:
    first = env_ids(run("resolve", "--pypi", "fx-src", machine="a").stdout)
    second = env_ids(run("resolve", "--pypi", "fx-src", machine="b", METAFLOW_CONDA_LOCALROOT="").stdout)
    assert first == second


def test_no_build_for_another_architecture(run: Run, world: dict[str, Path]) -> None:
    other = "osx-arm64" if local_arch() != "osx-arm64" else "linux-64"
    before = sorted(world["store"].rglob("*"))
    out = run("resolve", "--pypi", "fx-src", "--arch", other, check=False)
    assert out.returncode != 0
    message = " ".join(out.stderr.split())
    assert "fx-src==0.9.0 has no usable wheels" in message
    assert (
        f"envcore builds source distributions only for this machine's architecture ({local_arch()})"
        in message
    )
    assert "Traceback" not in out.stderr
    assert sorted(world["store"].rglob("*")) == before
