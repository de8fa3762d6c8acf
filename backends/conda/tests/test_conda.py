"""envcore-conda against the py-rattler conda test executable (envcore.testing.condacli): the conformance
kit unmodified, foreign platforms, credentials kept off the command line, the error for a missing binary, and
the main job end to end through the ``envcore`` command. A real ``conda`` is used when
``ENVCORE_TEST_REAL_CONDA`` names one or one is on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from envcore.config import Config
from envcore.errors import BackendUnavailable, ResolutionError
from envcore.plugins import build_registry
from envcore.resolve import local_arch
from envcore.testing.channel import Universe
from envcore.testing.condacli import real_tool, write_conda_cli
from envcore.testing.conformance import ResolverConformance
from envcore.testing.fixtures import AuthEndpoint
from envcore.testing.mainjob import envcore_on
from envcore.types import CONDA, SYS, Requirement, Resolver, ResolveRequest

PYTHON = Requirement(category=CONDA, name="python", spec=f"{sys.version_info[0]}.{sys.version_info[1]}.*")


class TestCondaConformance(ResolverConformance):
    resolver_name = "conda"

    @pytest.fixture(autouse=True)
    def _conda_on_path(self, conda_cli_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PATH", f"{conda_cli_bin}{os.pathsep}{os.environ['PATH']}")


def _resolver(universe: Universe, **environ: str) -> Resolver:
    config = Config.load(
        environ={"METAFLOW_CONDA_CHANNELS": universe.channel_url, "HOME": os.environ["HOME"], **environ}
    )
    return build_registry(config).resolver_named("conda")


def _request(
    universe: Universe, *reqs: Requirement, arch: str | None = None, source: str = ""
) -> ResolveRequest:
    return ResolveRequest(
        arch=arch or local_arch(),
        requirements=(*reqs, PYTHON),
        sources={CONDA: (source or universe.channel_url,)},
    )


def _logging_wrapper(bin_dir: Path, target: Path, log: Path) -> Path:
    """A `conda` that records its argv and environment, then runs the test executable."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / "conda"
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" >> {log}.argv\nenv >> {log}.env\nexec {target} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.parametrize(("arch", "glibc"), [("osx-arm64", None), ("linux-aarch64", "2.28")])
def test_foreign_platform_uses_conda_subdir(
    universe: Universe,
    tmp_path: Path,
    arch: str,
    glibc: str | None,
) -> None:
    exe = write_conda_cli(tmp_path / "real", "conda")
    log = tmp_path / "calls"
    wrapper = _logging_wrapper(tmp_path / "bin", exe, log)
    sys_reqs = (Requirement(category=SYS, name="__glibc", spec=f"{glibc}=0"),) if glibc else ()
    resolver = _resolver(universe, METAFLOW_ENVCORE_CONDA_EXE=str(wrapper))
    packages = resolver.resolve(
        _request(universe, Requirement(category=CONDA, name="fx-native"), *sys_reqs, arch=arch)
    )
    assert {p.subdir for p in packages} <= {arch, "noarch"}
    assert next(p for p in packages if p.name == "fx-native").subdir == arch
    env = log.with_suffix(".env").read_text()
    assert f"CONDA_SUBDIR={arch}" in env
    assert (f"CONDA_OVERRIDE_GLIBC={glibc}" in env) if glibc else "CONDA_OVERRIDE_GLIBC" not in env
    assert ("CONDA_OVERRIDE_OSX=" in env) == arch.startswith("osx")
    argv = log.with_suffix(".argv").read_text().splitlines()
    assert argv[0] == "--version"  # asked once, then the solve
    assert argv[1:5] == ["create", "--yes", "--dry-run", "--json"] and "--override-channels" in argv


@pytest.mark.parametrize(("flavor", "version"), [("conda", None), ("mamba", "1.5.12"), ("micromamba", None)])
def test_pip_is_in_an_environment_only_when_asked_for(
    universe: Universe, tmp_path: Path, flavor: str, version: str | None
) -> None:
    """conda, mamba and micromamba make pip a dependency of python (add_pip_as_python_dependency, true by
    default, as the test executable does too): envcore turns it off, so that an environment holds pip only when
    asked for, as with every other resolver."""
    exe = write_conda_cli(tmp_path / "bin", flavor, version)
    bare = subprocess.run(
        [
            str(exe),
            "create",
            "--yes",
            "--dry-run",
            "--json",
            "-p",
            str(tmp_path / "p"),
            "--override-channels",
            "-c",
            universe.channel_url,
            "python",
            "fx-core",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
        check=True,
    )
    assert '"pip"' in bare.stdout  # the tool's own default
    config = Config.load(
        environ={
            "METAFLOW_CONDA_CHANNELS": universe.channel_url,
            "HOME": os.environ["HOME"],
            f"METAFLOW_ENVCORE_{flavor.upper()}_EXE": str(exe),
        }
    )
    resolver = build_registry(config).resolver_named(flavor)
    fx_core = Requirement(category=CONDA, name="fx-core")
    assert "pip" not in {p.name for p in resolver.resolve(_request(universe, fx_core))}
    pip = Requirement(category=CONDA, name="pip")
    assert "pip" in {p.name for p in resolver.resolve(_request(universe, fx_core, pip))}


def test_osx_version_gates_builds(universe: Universe, conda_cli_bin: Path) -> None:
    """osx targets assume macOS 12 (CONDA_OVERRIDE_OSX), the macOS their wheels are chosen for, unless the
    request says otherwise."""
    resolver = _resolver(universe, METAFLOW_ENVCORE_CONDA_EXE=str(conda_cli_bin / "conda"))
    ffmpeg = Requirement(category=CONDA, name="fx-ffmpeg")  # needs __osx >=11.0
    packages = resolver.resolve(_request(universe, ffmpeg, arch="osx-64"))
    assert {p.name: p.subdir for p in packages}["fx-ffmpeg"] == "osx-64"
    older = Requirement(category=SYS, name="__osx", spec="10.15=0")
    with pytest.raises(ResolutionError, match=r"__osx >=11\.0"):
        resolver.resolve(_request(universe, ffmpeg, older, arch="osx-64"))


def test_a_missing_virtual_package_is_a_feature_of_the_target_to_declare(
    universe: Universe, conda_cli_bin: Path
) -> None:
    resolver = _resolver(universe, METAFLOW_ENVCORE_CONDA_EXE=str(conda_cli_bin / "conda"))
    cuda = Requirement(category=CONDA, name="fx-native", spec="* *cuda*")
    with pytest.raises(ResolutionError) as caught:
        resolver.resolve(_request(universe, cuda, arch="linux-64"))
    assert "__cuda >=12" in caught.value.message and "--sys-pkg __cuda==12.4" in caught.value.message
    assert "Change the constraint" not in caught.value.message


def test_credentials_go_by_netrc_never_on_the_command_line(
    universe: Universe, auth_channel: AuthEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "tmp"  # this test's own: other tests' resolvers make and remove theirs meanwhile
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    exe = write_conda_cli(tmp_path / "real", "conda")
    log = tmp_path / "calls"
    wrapper = _logging_wrapper(tmp_path / "bin", exe, log)
    resolver = _resolver(universe, METAFLOW_ENVCORE_CONDA_EXE=str(wrapper))
    host = urlsplit(auth_channel.url).hostname or ""
    request = _request(
        universe, Requirement(category=CONDA, name="fx-http", spec="1.1.0"), source=auth_channel.url
    )
    good = ResolveRequest(
        arch=request.arch,
        requirements=request.requirements,
        sources=request.sources,
        credentials={host: (auth_channel.user, auth_channel.password)},
    )
    packages = resolver.resolve(good)
    assert {p.name for p in packages} >= {"fx-http", "fx-core", "python"}
    assert all(auth_channel.password not in f.url for p in packages for f in p.files)
    assert auth_channel.password not in log.with_suffix(".argv").read_text()
    assert auth_channel.password not in log.with_suffix(".env").read_text()
    assert "NETRC=" in log.with_suffix(".env").read_text()
    wrong = ResolveRequest(
        arch=request.arch,
        requirements=request.requirements,
        sources=request.sources,
        credentials={host: (auth_channel.user, "not-the-password")},
    )
    with pytest.raises(ResolutionError) as err:
        resolver.resolve(wrong)
    assert "not-the-password" not in str(err.value) and "could not read the conda channels" in str(err.value)
    assert not list(temp.glob("envcore-conda-*"))  # the temporary directory with the netrc removed


def test_missing_binary_is_one_paragraph(
    universe: Universe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no conda anywhere
    with pytest.raises(BackendUnavailable) as err:
        _resolver(universe).check()
    message = err.value.message
    assert "\n" not in message and "no `conda` executable was found on PATH" in message
    assert "METAFLOW_ENVCORE_CONDA_EXE" in message and "conda 4.12 or newer" in message
    with pytest.raises(BackendUnavailable, match="not an executable file"):
        _resolver(universe, METAFLOW_ENVCORE_CONDA_EXE=str(tmp_path / "nope")).check()


def test_too_old_conda_is_refused(universe: Universe, tmp_path: Path) -> None:
    exe = write_conda_cli(tmp_path, "conda", "4.9.2")
    with pytest.raises(BackendUnavailable, match=r"version 4\.9\.2, which is too old"):
        _resolver(universe, METAFLOW_ENVCORE_CONDA_EXE=str(exe)).check()


def test_end_to_end_through_the_envcore_command(
    universe: Universe, conda_cli_bin: Path, tmp_path: Path
) -> None:
    chosen = {
        "METAFLOW_CONDA_DEPENDENCY_RESOLVER": "conda",
        "PATH": f"{conda_cli_bin}{os.pathsep}{os.environ['PATH']}",
    }
    out = envcore_on(
        tmp_path, "a", universe, "resolve", "--conda", "fx-app", "--alias", "team/conda:v1", **chosen
    )
    assert out.returncode == 0, out.stderr
    assert "Environment of type conda-only" in out.stdout and "conda 24.11.3" in out.stdout + out.stderr
    made = envcore_on(tmp_path, "b", universe, "create", "team/conda:v1", "--name", "w")
    assert made.returncode == 0, made.stderr
    python = tmp_path / "b" / "cache" / "envs" / "w" / "bin" / "python"
    done = subprocess.run(
        [python, "-c", "import fx_app; print(fx_app.__version__)"], capture_output=True, text=True
    )
    assert done.stdout.strip() == "1.0.0", done.stderr
    missing = envcore_on(
        tmp_path,
        "a",
        universe,
        "resolve",
        "--conda",
        "fx-web",
        METAFLOW_CONDA_DEPENDENCY_RESOLVER="conda",
        PATH="/usr/bin:/bin",
    )
    assert missing.returncode != 0 and "no `conda` executable was found on PATH" in missing.stderr


REAL_CONDA, NO_REAL_CONDA = real_tool("conda")


@pytest.mark.skipif(REAL_CONDA is None, reason=NO_REAL_CONDA)
def test_real_conda(universe: Universe) -> None:
    """A real conda (ENVCORE_TEST_REAL_CONDA, or `conda` on PATH) against the local test channel."""
    resolver = _resolver(universe, PATH=os.environ["PATH"], METAFLOW_ENVCORE_CONDA_EXE=str(REAL_CONDA))
    resolver.check()
    packages = resolver.resolve(_request(universe, Requirement(category=CONDA, name="fx-http", spec="1.1.0")))
    assert {p.name: p.version for p in packages}["fx-core"] == "1.1.0"
    assert all(
        len(f.sha256) == 64 and f.url.startswith(universe.channel_url) for p in packages for f in p.files
    )
    with pytest.raises(ResolutionError, match=r"conda .*fx-core"):
        resolver.resolve(_request(universe, Requirement(category=CONDA, name="fx-core", spec="9.9.9")))


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (
            '{"success": true, "actions": {"LINK": [{"name": "x", "url": "file:///x/x-1-0.conda", "md5": "ab"}]}}',
            "in a form envcore does not read (KeyError: 'version')",
        ),
        ('{"success": true, "actions": {"LINK": "oops"}}', "in a form envcore does not read (AttributeError"),
        ('{"success": true, "actions": {"LINK": [{"name": "x"}]}}', "a LINK entry names no package"),
        (
            "not json at all",
            "in a form envcore does not read (not the JSON object it writes: 'not json at all')",
        ),
        ("@kill -9 $$", "was stopped by signal 9 while resolving"),
    ],
)
def test_output_envcore_cannot_read_is_named_as_such(
    universe: Universe, tmp_path: Path, output: str, message: str
) -> None:
    """Before: 'internal error: KeyError' (exit 3), 'The solver chose  but reported no download URL', or, for
    output that is no JSON or a killed tool, 'cannot be resolved ... Change the constraint named above'."""
    tool = tmp_path / "conda"
    action = output[1:] if output.startswith("@") else f"cat <<'EOF'\n{output}\nEOF"
    tool.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then echo "conda 24.1.0"; exit 0; fi\n{action}\n')
    tool.chmod(0o755)
    resolver = _resolver(universe, METAFLOW_ENVCORE_CONDA_EXE=str(tool))
    with pytest.raises(ResolutionError) as caught:
        resolver.resolve(_request(universe, Requirement(category=CONDA, name="fx-core", spec="")))
    assert message in caught.value.message and "Change the constraint" not in caught.value.message
