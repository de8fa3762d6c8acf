"""Warm hydration through the ``envcore`` command: a second prefix of an environment is cloned from the
first (hardlinks, prefix rewritten where files name it) and works exactly like an installed one."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from ..conftest import env_ids

# conda: a text placeholder file and pip's entry points; PyPI: a console script (fx-app) and plain modules
REQUEST = ("--conda", "fx-prefixed", "--conda", "pip", "--pypi", "fx-extras", "--pypi", "fx-app")
Run = Callable[..., subprocess.CompletedProcess[str]]


def _works(prefix: Path) -> None:
    code = "import fx_prefixed, fx_extras, sys; print(fx_prefixed.__file__, sys.prefix)"
    out = subprocess.run([prefix / "bin" / "python", "-c", code], capture_output=True, text=True, check=True)
    module, sys_prefix = out.stdout.split()
    assert Path(module).is_relative_to(prefix) and sys_prefix == str(prefix)
    for script in ("pip", "fx-app"):  # a conda entry point and a wheel console script
        done = subprocess.run([prefix / "bin" / script, "--help"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def _names(prefix: Path, needle: str) -> list[str]:
    found = []
    for path in prefix.rglob("*"):
        if "__pycache__" in path.parts or path.is_symlink() or not path.is_file():
            continue
        if needle.encode() in path.read_bytes():
            found.append(str(path.relative_to(prefix)))
    return found


def test_second_prefix_is_cloned_and_names_only_itself(run: Run, world: dict[str, Path]) -> None:
    out = run("resolve", *REQUEST)
    (ref,) = env_ids(out.stdout)
    first = run("create", ref, "--name", "first")
    assert "Linked from" not in first.stderr + first.stdout
    envs = world["a"] / "cache" / "envs"
    _works(envs / "first")
    subprocess.run([envs / "first" / "bin" / "python", "-c", "import fx_extras"], check=True)  # __pycache__

    second = run("--verbose", "create", ref, "--name", "second-with-a-longer-name")
    assert f"Linked from the same environment at {envs / 'first'}" in second.stderr
    clone = envs / "second-with-a-longer-name"
    _works(clone)
    assert _names(clone, str(envs / "first")) == []
    assert (clone / "bin" / "python").stat().st_ino == (envs / "first" / "bin" / "python").stat().st_ino

    # the source is gone: the next prefix comes from the clone, and with none left, from the package files
    shutil.rmtree(envs / "first")
    third = run("--verbose", "create", ref, "--name", "third")
    assert f"Linked from the same environment at {clone}" in third.stderr
    _works(envs / "third")
    shutil.rmtree(clone)
    shutil.rmtree(envs / "third")
    fourth = run("--verbose", "create", ref, "--name", "fourth")
    assert "Linked from" not in fourth.stderr
    _works(envs / "fourth")


def test_force_and_verify_install_from_the_package_files(run: Run, world: dict[str, Path]) -> None:
    out = run("resolve", *REQUEST)
    (ref,) = env_ids(out.stdout)
    run("create", ref, "--name", "one")
    for flags in (["--force"], ["--verify"]):
        done = run("--verbose", "create", ref, "--name", "two", *flags)
        assert "Linked from" not in done.stderr
        _works(world["a"] / "cache" / "envs" / "two")
