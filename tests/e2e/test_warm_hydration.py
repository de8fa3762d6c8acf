"""Warm hydration through the ``envcore`` command: a second prefix of an environment is cloned from the
first (hardlinks, prefix rewritten where files name it) and works exactly like an installed one."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from envcore import fetch
from envcore.locks import file_lock

from ..conftest import env_ids, imported_modules

# conda: a text placeholder file and pip's entry points; PyPI: a console script (fx-app) and plain modules
REQUEST = ("--conda", "fx-prefixed", "--conda", "pip", "--pypi", "fx-extras", "--pypi", "fx-app")
Run = Callable[..., subprocess.CompletedProcess[str]]


def _works(prefix: Path) -> None:
    code = "import fx_prefixed, fx_extras, sys; print(fx_prefixed.__file__, sys.prefix, sep='\\n')"
    out = subprocess.run([prefix / "bin" / "python", "-c", code], capture_output=True, text=True, check=True)
    module, sys_prefix = out.stdout.splitlines()
    assert Path(module).is_relative_to(prefix) and sys_prefix == str(prefix)
    for script in ("pip", "fx-app"):  # a conda entry point and a wheel console script
        done = subprocess.run([prefix / "bin" / script, "--help"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def _names(prefix: Path, needle: str) -> list[str]:
    found = []
    for path in prefix.rglob("*"):
        if "__pycache__" in path.parts or path.is_symlink() or not path.is_file():
            continue
        if needle.encode() in path.read_bytes():
            found.append(str(path.relative_to(prefix)))
    return found


def test_second_prefix_is_cloned_and_names_only_itself(run: Run, world: dict[str, Path]) -> None:
    out = run("resolve", *REQUEST)
    (ref,) = env_ids(out.stdout)
    first = run("create", ref, "--name", "first")
    assert "Linked from" not in first.stderr + first.stdout
    envs = world["a"] / "cache" / "envs"
    _works(envs / "first")
    subprocess.run([envs / "first" / "bin" / "python", "-c", "import fx_extras"], check=True)  # __pycache__

    second = run("--verbose", "create", ref, "--name", "second-with-a-longer-name")
    assert f"Linked from the same environment at {envs / 'first'}" in second.stderr
    clone = envs / "second-with-a-longer-name"
    _works(clone)
    assert _names(clone, str(envs / "first")) == []
    assert (clone / "bin" / "python").stat().st_ino == (envs / "first" / "bin" / "python").stat().st_ino

    # the source is gone: the next prefix comes from the clone, and with none left, from the package files
    shutil.rmtree(envs / "first")
    third = run("--verbose", "create", ref, "--name", "third")
    assert f"Linked from the same environment at {clone}" in third.stderr
    _works(envs / "third")
    shutil.rmtree(clone)
    shutil.rmtree(envs / "third")
    fourth = run("--verbose", "create", ref, "--name", "fourth")
    assert "Linked from" not in fourth.stderr
    _works(envs / "fourth")


def test_entry_points_run_in_prefixes_whose_path_has_a_space(run: Run, world: dict[str, Path]) -> None:
    """A '#!' line cannot name an interpreter in a path with a space: cloned or installed (rattler, uv), the
    scripts start with '#!/bin/sh' running it."""
    (ref,) = env_ids(run("resolve", *REQUEST).stdout)
    envs = world["a"] / "cache" / "envs"
    run("create", ref, "--name", "plain")
    cloned = run("--verbose", "create", ref, "--name", "with space")
    assert f"Linked from the same environment at {envs / 'plain'}" in cloned.stderr
    _works(envs / "with space")
    installed = run("--verbose", "create", ref, "--name", "with space", "--force")
    assert "Linked from" not in installed.stderr
    _works(envs / "with space")


def test_hydrating_from_the_store_loads_no_resolver_and_no_archive_parser(
    run: Run, world: dict[str, Path]
) -> None:
    """Another machine hydrates an environment from the store: it installs with the installers alone. The
    resolvers, the spec parser and the archive parsers (packages from the store were checked before they entered
    it) are not imported: a node's start pays only for what it runs."""
    (ref,) = env_ids(run("resolve", *REQUEST).stdout)
    done = run("create", ref, "--name", "node", machine="b", PYTHONPROFILEIMPORTTIME="1")
    modules = imported_modules(done.stderr)
    assert {"envcore_rattler.installer", "envcore_uv.installer", "envcore.hydrate"} <= modules
    loaded = modules & {
        "envcore_rattler.resolver",
        "envcore_uv.resolver",
        "envcore.specs",
        "envcore.pypi",
        "envcore.formats.conda",
        "envcore.formats.wheel",
        "email.parser",
        "tomllib",
    }
    assert not loaded
    _works(world["b"] / "cache" / "envs" / "node")


def test_force_and_verify_install_from_the_package_files(run: Run, world: dict[str, Path]) -> None:
    out = run("resolve", *REQUEST)
    (ref,) = env_ids(out.stdout)
    run("create", ref, "--name", "one")
    for flags in (["--force"], ["--verify"]):  # the second on a complete prefix: re-created all the same
        done = run("--verbose", "create", ref, "--name", "two", *flags)
        assert "Linked from" not in done.stderr and " created at " in done.stdout, done.stdout
        _works(world["a"] / "cache" / "envs" / "two")


def _timeless(text: str) -> str:
    return re.sub(r" in \d+\.\d\d s;", " in T s;", text)


def test_plain_create_clones_before_click_or_plugins_are_imported(run: Run, world: dict[str, Path]) -> None:
    """``envcore create REQ:FULL --name NEW`` with a finished prefix on the machine is answered by the fast
    path (envcore.uptodate), which does and prints what the full command does."""
    (ref,) = env_ids(run("resolve", *REQUEST).stdout)
    envs = world["a"] / "cache" / "envs"
    run("create", ref, "--name", "first")
    fast = run("create", ref, "--name", "fast", PYTHONPROFILEIMPORTTIME="1")
    modules = imported_modules(fast.stderr)
    assert "envcore.relocate" in modules
    assert not modules & {
        "click",
        "pluggy",
        "envcore.cli",
        "envcore.plugins",
        "rattler",
        "pathlib",
        "subprocess",
    }
    full = run("--verbose", "create", ref, "--name", "full")
    assert _timeless(fast.stdout).replace("/fast", "/full") == _timeless(full.stdout)
    assert f"    Linked from the same environment at {envs / 'first'}\n" in fast.stderr
    assert (
        f"    Linked from the same environment at {envs / 'fast'}\n" in full.stderr
    )  # indexed, newest first
    _works(envs / "fast")
    assert _names(envs / "fast", str(envs / "first")) == []
    quiet = run("-q", "create", ref, "--name", "quiet")
    assert (quiet.stdout, quiet.stderr) == (f"{envs / 'quiet' / 'bin' / 'python'}\n", "")
    again = run("create", ref, "--name", "fast")
    assert again.stdout.startswith(f"Environment {ref} already exists and is complete at {envs / 'fast'};")


def test_a_held_prefix_lock_sends_create_to_the_full_command(run: Run, world: dict[str, Path]) -> None:
    (ref,) = env_ids(run("resolve", *REQUEST).stdout)
    envs = world["a"] / "cache" / "envs"
    run("create", ref, "--name", "first")
    with file_lock(envs / ".busy.lock", 60):
        done = run("create", ref, "--name", "busy", check=False, METAFLOW_CONDA_LOCK_TIMEOUT="1")
    assert done.returncode != 0
    assert f"waiting for the lock {envs / '.busy.lock'} (held by pid " in " ".join(done.stderr.split())
    assert not (envs / "busy").exists()
    bad = run("create", ref, "--name", "busy", check=False, METAFLOW_CONDA_LOCK_TIMEOUT="soon")
    assert bad.returncode != 0 and "METAFLOW_CONDA_LOCK_TIMEOUT" in bad.stderr  # reported by the full command
    assert not (envs / "busy").exists()
    run("create", ref, "--name", "busy")
    _works(envs / "busy")


def test_a_name_holding_another_environment_is_replaced_only_with_force(
    run: Run, world: dict[str, Path]
) -> None:
    (first,) = env_ids(run("resolve", *REQUEST).stdout)
    (second,) = env_ids(run("resolve", "--conda", "fx-core").stdout)
    run("create", first, "--name", "work")
    prefix = world["a"] / "cache" / "envs" / "work"
    refused = run("create", second, "--name", "work", check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    message = " ".join(refused.stderr.split())
    assert f"already exists but holds a different environment ({first})" in message and "--force" in message
    assert f"not {second}, the one asked for" in message, message
    assert json.loads((prefix / ".metaflowenv").read_text())[:2] == first.split(":")  # untouched
    _works(prefix)
    replaced = run("create", second, "--name", "work", "--force")
    assert f"Environment {second} created at " in replaced.stdout
    assert json.loads((prefix / ".metaflowenv").read_text())[:2] == second.split(":")
    # its former environment is not cloned from that prefix any more: a new name is installed from files
    again = run("--verbose", "create", first, "--name", "again")
    assert "Linked from" not in again.stderr
    _works(world["a"] / "cache" / "envs" / "again")


def test_a_folder_envcore_did_not_make_is_never_replaced_unasked(run: Run, world: dict[str, Path]) -> None:
    (ref,) = env_ids(run("resolve", *REQUEST).stdout)
    envs = world["a"] / "cache" / "envs"
    precious = envs / "precious"
    precious.mkdir(parents=True)
    (precious / "data.txt").write_text("keep me")
    refused = run("create", ref, "--name", "precious", check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    message = " ".join(refused.stderr.split())
    assert f"'{precious}' already exists and is not an environment made by envcore" in message
    assert (precious / "data.txt").read_text() == "keep me"
    assert sorted(p.name for p in precious.iterdir()) == ["data.txt"]
    (envs / "empty").mkdir()  # an empty folder is used
    run("create", ref, "--name", "empty")
    _works(envs / "empty")
    run("create", ref, "--name", "precious", "--force")  # asked: replaced
    assert not (precious / "data.txt").exists()
    _works(precious)
    # the clone source must be a finished prefix, so these are clones; a clone interrupted mid-way leaves only
    # its build folder next to the prefix, which the next create replaces
    stale = envs / ".late.clone"
    stale.mkdir()
    (stale / "junk").write_text("half a copy")
    done = run("--verbose", "create", ref, "--name", "late")
    assert "Linked from" in done.stderr
    assert not stale.exists() and not (envs / "late" / ".envcore-partial").exists()
    _works(envs / "late")
    empty_name = run("create", ref, "--name", "", check=False)
    assert empty_name.returncode != 0 and "is not a plain folder name" in " ".join(empty_name.stderr.split())
    dotted = run("create", ref, "--name", ".late.rebuild", check=False)  # envcore's own work beside 'late'
    assert dotted.returncode == 2 and "not starting with '.'" in " ".join(dotted.stderr.split()), (
        dotted.stderr
    )
    newline = run("create", ref, "--name", "a\nb", check=False)
    assert newline.returncode == 2 and "has a control character" in newline.stderr, newline.stderr
    for length in (201, 300):  # 201: a name the file system takes, refused all the same (the fast path too)
        too_long = run("create", ref, "--name", "n" * length, check=False)
        message = " ".join(too_long.stderr.split())
        assert too_long.returncode == 2 and "Traceback" not in too_long.stderr, too_long.stderr
        assert f"is {length} bytes long; use a name of at most 200" in message


FAILING_INSTALLER = """
from envcore import hookimpl
from envcore.types import InstallerPlugin, PackageKind


class Failing:
    def check(self):
        pass

    def install(self, packages, prefix):
        (prefix / "half-written").write_text("x")
        raise OSError("the disk broke mid-way")


@hookimpl
def envcore_installers():
    yield InstallerPlugin(name="failing", kind=PackageKind.PYPI, factory=lambda config: Failing(), summary="x")
"""


def test_a_force_that_fails_leaves_the_working_environment_in_place(run: Run, world: dict[str, Path]) -> None:
    """Before, --force removed the prefix first: a bad installer setting, a missing package file or an
    interrupted install then left no environment at all."""
    (ref,) = env_ids(run("resolve", *REQUEST).stdout)
    run("create", ref, "--name", "work")
    prefix = world["a"] / "cache" / "envs" / "work"
    inode = (prefix / "bin" / "python").stat().st_ino
    bad = run("create", ref, "--name", "work", "--force", check=False, METAFLOW_ENVCORE_CONDA_INSTALLER="xx")
    assert bad.returncode != 0 and "no conda installer named 'xx'" in " ".join(bad.stderr.split())
    assert "Re-creating" not in bad.stderr  # failed before anything was touched
    # the package files are fetched before the prefix is moved aside: with them nowhere (not in the store,
    # the package cache or their channel), it fails first
    saved = world["universe"].with_name("saved")
    shutil.copytree(world["store"] / "packages", saved / "packages")
    shutil.rmtree(world["store"] / "packages")
    shutil.rmtree(world["a"] / "cache" / "pkgs")
    world["universe"].rename(saved / "universe")
    missing = run("create", ref, "--name", "work", "--force", check=False)
    assert missing.returncode != 0 and "Re-creating" not in missing.stderr, missing.stderr
    (saved / "universe").rename(world["universe"])
    shutil.copytree(saved / "packages", world["store"] / "packages")
    # a failure while installing (after the prefix was moved aside) puts the former environment back
    plugins = world["a"] / "plugins"
    plugins.mkdir()
    (plugins / "failing_installer.py").write_text(FAILING_INSTALLER)
    failing = run(
        "create",
        ref,
        "--name",
        "work",
        "--verify",
        check=False,
        PYTHONPATH=str(plugins),
        METAFLOW_ENVCORE_PLUGIN_MODULES="failing_installer",
        METAFLOW_ENVCORE_PYPI_INSTALLER="failing",
    )
    assert failing.returncode != 0 and "the disk broke mid-way" in failing.stderr, failing.stderr
    assert "Re-creating" in failing.stderr
    _works(prefix)
    assert (prefix / "bin" / "python").stat().st_ino == inode  # the same files: never removed
    assert json.loads((prefix / ".metaflowenv").read_text())[:2] == ref.split(":")
    assert not [p.name for p in prefix.parent.iterdir() if ".replaced-" in p.name]


WATCHER = """
import os, sys
*paths, stop = sys.argv[1:]
looks = missing = 0
while not os.path.exists(stop):
    for path in paths:
        looks += 1
        missing += not os.path.exists(path)
print(looks, missing)
"""


def test_force_swaps_the_new_environment_in_while_a_process_uses_the_old(
    run: Run, world: dict[str, Path]
) -> None:
    """--force built the new environment where the old one was, after moving that aside: a task of another run
    still running in it found its files gone until the build ended. It is built beside and swapped in."""
    (ref,) = env_ids(run("resolve", *REQUEST).stdout)
    run("create", ref, "--name", "work")
    prefix = world["a"] / "cache" / "envs" / "work"
    (module,) = prefix.glob("lib/python3*/site-packages/fx_extras/__init__.py")
    stop = world["a"] / "stop-watching"
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCHER, str(prefix / "bin" / "python"), str(module), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        marker = (prefix / ".metaflowenv").stat().st_ino
        for _ in range(2):
            assert "Re-creating" in run("--verbose", "create", ref, "--name", "work", "--force").stderr
            assert (prefix / ".metaflowenv").stat().st_ino != marker  # a new environment
            marker = (prefix / ".metaflowenv").stat().st_ino
    finally:
        stop.touch()
        looks, missing = map(int, watcher.communicate(timeout=60)[0].split())
    assert looks > 1000 and missing == 0, (looks, missing)
    _works(prefix)
    assert _names(prefix, ".work.") == []  # its files name the prefix, not where it was built
    assert sorted(p.name for p in prefix.parent.iterdir() if p.name.startswith(".work")) == [".work.lock"]


INTERRUPTED_RATTLER = """
import os
import signal

from envcore import hookimpl
from envcore.types import InstallerPlugin, PackageKind
from envcore_rattler.installer import RattlerInstaller


class Interrupted(RattlerInstaller):
    def install(self, packages, prefix):
        def interrupt(signum, frame):
            raise KeyboardInterrupt  # Ctrl-C, while rattler's threads link the packages into the prefix

        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, float(os.environ["INTERRUPT_AFTER"]))
        super().install(packages, prefix)


@hookimpl
def envcore_installers():
    yield InstallerPlugin(
        name="interrupted", kind=PackageKind.CONDA, factory=lambda config: Interrupted(config), summary="x"
    )
"""


def test_an_interrupted_force_puts_the_working_environment_back(run: Run, world: dict[str, Path]) -> None:
    """Ctrl-C cancels rattler's install, but its linking threads ran on and raced the put-back: the working
    environment was left beside an emptied prefix (and 'Directory not empty' was reported)."""
    (ref,) = env_ids(run("resolve", *REQUEST).stdout)
    run("create", ref, "--name", "work")
    prefix = world["a"] / "cache" / "envs" / "work"
    inode = (prefix / "bin" / "python").stat().st_ino
    plugins = world["a"] / "plugins-interrupted"
    plugins.mkdir()
    (plugins / "interrupted_rattler.py").write_text(INTERRUPTED_RATTLER)
    for after in ("0.01", "0.03", "0.06", "0.1", "0.15"):
        interrupted = run(
            "create",
            ref,
            "--name",
            "work",
            "--force",
            check=False,
            PYTHONPATH=str(plugins),
            METAFLOW_ENVCORE_PLUGIN_MODULES="interrupted_rattler",
            METAFLOW_ENVCORE_CONDA_INSTALLER="interrupted",
            INTERRUPT_AFTER=after,
        )
        assert interrupted.returncode == 130 and "Aborted" in interrupted.stderr, interrupted.stderr
        assert (prefix / "bin" / "python").stat().st_ino == inode  # the same files, put back
        assert not [p.name for p in prefix.parent.iterdir() if ".replaced-" in p.name]
        _works(prefix)


def test_an_environment_a_killed_force_moved_aside_is_put_back(run: Run, world: dict[str, Path]) -> None:
    (ref,) = env_ids(run("resolve", *REQUEST).stdout)
    run("create", ref, "--name", "work")
    envs = world["a"] / "cache" / "envs"
    inode = (envs / "work" / "bin" / "python").stat().st_ino
    # what a --force killed mid-install leaves: the working environment aside, a half-built prefix, and the
    # remains of an aside an earlier such process had started to remove
    (envs / "work").rename(envs / ".work.replaced-4000001")
    (envs / "work" / "lib").mkdir(parents=True)
    (envs / "work" / ".envcore-partial").write_text(
        ""
    )  # as an install marks its prefix before its first file
    (envs / ".work.replaced-4000002" / "lib").mkdir(parents=True)
    done = run("--verbose", "create", ref, "--name", "work")
    assert "Put back the environment" in done.stderr, done.stderr
    assert (envs / "work" / "bin" / "python").stat().st_ino == inode
    assert not [p.name for p in envs.iterdir() if ".replaced-" in p.name]
    _works(envs / "work")
    # what a killed --force left beside a complete prefix (its remains half removed) goes with the next create
    (envs / ".work.replaced-4000004" / "lib").mkdir(parents=True)
    assert "already exists and is complete" in run("create", ref, "--name", "work").stdout
    assert not [p.name for p in envs.iterdir() if ".replaced-" in p.name]
    # a folder of the user's where the prefix was: neither it nor the environment aside is touched
    (envs / "work").rename(envs / ".work.replaced-4000003")
    (envs / "work").mkdir()
    (envs / "work" / "notes.txt").write_text("mine")
    refused = run("create", ref, "--name", "work", check=False)
    assert refused.returncode == 2 and "is not an environment made by envcore" in " ".join(
        refused.stderr.split()
    )
    assert (envs / "work" / "notes.txt").read_text() == "mine"
    assert (envs / ".work.replaced-4000003" / "bin" / "python").stat().st_ino == inode


def test_verify_unpacks_anew_what_an_edit_in_a_prefix_changed_in_the_caches(
    run: Run, world: dict[str, Path]
) -> None:
    """Prefixes are hardlinked from rattler's and uv's unpacked copies: an edit in one prefix edits those copies
    and every prefix made from them later. --verify checks (rattler) or drops (uv) the copies of what it installs."""
    (ref,) = env_ids(run("resolve", *REQUEST).stdout)
    run("create", ref, "--name", "edited")
    envs = world["a"] / "cache" / "envs"
    site = Path("lib") / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    edited = [
        site / "fx_extras" / "__init__.py",
        Path("lib") / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "os.py",
    ]  # from a wheel; python's
    for relative in edited:
        with open(envs / "edited" / relative, "a") as fh:
            fh.write("EDITED = 1\n")

    def edits(name: str) -> list[str]:
        return [str(r) for r in edited if "EDITED" in (envs / name / r).read_text()]

    run("create", ref, "--name", "forced", "--force")
    assert edits("forced") == [str(r) for r in edited]  # the shared copies carry the edit
    unpacked = world["a"] / "cache" / "rattler" / "pkgs"
    untouched = {f: f.stat().st_ino for f in unpacked.glob("*/info/index.json") if "python-" not in str(f)}
    assert untouched
    run("create", ref, "--name", "verified", "--verify")
    assert edits("verified") == []
    assert {f: f.stat().st_ino for f in untouched} == untouched  # undamaged copies are kept
    (python_os,) = unpacked.glob(f"python-*/lib/python{sys.version_info[0]}.{sys.version_info[1]}/os.py")
    before = python_os.stat().st_ino
    run(
        "create", ref, "--name", "verified-again", "--verify"
    )  # python's copy, empty files and all, is sound now
    assert python_os.stat().st_ino == before
    _works(envs / "verified")
    run(
        "create", ref, "--name", "after", "--force"
    )  # the copies were unpacked anew: later prefixes are clean
    assert edits("after") == []


def test_force_over_a_damaged_package_cache_names_the_damage(run: Run, world: dict[str, Path]) -> None:
    """The damage is the error reported (the installer may still write into the build folder when it is
    found: removing that folder must neither hide the error nor be left undone), and the old prefix stays."""
    (ref,) = env_ids(run("resolve", *REQUEST).stdout)
    run("create", ref, "--name", "work")
    cache = world["a"] / "cache"
    damaged = sorted((cache / "pkgs").glob("*/fx-prefixed-*.conda"))[0]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    fetch._write_stamp(damaged, damaged.stat())  # bits flipped behind the file system's back: no change seen
    shutil.rmtree(cache / "rattler" / "pkgs" / damaged.name.removesuffix(".conda"))  # its unpacked copy
    for _ in range(3):  # (the race it guards against did not show every time)
        out = run("create", ref, "--name", "work", "--force", check=False)
        message = " ".join(out.stderr.split())
        assert out.returncode != 0 and "run `envcore create --verify`" in message, message
        assert "Directory not empty" not in message and "Traceback" not in message, message
        assert not (cache / "envs" / ".work.rebuild").exists()
    _works(cache / "envs" / "work")


def test_a_prefix_a_user_changed_is_not_copied_into_others(run: Run, world: dict[str, Path]) -> None:
    """What a user installs or removes in a created environment stays there: the next prefix of the same
    environment is not cloned from it (it comes from a prefix as made, else from the package files)."""
    (ref,) = env_ids(run("resolve", *REQUEST).stdout)
    envs = world["a"] / "cache" / "envs"
    run("create", ref, "--name", "mine")
    site = next((envs / "mine" / "lib").glob("python*/site-packages"))
    shutil.rmtree(site / "fx_prefixed")  # the user removes a package...
    (site / "userpkg.py").write_text("x = 1\n")  # ...and adds a module
    second = run("--verbose", "create", ref, "--name", "second")
    assert "Linked from" not in second.stderr, second.stderr
    _works(envs / "second")
    assert not list((envs / "second").rglob("userpkg.py"))
    third = run("--verbose", "create", ref, "--name", "third")  # from the prefix as made: a clone
    assert f"Linked from the same environment at {envs / 'second'}" in third.stderr, third.stderr
    _works(envs / "third")


def test_show_lists_no_folder_of_envcore_own_work_as_a_local_copy(run: Run, world: dict[str, Path]) -> None:
    """A finished clone an interrupted --force left beside NAME (.NAME.clone) is envcore's work, not a copy."""
    (ref,) = env_ids(run("resolve", *REQUEST).stdout)
    envs = world["a"] / "cache" / "envs"
    run("create", ref, "--name", "work")
    shutil.copytree(envs / "work", envs / ".work.clone", symlinks=True)  # marker included
    shown = json.loads(run("show", ref, "--json").stdout)
    assert shown["local_instances"] == [str(envs / "work")], shown["local_instances"]
