"""A package file missing from the store (deleted by someone), or present but damaged (truncated, or other bytes),
while the environment's description is still there, met by ``envcore create`` on a machine whose package cache is
empty: hydrated from the package's source when it serves the very file (hash checked) and put back in (or replaced
in) the store, said in one line; a clear paragraph when neither has it, a damaged object left in place. (The same
through an S3 bucket: ``storage/s3/tests/test_store.py``.)"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from pathlib import Path

from ..conftest import env_ids
from .conftest import ReliabilityReport
from .test_faults import Run, check_store

RELIABILITY_CATEGORY = "integrity cases"


def _resolve_mixed(run: Run, store: Path) -> tuple[str, dict[str, Path]]:
    """Resolve and cache fx-app (conda) + fx-extras (PyPI); the reference and the store's file of each."""
    (ref,) = env_ids(run("resolve", "--conda", "fx-app", "--pypi", "fx-extras").stdout)
    files = {
        name: next(p for p in store.rglob(pattern) if p.is_file())
        for name, pattern in (("conda", "fx-core-*.conda"), ("wheel", "fx_extras-*.whl"))
    }
    return ref, files


def _lines(stderr: str, text: str) -> list[str]:
    return [line for line in stderr.splitlines() if text in line]


def test_a_package_missing_from_the_store_is_hydrated_from_its_source_and_put_back(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    ref, files = _resolve_mixed(run, world["store"])
    kept = {kind: path.read_bytes() for kind, path in files.items()}
    for path in files.values():
        path.unlink()
    out = run("create", ref, "--name", "healed", machine="b")  # machine b: an empty package cache
    for kind, path in files.items():
        (line,) = _lines(out.stderr, f"{path.name} of ")  # one line each, naming the object and the source
        assert "is missing from the store" in line and str(world["store"]) in line, line
        assert "fetched it from its source" in line and line.rstrip().endswith("put it back in the store.")
        assert path.read_bytes() == kept[kind]  # healed: the very file
    check_store(world["store"])
    python = world["b"] / "cache" / "envs" / "healed" / "bin" / "python"
    assert subprocess.run([python, "-c", "import fx_app, fx_extras"], check=False).returncode == 0
    # the store alone now suffices: another machine, its sources out of reach, says nothing of missing files
    for source in ("channel", "simple"):
        (world["universe"] / source).rename(world["universe"] / f"{source}-gone")
    fresh = world["b"] / "fresh-cache"
    again = run("create", ref, "--name", "from-store", machine="b", METAFLOW_ENVCORE_CACHE_DIR=str(fresh))
    assert "missing from the store" not in again.stderr
    assert (fresh / "envs" / "from-store" / ".metaflowenv").exists()
    reliability_report.record("integrity cases")


def test_a_missing_package_that_cannot_be_put_back_still_makes_the_environment(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    ref, files = _resolve_mixed(run, world["store"])
    target = files["conda"]
    target.unlink()
    (target / "in-the-way").mkdir(parents=True)  # its key is now a folder of another object: no write there
    (target / "in-the-way" / "object").write_bytes(b"x")
    out = run("create", ref, "--name", "n", machine="b")
    (line,) = _lines(out.stderr, f"{target.name} of ")
    assert (
        "is missing from the store" in line and "but could not put it back in the store: Cannot write" in line
    )
    assert (world["b"] / "cache" / "envs" / "n" / ".metaflowenv").exists()
    reliability_report.record("integrity cases")


def test_a_package_neither_the_store_nor_its_source_has_is_named_with_its_store_path(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    ref, files = _resolve_mixed(run, world["store"])
    files["conda"].unlink()
    store_before = sorted(p for p in world["store"].rglob("*") if p.is_file())
    (world["universe"] / "channel").rename(world["universe"] / "gone")
    out = run("create", ref, "--name", "n", machine="b", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    message = " ".join(out.stderr.split())
    # the object's URL (a word of over 200 characters here, cut by the CLI, keeping its start and its end)
    where = f"({world['store'].as_uri()}/packages/conda/"
    assert f"{files['conda'].name} of fx-core " in message and where in message, message
    assert f"{files['conda'].parent.name[-10:]}/{files['conda'].name})" in message, message
    assert "is missing from the store" in message and "its source cannot be read either" in message
    assert "Run this again once the source serves it" in message and "envcore resolve --force" in message
    assert not (world["b"] / "cache" / "envs" / "n" / ".metaflowenv").exists()
    assert sorted(p for p in world["store"].rglob("*") if p.is_file()) == store_before  # nothing written
    reliability_report.record("integrity cases")


def test_a_missing_package_whose_source_serves_another_file_is_refused_not_put_back(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    ref, files = _resolve_mixed(run, world["store"])
    files["conda"].unlink()
    (served,) = (world["universe"] / "channel").rglob(files["conda"].name)
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the source now serves another file under the same name
    served.write_bytes(bytes(data))
    out = run("create", ref, "--name", "n", machine="b", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    message = " ".join(out.stderr.split())
    assert "is missing from the store" in message and "and its source serves another file" in message
    assert len([w for w in message.split() if len(w.strip(".,()'")) == 64]) >= 2  # both hashes named
    assert not files["conda"].exists()  # never put back
    assert not (world["b"] / "cache" / "envs" / "n" / ".metaflowenv").exists()
    recorded = json.loads(next(p for p in (world["store"] / "envs").rglob("env")).read_text())
    assert recorded["packages"]  # the description is untouched
    reliability_report.record("integrity cases")


def _damage(path: Path, how: str) -> bytes:
    """Damage the store's file at ``path`` (``truncated``, or ``flipped``: the same size, one byte changed);
    returns its good bytes."""
    good = path.read_bytes()
    if how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:
        path.write_bytes(
            good[: len(good) // 2] + bytes([good[len(good) // 2] ^ 0xFF]) + good[len(good) // 2 + 1 :]
        )
    return good


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_package_damaged_in_the_store_is_hydrated_from_its_source_and_replaced(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    ref, files = _resolve_mixed(run, world["store"])
    good = {"conda": _damage(files["conda"], "truncated"), "wheel": _damage(files["wheel"], "flipped")}
    damaged = {kind: path.read_bytes() for kind, path in files.items()}
    out = run("create", ref, "--name", "healed", machine="b")  # machine b: an empty package cache
    for kind, path in files.items():
        (line,) = _lines(out.stderr, f"{path.name} of ")  # one line each: the object, both hashes, the source
        hashes = f"sha256 {_sha256(damaged[kind])[:12]}... where the environment records {_sha256(good[kind])[:12]}..."
        assert (
            f" in the store ({world['store'].as_uri()}/packages/" in line
            and f"/{path.name}) is damaged" in line
        )
        assert f"is damaged ({hashes}): fetched it from its source ({world['universe'].as_uri()}/" in line, (
            line
        )
        assert line.rstrip().endswith("whose file has the recorded hash, and replaced the store's copy."), (
            line
        )
        assert path.read_bytes() == good[kind]  # replaced by the very file
    check_store(world["store"])
    python = world["b"] / "cache" / "envs" / "healed" / "bin" / "python"
    assert subprocess.run([python, "-c", "import fx_app, fx_extras"], check=False).returncode == 0
    # the store alone now suffices: another machine, its sources out of reach, says nothing of damage
    for source in ("channel", "simple"):
        (world["universe"] / source).rename(world["universe"] / f"{source}-gone")
    fresh = world["b"] / "fresh-cache"
    again = run("create", ref, "--name", "from-store", machine="b", METAFLOW_ENVCORE_CACHE_DIR=str(fresh))
    assert "damaged" not in again.stderr and "quarantine" not in again.stderr, again.stderr
    assert (fresh / "envs" / "from-store" / ".metaflowenv").exists()
    reliability_report.record("integrity cases")


def test_a_reader_of_a_damaged_object_being_replaced_sees_it_whole_or_the_whole_good_one(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    """The replacement goes through the store's atomic put: a reader that opened the damaged object reads all of
    it, and readers meanwhile (polling the 9 MB python package while ``create`` replaces it) read the damaged
    object or the good one, never part of either."""
    ref, _ = _resolve_mixed(run, world["store"])
    target = next(p for p in world["store"].rglob("python-3*.conda") if p.is_file())
    good = _damage(target, "flipped")
    damaged = target.read_bytes()
    seen: set[bytes] = set()
    reads = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal reads
        while not stop.is_set():
            with open(target, "rb") as fh:
                data = fh.read()
            reads += 1
            if data not in (good, damaged):
                seen.add(data[:64])

    with open(target, "rb") as held:  # opened before the replacement
        reader = threading.Thread(target=poll)
        reader.start()
        try:
            out = run("create", ref, "--name", "n", machine="b")
        finally:
            stop.set()
            reader.join()
        assert held.read() == damaged  # not rewritten in place
    assert _lines(out.stderr, f"{target.name} of ") and target.read_bytes() == good
    assert reads > 1 and not seen, f"{len(seen)} partial read(s) of {reads}"
    check_store(world["store"])
    reliability_report.record("integrity cases")


def test_a_damaged_package_neither_the_store_nor_its_source_has_is_one_paragraph_and_left_in_place(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    ref, files = _resolve_mixed(run, world["store"])
    good = _damage(files["conda"], "flipped")
    damaged = files["conda"].read_bytes()
    (world["universe"] / "channel").rename(world["universe"] / "gone")
    out = run("create", ref, "--name", "n", machine="b", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    message = " ".join(out.stderr.split())
    where = (
        f"({world['store'].as_uri()}/packages/conda/"  # the object's URL (cut by the CLI: its start, its end)
    )
    assert f"{files['conda'].name} of fx-core " in message and where in message, message
    assert f"{files['conda'].parent.name[-10:]}/{files['conda'].name})" in message, message
    hashes = f"sha256 {_sha256(damaged)[:12]}... where the environment records {_sha256(good)[:12]}..."
    assert f" is damaged ({hashes}), and its source cannot be read either: Cannot read " in message, message
    assert "The damaged object is left in place. Run this again once the source serves the file" in message
    assert "delete the object and `envcore resolve --force` its requirements" in message
    assert files["conda"].read_bytes() == damaged  # never deleted: nothing could replace it
    assert list((world["b"] / "cache" / "quarantine").glob("*fx-core*")), "what the store served was not kept"
    assert not (world["b"] / "cache" / "envs" / "n" / ".metaflowenv").exists()
    reliability_report.record("integrity cases")


def test_a_damaged_package_whose_source_serves_another_file_is_refused_and_left_in_place(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    ref, files = _resolve_mixed(run, world["store"])
    _damage(files["wheel"], "truncated")
    damaged = files["wheel"].read_bytes()
    (served,) = (world["universe"] / "wheels").glob(files["wheel"].name)
    _damage(served, "flipped")  # the source now serves another file under the same name
    out = run("create", ref, "--name", "n", machine="b", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    message = " ".join(out.stderr.split())
    assert f"{files['wheel'].name} of fx-extras " in message and "is damaged (sha256 " in message, message
    assert (
        "and its source serves another file" in message and "The damaged object is left in place." in message
    )
    assert files["wheel"].read_bytes() == damaged
    assert not (world["b"] / "cache" / "envs" / "n" / ".metaflowenv").exists()
    reliability_report.record("integrity cases")
