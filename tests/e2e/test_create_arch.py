"""``envcore create --arch``: an environment resolved for another architecture, created beside this machine's
(its own prefix and marker); one that cannot run here only when nothing of it has to run to install it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from envcore_rattler.installer import RattlerInstaller

from envcore import platforms
from envcore.config import Config
from envcore.environments import Environments
from envcore.errors import UsageError
from envcore.plugins import build_registry
from envcore.resolve import local_arch

from ..conftest import env_ids

Run = Callable[..., subprocess.CompletedProcess[str]]

OTHER = "linux-aarch64" if local_arch() == "linux-64" else "linux-64"  # cannot run here


def test_a_conda_environment_of_another_arch_is_created_beside_this_machines(
    run: Run, world: dict[str, Path]
) -> None:
    out = run("resolve", "--conda", "fx-app", "--arch", local_arch(), "--arch", OTHER)
    refs = env_ids(out.stdout)
    assert len(set(refs)) == 1  # resolved together: one full id for both archs
    ref = refs[0]
    envs = world["b"] / "cache" / "envs"
    here = run("create", ref, machine="b")
    foreign = run("create", ref, "--arch", OTHER, machine="b")
    name = f"metaflowtmp_{ref.replace(':', '_')}"
    assert f"Environment {ref} for {OTHER} created at {envs / f'{name}_{OTHER}'}" in foreign.stdout
    assert f"it runs on a {OTHER} machine at this same path" in foreign.stdout
    assert str(envs / name) in here.stdout
    for prefix, arch in ((envs / name, local_arch()), (envs / f"{name}_{OTHER}", OTHER)):
        assert json.loads((prefix / ".metaflowenv").read_text()) == [*ref.split(":"), arch]
        records = [json.loads(p.read_text()) for p in (prefix / "conda-meta").glob("*.json")]
        assert {r["name"] for r in records} >= {"fx-app", "python"}
        assert {r["subdir"] for r in records} <= {arch, "noarch"}
    again = run("create", ref, "--arch", OTHER, machine="b")
    assert "already exists and is complete" in again.stdout
    # the local environment's prefix is never taken for the other arch's
    refused = run("create", ref, "--arch", OTHER, "--name", name, check=False, machine="b")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"holds a different environment ({ref} for {local_arch()})" in " ".join(refused.stderr.split())
    assert json.loads((envs / name / ".metaflowenv").read_text())[2] == local_arch()


def test_another_arch_with_pypi_packages_is_refused_naming_what_to_do(
    run: Run, world: dict[str, Path]
) -> None:
    (ref,) = env_ids(run("resolve", "--pypi", "fx-core", "--arch", OTHER).stdout)
    out = run("create", ref, "--arch", OTHER, check=False, machine="b")
    message = " ".join(out.stderr.split())
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"Environment {ref} for {OTHER} cannot be created on this {local_arch()} machine" in message
    assert "PyPI package(s) are installed by the environment's own python" in message
    assert f"Create it on a {OTHER} machine" in message
    assert not list((world["b"] / "cache").glob("envs/*"))  # nothing was fetched or made
    unknown = run("create", ref, "--arch", "amiga-68k", check=False, machine="b")
    assert unknown.returncode != 0 and "Unknown architecture 'amiga-68k'" in unknown.stderr


def test_a_refusal_of_another_arch_resolved_for_this_one_too_says_to_create_that(run: Run) -> None:
    """Before, it said to resolve the environment for this machine's architecture, for which it was resolved
    already (co-resolved: one full id for both)."""
    (ref, _) = env_ids(run("resolve", "--pypi", "fx-core", "--arch", local_arch(), "--arch", OTHER).stdout)
    out = run("create", ref, "--arch", OTHER, check=False, machine="b")
    message = " ".join(out.stderr.split())
    assert out.returncode == 2 and f"Create it on a {OTHER} machine" in message
    assert f"or create it for {local_arch()}, for which it was resolved too (leave out --arch)." in message
    assert "envcore resolve --from" not in message


def test_an_environment_not_resolved_for_the_arch_says_so(run: Run) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-core").stdout)
    out = run("create", ref, "--arch", OTHER, check=False, machine="b")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"is not available for {OTHER}" in " ".join(out.stderr.split())


def test_only_an_installer_that_runs_nothing_installs_another_arch(
    run: Run,
    machine_env: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    world: dict[str, Path],
) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-core", "--arch", OTHER).stdout)
    for name, value in machine_env("a").items():
        if name.startswith("METAFLOW_"):
            monkeypatch.setenv(name, value)
    monkeypatch.delattr(RattlerInstaller, "installs_any_arch")  # as a plugin's installer that does not say it
    envs = Environments(build_registry(Config.load()))
    env = envs.find(ref, OTHER)
    with pytest.raises(UsageError) as caught:
        envs.create(env, envs.prefix_for(env, "x"), any_arch=True)
    assert "its conda installer (RattlerInstaller) may run the packages' link scripts" in caught.value.message
    with pytest.raises(UsageError) as caught:  # a step's environment (no --arch) is never one of another arch
        envs.create(env, envs.prefix_for(env, None))
    assert f"is for {OTHER}; this machine is {local_arch()}" in caught.value.message
    assert not list((world["a"] / "cache").glob("envs/*"))


@pytest.mark.parametrize(
    ("here", "arch", "runs"),
    [("osx-arm64", "osx-64", True), ("osx-64", "osx-arm64", False), ("linux-64", "linux-aarch64", False)],
)
def test_what_runs_here(monkeypatch: pytest.MonkeyPatch, here: str, arch: str, runs: bool) -> None:
    monkeypatch.setattr(platforms, "local_arch", lambda: here)
    assert platforms.runs_here(arch) is runs and platforms.runs_here(here)
