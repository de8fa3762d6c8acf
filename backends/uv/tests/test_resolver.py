"""The uv resolver beyond the kit: what it asks of this machine."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import envcore_uv.resolver
import pytest

from envcore import pypi, resolve, specs
from envcore.errors import ResolutionError
from envcore.plugins import build_registry
from envcore.testing.channel import Universe
from envcore.testing.fixtures import universe_config
from envcore.types import ResolveRequest


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


def test_uv_gets_its_files_in_a_scratch_folder_only_when_it_needs_any(
    universe: Universe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The requirements go to uv on stdin and its lock comes back on stdout: a PyPI-only resolve without
    credentials writes no file (before: a scratch folder with three files and a lock, on every resolve). The
    constraints of the conda side's Python packages (conda's fx-yaml installs the distribution fx-pyyaml) and
    credentials are files, in a scratch folder removed afterwards."""
    made: list[Path] = []
    real = envcore_uv.resolver.scratch_folder

    @contextlib.contextmanager
    def recorded(kind: str) -> Iterator[str]:
        with real(kind) as folder:
            made.append(Path(folder))
            yield folder

    monkeypatch.setattr(envcore_uv.resolver, "scratch_folder", recorded)
    config = universe_config(universe, tmp_path)
    registry = build_registry(config)

    def versions(spec: specs.Spec, *names: str) -> dict[str, str]:
        env = resolve.resolve(registry, resolve.build_request(spec, config, "linux-64"))
        return {p.name: p.version for p in env.packages if p.name in names}

    pypi_only = specs.from_decorator(packages={"fx-extras": ""})
    assert versions(pypi_only, "fx-extras", "fx-pyyaml") == {"fx-extras": "0.4.0", "fx-pyyaml": "6.0.1"}
    assert made == []
    mixed = specs.merge(specs.from_decorator(libraries={"fx-yaml": "5.4.0"}), pypi_only)
    assert versions(mixed, "fx-extras") == {"fx-extras": "0.3.0"}  # 0.4.0 needs fx-pyyaml>=6
    assert len(made) == 1 and not made[0].exists(), made


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


def test_two_linux_archs_resolved_together_take_wheels_for_their_shared_glibc(
    universe: Universe, tmp_path: Path
) -> None:
    """Resolved together, linux-64 and linux-aarch64 share the lower glibc (2.27, aarch64's default). fx-glibc
    2.0.0 publishes manylinux_2_27 wheels (also tagged 2_28, as numpy's are), 3.0.0 manylinux_2_28 ones only. uv
    knows the targets 2_17 and 2_28, not 2_27: rounded down, both archs took 1.0.0 without a word; rounded up
    without a check, 3.0.0, whose wheels glibc 2.27 cannot load (linux-64 built it from its sdist)."""
    config = universe_config(universe, tmp_path)
    spec = specs.from_decorator(packages={"fx-glibc": ""})
    archs = ("linux-64", "linux-aarch64")
    for arch in archs:
        request = resolve.build_request(spec, config, arch, coresolved=archs)
        env = resolve.resolve(build_registry(config), request)
        chosen = [(p.version, p.filename) for p in env.packages if p.name == "fx-glibc"]
        cpu = "x86_64" if arch == "linux-64" else "aarch64"
        assert chosen == [("2.0.0", f"fx_glibc-2.0.0-{_cp()}-manylinux_2_27_{cpu}.manylinux_2_28_{cpu}")], (
            chosen
        )


@pytest.mark.parametrize("glibc", ["2.27", "2.17"])  # a value uv rounds up to 2_28; one it has (2_17)
def test_a_release_too_new_for_a_lowered_local_glibc_is_left_out_for_one_with_wheels(
    universe: Universe, tmp_path: Path, glibc: str
) -> None:
    """This machine's arch asked for an older glibc: a release whose wheels need a newer one is left out for
    the newest with wheels that fit, not built here from its sdist (a wheel built here would need this
    machine's glibc). Pinned, it is refused with the glibc it needs, as pip refuses it (it was built)."""
    config = universe_config(universe, tmp_path)
    arch = resolve.local_arch()
    if arch != "linux-64":
        pytest.skip(f"fx-glibc's wheels are for linux-64 and linux-aarch64; this machine is {arch}")

    def request(pin: str) -> ResolveRequest:
        spec = specs.from_decorator(packages={"fx-glibc": pin}, sys_packages={"__glibc": glibc})
        return resolve.build_request(spec, config, arch)

    env = resolve.resolve(build_registry(config), request(""))
    chosen = [(p.version, p.filename.split("-")[-1]) for p in env.packages if p.name == "fx-glibc"]
    fits = {
        "2.27": ("2.0.0", "manylinux_2_27_x86_64.manylinux_2_28_x86_64"),
        "2.17": ("1.0.0", "manylinux_2_17_x86_64.manylinux2014_x86_64"),
    }
    assert chosen == [fits[glibc]], chosen
    with pytest.raises(ResolutionError) as refused:
        resolve.resolve(build_registry(config), request("3.0.0"))
    assert "the wheels of fx-glibc 3.0.0 (glibc 2.28) need a newer glibc" in refused.value.message


def test_a_pin_without_wheels_for_the_target_says_the_glibc_its_wheels_need(
    universe: Universe, tmp_path: Path
) -> None:
    """At glibc 2.17 (a manylinux target uv has, so not rounded), uv says only that fx-glibc==3.0.0 'has no
    usable wheels' and blamed sdists: the index page shows its wheels need glibc 2.28, which is said."""
    config = universe_config(universe, tmp_path)
    spec = specs.from_decorator(packages={"fx-glibc": "3.0.0"}, sys_packages={"__glibc": "2.17"})
    with pytest.raises(ResolutionError) as refused:
        resolve.resolve(build_registry(config), resolve.build_request(spec, config, "linux-aarch64"))
    assert "the wheels of fx-glibc 3.0.0 (glibc 2.28) need a newer glibc" in refused.value.message
    assert "--sys-pkg __glibc==2.28" in refused.value.message


@pytest.mark.parametrize("rounds", [2, 1])
def test_a_find_links_folder_gives_every_release_too_new_at_once(
    universe: Universe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rounds: int
) -> None:
    """From a --find-links folder (no index page), fx-glibc 3.0.0 and 2.0.0, both too new for glibc 2.24, are
    left out together from the folder's files: two uv runs, not one a release (a real-PyPI user's folder of 25
    such releases hit the limit of rounds). At the limit, the refusal says it is the limit and names the older
    releases that may fit, not 'no other version fits'."""
    monkeypatch.setattr(pypi, "TOO_NEW_ROUNDS", rounds)
    config = universe_config(universe, tmp_path)
    spec = specs.from_decorator(
        packages={"fx-glibc": ""},
        sys_packages={"__glibc": "2.24"},
        extras=("--no-index", f"--find-links {universe.wheels_dir}"),
    )
    request = resolve.build_request(spec, config, "linux-aarch64")
    if rounds == 2:
        env = resolve.resolve(build_registry(config), request)
        assert [p.version for p in env.packages if p.name == "fx-glibc"] == ["1.0.0"]
        return
    with pytest.raises(ResolutionError) as refused:
        resolve.resolve(build_registry(config), request)
    message = refused.value.message
    # the release of fx-kernels 3.0.0 brought is told apart: fx-glibc is the pin to change
    assert (
        "left out 2 releases of fx-glibc (and 1 of the dependency fx-kernels) whose wheels need" in message
    ), message
    assert "stopped after 1 resolutions" in message and "fit: fx-glibc<2.0.0. Pin" in message, message
    assert "no other version fits" not in message, message


def _cp() -> str:
    return f"cp{sys.version_info[0]}{sys.version_info[1]}-cp{sys.version_info[0]}{sys.version_info[1]}"


@pytest.mark.parametrize(
    ("program", "problem"),
    [
        ("#!/bin/sh\nexit 3\n", "--version` did not report a uv version (exit 3: no output)."),
        (
            "#!/bin/sh\necho 'uv: broken' >&2; exit 2\n",
            "--version` did not report a uv version (exit 2: uv: broken).",
        ),
        ("not a program", "--version` could not start: Exec format error."),
        (None, "(from env var), which is not an executable file."),  # a folder
    ],
)
def test_a_configured_uv_that_cannot_run_is_named_with_its_setting(
    tmp_path: Path, program: str | None, problem: str
) -> None:
    from envcore.config import Config
    from envcore.errors import BackendUnavailable

    exe = tmp_path / "uv"
    if program is None:
        exe.mkdir()
    else:
        exe.write_text(program)
        exe.chmod(0o755)
    config = Config.load(
        environ={"METAFLOW_ENVCORE_UV_EXE": str(exe), "METAFLOW_ENVCORE_CACHE_DIR": str(tmp_path)}
    )
    with pytest.raises(BackendUnavailable) as info:
        envcore_uv.resolver.UvResolver(config).check()
    assert problem in info.value.message
    assert info.value.message.endswith(
        "Set METAFLOW_ENVCORE_UV_EXE to the path of a uv executable, or unset it to use the uv that the "
        "envcore-uv distribution brings."
    )
