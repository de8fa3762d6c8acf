"""envcore-conda-lock with the real conda-lock driving the kit's py-rattler ``micromamba`` test executable:
PyPI packages never replace conda ones, errors name the package, credentials stay off command lines, a missing
executable fails fast (conda-lock alone would spend ~63 s trying to download conda-standalone), and the main
job end to end through the ``envcore`` command. A real micromamba/mamba/conda is used when
``ENVCORE_TEST_REAL_<TOOL>`` names one or one is on PATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from envcore.config import Config
from envcore.errors import BackendUnavailable, ConfigError, ResolutionError
from envcore.plugins import build_registry
from envcore.resolve import local_arch
from envcore.testing.channel import Universe
from envcore.testing.condacli import real_tool, write_conda_cli
from envcore.testing.fixtures import AuthEndpoint, WheelIndex
from envcore.testing.mainjob import envcore_on
from envcore.types import CONDA, PYPI, SYS, PackageKind, Requirement, Resolver, ResolveRequest

PYTHON = Requirement(category=CONDA, name="python", spec=f"{sys.version_info[0]}.{sys.version_info[1]}.*")
#: a real micromamba, mamba or conda (ENVCORE_TEST_REAL_<TOOL>, else on PATH), in conda-lock's order of preference
REAL_TOOL = next((found for found, _ in map(real_tool, ("micromamba", "mamba", "conda")) if found), None)


def _resolver(universe: Universe, **environ: str) -> Resolver:
    config = Config.load(
        environ={"METAFLOW_CONDA_CHANNELS": universe.channel_url, "HOME": os.environ["HOME"], **environ}
    )
    return build_registry(config).resolver_named("conda-lock")


def _request(
    universe: Universe,
    index: str,
    conda: tuple[str, ...] = (),
    pypi: tuple[str, ...] = (),
    arch: str | None = None,
    channel: str = "",
    **credentials: tuple[str, str],
) -> ResolveRequest:
    def reqs(category: str, specs: tuple[str, ...]) -> list[Requirement]:
        return [
            Requirement(category=category, name=n, spec=s) for n, _, s in (x.partition("==") for x in specs)
        ]

    return ResolveRequest(
        arch=arch or local_arch(),
        requirements=(*reqs(CONDA, conda), *reqs(PYPI, pypi), PYTHON),
        sources={CONDA: (channel or universe.channel_url,), PYPI: (index,)},
        credentials=credentials,
    )


def _versions(packages: object) -> dict[str, tuple[str, str]]:
    return {p.name: (p.version, p.kind.value) for p in packages}  # type: ignore[attr-defined]


@pytest.fixture
def micromamba(conda_cli_bin: Path) -> str:
    return str(conda_cli_bin / "micromamba")


def test_wheels_never_replace_conda_packages(
    universe: Universe, wheel_index: WheelIndex, micromamba: str
) -> None:
    """conda-lock's poetry only prefers the conda versions; envcore pins them and locks again."""
    resolver = _resolver(universe, METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE=micromamba)
    index = wheel_index.http_url
    packages = resolver.resolve(_request(universe, index, ("fx-core==1.0.0",), ("fx-extras",)))
    found = _versions(packages)
    assert found["fx-core"] == ("1.0.0", "conda") and found["fx-extras"] == ("0.3.0", "pypi")
    assert [p.kind for p in packages] == sorted(
        (p.kind for p in packages), key=lambda k: k is PackageKind.PYPI
    )
    with pytest.raises(ResolutionError) as err:
        resolver.resolve(_request(universe, index, ("fx-core==1.0.0",), ("fx-extras==0.4.0",)))
    message = err.value.message
    assert "fx-extras (==0.4.0) which depends on fx-core (>=1.1)" in message and "fx-core==1.0.0" in message
    assert "conda side installs" in message and "\n" not in message


def test_a_wheel_never_replaces_a_conda_package_that_installs_it_under_another_name(
    universe: Universe, wheel_index: WheelIndex, micromamba: str, tmp_path: Path
) -> None:
    """conda fx-yaml installs the distribution fx-pyyaml. Before, fx-extras 0.4.0 came with the fx-pyyaml 6.0.1
    wheel, installed over fx-yaml 5.4.0's files; now the names are matched as the built-in composition does."""
    resolver = _resolver(
        universe,
        METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE=micromamba,
        METAFLOW_ENVCORE_CACHE_DIR=str(tmp_path / "cache"),
    )
    packages = resolver.resolve(_request(universe, wheel_index.http_url, ("fx-yaml==5.4.0",), ("fx-extras",)))
    found = _versions(packages)
    assert found["fx-yaml"] == ("5.4.0", "conda") and "fx-pyyaml" not in found, found


def test_pip_is_in_an_environment_only_when_asked_for(
    universe: Universe, wheel_index: WheelIndex, micromamba: str
) -> None:
    """conda-lock adds pip to the conda side of every environment with PyPI packages; envcore's environments
    hold pip only when asked for (or needed), whatever the resolver, so it is left out."""
    resolver = _resolver(universe, METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE=micromamba)
    index = wheel_index.http_url
    found = _versions(resolver.resolve(_request(universe, index, ("fx-core",), ("fx-web",))))
    assert "pip" not in found and found["fx-web"][1] == "pypi", found
    asked = _versions(resolver.resolve(_request(universe, index, ("fx-core", "pip"), ("fx-web",))))
    assert asked["pip"][1] == "conda", asked


def test_errors_name_the_package(universe: Universe, wheel_index: WheelIndex, micromamba: str) -> None:
    resolver = _resolver(universe, METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE=micromamba)
    index = wheel_index.http_url
    with pytest.raises(
        ResolutionError, match=r"cannot be resolved .* fx-pipnosuch \(\*\) which doesn't match"
    ):
        resolver.resolve(_request(universe, index, ("fx-app",), ("fx-pipnosuch",)))
    with pytest.raises(ResolutionError, match=r"conda requirements cannot be resolved .*fx-core ==9\.9\.9"):
        resolver.resolve(_request(universe, index, ("fx-core==9.9.9",), ("fx-extras",)))
    with pytest.raises(ConfigError, match=r"not an http\(s\) URL.*rattler-uv"):  # refused before running
        resolver.resolve(_request(universe, wheel_index.simple_url, ("fx-app",), ("fx-extras",)))
    # a pin of a release too new for the target's glibc: named, for the python the conda side chose
    pinned = _request(universe, index, (), ("fx-glibc==3.0.0",), arch="linux-aarch64")
    glibc = Requirement(category=SYS, name="__glibc", spec="2.27")
    with pytest.raises(ResolutionError) as refused:
        resolver.resolve(replace(pinned, requirements=(*pinned.requirements, glibc)))
    python = ".".join(map(str, sys.version_info[:2]))
    assert f"for linux-aarch64 (python {python}." in refused.value.message, refused.value.message
    assert "the wheels of fx-glibc 3.0.0 (glibc 2.28) need a newer glibc" in refused.value.message


def test_an_http_url_requirement_is_refused_by_name(
    universe: Universe, wheel_index: WheelIndex, micromamba: str
) -> None:
    """conda-lock took an http:// requirement URL for a local path: 'ValueError: Path /tmp/envcore-conda-lock-.../http:/
    127.0.0.1:.../fx_core-1.0.0-py3-none-any.whl for fx-core does not exist'. It is refused, saying which URLs work."""
    resolver = _resolver(universe, METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE=micromamba)
    request = _request(universe, wheel_index.http_url, ("fx-native",), ("fx-http",))
    url = wheel_index.http_url.rstrip("/").rsplit("/", 1)[0] + "/wheels/fx_core-1.0.0-py3-none-any.whl"
    direct = Requirement(category=PYPI, name="fx-core", url=url)
    with pytest.raises(ResolutionError, match=r"cannot take fx-core @ http://.*https://.*rattler-uv"):
        resolver.resolve(replace(request, requirements=(*request.requirements, direct)))


def test_foreign_platform_mixed(universe: Universe, wheel_index: WheelIndex, micromamba: str) -> None:
    resolver = _resolver(universe, METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE=micromamba)
    packages = resolver.resolve(
        _request(universe, wheel_index.http_url, ("fx-ffmpeg",), ("fx-native",), arch="osx-arm64")
    )
    by_name = {p.name: p for p in packages}
    assert by_name["fx-ffmpeg"].subdir == "osx-arm64" and by_name["python"].subdir == "osx-arm64"
    assert (
        "macosx_11_0_arm64" in by_name["fx-native"].filename and by_name["fx-native"].kind is PackageKind.PYPI
    )


@pytest.mark.parametrize(("arch", "core"), [("linux-64", "1.1.0"), ("osx-arm64", "2.0.0")])
def test_a_requirement_for_another_platform_does_not_choose_versions(
    universe: Universe, wheel_index: WheelIndex, micromamba: str, arch: str, core: str
) -> None:
    """conda-lock's PyPI lock is universal: a requirement whose marker is false for the target (fx-core<2 on
    x86_64 only) held fx-core at 1.1.0 for osx-arm64 too, where rattler-uv takes 2.0.0. It is left out there."""
    resolver = _resolver(universe, METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE=micromamba)
    request = _request(universe, wheel_index.http_url, (), ("fx-http==1.2.0",), arch=arch)
    marked = Requirement(category=PYPI, name="fx-core", spec="<2", marker="platform_machine == 'x86_64'")
    packages = resolver.resolve(replace(request, requirements=(*request.requirements, marked)))
    assert _versions(packages)["fx-core"] == (core, "pypi")


def test_name_lookup_setting(
    universe: Universe, wheel_index: WheelIndex, micromamba: str, tmp_path: Path
) -> None:
    """fx-pyyaml (PyPI) is fx-yaml on conda: with a lookup saying so, conda-lock itself knows that conda's
    package satisfies the wheel's requirement; without one, envcore matches them by the files of fx-yaml (before,
    both were installed). No second copy of the module either way."""
    request = _request(universe, wheel_index.http_url, ("fx-app",), ("fx-extras",))
    plain = _resolver(
        universe,
        METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE=micromamba,
        METAFLOW_ENVCORE_CACHE_DIR=str(tmp_path / "c"),
    ).resolve(request)
    assert "fx-pyyaml" not in _versions(plain)
    lookup = tmp_path / "lookup.json"
    lookup.write_text(json.dumps({"fx-pyyaml": {"conda_name": "fx-yaml", "pypi_name": "fx-pyyaml"}}))
    mapped = _resolver(
        universe,
        METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE=micromamba,
        METAFLOW_ENVCORE_CONDA_LOCK_PYPI_TO_CONDA_LOOKUP=str(lookup),
    ).resolve(request)
    found = _versions(mapped)
    assert (
        "fx-pyyaml" not in found
        and found["fx-yaml"] == ("6.0.1", "conda")
        and found["fx-extras"][1] == "pypi"
    )


def _logging_wrapper(path: Path, target: list[str], log: Path) -> Path:
    """An executable that records its argv and environment, then runs ``target``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(f"'{a}'" for a in target)
    path.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {log}.argv\nenv >> {log}.env\nexec {command} "$@"\n')
    path.chmod(0o755)
    return path


def test_credentials_stay_off_command_lines_and_results(
    universe: Universe,
    auth_channel: AuthEndpoint,
    auth_wheel_index: AuthEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    temp = tmp_path / "tmp"  # this test's own: other tests' resolvers make and remove theirs meanwhile
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    exe = write_conda_cli(tmp_path / "real", "micromamba")
    micromamba = _logging_wrapper(tmp_path / "bin" / "micromamba", [str(exe)], tmp_path / "tool")
    conda_lock = _logging_wrapper(
        tmp_path / "cl" / "conda-lock", [sys.executable, "-m", "conda_lock"], tmp_path / "conda-lock"
    )
    resolver = _resolver(
        universe,
        METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE=str(micromamba),
        METAFLOW_ENVCORE_CONDA_LOCK_EXE=str(conda_lock),
    )
    host = urlsplit(auth_channel.url).hostname or ""
    secret = auth_channel.password
    good = _request(
        universe,
        auth_wheel_index.url,
        ("fx-http==1.1.0",),
        ("fx-extras",),
        channel=auth_channel.url,
        **{host: (auth_channel.user, secret)},
    )
    packages = resolver.resolve(good)
    assert _versions(packages)["fx-extras"][1] == "pypi" and _versions(packages)["fx-core"] == (
        "1.1.0",
        "conda",
    )
    assert all(secret not in f.url and "@" not in f.url for p in packages for f in p.files)
    argv = (tmp_path / "tool.argv").read_text() + (tmp_path / "conda-lock.argv").read_text()
    assert secret not in argv and "--strip-auth" in argv and "lock" in argv
    env = (tmp_path / "tool.env").read_text()
    assert "NETRC=" in env and "METAFLOW_" not in env
    bad = _request(
        universe,
        auth_wheel_index.url,
        ("fx-http==1.1.0",),
        channel=auth_channel.url,
        **{host: (auth_channel.user, "not-the-password")},
    )
    with pytest.raises(ResolutionError) as err:
        resolver.resolve(bad)
    assert "not-the-password" not in err.value.message and "\n" not in err.value.message
    assert not list(temp.glob("envcore-conda-lock-*"))  # temp dirs removed


def test_missing_executable_fails_fast(
    universe: Universe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a conda-compatible executable conda-lock would retry downloading conda-standalone for ~63 s."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no micromamba, mamba or conda anywhere
    resolver = _resolver(universe)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as err:
        resolver.resolve(_request(universe, "http://127.0.0.1:9/simple/", ("fx-app",), ("fx-extras",)))
    assert time.monotonic() - started < 5
    message = err.value.message
    assert (
        "\n" not in message and "no `micromamba`, `mamba` or `conda` executable was found on PATH" in message
    )
    assert "METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE" in message and "conda-standalone" in message
    with pytest.raises(BackendUnavailable, match="not an executable file"):
        _resolver(universe, METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE=str(tmp_path / "nope")).check()
    broken = tmp_path / "micromamba"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    with pytest.raises(BackendUnavailable, match=r"did not report a version \(exit 3"):
        _resolver(universe, METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE=str(broken)).check()


def test_end_to_end_through_the_envcore_command(
    universe: Universe, wheel_index: WheelIndex, micromamba: str, tmp_path: Path
) -> None:
    chosen = {
        "METAFLOW_CONDA_MIXED_DEPENDENCY_RESOLVER": "conda-lock",
        "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": wheel_index.http_url,
        "METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE": micromamba,
    }
    args = ("resolve", "--conda", "fx-vintage", "--pypi", "fx-extras", "--alias", "team/cl:v1")
    out = envcore_on(tmp_path, "a", universe, *args, **chosen, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "Environment of type mixed" in out.stdout and "conda-lock 4.0.0" in out.stdout + out.stderr
    made = envcore_on(tmp_path, "b", universe, "create", "team/cl:v1", "--name", "w", timeout=600)
    assert made.returncode == 0, made.stderr
    python = tmp_path / "b" / "cache" / "envs" / "w" / "bin" / "python"
    code = "import fx_vintage, fx_extras; print(fx_vintage.__version__, fx_extras.__version__)"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["0.9.0", "0.4.0"], done.stderr
    started = time.monotonic()
    missing = envcore_on(
        tmp_path,
        "a",
        universe,
        "resolve",
        "--conda",
        "fx-web",
        "--pypi",
        "fx-extras",
        **{**chosen, "PATH": "/usr/bin:/bin", "METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE": ""},
        timeout=600,
    )
    assert missing.returncode != 0 and "no `micromamba`, `mamba` or `conda` executable" in missing.stderr
    assert time.monotonic() - started < 30


@pytest.mark.skipif(
    REAL_TOOL is None,
    reason="no real micromamba, mamba or conda: set ENVCORE_TEST_REAL_MICROMAMBA (or _MAMBA, _CONDA) to its "
    "executable or put one on PATH",
)
def test_real_binary(universe: Universe, wheel_index: WheelIndex) -> None:
    resolver = _resolver(
        universe, PATH=os.environ["PATH"], METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE=str(REAL_TOOL)
    )
    resolver.check()
    packages = resolver.resolve(_request(universe, wheel_index.http_url, ("fx-http==1.1.0",), ("fx-extras",)))
    found = _versions(packages)
    assert found["fx-core"] == ("1.1.0", "conda") and found["fx-extras"][1] == "pypi"
    assert all(len(f.sha256) == 64 for p in packages for f in p.files)


def test_virtual_packages_reach_conda_lock(
    universe: Universe, wheel_index: WheelIndex, micromamba: str
) -> None:
    """The request's __glibc is what the solver sees: below what python needs, the solve fails naming it."""
    resolver = _resolver(universe, METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE=micromamba)
    request = _request(universe, wheel_index.http_url, ("fx-native",), arch="linux-64")
    old = ResolveRequest(
        arch="linux-64",
        requirements=(*request.requirements, Requirement(category=SYS, name="__glibc", spec="2.12=0")),
        sources=request.sources,
    )
    with pytest.raises(ResolutionError, match=r"python [\d.]+ would require __glibc >=2\.17"):
        resolver.resolve(old)


def test_an_environment_is_extended_keeping_its_packages_at_their_builds(
    universe: Universe, wheel_index: WheelIndex, micromamba: str
) -> None:
    """``--using`` pins each base package as "VERSION BUILD" (``fx-core 1.1.0 py_0``). Before, conda-lock passed
    that on as is, the solver refused it ('missing range specifier'), and extending failed as 'the new
    requirements need different packages' while none differed."""
    from envcore_conda_lock.resolver import conda_spec

    assert (
        conda_spec(Requirement(category=CONDA, name="fx-core", spec="1.1.0 py_0")) == "fx-core ==1.1.0 py_0"
    )
    resolver = _resolver(universe, METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE=micromamba)
    request = _request(universe, wheel_index.http_url, ("fx-core==1.1.0 py_0", "fx-http"))
    found = _versions(resolver.resolve(request))
    assert found["fx-core"] == ("1.1.0", "conda") and "fx-http" in found


@pytest.mark.parametrize("given", ["folder", "conda"])
def test_a_conda_lock_setting_that_names_no_conda_lock_is_named(
    universe: Universe, tmp_path: Path, given: str
) -> None:
    """Before: a folder got the conda binary's fix (install micromamba ...), and a script printing 'conda 24.1.0'
    was taken for conda-lock 24.1.0."""
    exe = tmp_path
    if given == "conda":
        exe = tmp_path / "conda"
        exe.write_text('#!/bin/sh\necho "conda 24.1.0"\n')
        exe.chmod(0o755)
    resolver = _resolver(universe, METAFLOW_ENVCORE_CONDA_LOCK_EXE=str(exe))
    with pytest.raises(BackendUnavailable) as caught:
        resolver.conda_lock()  # type: ignore[attr-defined]
    message = caught.value.message
    assert "Point" in message and "at a conda-lock executable" in message and "micromamba" not in message
