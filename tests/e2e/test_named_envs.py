"""Named environments through the installed ``envcore`` command: alias on machine A, get / create / show by
name on machine B (another HOME, empty caches, same store); extension with --using; remote latest."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envcore import description
from envcore.naming import DefaultNaming
from envcore.resolve import local_arch

from ..conftest import env_ids, snapshot, store_moved_resolution

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
    # the ids the name is bound to, not only the name given (which may move later)
    assert again.stdout == f"team/core:v2 now refers to {second} (team/core:stable)\n"
    assert run("alias", second, "team/core:v2").stdout == f"team/core:v2 already referred to {second}\n"
    refused = run("alias", first, "team/core:v2", check=False)
    assert refused.returncode == 1 and "is not mutable" in refused.stderr
    # a new name given twice (or as name and name:latest) is reported once, as written now (before: twice, as
    # "already referred to", the second write having found the first)
    assert run(
        "alias", second, "team/core:v2", "team/fresh:v1", "team/fresh:v1", "team/new", "team/new:latest"
    ).stdout == (
        f"team/core:v2 already referred to {second}\nteam/fresh:v1 now refers to {second}\n"
        f"team/new:latest now refers to {second}\n"
    )


def test_show_lists_the_tags_of_known_names_and_skips_a_damaged_alias(
    run: Run, world: dict[str, Path]
) -> None:
    (first,) = env_ids(run("resolve", "--conda", "fx-core==1.0.0", "--alias", "team/core:v1").stdout)
    (second,) = env_ids(run("resolve", "--conda", "fx-core==2.0.0").stdout)
    run("alias", first, "team/core:stable")
    damaged = world["store"] / "envs" / "aliases" / "generic" / "junk" / "latest"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"xx")  # someone else's broken object: no command about other aliases may fail on it
    shown = run("show", "team/core:v1", machine="b")
    assert "Aliases team/core:v1, team/core:stable (mutable)" in shown.stdout  # stable found in the store
    run("resolve", "--conda", "fx-http", machine="b")
    run("alias", second, "team/core:stable")  # moved on: no longer listed for the first
    shown = run("show", first, machine="b").stdout
    assert "Aliases team/core:v1\n" in shown
    refused = run("show", "junk", machine="b", check=False)
    assert refused.returncode == 1 and "is damaged" in refused.stderr and "Traceback" not in refused.stderr
    run("alias", second, "junk")  # a damaged mutable alias is replaced by aliasing again
    assert f"full hash {second}" in run("show", "junk", machine="b").stdout


def test_show_reads_the_tags_of_a_name_not_the_names_nested_under_it(
    run: Run, world: dict[str, Path]
) -> None:
    """Listing team/core's tags took in team/core/<anything>'s too: 303 reads for a name with 300 nested names."""
    (ref,) = env_ids(run("resolve", "--conda", "fx-core==1.0.0", "--alias", "team/core:v1").stdout)
    run("alias", ref, "team/core/sub:v1", "team/core:stable")
    nested = world["store"] / "envs" / "aliases" / "generic" / "team" / "core" / "broken" / "latest"
    nested.parent.mkdir(parents=True)
    nested.write_bytes(b"xx")  # read, it would be reported as damaged
    shown = run("--verbose", "show", "team/core:v1", machine="b")
    assert "Aliases team/core:v1, team/core:stable (mutable)" in shown.stdout, shown.stdout
    assert "broken" not in shown.stderr + shown.stdout, shown.stderr


def test_an_immutable_alias_of_another_resolution_stores_nothing(run: Run, world: dict[str, Path]) -> None:
    (first,) = env_ids(run("resolve", "--conda", "fx-core==1.1.0", "--alias", "t/z:v1").stdout)
    before = snapshot(world["store"])
    # co-resolved for two archs: the same requirements (req id), another resolution (full id)
    both_archs = ("--arch", local_arch(), "--arch", "osx-arm64")
    out = run("resolve", "--conda", "fx-core==1.1.0", *both_archs, "--alias", "t/z:v1", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    message = " ".join(out.stderr.split())
    assert f"'t/z:v1' is not mutable and already refers to {first}" in message
    assert "The new resolution was not stored" in message
    assert snapshot(world["store"]) == before
    again = run("resolve", "--conda", "fx-core==1.1.0")  # the default is still the first resolution
    assert env_ids(again.stdout) == [first]


def test_linux_archs_resolved_together_are_one_environment_under_one_alias(run: Run) -> None:
    # this machine's glibc and the other arch's default (2.27) differ: together they take the lower
    linux = ("--arch", "linux-64", "--arch", "linux-aarch64")
    ids = env_ids(run("resolve", "--conda", "fx-core", *linux, "--alias", "t/pair:v1").stdout)
    assert len(ids) == 2 and len(set(ids)) == 1, ids  # one req id and one full id for both
    for arch in ("linux-64", "linux-aarch64"):
        shown = run("show", "t/pair:v1", "--arch", arch, machine="b").stdout
        assert f"full hash {ids[0]}" in shown and "sys::__glibc==2.27=0" in shown.replace(" ", ""), shown
    swapped = run("resolve", "--conda", "fx-core", *linux[2:], *linux[:2], "--alias", "t/pair:v1")
    assert env_ids(swapped.stdout) == ids


def test_get_by_name_records_it_as_the_default_and_shows_it(run: Run) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-app", "--alias", "team/app:v1").stdout)
    out = run("get", "team/app:v1", machine="b")  # as the original: the default unless --no-default
    assert out.stdout.startswith(f"DEFAULT Environment of type conda-only full hash {ref}\n"), out.stdout
    assert "Aliases team/app:v1" in out.stdout and "Conda Packages installed " in out.stdout
    assert "Fetching and verifying 6 package(s)" in out.stderr
    again = run("resolve", "--conda", "fx-app", machine="b")  # reused: machine b now knows it as the default
    assert env_ids(again.stdout) == [ref]
    assert "No environments to resolve, use --force to force re-resolution" in again.stderr
    both_archs = ("--arch", local_arch(), "--arch", "osx-arm64")
    run("resolve", "--conda", "fx-app", *both_archs, "--alias", "team/app:v2")
    kept = run("get", "team/app:v2", "--no-default", machine="b")
    assert not kept.stdout.startswith("DEFAULT ")
    assert env_ids(run("resolve", "--conda", "fx-app", machine="b").stdout) == [ref]
    as_json = json.loads(run("get", "team/app:v1", "--json", "--quiet", machine="b").stdout)  # as show --json
    assert as_json == json.loads(run("show", "team/app:v1", "--json", machine="b").stdout)
    assert (f"{as_json['req_id']}:{as_json['full_id']}", as_json["aliases"]) == (ref, ["team/app:v1"])


def test_show_several_environments_says_which_are_missing(run: Run) -> None:
    (first,) = env_ids(run("resolve", "--conda", "fx-core==1.0.0", "--alias", "team/one:v1").stdout)
    (second,) = env_ids(run("resolve", "--conda", "fx-core==2.0.0", "--alias", "team/two:v1").stdout)
    both = run("show", "team/one:v1", "team/two:v1", machine="b")
    arch = local_arch()
    assert f"### Environment for 'team/one:v1' (arch '{arch}'):\n" in both.stdout
    assert f"### Environment for 'team/two:v1' (arch '{arch}'):\n" in both.stdout
    assert f"full hash {first}" in both.stdout and f"full hash {second}" in both.stdout
    partly = run("show", "team/one:v1", "team/none:v1", machine="b", check=False)
    assert partly.returncode == 1 and f"full hash {first}" in partly.stdout
    assert f"### Environment for 'team/none:v1' (arch '{arch}') was not found: " in partly.stdout
    as_json = json.loads(run("show", "--json", "team/one:v1", "team/none:v1", check=False).stdout)
    assert as_json["team/one:v1"]["full_id"] == first.split(":")[1] and "error" in as_json["team/none:v1"]


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
    # every locked package of the base is kept (the user guide: "you cannot add an incompatible version"):
    # naming one of them again, even more loosely, does not move it, and the base's request is kept
    out = run(
        "resolve", "--using", "team/base:v1", "--conda", "fx-http>=1.0", "--pypi", "fx-extras", "--json"
    )
    env = json.loads(out.stdout)[local_arch()]["env"]
    versions = versions_of(env)
    assert {k: versions[k] for k in base_versions} == base_versions
    assert "fx-extras" in versions
    (http,) = [d for d in env["deps"] if d.startswith("conda::fx-http==")]
    assert "1.1.0" in http and ">=1.0" in http  # the base's request AND-ed with the new one
    assert "(compatible with " not in env["resolved_by"]  # fx-extras was solved: more than the base
    # as the original, "compatible with" says that the base's packages are used as they are
    same = json.loads(run("resolve", "--using", "team/base:v1", "--conda", "fx-http>=1.0", "--json").stdout)
    assert "(compatible with " in same[local_arch()]["env"]["resolved_by"]


def test_extending_a_cuda_environment_keeps_its_cuda_build(run: Run, tmp_path: Path) -> None:
    spec = tmp_path / "cuda.yml"
    spec.write_text("dependencies:\n  - fx-native\n  - sys:\n    - __cuda=12.2\n")
    base = json.loads(run("resolve", "-f", str(spec), "--alias", "team/gpu:v1", "--json").stdout)[
        local_arch()
    ]
    builds = {p["envcore"]["name"]: p["envcore"]["build"] for p in base["env"]["packages"]}
    assert builds["fx-native"].endswith("cuda12"), builds
    extended = json.loads(run("resolve", "--using", "team/gpu:v1", "--conda", "fx-core", "--json").stdout)
    env = extended[local_arch()]["env"]
    assert {p["envcore"]["name"]: p["envcore"]["build"] for p in env["packages"]}["fx-native"] == builds[
        "fx-native"
    ]
    assert "sys::__cuda==12.2=0" in env["deps"]  # what the base was resolved for
    # a new requirement that needs another build of a base package names the change
    out = run("resolve", "--using", "team/gpu:v1", "--conda", "fx-native=1.0.0=h0_cpu", check=False)
    message = " ".join(out.stderr.split())
    assert out.returncode == 1, message
    assert f"fx-native 1.0.0 ({builds['fx-native']}) -> 1.0.0 (h0_cpu)" in message, message
    # --from re-resolves what was asked: __cuda=12.2 too (__glibc is the target's own)
    for arch in (local_arch(), "linux-aarch64"):
        again = run(
            "resolve", "--from", "team/gpu:v1", "--arch", arch, "--force", "--dry-run", "--json"
        ).stdout
        direct = run("resolve", "-f", str(spec), "--arch", arch, "--force", "--dry-run", "--json").stdout
        assert json.loads(again)[arch]["req_id"] == json.loads(direct)[arch]["req_id"]
        assert "sys::__cuda==12.2=0" in json.loads(again)[arch]["env"]["deps"]


def test_a_pin_that_must_change_is_named(run: Run) -> None:
    run("resolve", "--conda", "fx-http==1.1.0", "--alias", "team/base:v1")
    out = run("resolve", "--using", "team/base:v1", "--conda", "fx-modern", check=False)
    assert out.returncode == 1
    message = " ".join(out.stderr.split())
    assert "Cannot extend " in message and "fx-modern 1.0.0 would require" in message, message
    assert "fx-core >=2" in message
    upgrade = run("resolve", "--using", "team/base:v1", "--conda", "fx-http==1.2.0", check=False)
    assert upgrade.returncode == 1 and "Traceback" not in upgrade.stderr


def test_an_alias_whose_name_is_in_the_way_is_refused_before_resolving(run: Run) -> None:
    run("resolve", "--conda", "fx-core", "--alias", "team/proj/env:v1")
    out = run("resolve", "--conda", "fx-http", "--alias", "team/proj:env", check=False)
    message = " ".join(out.stderr.split())
    assert out.returncode != 0 and "Traceback" not in message, message
    assert "team/proj/env is the folder of other aliases (team/proj/env:v1)" in message, message
    assert "Resolving" not in message and "cach" not in message.lower(), message


def test_an_extension_takes_a_python_requirement_its_base_fits(run: Run, tmp_path: Path) -> None:
    """As the original: a python the requirements ask for is checked against the base's (kept), not refused."""
    run("resolve", "--conda", "fx-core", "--alias", "team/base:v1")
    major, minor = sys.version_info[:2]
    fits, other = tmp_path / "fits.yml", tmp_path / "other.yml"
    fits.write_text(f"dependencies:\n  - python>={major}.{minor}\n  - fx-http\n")
    other.write_text(f"dependencies:\n  - python<{major}\n  - fx-http\n")
    env = json.loads(run("resolve", "--using", "team/base:v1", "-f", str(fits), "--json").stdout)[
        local_arch()
    ]
    assert f"conda::python=={platform.python_version()}" in env["env"]["deps"]
    out = run("resolve", "--using", "team/base:v1", "-f", str(other), check=False)
    message = " ".join(out.stderr.split())
    assert out.returncode == 2 and "Traceback" not in message, message
    assert (
        f"The base environment's Python version ({platform.python_version()}) does not match the one specified in "
        f"the environment file {other} (<{major})" in message
    ), message
    assert "--python" not in message, message


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
    body = json.loads((env_dir / alice["full_id"] / "env").read_text())
    # another resolution, told apart by a unique key here (as if its packages differed): its own full id,
    # which its packages and keys must hash to (envcore checks the descriptions it wrote)
    body.update(resolved_by="bob", resolved_on="2099-01-01 00:00:00", full_id_unique_keys={"by": "bob"})
    bob = description.from_dict(body, req_id=alice["req_id"], full_id="", arch=local_arch())
    bob_full = DefaultNaming().full_id(bob.packages, local_arch(), bob.full_id_unique_keys)
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
    assert "Resolving 1 environment ... done in " in out.stderr


def test_remote_latest_with_a_bad_value_is_a_config_error(run: Run) -> None:
    out = run("resolve", "--conda", "fx-app", check=False, METAFLOW_CONDA_USE_REMOTE_LATEST=":everyone:")
    assert out.returncode == 2
    assert ":none:, :username:, :any: or a comma-separated list" in " ".join(out.stderr.split())


def test_from_resolves_the_requirements_of_an_environment_again(run: Run) -> None:
    (ref,) = env_ids(
        run("resolve", "--conda", "fx-app", "--pypi", "fx-extras==0.3.0", "--alias", "team/x:v1").stdout
    )
    out = json.loads(
        run("resolve", "--from", "team/x:v1", "--arch", "osx-arm64", "--json", machine="b").stdout
    )
    mac = out["osx-arm64"]["env"]
    mine = json.loads(run("show", "--json", ref).stdout)["env"]
    assert sorted(d for d in mac["deps"] if not d.startswith("sys::")) == sorted(
        d for d in mine["deps"] if not d.startswith("sys::")
    )
    assert versions_of(mac)["fx-extras"] == "0.3.0"
    # added packages are AND-ed with the environment's; conflicting options are refused before resolving
    more = json.loads(run("resolve", "--from", ref, "--conda", "fx-yaml", "--json", "--dry-run").stdout)
    assert "fx-yaml" in versions_of(more[local_arch()]["env"])
    for extra in (["--python", "3.11"], ["--using", ref]):
        refused = run("resolve", "--from", ref, *extra, check=False)
        assert refused.returncode == 2 and "Cannot specify --from with" in " ".join(refused.stderr.split())


def test_from_finds_an_environment_resolved_for_other_architectures_only(run: Run) -> None:
    """--from looked only under this machine's arch and the --arch values given (the original: all)."""
    run("resolve", "--conda", "fx-app", "--arch", "osx-arm64", "--alias", "team/mac:v1")
    out = json.loads(
        run("resolve", "--from", "team/mac:v1", "--arch", local_arch(), "--json", "--dry-run").stdout
    )
    assert "fx-app" in versions_of(out[local_arch()]["env"])
    refused = run("create", "team/mac:v1", check=False)
    message = " ".join(refused.stderr.split())
    assert (
        refused.returncode == 1
        and "envcore resolve --from " in message
        and f"--arch {local_arch()})" in message
    )


def test_no_set_default_stores_a_resolution_without_making_it_the_default(run: Run) -> None:
    out = run("resolve", "--no-set-default", "--conda", "fx-http")
    (ref,) = env_ids(out.stdout)
    assert not out.stdout.split("\n", 1)[1].startswith("DEFAULT ")
    assert f"full hash {ref}" in run("show", ref).stdout  # stored and recorded
    again = run("resolve", "--conda", "fx-http")  # no default to reuse: resolved again, now the default
    assert "Resolving 1 environment ... done in " in again.stderr and env_ids(again.stdout) == [ref]
    assert (
        "No environments to resolve, use --force to force re-resolution"
        in run("resolve", "--conda", "fx-http").stderr
    )


def test_a_reused_resolution_is_cached_into_a_new_store_before_it_is_aliased(
    run: Run, world: dict[str, Path], tmp_path: Path
) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-http").stdout)
    other = str(tmp_path / "other-store")  # the site moved to another store since
    out = run("resolve", "--conda", "fx-http", "--alias", "team/moved:v1", METAFLOW_CONDA_LOCALROOT=other)
    assert (
        env_ids(out.stdout) == [ref]
        and "No environments to resolve, aliasing only. Use --force to force re-resolution" in out.stderr
    )
    assert "is not in " in out.stderr
    created = run("create", "team/moved:v1", "--name", "m", machine="b", METAFLOW_CONDA_LOCALROOT=other)
    assert " created at " in created.stdout


def test_alias_caches_an_environment_only_this_machine_knows_into_the_store_first(
    run: Run, tmp_path: Path
) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-http").stdout)
    other = str(tmp_path / "other-store")  # the site moved to another store since
    out = run("alias", ref, "team/moved:v1", METAFLOW_CONDA_LOCALROOT=other)
    assert f"team/moved:v1 now refers to {ref}" in out.stdout and "is not in " in out.stderr
    created = run("create", "team/moved:v1", "--name", "m", machine="b", METAFLOW_CONDA_LOCALROOT=other)
    assert " created at " in created.stdout


def test_alias_writes_no_name_when_one_of_them_is_bound_elsewhere(run: Run, world: dict[str, Path]) -> None:
    (first,) = env_ids(run("resolve", "--conda", "fx-core==1.0.0", "--alias", "team/core:v1").stdout)
    (second,) = env_ids(run("resolve", "--conda", "fx-core==2.0.0").stdout)
    before = snapshot(world["store"])
    out = run("alias", second, "team/multi:v3", "team/core:v1", "team/multi:v4", check=False)
    message = " ".join(out.stderr.split())
    assert out.returncode == 1 and f"'team/core:v1' is not mutable and already refers to {first}" in message
    assert "No alias was written" in message
    assert snapshot(world["store"]) == before
    too_long = run("alias", second, "team/multi:v3", "team/" + "x" * 300, check=False)
    assert too_long.returncode == 2 and "Choose a shorter name" in too_long.stderr
    assert snapshot(world["store"]) == before


def test_a_mutable_tag_moves_only_once_the_immutable_names_are_written(
    run: Run, machine_env: Callable[..., dict[str, str]]
) -> None:
    """Names are checked, then written: another machine may take an immutable name in between. ``:latest`` was
    written first (command-line order) and so moved to the environment of the machine that then failed."""
    from envcore.config import Config
    from envcore.environments import Environments
    from envcore.errors import AliasError
    from envcore.naming import parse_alias
    from envcore.plugins import build_registry

    (first,) = env_ids(run("resolve", "--conda", "fx-core==1.0.0", "--alias", "team/race:v1").stdout)
    (second,) = env_ids(run("resolve", "--conda", "fx-core==2.0.0").stdout)
    envs = Environments(build_registry(Config.load(environ=machine_env("a"))))
    latest, taken = parse_alias("team/race:latest"), parse_alias("team/race:v1")
    with pytest.raises(AliasError, match="is not mutable and already refers to"):
        envs.write_aliases([latest, taken], tuple(second.split(":")))  # as if taken since the check
    assert envs.aliases.lookup(latest) is None
    assert envs.write_aliases([latest], tuple(first.split(":"))) == [(latest, True)]


def test_an_alias_to_an_environment_the_store_lacks_is_named_in_the_error(
    run: Run, world: dict[str, Path]
) -> None:
    dangling = world["store"] / "envs" / "aliases" / "generic" / "team" / "gone" / "v1"
    dangling.parent.mkdir(parents=True)
    dangling.write_text(json.dumps(["0" * 40, "1" * 40]))
    out = run("create", "team/gone:v1", "--name", "g", machine="b", check=False)
    message = " ".join(out.stderr.split())
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"Environment {'0' * 40}:{'1' * 40} (which 'team/gone:v1' refers to) is not available" in message


def test_show_lists_the_aliases_the_store_holds_not_those_of_another_store(run: Run, tmp_path: Path) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-http", "--alias", "team/first:v1").stdout)
    other = str(tmp_path / "other-store")
    run("alias", ref, "team/second:v1", METAFLOW_CONDA_LOCALROOT=other)
    shown = run("show", ref, METAFLOW_CONDA_LOCALROOT=other).stdout
    assert "Aliases team/second:v1\n" in shown  # team/first:v1 is in the first store only
    assert "Aliases team/first:v1\n" in run("show", ref).stdout


def test_an_extension_follows_its_base_when_a_mutable_name_moves(run: Run, world: dict[str, Path]) -> None:
    """``team/drift`` (:latest) moves to another resolution of the same requirements (the channel moved on):
    an extension of it has the same req id, but the one recorded for the old base is not reused for the new
    one (it was, so the step kept the old base's packages while an unextended step got the new ones); moving
    back reuses the first again."""
    arch = local_arch()
    first = json.loads(run("resolve", "--conda", "fx-core", "--alias", "team/drift", "--json").stdout)[arch]
    later = json.loads(run("resolve", "--conda", "fx-core==1.1.0", "--json").stdout)[arch]
    # the same requirements (fx-core) resolved later, as if the channel had moved on: fx-core 1.1.0, not 2.0.0
    moved_full = store_moved_resolution(world["store"], arch, first, later, "fx-core")

    def extended() -> dict[str, str]:
        out = run("resolve", "--using", "team/drift", "--conda", "fx-yaml", "--json")
        found = json.loads(out.stdout)[arch]
        versions = {p["envcore"]["name"]: p["envcore"]["version"] for p in found["env"]["packages"]}
        return {**versions, "ids": f"{found['req_id']}:{found['full_id']}"}

    on_first = extended()
    assert on_first["fx-core"] == "2.0.0"
    run("alias", f"{first['req_id']}:{moved_full}", "team/drift", machine="b")
    on_moved = extended()
    assert on_moved["fx-core"] == "1.1.0", on_moved  # resolved on the new base, not the recorded one
    assert on_moved["ids"].split(":")[0] == on_first["ids"].split(":")[0]  # (the same req id)
    run("alias", f"{first['req_id']}:{first['full_id']}", "team/drift", machine="b")
    assert extended()["ids"] == on_first["ids"]  # back on the first base: its extension, recorded
    # another machine reusing the store's newest resolution takes the newest extension of this base (the
    # extension of the moved base is newer)
    out = run(
        "resolve",
        "--using",
        "team/drift",
        "--conda",
        "fx-yaml",
        machine="b",
        METAFLOW_CONDA_USE_REMOTE_LATEST=":any:",
    )
    assert env_ids(out.stdout) == [on_first["ids"]]
    assert f"Using {on_first['ids']}, resolved by" in out.stderr
