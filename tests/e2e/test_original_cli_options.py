"""Options of the original's ``environment create/show/get`` that scripts written for it use: ``--pathspec``
(ENV is a step) and ``create --exist-ok/--no-exist-ok``."""

from __future__ import annotations

from pathlib import Path

import pytest

from envcore.platforms import local_arch
from envcore.record import LocalRecord
from envcore.uptodate import answer

from ..conftest import Run, env_ids, imported_modules


@pytest.fixture
def step_env(run: Run, world: dict[str, Path]) -> str:
    """An environment recorded as that of the step MyFlow/12/start (as a Metaflow run records it)."""
    (ref,) = env_ids(run("resolve", "--conda", "fx-core").stdout)
    req_id, full_id = ref.split(":")
    LocalRecord(world["a"] / "cache" / "conda_v2.cnd", 10).set_mapping("MyFlow/12/start", (req_id, full_id))
    return ref


def test_pathspec_names_a_step_in_show_get_and_create(
    run: Run, step_env: str, world: dict[str, Path]
) -> None:
    assert run("show", "--pathspec", "MyFlow/12/start").stdout == run("show", "step:MyFlow/12/start").stdout
    assert step_env.split(":")[1] in run("get", "--pathspec", "MyFlow/12/start").stdout
    created = run("create", "--pathspec", "MyFlow/12/start", "--name", "work")
    assert created.stdout.startswith(f"Environment {step_env} created at {world['a'] / 'cache/envs/work'}")


@pytest.mark.parametrize("ref", ["step:MyFlow/12/start", "MyFlow/12", "team/env:v1"])
def test_pathspec_refuses_what_is_not_a_pathspec(run: Run, step_env: str, ref: str) -> None:
    done = run("show", "--pathspec", ref, check=False)
    assert done.returncode != 0
    message = " ".join(done.stderr.split())  # (wrapped to the terminal's width)
    assert f"{ref!r} is not a pathspec: with --pathspec, give a step as Flow/Run/Step" in message
    assert "Traceback" not in done.stderr


def test_exist_ok_is_the_default_and_no_exist_ok_refuses_a_complete_environment(
    run: Run, step_env: str, machine_env: object, world: dict[str, Path]
) -> None:
    run("create", step_env, "--name", "work")
    again = run("create", step_env, "--name", "work", "--exist-ok", PYTHONPROFILEIMPORTTIME="1")
    assert " already exists and is complete " in again.stdout
    assert "click" not in imported_modules(again.stderr)  # the default: answered by the fast path
    refused = run("create", step_env, "--name", "work", "--no-exist-ok", check=False)
    assert refused.returncode != 0
    prefix = world["a"] / "cache" / "envs" / "work"
    message = " ".join(refused.stderr.split())  # (wrapped to the terminal's width)
    assert f"Environment 'work' already exists at {prefix}; use --force to force recreating it" in message
    assert (prefix / ".metaflowenv").exists()  # refused: left as it was
    assert " created at " in run("create", step_env, "--name", "work", "--no-exist-ok", "--force").stdout
    assert answer(["create", step_env, "--name", "work", "--no-exist-ok"]) is None


def test_quiet_output_is_the_original_one_line_form(run: Run, world: dict[str, Path]) -> None:
    """``--quiet`` resolve / show / get print the original's lines for scripts: ids, aliases (``(m)``
    mutable), arch, when, by whom, co-resolved archs, requests, sources, conda: and pypi: packages, prefixes."""
    arch = local_arch()
    resolved = run("-q", "resolve", "--conda", "fx-core", "--pypi", "fx-extras", "--alias", "team/env:v1")
    first, line = resolved.stdout.splitlines()
    assert first == arch
    fields = line.split(" ")
    assert len(fields) == 12, fields
    req_id, full_id, aliases, on_arch, resolved_on, _, co_archs, deps, sources, conda, pypi, local = fields
    ref = f"{req_id}:{full_id}"
    assert aliases == "team/env:v1" and on_arch == co_archs == arch and "T" in resolved_on
    assert "conda::fx-core" in deps and "pypi::fx-extras" in deps and sources != "NONE"
    assert conda.startswith("conda:") and "fx-core==2.0.0-py_0" in conda and "python==" in conda
    assert pypi.startswith("pypi:") and "fx-extras==" in pypi and local == "NONE"
    run("create", ref, "--name", "work")
    shown = run("-q", "show", "team/env:v1").stdout.splitlines()
    assert shown[0] == f"team/env:v1@{arch}"
    assert shown[1].split(" ")[:2] == [req_id, full_id]
    assert shown[1].split(" ")[-1] == str(world["a"] / "cache" / "envs" / "work")
    got = run("-q", "get", ref).stdout.splitlines()  # the same form as show's
    assert got[0] == f"{ref}@{arch}" and got[1].split(" ")[:2] == [req_id, full_id]
    not_got = run("-q", "get", "team/nothing:v1", check=False)
    assert not_got.returncode == 1 and not_got.stdout.splitlines() == [f"team/nothing:v1@{arch}", "NOT_FOUND"]
    missing = run("-q", "show", "team/nothing:v1", ref, check=False)
    assert missing.returncode == 1
    assert missing.stdout.splitlines()[:2] == [f"team/nothing:v1@{arch}", "NOT_FOUND"]
    assert missing.stdout.splitlines()[2] == f"{ref}@{arch}"


def test_the_original_negative_flags_are_accepted(run: Run) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-core", "--no-force", "--no-dry-run").stdout)
    assert " created at " in run("create", ref, "--name", "neg", "--no-force").stdout
    again = run("create", ref, "--name", "neg", "--no-force")
    assert "already exists and is complete" in again.stdout


def test_quiet_show_and_get_say_not_found_only_of_what_is_not_there(run: Run, world: dict[str, Path]) -> None:
    """``NOT_FOUND`` tells a script that ENV does not exist; a local record that cannot be read, or a malformed
    ENV, is an error of its own (before, both printed NOT_FOUND, the second with status 1 where bad input is 2)."""
    run("resolve", "--conda", "fx-core", "--alias", "team/env:v1")
    malformed = run("-q", "show", "Team/Env", check=False)
    assert malformed.returncode == 2 and "NOT_FOUND" not in malformed.stdout
    assert "Invalid environment alias 'Team/Env'" in " ".join(malformed.stderr.split())
    record = world["a"] / "cache" / "conda_v2.cnd"
    record.write_bytes(record.read_bytes()[:50])  # damaged (cut short)
    for command in ("show", "get"):
        done = run("-q", command, "team/env:v1", check=False)
        assert done.returncode == 1 and "NOT_FOUND" not in done.stdout, done.stdout
        assert f"The local record {record} is damaged" in " ".join(done.stderr.split())
        assert "Traceback" not in done.stderr
    several = run("show", "team/env:v1", "team/other", check=False)
    assert several.returncode == 1 and "was not found" not in several.stdout
