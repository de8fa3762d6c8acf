"""The uv resolver beyond the kit: what it asks of this machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from envcore import resolve, specs
from envcore.plugins import build_registry
from envcore.testing.channel import Universe
from envcore.testing.fixtures import universe_config


def test_resolution_runs_no_interpreter_found_on_path(
    universe: Universe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uv, asked for a python version without an interpreter, searches PATH and runs every candidate (a
    pyenv shim costs 0.15 s, 12 s for a version it lacks) or downloads one: envcore names the interpreter."""
    shims, ran = tmp_path / "shims", tmp_path / "ran"
    shims.mkdir()
    major, minor = sys.version_info[:2]
    for name in ("python", "python3", f"python{major}", f"python{major}.{minor}"):
        shim = shims / name
        shim.write_text(f"#!/bin/sh\necho {name} >> {ran}\nexit 127\n")
        shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    for var in ("VIRTUAL_ENV", "CONDA_PREFIX", "UV_PYTHON"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no .venv here or above for uv to find
    config = universe_config(universe, tmp_path)
    request = resolve.build_request(specs.from_decorator(packages={"fx-web": "2.0.0"}), config, "linux-64")
    env = resolve.resolve(build_registry(config), request)
    assert {p.name for p in env.packages} >= {"python", "fx-web", "fx-core"}
    assert not ran.exists(), f"uv ran {ran.read_text().split()} from PATH"


def test_an_ambient_macos_deployment_target_does_not_change_an_osx_resolution(
    universe: Universe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``MACOSX_DEPLOYMENT_TARGET`` (set in conda build shells) moves the oldest macOS whose wheels uv takes; it
    is in no id, so it must not reach uv."""
    config = universe_config(universe, tmp_path)
    request = resolve.build_request(specs.from_decorator(packages={"fx-native": ""}), config, "osx-arm64")
    wheels = {}
    for target in (None, "10.9"):
        if target:
            monkeypatch.setenv("MACOSX_DEPLOYMENT_TARGET", target)
        env = resolve.resolve(build_registry(config), request)
        wheels[target] = sorted(p.filename for p in env.packages if p.name == "fx-native")
    assert wheels["10.9"] == wheels[None] and wheels[None], wheels
