"""Faults, races and hostile bytes, through the installed ``envcore`` command: processes SIGKILLed at random
points, eight processes creating one environment, damaged and edited store objects, hostile archives in a
channel and in a store (a package damaged in, or missing from, the store: ``test_store_healing.py``).

After every fault the store must hold no partial object, no description may reference a missing package, no
alias a missing description, and the next run must succeed."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envcore import description
from envcore.local_store import LocalStore
from envcore.testing.channel import index_channel
from envcore.testing.conformance import HOSTILE_KINDS, hostile_archive
from envcore.tools import remove_abandoned_scratch

from ..conftest import ENVCORE, env_ids
from .conftest import ReliabilityReport

RELIABILITY_CATEGORY = "integrity cases"
Run = Callable[..., subprocess.CompletedProcess[str]]
KILLS = int(os.environ.get("ENVCORE_RELIABILITY_KILLS", "100"))


def check_store(root: Path) -> dict[str, int]:
    """The store's invariants; returns what it holds."""
    store = LocalStore(root)
    keys = {info.key for info in store.list("")}
    descriptions = [k for k in keys if k.startswith("envs/") and k.endswith("/env") and "/aliases/" not in k]
    for key in descriptions:
        _, arch, req_id, full_id, _ = key.split("/")
        with store.open(key) as fh:
            raw = fh.read()
        env = description.loads(raw, req_id=req_id, full_id=full_id, arch=arch, where=key)
        body = json.loads(raw)
        for pkg in body["packages"]:
            for info in pkg["cache_info"].values():
                assert info["url"] in keys, f"{key} references the missing package {info['url']}"
        assert env.packages
    for key in keys:
        if "/aliases/" in key:
            with store.open(key) as fh:
                req_id, full_id = json.loads(fh.read())
            assert any(d.endswith(f"/{req_id}/{full_id}/env") for d in descriptions), f"{key} -> missing env"
    leftovers = list((root / ".envcore-tmp").glob("*")) if (root / ".envcore-tmp").exists() else []
    return {"objects": len(keys), "descriptions": len(descriptions), "temp files": len(leftovers)}


def killed_run(env: dict[str, str], args: list[str], delay: float) -> int | None:
    proc = subprocess.Popen([ENVCORE, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None


@pytest.mark.slow
def test_kills_at_random_points_never_leave_a_broken_store_or_prefix(
    run: Run,
    world: dict[str, Path],
    machine_env: Callable[..., dict[str, str]],
    reliability_report: ReliabilityReport,
) -> None:
    reliability_report.record("kills survived", 0)  # a failure here counts against kills
    rng = random.Random(20261125)
    specs = [["--conda", "fx-app"], ["--conda", "fx-ffmpeg", "--pypi", "fx-extras"], ["--pypi", "fx-web"]]
    env_of = machine_env

    def took(machine: str, *args: str) -> float:
        started = time.monotonic()
        run(*args, machine=machine)
        return time.monotonic() - started

    # Kills land at random points of a run whatever this machine's speed: a fraction of how long the same
    # command takes here uninterrupted (fixed delays let a faster machine finish most runs before the kill).
    resolving = {tuple(spec): took("a", "resolve", "--force", *spec) for spec in specs}
    (first,) = env_ids(run("resolve", *specs[0]).stdout)
    took("b", "create", first, "--name", "timed-hydrate")
    cloning = took(
        "b", "create", first, "--name", "timed-clone"
    )  # later prefixes of an environment are clones
    killed = 0
    for i in range(KILLS):
        spec = specs[i % len(specs)]
        if i % 2 == 0:  # resolve + cache into the store
            delay = rng.uniform(0.03, 0.95) * resolving[tuple(spec)]
            code = killed_run(env_of("a"), ["resolve", "--force", *spec], delay)
        else:  # hydrate on machine b from the store
            out = run("resolve", *spec)
            (ref,) = env_ids(out.stdout)
            # a new prefix each time: the first of an environment is hydrated from the store, the next ones
            # are clones of it
            code = killed_run(
                env_of("b"), ["create", ref, "--name", f"k{i}"], rng.uniform(0.1, 0.95) * cloning
            )
            done = run("create", ref, "--name", f"k{i}", machine="b")  # the next run succeeds
            python = world["b"] / "cache" / "envs" / f"k{i}" / "bin" / "python"
            assert subprocess.run([python, "-c", "import sys"], check=False).returncode == 0, done.stdout
        killed += code is None
        check_store(world["store"])
    assert killed >= KILLS // 3, f"only {killed} of {KILLS} runs were killed before they finished"
    for spec in specs:  # and every environment still resolves and caches cleanly
        run("resolve", *spec)
    # what killed runs left in their scratch folders is what a later sweep removes (a process sweeps when it
    # makes its first scratch folder; a folder left empty, or with only the lock it was taking, once it is 10
    # minutes old): nothing stays for good, whatever moment the kills hit
    an_hour_ago = time.time() - 3600
    for machine in "ab":
        for folder in (world[machine] / "tmp").glob("envcore-*"):
            os.utime(folder, (an_hour_ago, an_hour_ago))
        remove_abandoned_scratch(world[machine] / "tmp")
    left = [p for m in "ab" for p in (world[m] / "tmp").glob("envcore-*/**/*") if not p.is_dir()]
    assert left == [], "killed runs left files in their scratch folders that no sweep removes"
    print(f"{KILLS} runs, {killed} killed mid-way; store: {check_store(world['store'])}")
    reliability_report.record("kills survived", killed)


def _started_until(env: dict[str, str], args: list[str], folder: Path) -> subprocess.Popen[bytes]:
    """``envcore ARGS`` started and left running until ``folder`` appears (a point inside its work)."""
    proc = subprocess.Popen([ENVCORE, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not folder.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(
                f"envcore {' '.join(args)} ended before {folder.name} appeared: {proc.stderr.read()!r}"
            )
        time.sleep(0.002)
    return proc


def test_what_a_killed_create_left_is_removed_by_the_next_create_but_a_live_ones_is_not(
    run: Run, world: dict[str, Path], machine_env: Callable[..., dict[str, str]]
) -> None:
    """A create killed while it rebuilt a prefix (--force) left ``.NAME.rebuild`` in the environments folder for
    good: a later create of that name found the prefix complete and returned at once. Now any create there
    removes it, once that prefix's lock is free; the folder of a create still running is left to it."""
    (ref,) = env_ids(run("resolve", "--conda", "fx-app").stdout)
    envs, env = world["b"] / "cache" / "envs", machine_env("b")
    for name in ("x", "y", "w"):
        run("create", ref, "--name", name, machine="b")

    def killed_rebuilding(name: str) -> Path:
        left = envs / f".{name}.rebuild"
        proc = _started_until(env, ["create", ref, "--name", name, "--force"], left)
        proc.kill()
        proc.wait()
        assert left.is_dir()
        return left

    live = _started_until(env, ["create", ref, "--name", "w", "--force"], envs / ".w.rebuild")
    live.send_signal(signal.SIGSTOP)  # a concurrent create, holding w's lock, its folder half built
    try:
        left = killed_rebuilding("x")
        again = run("create", ref, "--name", "x", machine="b")  # the same name
        assert "already exists and is complete" in again.stdout and not left.exists()
        left = killed_rebuilding("y")
        run("create", ref, "--name", "z", machine="b")  # any create in the folder
        assert not left.exists()
        assert (envs / ".w.rebuild").is_dir()
    finally:
        live.send_signal(signal.SIGCONT)
    assert live.wait(timeout=300) == 0, live.stderr.read() if live.stderr else ""
    assert sorted(p.name for p in envs.iterdir() if not p.name.endswith(".lock")) == ["w", "x", "y", "z"]
    for name in ("w", "x", "y", "z"):
        python = envs / name / "bin" / "python"
        assert subprocess.run([python, "-c", "import fx_app"], check=False).returncode == 0, name


def test_eight_processes_creating_one_environment(
    run: Run,
    world: dict[str, Path],
    machine_env: Callable[..., dict[str, str]],
    reliability_report: ReliabilityReport,
) -> None:
    reliability_report.record("racing processes", 0)
    (ref,) = env_ids(run("resolve", "--conda", "fx-app", "--pypi", "fx-extras").stdout)
    env = machine_env("b")
    procs = [
        subprocess.Popen(
            [ENVCORE, "create", ref, "--name", "shared"], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8
    assert sum("created at" in o for o in outputs) == 1  # one process built it, seven found it complete
    pkgs = world["b"] / "cache" / "pkgs"
    files = [p for p in pkgs.rglob("*") if p.is_file() and not p.name.endswith((".checked", ".verified"))]
    names = [p.name for p in files if "quarantine" not in p.parts]
    assert len(names) == len(set(names))  # every package file fetched once
    python = world["b"] / "cache" / "envs" / "shared" / "bin" / "python"
    assert subprocess.run([python, "-c", "import fx_app, fx_extras"], check=False).returncode == 0
    reliability_report.record("racing processes", len(procs))


def test_a_description_changed_after_it_was_written_is_refused(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    """The full id hashes the exact package files: a description whose package hashes were changed (as if
    fx-core were swapped for another file with its hash, which would then pass its own check) does not
    install."""
    (ref,) = env_ids(run("resolve", "--conda", "fx-app").stdout)
    req_id, full_id = ref.split(":")
    (path,) = [
        p for p in world["store"].rglob("env") if p.parent.name == full_id and p.parent.parent.name == req_id
    ]
    body = json.loads(path.read_text())
    (core,) = [p for p in body["packages"] if p["envcore"]["name"] == "fx-core"]
    core["hashes"] = {fmt: "0" * len(h) for fmt, h in core["hashes"].items()}
    for info in core["envcore"]["files"].values():
        info["md5"] = "0" * 32 if info.get("md5") else info.get("md5")
    path.write_text(json.dumps(body))
    out = run("create", ref, "--name", "t", machine="b", check=False)
    message = " ".join(out.stderr.split())
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"not {full_id}, the id it is stored under: it was changed after it was written" in message
    assert not (world["b"] / "cache" / "envs" / "t").exists()
    reliability_report.record("integrity cases")


def test_a_truncated_package_in_the_store_is_uploaded_again_by_resolve(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    run("resolve", "--conda", "fx-app")
    target = next(p for p in world["store"].rglob("fx-core-*.conda") if p.is_file())
    good = target.read_bytes()
    target.write_bytes(good[: len(good) // 2])
    out = run("resolve", "--force", "--conda", "fx-app")  # caching checks what the store holds (sizes)
    assert "uploading it again" in " ".join(out.stderr.split())
    assert target.read_bytes() == good
    check_store(world["store"])
    reliability_report.record("integrity cases")


def test_a_damaged_description_is_replaced_by_resolve_force(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-app").stdout)
    target = next(p for p in world["store"].rglob("env") if p.is_file() and "/aliases/" not in str(p))
    good = target.read_bytes()
    target.write_bytes(good[: len(good) // 2])
    broken = run("create", ref, "--name", "d", machine="b", check=False)
    assert broken.returncode == 1 and "replaces a damaged description" in " ".join(broken.stderr.split())
    out = run("resolve", "--force", "--conda", "fx-app")
    assert "is damaged (not JSON): writing the description again" in " ".join(out.stderr.split())
    assert " created at " in run("create", ref, "--name", "d", machine="b").stdout
    check_store(world["store"])
    reliability_report.record("integrity cases")


def _edit_description(store: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    target = next(p for p in store.rglob("env") if p.is_file() and "/aliases/" not in str(p))
    data = json.loads(target.read_bytes())
    edit(data)
    target.write_text(json.dumps(data))


def _first_files(data: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in data["packages"] if p["filename"].startswith("fx-core"))["envcore"]["files"]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda d: d["envcore"].update(schema=0), "its schema version is 0"),
        (lambda d: d["envcore"].update(schema="1"), "its schema version is '1'"),
        (lambda d: d["packages"][0].pop("filename"), "has no 'filename'"),
        (lambda d: d["packages"][0].update(_type="rpm"), "has the type 'rpm'"),
        (lambda d: d.update(env_type="weird"), "'weird' is not a valid EnvType"),
        (lambda d: d.update(deps="x"), "'deps' is not a list of strings"),
        (lambda d: _first_files(d).clear(), "has no .conda file"),
        (lambda d: _first_files(d)[".conda"].update(size="big"), ".conda file is malformed"),
    ],
)
def test_a_malformed_description_is_named_and_replaced_by_resolve_force(
    run: Run,
    world: dict[str, Path],
    reliability_report: ReliabilityReport,
    edit: Callable[[dict[str, Any]], None],
    problem: str,
) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-app").stdout)
    _edit_description(world["store"], edit)
    for command in (["show", ref], ["create", ref, "--name", "d"]):
        broken = run(*command, machine="b", check=False)
        message = " ".join(broken.stderr.split())
        assert broken.returncode == 1 and "Traceback" not in broken.stderr, broken.stderr
        assert "cannot be read" in message and problem in message, message
    out = run("resolve", "--force", "--conda", "fx-app")
    assert "is damaged: writing the description again" in " ".join(out.stderr.split())
    assert " created at " in run("create", ref, "--name", "d", machine="b").stdout
    check_store(world["store"])
    reliability_report.record("integrity cases")


def test_an_edited_sha256_is_blamed_on_the_description_and_resolve_force_writes_it_again(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-app").stdout)
    real = _first_files(json.loads(next(p for p in world["store"].rglob("env") if p.is_file()).read_bytes()))
    edited = ("0" if real[".conda"]["sha256"][0] != "0" else "1") + real[".conda"]["sha256"][1:]
    _edit_description(world["store"], lambda d: _first_files(d)[".conda"].update(sha256=edited))
    broken = run("create", ref, "--name", "e", machine="b", check=False)
    message = " ".join(broken.stderr.split())
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert f"the environment records {edited}" in message
    assert "the description's sha256 was changed after it was written" in message
    out = run("resolve", "--force", "--conda", "fx-app")
    assert "records fx-core" in out.stderr and "otherwise than it was resolved" in out.stderr
    assert " created at " in run("create", ref, "--name", "e", machine="b").stdout
    check_store(world["store"])
    reliability_report.record("integrity cases")


def test_a_package_neither_the_store_nor_its_source_has_is_named_as_such(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-app").stdout)
    next(p for p in world["store"].rglob("fx-core-*.conda") if p.is_file()).unlink()
    (world["universe"] / "channel").rename(world["universe"] / "gone")
    stale = world["b"] / "cache" / "pkgs" / ".incoming" / "tmp-left-by-a-killed-run"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x" * 1000)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    out = run("create", ref, "--name", "n", machine="b", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    message = " ".join(out.stderr.split())
    assert "is missing from the store (" in message and "and its source cannot be read either" in message
    assert not stale.exists()  # a killed run's download is swept by the next one
    reliability_report.record("integrity cases")


def test_an_interrupted_prefix_is_rebuilt_not_used(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-app").stdout)
    run("create", ref, "--name", "i", machine="b")
    prefix = world["b"] / "cache" / "envs" / "i"
    # as a process that died before its last step leaves it: marked partial, no marker
    (prefix / ".metaflowenv").rename(prefix / ".envcore-partial")
    shutil_target = next(prefix.rglob("fx_app/__init__.py"))
    shutil_target.unlink()
    out = run("create", ref, "--name", "i", machine="b")
    assert "created at" in out.stdout
    assert shutil_target.exists()
    reliability_report.record("integrity cases")


def test_verify_catches_a_package_damaged_in_the_local_cache(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-app").stdout)
    run("create", ref, "--name", "v", machine="b")
    cached = next(p for p in (world["b"] / "cache" / "pkgs").rglob("fx-core-*.conda") if p.is_file())
    data = bytearray(cached.read_bytes())
    data[100] ^= 0xFF
    cached.write_bytes(bytes(data))
    out = run("create", ref, "--name", "v2", "--verify", machine="b", check=False)
    assert out.returncode == 0, out.stderr  # the damaged copy is quarantined and fetched again from the store
    assert list((world["b"] / "cache" / "quarantine").glob("*fx-core*"))
    python = world["b"] / "cache" / "envs" / "v2" / "bin" / "python"
    assert subprocess.run([python, "-c", "import fx_core"], check=False).returncode == 0
    reliability_report.record("integrity cases")


def test_a_damaged_file_of_the_package_cache_is_said_set_aside_and_fetched_again(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    """One line each (without --verbose): the file, how it is damaged (both sizes, or both hash prefixes), and
    where it was set aside; the environment is then made as before."""
    (ref,) = env_ids(run("resolve", "--conda", "fx-app", "--pypi", "fx-extras").stdout)
    run("create", ref, "--name", "c", machine="b")
    cache = world["b"] / "cache"
    conda = next(p for p in (cache / "pkgs").rglob("fx-core-*.conda") if p.is_file())
    wheel = next(p for p in (cache / "pkgs").rglob("fx_extras-*.whl") if p.is_file())
    good = {path: path.read_bytes() for path in (conda, wheel)}
    conda.write_bytes(good[conda][:100])  # truncated (a conda package's size is recorded)
    flipped = bytearray(good[wheel])
    flipped[len(flipped) // 2] ^= 0xFF
    wheel.write_bytes(bytes(flipped))  # the same size, other bytes: hashed again (its stamp no longer fits)
    out = run("create", ref, "--name", "c", "--force", machine="b")
    sha = hashlib.sha256
    damage = {
        conda: f"100 bytes where the environment records {len(good[conda])}",
        wheel: f"sha256 {sha(flipped).hexdigest()[:12]}... where the environment records "
        f"{sha(good[wheel]).hexdigest()[:12]}...",
    }
    for path, why in damage.items():
        (line,) = [line for line in out.stderr.splitlines() if f"package cache file {path} " in line]
        assert f"is damaged ({why}): set aside in {cache / 'quarantine'}/" in line, line
        assert line.rstrip().endswith(f"-{path.name}; fetching it again."), line
    (aside,) = (cache / "quarantine").glob(f"*-{wheel.name}")
    assert aside.read_bytes() == bytes(flipped)  # kept for inspection
    assert conda.read_bytes() == good[conda] and wheel.read_bytes() == good[wheel]  # fetched again
    python = cache / "envs" / "c" / "bin" / "python"
    assert subprocess.run([python, "-c", "import fx_app, fx_extras"], check=False).returncode == 0
    reliability_report.record("integrity cases")


def test_a_package_damaged_in_the_local_cache_never_reaches_the_store(
    run: Run, world: dict[str, Path], tmp_path: Path, reliability_report: ReliabilityReport
) -> None:
    """The store is trusted by everyone who hydrates from it, so what is uploaded is hashed again first."""
    run("resolve", "--conda", "fx-app")
    cached = next(p for p in (world["a"] / "cache" / "pkgs").rglob("fx-app-*.conda") if p.is_file())
    donor = next(p for p in (world["a"] / "cache" / "pkgs").rglob("fx-core-*.conda") if p.is_file())
    cached.write_bytes(donor.read_bytes())  # a well-formed archive, but another package
    other = tmp_path / "new-store"  # the site moves to a new store: the packages are uploaded from the cache
    run("resolve", "--conda", "fx-app", METAFLOW_CONDA_LOCALROOT=str(other))
    assert list((world["a"] / "cache" / "quarantine").glob("*fx-app*")), "the damaged copy was not set aside"
    check_store(other)
    uploaded = next(p for p in other.rglob("fx-app-*.conda") if p.is_file())
    assert uploaded.read_bytes() != donor.read_bytes()
    (ref,) = env_ids(run("resolve", "--conda", "fx-app").stdout)
    created = run("create", ref, "--name", "fresh", machine="b", METAFLOW_CONDA_LOCALROOT=str(other))
    assert " created at " in created.stdout
    reliability_report.record("integrity cases")


# The attacker's writer: envcore's own resolve and cache, with the format's safety check switched off, so the
# store holds a hostile package under a correct hash and a description that uses it.
UNCHECKED_CACHE = """
import sys
from envcore import cache as caching, resolve as resolving, specs
from envcore.config import Config
from envcore.environments import Environments
from envcore.plugins import build_registry

class Unchecked:
    def __init__(self, real):
        self.real = real
    def check(self, path):
        return None
    def __getattr__(self, name):
        return getattr(self.real, name)

config = Config.load()
registry = build_registry(config)
request = resolving.build_request(specs.from_decorator(libraries={"evil": ""}, packages={}), config,
                                  resolving.local_arch())
envs = Environments(registry)
((env, _),) = list(envs.resolve([request]))
env, _ = caching.cache_environment(config, envs.store, env,
                                   formats=lambda ext: Unchecked(registry.package_format(ext)))
print(f"{env.req_id}:{env.full_id}")
"""


def escaped(root: Path, *inside: Path) -> list[Path]:
    """What the hostile payloads (``evil.txt``, ``ok.txt``, ``escape``, ``passwd``, ``null``) left anywhere under
    ``root`` but in the ``inside`` folders, plus links leaving ``root``, hardlinks to /etc/passwd, devices."""
    passwd = Path("/etc/passwd").stat()
    names = {"evil.txt", "ok.txt", "escape", "passwd", "null"}
    found = []
    for path in root.rglob("*"):
        info = path.lstat()
        leaves = path.is_symlink() and root not in path.resolve().parents
        hostile = (info.st_ino, info.st_dev) == (passwd.st_ino, passwd.st_dev) or stat.S_ISCHR(info.st_mode)
        payload = path.name in names and not any(folder in path.parents for folder in inside)
        if leaves or hostile or payload:
            found.append(path)
    return found + [p for p in (Path("/tmp/envcore-evil.txt"), Path("/tmp/envcore-evil.py")) if p.exists()]


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_a_hostile_package_from_a_channel_is_refused(
    run: Run,
    world: dict[str, Path],
    machine_env: Callable[..., dict[str, str]],
    reliability_report: ReliabilityReport,
    kind: str,
) -> None:
    """Through ``envcore resolve`` and ``envcore create`` from the channel, a hostile package is refused with
    one paragraph and nothing of it is written anywhere. A store is trusted (envcore checks every package
    before upload): a hostile package planted there is only contained, never written outside the prefix."""
    reliability_report.record("hostile archives", 0)
    channel = world["universe"] / "channel"
    made = hostile_archive(".conda", kind, world["universe"])
    assert made is not None
    made.rename(channel / "noarch" / "evil-1.0-0.conda")  # the kit's archive has complete metadata
    index_channel(channel)
    refused = ("Refusing package evil-1.0-0.conda", "Package evil-1.0-0.conda is malformed")

    # 1. resolving: the package is checked before it enters the store, and refused
    out = run("resolve", "--conda", "evil", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert any(r in " ".join(out.stderr.split()) for r in refused), out.stderr
    assert not world["store"].exists() or check_store(world["store"])["descriptions"] == 0

    # 2. a store written without the check (the attacker's writer); its copy of the package is removed, so
    # `envcore create` on another machine fetches it from the channel, checks it and refuses it
    crafted = subprocess.run(
        [sys.executable, "-c", UNCHECKED_CACHE], env=machine_env("a"), capture_output=True, text=True
    )
    assert crafted.returncode == 0, crafted.stderr
    ref = crafted.stdout.split()[-1]
    planted = [p for p in world["store"].rglob("evil-1.0-0.conda") if p.is_file()]
    saved = {p: p.read_bytes() for p in planted}
    for path in planted:
        path.unlink()
    done = run("create", ref, "--name", "evil", machine="b", check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert any(r in " ".join(done.stderr.split()) for r in refused), done.stderr
    assert not (world["b"] / "cache" / "envs" / "evil" / ".metaflowenv").exists()
    assert escaped(world["b"].parent) == []

    # 3. the package planted in the store itself, hydrated on a fresh machine: contained (in the prefix and
    # the installer's own package cache); the store is trusted, so the outcome is the installer's
    for path, data in saved.items():
        path.write_bytes(data)
    cache = world["b"] / "fresh-cache"
    run("create", ref, "--name", "planted", machine="b", check=False, METAFLOW_ENVCORE_CACHE_DIR=str(cache))
    assert (
        escaped(world["b"].parent, cache / "envs" / "planted", cache / "rattler" / "pkgs" / "evil-1.0-0")
        == []
    )
    reliability_report.record("hostile archives")


def test_a_damaged_conda_archive_a_resolution_reads_is_said_set_aside_and_fetched_again(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    """A mixed resolution reads which Python distributions its conda packages install from their archives in the
    package cache: a damaged copy there is said in the line a create says (once), set aside, and fetched again,
    and the resolution is the one made before."""
    args = ("resolve", "--conda", "fx-app", "--pypi", "fx-extras")
    (ref,) = env_ids(run(*args).stdout)
    cache = world["a"] / "cache"
    shutil.rmtree(cache / "dists")  # what the resolution read of the archives: read again
    conda = next(p for p in (cache / "pkgs").rglob("fx-core-*.conda") if p.is_file())
    good = conda.read_bytes()
    conda.write_bytes(good[:100])  # truncated (its size is recorded)
    out = run(*args, "--force")
    said = f"The package cache file {conda} is damaged (100 bytes where the environment records {len(good)}): set aside in "
    (line,) = [line for line in out.stderr.splitlines() if said in line]
    assert line.rstrip().endswith(f"-{conda.name}; fetching it again."), out.stderr
    assert "EnvcoreWarning" not in out.stderr and "warnings.warn(" not in out.stderr, out.stderr
    (aside,) = (cache / "quarantine").glob(f"*-{conda.name}")
    assert (
        aside.read_bytes() == good[:100] and conda.read_bytes() == good
    )  # kept for inspection; fetched again
    assert env_ids(out.stdout) == [ref]
    reliability_report.record("integrity cases")
