"""Errors of the environment workflow as users read them: an unusable cache folder, an environment the store
does not hold, a base that cannot be extended, a channel that cannot be read by several environments at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envcore import resolve as resolving
from envcore import specs
from envcore.config import Config
from envcore.environments import Environments
from envcore.errors import ResolutionError
from envcore.platforms import local_arch
from envcore.plugins import build_registry

from ..conftest import Run


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("kind", ["pypi", "conda"])
def test_an_unusable_cache_folder_is_named_before_resolving(
    run: Run, world: dict[str, Path], kind: str
) -> None:
    out = run("resolve", f"--{kind}", "fx-core", "--force", check=False, METAFLOW_ENVCORE_CACHE_DIR="/proc/x")
    message = one_line(out.stderr)
    assert out.returncode == 2, message
    assert (
        "The envcore cache folder /proc/x (set by the environment variable METAFLOW_ENVCORE_CACHE_DIR) cannot "
        "be used: No such file or directory. Set METAFLOW_ENVCORE_CACHE_DIR to a folder" in message
    )
    assert "Traceback" not in message and "requirements cannot be resolved" not in message
    assert "Resolved" not in message  # checked before resolving, not when caching the result

    (world["a"] / "a-file").parent.mkdir(parents=True, exist_ok=True)
    (world["a"] / "a-file").write_text("")
    out = run(
        "resolve", f"--{kind}", "fx-core", check=False, METAFLOW_ENVCORE_CACHE_DIR=str(world["a"] / "a-file")
    )
    assert (
        out.returncode == 2
        and "cannot be used: File exists (it, or a folder above it, is a file)." in one_line(out.stderr)
    )


def test_an_environment_the_store_does_not_hold_is_told_apart_from_one_of_another_arch(run: Run) -> None:
    resolved = json.loads(run("resolve", "--conda", "fx-core", "--json").stdout)[local_arch()]
    req_id, full_id = resolved["req_id"], resolved["full_id"]

    out = run("get", f"{req_id}:{'0' * 40}", check=False)
    message = one_line(out.stderr)
    assert out.returncode == 1, message
    assert f"Environment {req_id}:{'0' * 40} is not available in the store (" in message
    assert ") for any architecture. Check the ids" in message
    assert f"not available for {local_arch()}" not in message and "Resolve it for" not in message

    other = "osx-arm64" if local_arch() != "osx-arm64" else "linux-64"
    out = run("get", f"{req_id}:{full_id}", "--arch", other, check=False)
    message = one_line(out.stderr)
    assert out.returncode == 1, message
    assert f"{req_id}:{full_id} is not available for {other} in the store (" in message
    assert f"only for {local_arch()}. Resolve its requirements for {other}" in message
    assert message.endswith(f"(show, get and create take --arch {local_arch()}).")  # create has --arch too


def test_a_name_whose_environment_left_the_store_says_how_to_put_it_back(
    run: Run, world: dict[str, Path]
) -> None:
    resolved = json.loads(run("resolve", "--conda", "fx-core", "--alias", "team/gone:v1", "--json").stdout)
    ids = f"{resolved[local_arch()]['req_id']}:{resolved[local_arch()]['full_id']}"
    (description,) = (world["store"] / "envs" / local_arch()).rglob("env")
    description.unlink()  # removed from the store: the alias is left
    out = run("show", "team/gone:v1", check=False, machine="b")
    message = one_line(out.stderr)
    assert out.returncode == 1, message
    assert f"Environment {ids} (which 'team/gone:v1' refers to) is not available in the store (" in message
    assert "the name is there but its environment's description is not" in message, message
    assert f"`envcore alias {ids} team/gone:v1`" in message, message
    assert "envcore show NAME prints" not in message  # (what the user just ran)
    run("alias", ids, "team/gone:v1")  # machine a knows it: put back
    assert description.exists()
    assert ids in run("show", "team/gone:v1", machine="b").stdout


def test_show_lists_the_aliases_this_machine_knows_when_the_store_cannot_be_listed(
    run: Run, machine_env: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An immutable name this machine knows is shown from its record without the store (as the original);
    the Aliases line, which also reads the store, then falls back to the record's with a notice instead of
    failing the command (an S3 store out of reach said only `Cannot reach the S3 endpoint`)."""
    from envcore.errors import StorageError
    from envcore.local_store import LocalStore

    resolved = json.loads(run("resolve", "--conda", "fx-core", "--alias", "team/off:v1", "--json").stdout)
    env = resolved[local_arch()]
    for name, value in machine_env("a").items():
        if name.startswith("METAFLOW_"):
            monkeypatch.setenv(name, value)

    def unreachable(self: LocalStore, prefix: str) -> None:
        raise StorageError(f"Cannot reach the store for {prefix}.")

    monkeypatch.setattr(LocalStore, "list", unreachable)
    said: list[str] = []
    envs = Environments(build_registry(Config.load()), said.append)
    assert envs.aliases_of(env["req_id"], env["full_id"]) == (["team/off/v1"], [])
    assert said == [
        "Showing the aliases this machine knows: Cannot reach the store for envs/aliases/generic/team/off/."
    ]


def test_a_base_that_cannot_be_extended_is_named_as_the_user_named_it(run: Run) -> None:
    base = json.loads(run("resolve", "--conda", "fx-legacy", "--alias", "team/base:v1", "--json").stdout)
    ids = f"{base[local_arch()]['req_id']}:{base[local_arch()]['full_id']}"
    out = run("resolve", "--using", "team/base:v1", "--conda", "fx-modern", check=False)
    message = one_line(out.stderr)
    assert out.returncode == 1, message
    assert f"Cannot extend team/base:v1 ({ids})" in message

    out = run("resolve", "--using", ids, "--conda", "fx-modern", check=False)  # named by its ids: as given
    assert f"Cannot extend {ids}: " in one_line(out.stderr)


def test_every_environment_of_a_batch_reports_why_the_channel_cannot_be_read(
    machine_env: Callable[..., dict[str, str]], world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environments of one call resolve in parallel: rattler coalesces their reads of the same repodata,
    and the one reported (the first group's) may be one that waited on another's failed read."""
    missing = (world["universe"] / "no-such-channel").as_uri()
    for attempt in range(3):  # the race is not certain: each round is a new registry (a new gateway)
        for name, value in machine_env("a", METAFLOW_CONDA_CHANNELS=missing).items():
            if name.startswith("METAFLOW_"):
                monkeypatch.setenv(name, value)
        monkeypatch.setenv("METAFLOW_ENVCORE_CACHE_DIR", str(world["a"] / f"cache-{attempt}"))
        config = Config.load()
        requests = [
            resolving.build_request(
                specs.from_decorator(libraries={name: ""}, packages={}), config, local_arch()
            )
            for name in ("fx-core", "fx-http", "fx-web", "fx-app")
        ]
        with pytest.raises(ResolutionError) as caught:
            Environments(build_registry(config)).resolve(requests, force=True)
        message = caught.value.message
        assert "coalesced" not in message and "other error" not in message, message
        assert "Could not read the conda channels" in message and "No such file or directory" in message


def test_a_batch_is_solved_in_one_call_with_each_answer_in_its_place(
    machine_env: Callable[..., dict[str, str]], world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resolver that locks batches (rattler) is asked once for the environments of a call that need solving;
    they come out as one by one, and a request it cannot solve fails the call with its own error."""
    for name, value in machine_env("a").items():
        if name.startswith("METAFLOW_"):
            monkeypatch.setenv(name, value)
    config = Config.load()

    def requests_for(*names: str) -> list[resolving.ResolveRequest]:
        return [
            resolving.build_request(specs.from_decorator(libraries={n: v}, packages={}), config, local_arch())
            for n, _, v in (name.partition("=") for name in names)
        ]

    registry = build_registry(config)
    rattler = registry.resolver_named("rattler")
    batches: list[int] = []
    solve_batch = rattler.resolve_batch  # type: ignore[attr-defined]
    monkeypatch.setattr(rattler, "resolve_batch", lambda rs: batches.append(len(rs)) or solve_batch(rs))
    monkeypatch.setattr(rattler, "resolve", lambda r: pytest.fail("solved one by one"))
    names = ("fx-core", "fx-http", "fx-web", "fx-app")
    locked_in: set[str] = set()
    lock_one = Environments._resolve_one

    def recorded(self: Environments, *args: Any) -> Any:
        locked_in.add(threading.current_thread().name)
        return lock_one(self, *args)

    monkeypatch.setattr(Environments, "_resolve_one", recorded)
    batched = [env for env, fresh in Environments(registry).resolve(requests_for(*names), force=True)]
    assert batches == [4]
    # what is left after the batch is Python work alone, done in the calling thread (worker threads would
    # contend for the GIL)
    assert locked_in == {threading.current_thread().name}
    one_by_one = Environments(build_registry(config))
    for name, env in zip(names, batched, strict=True):
        ((alone, _),) = one_by_one.resolve(requests_for(name), force=True)
        assert (env.req_id, env.full_id, env.packages) == (alone.req_id, alone.full_id, alone.packages)
    with pytest.raises(ResolutionError, match="fx-core"):
        Environments(registry).resolve(requests_for("fx-web", "fx-core=9.9.9", "fx-app"), force=True)
    assert batches == [4, 3]


def test_requirements_left_out_by_their_markers_are_warned_of_once_per_resolution(
    machine_env: Callable[..., dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library caller gets an EnvcoreWarning per requirement whose marker is false for the targets resolved
    (one for all the archs of a call), and none when the resolution is reused."""
    import platform
    import warnings

    from envcore.errors import EnvcoreWarning

    for name, value in machine_env("a").items():
        if name.startswith("METAFLOW_"):
            monkeypatch.setenv(name, value)
    config = Config.load()
    spec = specs.from_command_line(pypi=("fx-core", 'fx-http ; sys_platform == "win32"'))
    requests = [
        resolving.build_request(spec, config, a, coresolved=("linux-64", "osx-64"))
        for a in ("linux-64", "osx-64")
    ]
    envs = Environments(build_registry(config))
    with pytest.warns(EnvcoreWarning) as caught:
        resolved = envs.resolve(requests)
    told = [str(w.message) for w in caught if issubclass(w.category, EnvcoreWarning)]
    assert told == [
        f'Ignoring fx-http: its marker (sys_platform == "win32") does not hold for linux-64, osx-64 with python '
        f"{platform.python_version()}, the targets it was resolved for, so it is not in the environment."
    ]
    assert all(new and "fx-http" not in {p.name for p in env.packages} for env, new in resolved)
    for env, _ in resolved:
        envs.save(env)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EnvcoreWarning)
        assert [new for _, new in envs.resolve(requests)] == [False, False]
