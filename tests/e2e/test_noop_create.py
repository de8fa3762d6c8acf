"""``envcore create`` of a complete environment is answered before click or any plugin is imported
(envcore.uptodate), prints exactly what the full command prints, and hands every other case to it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from envcore.configfiles import config_files, store_scope
from envcore.uptodate import MARKER, PARTIAL, alias_ids_file, answer

from ..conftest import ENVCORE, Run, env_ids, imported_modules

MachineEnv = Callable[..., dict[str, str]]


@pytest.fixture
def created(run: Run, world: dict[str, Path]) -> tuple[str, Path]:
    (ref,) = env_ids(run("resolve", "--conda", "fx-core").stdout)
    run("create", ref, "--name", "work")
    return ref, world["a"] / "cache" / "envs" / "work"


def test_noop_create_imports_neither_click_nor_plugins(run: Run, created: tuple[str, Path]) -> None:
    ref, prefix = created
    fast = run("create", ref, "--name", "work", PYTHONPROFILEIMPORTTIME="1")
    modules = imported_modules(fast.stderr)
    assert "envcore.uptodate" in modules
    assert not modules & {"click", "pluggy", "envcore.cli", "envcore.plugins", "rattler", "typing", "json"}
    # (envcore.errors imported collections.abc for a type: ~2 ms a start)
    assert "collections" not in modules
    # the full command (any option it alone handles, here --verbose) prints the same line
    full = run("--verbose", "create", ref, "--name", "work", PYTHONPROFILEIMPORTTIME="1")
    assert "click" in imported_modules(full.stderr)
    assert fast.stdout == full.stdout
    assert fast.stdout == (
        f"Environment {ref} already exists and is complete at {prefix}; run {prefix / 'bin' / 'python'}\n"
    )
    quiet = run("-q", "create", ref, "--name=work")
    assert quiet.stdout == f"{prefix / 'bin' / 'python'}\n"


def test_default_prefix_name_and_config_file_cache_dir(
    run: Run, machine_env: MachineEnv, world: dict[str, Path], tmp_path: Path
) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-core").stdout)
    # the cache directory named in the Metaflow config file, no environment variable
    cache = tmp_path / "cache-from-file"
    (world["a"] / "mfhome").mkdir(parents=True, exist_ok=True)
    (world["a"] / "mfhome" / "config.json").write_text(f'{{"METAFLOW_ENVCORE_CACHE_DIR": "{cache}"}}')
    env = machine_env(PYTHONPROFILEIMPORTTIME="1")
    del env["METAFLOW_ENVCORE_CACHE_DIR"]

    def create() -> subprocess.CompletedProcess[str]:
        done = subprocess.run([ENVCORE, "create", ref], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    first, again = create(), create()
    # the original's name: a prefix of its own, not the one steps run in (metaflow_<req>_<full>)
    prefix = cache / "envs" / f"metaflowtmp_{ref.replace(':', '_')}"
    assert str(prefix) in first.stdout and "created" in first.stdout
    assert not (cache / "envs" / f"metaflow_{ref.replace(':', '_')}").exists()
    assert (
        again.stdout
        == f"Environment {ref} already exists and is complete at {prefix}; run {prefix}/bin/python\n"
    )
    assert "click" not in imported_modules(again.stderr)


def test_an_incomplete_prefix_is_created_by_the_full_command(run: Run, created: tuple[str, Path]) -> None:
    ref, prefix = created
    (prefix / MARKER).rename(prefix / PARTIAL)  # as a hydration killed before its last step leaves it
    out = run("create", ref, "--name", "work")
    assert " created at " in out.stdout
    assert (prefix / MARKER).exists()
    shutil.rmtree(prefix / "conda-meta")
    assert " already exists " in run("create", ref, "--name", "work").stdout  # the marker alone decides


@pytest.mark.parametrize(
    "argv",
    [
        ["create"],
        ["create", "--force", "{ref}", "--name", "work"],
        ["create", "{ref}", "--name", "work", "--verify"],
        ["create", "{ref}", "--name", "work", "--name", "other"],
        ["create", "{ref}", "--name", "../work"],
        ["create", "{ref}", "extra", "--name", "work"],
        ["create", "team/env:v1", "--name", "work"],
        ["create", "{ref}x", "--name", "work"],
        ["--verbose", "create", "{ref}", "--name", "work"],
        ["show", "{ref}"],
        ["create", "-h"],
    ],
)
def test_anything_but_the_plain_form_goes_to_the_full_command(
    argv: list[str], machine_env: MachineEnv, created: tuple[str, Path]
) -> None:
    ref, _ = created
    env = machine_env()
    assert answer([a.format(ref=ref) for a in argv], env) is None


def test_paths_pathlib_would_print_differently_go_to_the_full_command(
    run: Run, machine_env: MachineEnv, created: tuple[str, Path], world: dict[str, Path]
) -> None:
    ref, prefix = created
    env = machine_env(METAFLOW_ENVCORE_CACHE_DIR=f"{world['a']}/./cache/")
    assert answer(["create", ref, "--name", "work"], env) is None
    out = run("create", ref, "--name", "work", METAFLOW_ENVCORE_CACHE_DIR=f"{world['a']}/./cache/")
    assert f" at {prefix};" in out.stdout


def test_debug_output_is_left_to_the_full_command(machine_env: MachineEnv, created: tuple[str, Path]) -> None:
    ref, _ = created
    assert answer(["create", ref, "--name", "work"], machine_env(METAFLOW_DEBUG_CONDA="1")) is None
    assert answer(["create", ref, "--name", "work"], machine_env()) == 0


def test_an_immutable_alias_this_machine_knows_is_answered_too(
    run: Run, machine_env: MachineEnv, world: dict[str, Path]
) -> None:
    (ref,) = env_ids(
        run("resolve", "--conda", "fx-core", "--alias", "team/env:v1", "--alias", "team/env").stdout
    )
    created = run("create", "team/env:v1", "--name", "work", PYTHONPROFILEIMPORTTIME="1")
    assert "click" in imported_modules(created.stderr)  # the first prefix of an environment: the full command
    envs = world["a"] / "cache" / "envs"
    noop = run("create", "team/env:v1", "--name", "work", PYTHONPROFILEIMPORTTIME="1")
    clone = run("create", "team/env:v1", "--name", "other", PYTHONPROFILEIMPORTTIME="1")
    for fast in (noop, clone):
        modules = imported_modules(fast.stderr)
        assert "envcore.uptodate" in modules
        assert not modules & {"click", "pluggy", "envcore.cli", "envcore.plugins", "rattler", "envcore.types"}
        assert not modules & {"json", "envcore.record"}  # the alias's ids file, not the whole record
    assert noop.stdout == run("--verbose", "create", "team/env:v1", "--name", "work").stdout
    assert noop.stdout == (
        f"Environment {ref} already exists and is complete at {envs / 'work'}; run {envs / 'work/bin/python'}\n"
    )
    assert clone.stdout.startswith(f"Environment {ref} created at {envs / 'other'} in ")
    assert f"Linked from the same environment at {envs / 'work'}" in clone.stderr
    assert (envs / "other" / MARKER).exists() and not (envs / "other" / PARTIAL).exists()
    # a mutable tag may have moved in the store: the full command asks it
    env = machine_env()
    for mutable in ("team/env", "team/env:latest", "team/env:stable"):
        assert answer(["create", mutable, "--name", "work"], env) is None
    assert answer(["create", "team/env:v1", "--name", "work"], env) == 0
    assert answer(["create", "team/env:v2", "--name", "work"], env) is None  # not known here
    # the ids file is only a shortcut: missing or damaged, the record answers and the file is written again
    scope = store_scope(env, config_files(env))
    kept = Path(alias_ids_file(str(world["a"] / "cache" / "conda_v2.cnd"), "team/env/v1", scope))
    assert kept.read_text() == ref
    for damaged in (None, ref[:50]):
        kept.unlink() if damaged is None else kept.write_text(damaged)
        assert answer(["create", "team/env:v1", "--name", "work"], env) == 0
        assert kept.read_text() == ref


def test_an_immutable_alias_is_answered_as_the_configured_store_binds_it(
    run: Run, machine_env: MachineEnv, world: dict[str, Path]
) -> None:
    """A team's dev and prod stores may bind one name to different environments: a machine that had read the
    name from one store answered it from its record for the other too (the full command and the fast path)."""
    prod = {"METAFLOW_CONDA_LOCALROOT": str(world["store"].with_name("prod-store"))}
    (dev_ref,) = env_ids(run("resolve", "--conda", "fx-core==1.0.0", "--alias", "team/env:v1").stdout)
    (prod_ref,) = env_ids(
        run("resolve", "--conda", "fx-core==2.0.0", "--alias", "team/env:v1", **prod).stdout
    )
    assert dev_ref != prod_ref
    for machine in ("a", "b"):  # a wrote both names; b reads them
        for store, ref in (({}, dev_ref), (prod, prod_ref), ({}, dev_ref)):
            assert f"full hash {ref}" in run("show", "team/env:v1", machine=machine, **store).stdout
            run("create", "team/env:v1", "--name", f"env-{ref[:6]}", machine=machine, **store)
            fast = run("create", "team/env:v1", "--name", f"env-{ref[:6]}", machine=machine, **store)
            assert f"Environment {ref} already exists" in fast.stdout, fast.stdout
        assert (
            answer(["create", "team/env:v1", "--name", f"env-{prod_ref[:6]}"], machine_env(machine, **prod))
            == 0
        )


@pytest.mark.parametrize(
    "ref", ["step:team/env/v1", " team/env:v1", "Team/env:v1", "team//env:v1", "/team:v1"]
)
def test_references_the_alias_grammar_reads_otherwise_go_to_the_full_command(
    ref: str, run: Run, machine_env: MachineEnv
) -> None:
    run("resolve", "--conda", "fx-core", "--alias", "team/env:v1")
    run("create", "team/env:v1", "--name", "work")
    assert answer(["create", ref, "--name", "work"], machine_env()) is None
