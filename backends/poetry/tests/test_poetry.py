"""envcore-poetry beyond the kit: errors a user meets, credentials, and the main job end to end through the
``envcore`` command with ``METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER=poetry`` against an index on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from envcore_poetry.resolver import PoetryResolver

from envcore.config import Config
from envcore.errors import BackendUnavailable, ConfigError, ResolutionError
from envcore.plugins import build_registry, has_credentials
from envcore.testing.channel import Universe
from envcore.testing.fixtures import AuthEndpoint, WheelIndex
from envcore.testing.servers import ServedDirectory, serve_directory
from envcore.types import PYPI, Requirement, Resolver, ResolveRequest

ENVCORE = str(Path(sys.executable).with_name("envcore"))
PYTHON = ".".join(map(str, sys.version_info[:3]))


@pytest.fixture
def resolver() -> Resolver:
    return build_registry(Config.load(environ={"HOME": os.environ["HOME"]})).resolver_named("poetry")


def request_for(*specs: str, index: str, arch: str = "linux-64", **kwargs: object) -> ResolveRequest:
    reqs = tuple(Requirement(category=PYPI, name=n, spec=s) for n, _, s in (x.partition("==") for x in specs))
    return ResolveRequest(
        arch=arch,
        requirements=reqs,
        sources={PYPI: (index,)},
        python_version=PYTHON,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_file_index_is_one_clear_paragraph(resolver: Resolver, wheel_index: WheelIndex) -> None:
    with pytest.raises(ConfigError) as caught:
        resolver.resolve(request_for("fx-core", index=wheel_index.simple_url))
    message = caught.value.message
    assert wheel_index.simple_url in message and "http(s)" in message and "\n" not in message
    assert (
        "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE" in message
        and "METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER=uv" in message
    )


def test_find_links_is_refused_by_name(resolver: Resolver, wheel_index: WheelIndex) -> None:
    request = request_for(
        "fx-core", index=wheel_index.http_url, extras={PYPI: (f"--find-links {wheel_index.find_links}",)}
    )
    with pytest.raises(ResolutionError, match="--find-links"):
        resolver.resolve(request)


def test_conflict_names_both_packages_in_one_paragraph(resolver: Resolver, wheel_index: WheelIndex) -> None:
    with pytest.raises(ResolutionError) as caught:
        resolver.resolve(request_for("fx-legacy", "fx-modern", index=wheel_index.http_url))
    message = caught.value.message
    assert "fx-legacy is incompatible with fx-modern" in message and "fx-core" in message
    assert "envcore-request" not in message and "Resolving dependencies" not in message


def test_universal_lock_gives_each_platform_its_wheel(resolver: Resolver, wheel_index: WheelIndex) -> None:
    names = {
        arch: {
            p.name: p.filename
            for p in resolver.resolve(request_for("fx-native", index=wheel_index.http_url, arch=arch))
        }
        for arch in ("linux-64", "osx-arm64")
    }
    assert (
        "manylinux" in names["linux-64"]["fx-native"]
        and "macosx_11_0_arm64" in names["osx-arm64"]["fx-native"]
    )
    with pytest.raises(ResolutionError, match=r"fx-native 1\.0\.0 has no wheel for win-64"):
        resolver.resolve(request_for("fx-native", index=wheel_index.http_url, arch="win-64"))


def test_a_source_distribution_is_locked_for_this_machine_only(
    resolver: Resolver, wheel_index: WheelIndex
) -> None:
    """fx-src publishes only an sdist: locked as one for this machine's architecture (the core builds it into a
    wheel, as for the other PyPI resolvers), refused with the reason for another."""
    from envcore.resolve import local_arch

    (src,) = [
        p
        for p in resolver.resolve(request_for("fx-src", index=wheel_index.http_url, arch=local_arch()))
        if p.name == "fx-src"
    ]
    assert src.is_sdist and src.source.url.endswith("fx_src-0.9.0.tar.gz") and len(src.source.sha256) == 64
    other = "osx-arm64" if local_arch() != "osx-arm64" else "linux-64"
    with pytest.raises(
        ResolutionError, match="builds source distributions only for this machine's architecture"
    ):
        resolver.resolve(request_for("fx-src", index=wheel_index.http_url, arch=other))


def test_markers_and_pre_releases(resolver: Resolver, wheel_index: WheelIndex) -> None:
    reqs = (
        Requirement(category=PYPI, name="fx-core"),
        Requirement(category=PYPI, name="fx-web", spec="2.0.0", marker="sys_platform == 'win32'"),
    )
    request = ResolveRequest(
        arch="linux-64",
        requirements=reqs,
        sources={PYPI: (wheel_index.http_url,)},
        python_version=PYTHON,
        extras={PYPI: ("--pre",)},
    )
    assert {p.name: p.version for p in resolver.resolve(request)} == {"fx-core": "2.1.0rc1"}


@pytest.mark.parametrize(("arch", "core"), [("linux-64", "1.1.0"), ("osx-arm64", "2.0.0")])
def test_a_requirement_for_another_platform_does_not_choose_versions(
    resolver: Resolver, wheel_index: WheelIndex, arch: str, core: str
) -> None:
    """poetry's lock is universal: a requirement whose marker is false for the target (fx-core<2 on x86_64 only)
    held fx-core at 1.1.0 for osx-arm64 too, where uv and pip take 2.0.0. It is left out for such a target."""
    reqs = (
        Requirement(category=PYPI, name="fx-http", spec="1.2.0"),
        Requirement(category=PYPI, name="fx-core", spec="<2", marker="platform_machine == 'x86_64'"),
    )
    request = ResolveRequest(
        arch=arch, requirements=reqs, sources={PYPI: (wheel_index.http_url,)}, python_version=PYTHON
    )
    assert {p.name: p.version for p in resolver.resolve(request)} == {"fx-http": "1.2.0", "fx-core": core}


def test_an_index_that_does_not_answer_is_named_as_such(resolver: Resolver) -> None:
    """poetry's 'All attempts to connect to HOST failed' came as 'The PyPI requirements cannot be resolved ...
    Change the requirement named above', with poetry's own advice (run your poetry command with -v)."""
    from envcore.testing.servers import free_port

    with pytest.raises(ResolutionError) as info:
        resolver.resolve(request_for("fx-core", index=f"http://127.0.0.1:{free_port()}/simple/"))
    message = info.value.message
    assert message.startswith(
        "The PyPI index could not be read while resolving for linux-64 with poetry: All "
        "attempts to connect to 127.0.0.1:"
    ), message
    assert "check the network" in message and "Change the requirement" not in message and "-v" not in message


def test_credentials_never_leak(resolver: Resolver, auth_wheel_index: AuthEndpoint, tmp_path: Path) -> None:
    good = request_for(
        "fx-http==1.1.0",
        index=auth_wheel_index.url,
        credentials={"127.0.0.1": ("envcore", auth_wheel_index.password)},
    )
    packages = resolver.resolve(good)
    assert {p.name for p in packages} == {"fx-http", "fx-core"}
    assert not any(
        has_credentials(f.url) or auth_wheel_index.password in f.url for p in packages for f in p.files
    )
    wrong = request_for(
        "fx-http", index=auth_wheel_index.url, credentials={"127.0.0.1": ("envcore", "not-the-one-42")}
    )
    with pytest.raises(ResolutionError) as caught:
        resolver.resolve(wrong)
    assert "not-the-one-42" not in caught.value.message and "fx-http" in caught.value.message


def test_missing_poetry_names_the_fix(wheel_index: WheelIndex, tmp_path: Path) -> None:
    script = tmp_path / "poetry"
    script.write_text("echo not a python script\n")
    config = Config.load(environ={"HOME": os.environ["HOME"], "METAFLOW_ENVCORE_POETRY_EXE": str(script)})
    with pytest.raises(BackendUnavailable, match="METAFLOW_ENVCORE_POETRY_EXE"):
        PoetryResolver(config).check()


def test_another_poetry_script_is_used(wheel_index: WheelIndex) -> None:
    script = Path(sys.executable).with_name("poetry")
    config = Config.load(environ={"HOME": os.environ["HOME"], "METAFLOW_ENVCORE_POETRY_EXE": str(script)})
    resolver = PoetryResolver(config)
    resolver.check()
    assert [p.name for p in resolver.resolve(request_for("fx-core==1.1.0", index=wheel_index.http_url))] == [
        "fx-core"
    ]


# --- end to end through the envcore command -------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path, universe: Universe) -> Iterator[ServedDirectory]:
    """A private copy of the universe, its index served over http until the test ends."""
    copy = tmp_path / "universe"
    shutil.copytree(universe.root, copy, symlinks=True)
    with serve_directory(copy) as server:
        yield server


@pytest.fixture
def run(tmp_path: Path, served: ServedDirectory) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, machine: str = "a") -> subprocess.CompletedProcess[str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("METAFLOW_", "CONDA_", "UV_", "PIP_", "POETRY_"))
        }
        env.update(
            METAFLOW_HOME=str(tmp_path / machine / "mfhome"),
            METAFLOW_CONDA_LOCALROOT=str(tmp_path / "store"),
            METAFLOW_CONDA_CHANNELS=(served.root / "channel").as_uri(),
            METAFLOW_CONDA_DEFAULT_PYPI_SOURCE=f"{served.url}/simple/",
            METAFLOW_ENVCORE_CACHE_DIR=str(tmp_path / machine / "cache"),
            METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER="poetry",
            PIP_CONFIG_FILE=os.devnull,
        )
        done = subprocess.run([ENVCORE, *args], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, f"envcore {args[0]} failed:\n{done.stderr}\n{done.stdout}"
        return done

    return run


@pytest.mark.parametrize(
    ("args", "kind", "code", "expected"),
    [
        (["--pypi", "fx-web==2.0.0"], "pypi-only", "import fx_web; print(fx_web.__version__)", "2.0.0"),
        (
            ["--conda", "fx-app", "--pypi", "fx-extras==0.3.0"],
            "mixed",
            "import fx_extras, fx_core; print(fx_extras.__version__)",
            "0.3.0",
        ),
        (  # conda's fx-core 1.0.0 is pinned and locked again: fx-extras 0.4.0 (fx-core>=1.1) is out
            ["--conda", "fx-core==1.0.0", "--pypi", "fx-extras"],
            "mixed",
            "import fx_extras, fx_core; print(fx_extras.__version__, fx_core.__version__)",
            "0.3.0 1.0.0",
        ),
    ],
)
def test_end_to_end_with_poetry(
    run: Callable[..., subprocess.CompletedProcess[str]],
    served: ServedDirectory,
    tmp_path: Path,
    args: list[str],
    kind: str,
    code: str,
    expected: str,
) -> None:
    out = run("resolve", *args)
    assert f"Environment of type {kind}" in out.stdout and "+ poetry " in out.stdout, out.stdout
    (ref,) = [line.split()[-1] for line in out.stdout.splitlines() if " full hash " in line]
    shutil.rmtree(served.root)  # machine b has only the store
    run("create", ref, "--name", "e", machine="b")
    python = tmp_path / "b" / "cache" / "envs" / "e" / "bin" / "python"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == expected, done.stderr


def test_a_package_poetry_marks_for_no_platform_is_not_installed() -> None:
    """poetry writes ``markers = "<empty>"`` for a package no platform installs (torch's nvidia-cusparse once
    other releases took its place): it was kept for every target, and an osx resolution failed on it."""
    from envcore_poetry.resolver import _for_target

    lock = {
        "package": [
            {"name": "torch", "version": "2.11.0"},
            {"name": "nvidia-cusparse", "version": "12.9.4.2", "markers": "<empty>"},
            {"name": "old", "version": "1", "markers": {"main": "<empty>"}},
            {"name": "linux-only", "version": "1", "markers": 'platform_system == "Linux"'},
        ]
    }
    for arch, kept in (("osx-arm64", ["torch"]), ("linux-64", ["torch", "linux-only"])):
        request = request_for("torch", index="https://example.invalid/simple", arch=arch)
        chosen = _for_target(replace(request, python_version="3.11.7"), lock)
        assert [p["name"] for p in chosen] == kept, arch
