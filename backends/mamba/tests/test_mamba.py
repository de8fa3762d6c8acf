"""envcore-mamba against the py-rattler test executable speaking mamba 1.x (conda's front end: LINK entries
without urls) and mamba 2.x (the libmamba CLI: ``--root-prefix``, LINK entries with urls): the conformance kit
unmodified for both, the command lines, the error for a missing binary, and the main job end to end through
the ``envcore`` command. A real ``mamba`` is used when ``ENVCORE_TEST_REAL_MAMBA`` names one or one is on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from envcore.config import Config
from envcore.errors import BackendUnavailable, ResolutionError
from envcore.plugins import build_registry
from envcore.resolve import local_arch
from envcore.testing.channel import Universe
from envcore.testing.condacli import real_tool, write_conda_cli
from envcore.testing.conformance import ResolverConformance
from envcore.testing.mainjob import envcore_on
from envcore.types import CONDA, Requirement, Resolver, ResolveRequest

PYTHON = Requirement(category=CONDA, name="python", spec=f"{sys.version_info[0]}.{sys.version_info[1]}.*")


class TestMamba2Conformance(ResolverConformance):
    resolver_name = "mamba"
    mamba_version = "2.0.5"

    @pytest.fixture(autouse=True)
    def _mamba_on_path(self, make_conda_cli: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
        exe = make_conda_cli("mamba", self.mamba_version)
        monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")


class TestMamba1Conformance(TestMamba2Conformance):
    mamba_version = "1.5.12"


def _resolver(universe: Universe, **environ: str) -> Resolver:
    config = Config.load(
        environ={"METAFLOW_CONDA_CHANNELS": universe.channel_url, "HOME": os.environ["HOME"], **environ}
    )
    return build_registry(config).resolver_named("mamba")


def _request(universe: Universe, *reqs: Requirement, arch: str | None = None) -> ResolveRequest:
    return ResolveRequest(
        arch=arch or local_arch(), requirements=(*reqs, PYTHON), sources={CONDA: (universe.channel_url,)}
    )


@pytest.mark.parametrize(("version", "root_flag"), [("1.5.12", False), ("2.0.5", True)])
def test_command_line_per_major_version(
    universe: Universe, tmp_path: Path, version: str, root_flag: bool
) -> None:
    exe = write_conda_cli(tmp_path / "real", "mamba", version)
    log = tmp_path / "argv"
    wrapper = tmp_path / "bin" / "mamba"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {log}\nexec {exe} "$@"\n')
    wrapper.chmod(0o755)
    resolver = _resolver(universe, METAFLOW_ENVCORE_MAMBA_EXE=str(wrapper))
    assert resolver.version() == version
    packages = resolver.resolve(
        _request(universe, Requirement(category=CONDA, name="fx-native"), arch="osx-arm64")
    )
    assert {p.name: p.subdir for p in packages}["fx-native"] == "osx-arm64"
    argv = log.read_text().splitlines()
    assert ("--root-prefix" in argv) == root_flag
    with pytest.raises(ResolutionError, match=r"mamba .*fx-core"):
        resolver.resolve(_request(universe, Requirement(category=CONDA, name="fx-core", spec="9.9.9")))


def test_missing_binary_is_one_paragraph(
    universe: Universe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendUnavailable) as err:
        _resolver(universe).check()
    message = err.value.message
    assert "\n" not in message and "no `mamba` executable was found on PATH" in message
    assert "METAFLOW_ENVCORE_MAMBA_EXE" in message and "mamba 1.4 or newer" in message


def test_end_to_end_through_the_envcore_command(
    universe: Universe, make_conda_cli: Callable[..., Path], tmp_path: Path
) -> None:
    exe = make_conda_cli("mamba", "2.0.5")
    chosen = {"METAFLOW_CONDA_DEPENDENCY_RESOLVER": "mamba", "METAFLOW_ENVCORE_MAMBA_EXE": str(exe)}
    out = envcore_on(
        tmp_path, "a", universe, "resolve", "--conda", "fx-app", "--alias", "team/mamba:v1", **chosen
    )
    assert out.returncode == 0, out.stderr
    assert "mamba 2.0.5" in out.stdout + out.stderr
    made = envcore_on(tmp_path, "a", universe, "create", "team/mamba:v1", "--name", "m", **chosen)
    assert made.returncode == 0, made.stderr
    python = tmp_path / "a" / "cache" / "envs" / "m" / "bin" / "python"
    done = subprocess.run(
        [python, "-c", "import fx_app; print(fx_app.__version__)"], capture_output=True, text=True
    )
    assert done.stdout.strip() == "1.0.0", done.stderr


REAL_MAMBA, NO_REAL_MAMBA = real_tool("mamba")


@pytest.mark.skipif(REAL_MAMBA is None, reason=NO_REAL_MAMBA)
def test_real_mamba(universe: Universe) -> None:
    """A real mamba (ENVCORE_TEST_REAL_MAMBA, or `mamba` on PATH) against the local test channel."""
    resolver = _resolver(universe, PATH=os.environ["PATH"], METAFLOW_ENVCORE_MAMBA_EXE=str(REAL_MAMBA))
    resolver.check()
    packages = resolver.resolve(_request(universe, Requirement(category=CONDA, name="fx-http", spec="1.1.0")))
    assert {p.name: p.version for p in packages}["fx-core"] == "1.1.0"
    assert all(
        len(f.sha256) == 64 and f.url.startswith(universe.channel_url) for p in packages for f in p.files
    )
    with pytest.raises(ResolutionError, match=r"mamba .*fx-core"):
        resolver.resolve(_request(universe, Requirement(category=CONDA, name="fx-core", spec="9.9.9")))
