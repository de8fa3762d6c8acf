"""Named environments through the installed ``envcore`` command: alias on machine A, get / create / show by
name on machine B (another HOME, empty caches, same store); extension with --using; remote latest."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envcore.resolve import local_arch

from ..conftest import env_ids, snapshot

Run = Callable[..., subprocess.CompletedProcess[str]]


def test_alias_on_one_machine_create_by_name_on_another(run: Run, world: dict[str, Path]) -> None:
    out = run("resolve", "--conda", "fx-app", "--alias", "team/app:v1", "--alias", "team/app")
    (ref,) = env_ids(out.stdout)
    assert "Aliased as team/app:v1" in out.stderr and "Aliased as team/app:latest" in out.stderr
    shown = run("show", "team/app:v1", machine="b").stdout
    assert f"full hash {ref}" in shown
    assert "Aliases team/app:v1, team/app:latest (mutable)" in shown
    created = run("create", "team/app", "--name", "w", machine="b")
    python = world["b"] / "cache" / "envs" / "w" / "bin" / "python"
    assert str(python.parent.parent) in created.stdout
    done = subprocess.run(
        [python, "-c", "import fx_app; print(fx_app.__version__)"], capture_output=True, text=True
    )
    assert done.stdout.strip() == "1.0.0", done.stderr


def test_immutable_alias_cannot_be_rebound_and_is_checked_before_resolving(
    run: Run, world: dict[str, Path]
) -> None:
    run("resolve", "--conda", "fx-app", "--alias", "team/app:v1")
    before = snapshot(world["store"])
    # the resolver is unreachable: an error that names the alias proves nothing was resolved
    (world["universe"] / "channel").rename(world["universe"] / "gone")
    out = run("resolve", "--conda", "fx-core", "--alias", "team/app:v1", check=False, machine="b")
    assert out.returncode == 1
    assert "'team/app:v1' is not mutable and already refers to" in " ".join(out.stderr.split())
    assert "Nothing was resolved" in " ".join(out.stderr.split())
    assert snapshot(world["store"]) == before


@pytest.mark.parametrize(
    ("alias", "message"),
    [
        ("Team/app", "lowercase alphanumeric"),
        ("/team/app", "must not start or end with '/'"),
        ("team/app:V1", "tag name must contain only"),
        ("step:Flow/1/start", "only names"),
    ],
)
def test_invalid_aliases_are_refused_before_any_resolver_call(
    run: Run, world: dict[str, Path], alias: str, message: str
) -> None:
    (world["universe"] / "channel").rename(
        world["universe"] / "gone"
    )  # a resolver call would fail differently
    out = run("resolve", "--conda", "fx-app", "--alias", alias, check=False)
    assert out.returncode in (1, 2)
    assert message in " ".join(out.stderr.split()), out.stderr
    assert "Traceback" not in out.stderr


def test_alias_an_existing_environment_and_move_latest(run: Run) -> None:
    (first,) = env_ids(run("resolve", "--conda", "fx-core==1.0.0").stdout)
    (second,) = env_ids(run("resolve", "--conda", "fx-core==2.0.0").stdout)
    assert "team/core:stable now refers to" in run("alias", first, "team/core:stable").stdout
    assert f"full hash {first}" in run("show", "team/core:stable", machine="b").stdout
    run("alias", second, "team/core:stable")
    assert f"full hash {second}" in run("show", "team/core:stable", machine="b").stdout  # the store wins
    again = run("alias", "team/core:stable", "team/core:v2")
    assert "team/core:v2 now refers to" in again.stdout
    assert "already referred to" in run("alias", second, "team/core:v2").stdout
    refused = run("alias", first, "team/core:v2", check=False)
    assert refused.returncode == 1 and "is not mutable" in refused.stderr


def test_get_by_name_records_it_as_the_default(run: Run) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-app", "--alias", "team/app:v1").stdout)
    out = run("get", "team/app:v1", "--default", machine="b")
    assert ref in out.stderr + out.stdout
    again = run("resolve", "--conda", "fx-app", machine="b")  # reused: machine b now knows it as the default
    assert env_ids(again.stdout) == [ref]
    assert "Using the existing resolution" in again.stderr


def versions_of(env: dict[str, Any]) -> dict[str, str]:
    return {p["envcore"]["name"]: p["envcore"]["version"] for p in env["packages"]}


def test_extending_a_named_environment_keeps_its_pins(run: Run) -> None:
    base = json.loads(run("resolve", "--conda", "fx-http==1.1.0", "--alias", "team/base:v1", "--json").stdout)
    base_versions = versions_of(base[local_arch()]["env"])
    assert base_versions["fx-core"] == "1.1.0"
    fresh = versions_of(
        json.loads(run("resolve", "--conda", "fx-http", "--json").stdout)[local_arch()]["env"]
    )
    assert fresh["fx-core"] == "2.0.0"  # what a resolution from scratch picks
    out = run("resolve", "--using", "team/base:v1", "--conda", "fx-http", "--json")
    env = json.loads(out.stdout)[local_arch()]["env"]
    versions = versions_of(env)
    assert versions["fx-http"] == "1.2.0"  # the package the user asked to change moved
    assert versions["fx-core"] == "1.1.0" and versions["python"] == base_versions["python"]  # pins kept
    assert "(compatible with " in env["resolved_by"]


def test_a_pin_that_must_change_is_named(run: Run) -> None:
    run("resolve", "--conda", "fx-http==1.1.0", "--alias", "team/base:v1")
    out = run(
        "resolve", "--using", "team/base:v1", "--conda", "fx-http==1.2.0", "--conda", "fx-modern", check=False
    )
    assert out.returncode == 1
    assert "fx-core 1.1.0 -> 2.0.0" in " ".join(out.stderr.split()), out.stderr


@pytest.mark.parametrize(
    ("setting", "user", "expected"),
    [(":any:", "carol", "bob"), (":username:", "alice", "alice"), ("alice,dave", "carol", "alice")],
)
def test_remote_latest_picks_the_newest_matching_resolution(
    run: Run, world: dict[str, Path], setting: str, user: str, expected: str
) -> None:
    out = run("resolve", "--conda", "fx-app", "--json", USERNAME="alice", METAFLOW_USER="alice")
    alice = json.loads(out.stdout)[local_arch()]
    # bob resolved the same requirements later, when the channel had moved on: another full id in the store
    env_dir = world["store"] / "envs" / local_arch() / alice["req_id"]
    bob_full = "b" * 40
    body = json.loads((env_dir / alice["full_id"] / "env").read_text())
    body.update(resolved_by="bob", resolved_on="2099-01-01 00:00:00")
    (env_dir / bob_full).mkdir()
    (env_dir / bob_full / "env").write_text(json.dumps(body))
    full_ids = {"alice": alice["full_id"], "bob": bob_full}
    out = run(
        "resolve",
        "--conda",
        "fx-app",
        machine="b",
        METAFLOW_USER=user,
        METAFLOW_CONDA_USE_REMOTE_LATEST=setting,
    )
    assert env_ids(out.stdout) == [f"{alice['req_id']}:{full_ids[expected]}"]
    assert f"resolved by {expected}" in out.stderr


def test_without_remote_latest_machine_b_resolves_itself(run: Run) -> None:
    run("resolve", "--conda", "fx-app", USERNAME="alice", METAFLOW_USER="alice")
    out = run("resolve", "--conda", "fx-app", machine="b", METAFLOW_USER="carol")
    assert "Resolved 1 environment(s)" in out.stderr


def test_remote_latest_with_a_bad_value_is_a_config_error(run: Run) -> None:
    out = run("resolve", "--conda", "fx-app", check=False, METAFLOW_CONDA_USE_REMOTE_LATEST=":everyone:")
    assert out.returncode == 2
    assert ":none:, :username:, :any: or a comma-separated list" in " ".join(out.stderr.split())
