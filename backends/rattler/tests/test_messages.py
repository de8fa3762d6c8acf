"""The resolver's errors as users read them: one paragraph, rattler's explanation folded into clauses, and
the real cause of a channel that cannot be read, also for solves that waited on another one's fetch."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest
from envcore_rattler.resolver import RattlerResolver, solver_message

from envcore.config import Config
from envcore.errors import ResolutionError
from envcore.platforms import local_arch
from envcore.resolve import sys_packages
from envcore.testing.channel import Universe
from envcore.types import CONDA, Requirement, ResolveRequest

PYTHON = Requirement(category=CONDA, name="python", spec=f"{sys.version_info[0]}.{sys.version_info[1]}.*")


def resolver(tmp_path: Path) -> RattlerResolver:
    environ = {"METAFLOW_ENVCORE_CACHE_DIR": str(tmp_path / "cache"), "HOME": os.environ.get("HOME", "/tmp")}
    return RattlerResolver(Config.load(environ=environ))


def request(channel: str, *specs: tuple[str, str], arch: str = "") -> ResolveRequest:
    config = Config.load(environ={"HOME": os.environ.get("HOME", "/tmp")})
    wanted = tuple(Requirement(category=CONDA, name=name, spec=spec) for name, spec in specs)
    arch = arch or local_arch()
    return ResolveRequest(
        arch=arch,
        requirements=(*wanted, PYTHON, *sys_packages(config, arch, [])),
        sources={CONDA: (channel,)},
    )


def failure(tmp_path: Path, channel: str, *specs: tuple[str, str], arch: str = "") -> str:
    with pytest.raises(ResolutionError) as caught:
        resolver(tmp_path).resolve(request(channel, *specs, arch=arch))
    return caught.value.message


def assert_one_clean_paragraph(message: str) -> None:
    assert "\n" not in message and "│" not in message and "└" not in message, message
    for bad in ("..", ":;", "; ;", ";.", ": .", ",,"):
        assert bad not in message, (bad, message)


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        (("fx-nope", ""), "fx-nope *"),
        (("fx-core", ">=9"), "fx-core >=9"),
        (("python", "3.9.*"), "python 3.9.*"),
    ],
)
def test_a_missing_package_is_named_once_with_one_period(
    universe: Universe, tmp_path: Path, spec: tuple[str, str], named: str
) -> None:
    message = failure(tmp_path, universe.channel_url, spec)
    assert f"cannot be resolved for {local_arch()}: no candidates were found for {named}. Change" in message
    assert_one_clean_paragraph(message)


@pytest.mark.skipif(not local_arch().startswith("linux"), reason="this machine's own __cuda")
def test_a_missing_virtual_package_is_a_feature_of_the_target_to_declare(
    universe: Universe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONDA_OVERRIDE_CUDA", raising=False)
    message = failure(tmp_path, universe.channel_url, ("fx-native", "* *cuda*"))
    assert_one_clean_paragraph(message)
    assert "would require __cuda >=12, for which no candidates were found." in message
    assert f"{local_arch()} is resolved without __cuda at that version, a feature of the system" in message
    assert "--sys-pkg __cuda==12.4" in message and "@sys_packages" in message
    assert "CONDA_OVERRIDE_CUDA=12.4" in message  # this machine's arch: its own, not the setting's default
    assert "Change the constraint" not in message and "check that the package exists" not in message


def test_osx_targets_are_solved_for_the_macos_their_wheels_are_chosen_for(
    universe: Universe, tmp_path: Path
) -> None:
    """fx-ffmpeg needs __osx >=11.0: osx-64 targets had 10.15 and could not take it."""
    for arch in ("osx-64", "osx-arm64"):
        packages = resolver(tmp_path).resolve(request(universe.channel_url, ("fx-ffmpeg", ""), arch=arch))
        assert {p.name: p.subdir for p in packages}["fx-ffmpeg"] == arch


def test_a_conflict_reads_as_clauses(universe: Universe, tmp_path: Path) -> None:
    message = failure(tmp_path, universe.channel_url, ("fx-legacy", ""), ("fx-modern", ""))
    assert_one_clean_paragraph(message)
    assert "the following packages are incompatible: " in message
    assert "fx-modern 1.0.0 would require fx-core >=2, met by fx-core 2.0.0" in message
    assert (
        "fx-legacy * cannot be installed because fx-legacy 1.0.0 would require fx-core <2, which cannot be "
        "installed because fx-core 1.1.0 and fx-core 1.0.0 conflict with the versions named before. Change"
    ) in message


def test_the_tree_folds_nested_requirements() -> None:
    raw = (
        "Cannot solve the request because of: fx-modern * cannot be installed because there are no viable "
        "options:\n└─ fx-modern 1.0.0 would require\n   └─ python >=3.8, which cannot be installed because "
        "there are no viable options:\n      └─ python 3.11.7 would require\n         └─ __glibc >=2.17, for "
        "which no candidates were found.\n"
    )
    assert solver_message(Exception(raw)) == (
        "fx-modern * cannot be installed because fx-modern 1.0.0 would require python >=3.8, which cannot be "
        "installed because python 3.11.7 would require __glibc >=2.17, for which no candidates were found"
    )


def test_every_solve_waiting_on_a_failed_channel_read_reports_its_cause(tmp_path: Path) -> None:
    """rattler coalesces concurrent reads of the same repodata; those that waited get "a coalesced request
    failed; other error" unless the resolver finds the cause."""
    channel = (tmp_path / "no-such-channel").as_uri()
    names = ["fx-core", "fx-http", "fx-web", "fx-app", "fx-yaml", "fx-legacy"]
    for attempt in range(3):  # the race is not certain: each round is a new resolver, so a new gateway
        solver = resolver(tmp_path / str(attempt))
        barrier = threading.Barrier(len(names))
        messages: list[str] = []

        def solve(
            name: str,
            solver: RattlerResolver = solver,
            barrier: threading.Barrier = barrier,
            messages: list[str] = messages,
        ) -> None:
            barrier.wait()
            try:
                solver.resolve(request(channel, (name, "")))
            except ResolutionError as exc:
                messages.append(exc.message)

        threads = [threading.Thread(target=solve, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(messages) == len(names)
        for message in messages:
            assert "coalesced" not in message and "other error" not in message, message
            assert "Could not read the conda channels" in message and "No such file or directory" in message
            assert_one_clean_paragraph(message)


def test_a_full_disk_while_installing_is_named_as_such_not_as_damaged_packages(tmp_path: Path) -> None:
    import rattler.exceptions
    from envcore_rattler.installer import _refuse_full_disk

    from envcore.errors import FormatError

    full = rattler.exceptions.LinkError("failed to unpack `lib/x.py`: No space left on device (os error 28)")
    with pytest.raises(FormatError) as err:
        _refuse_full_disk(full, tmp_path)
    assert "the disk is full" in err.value.message and "free disk space" in err.value.message
    _refuse_full_disk(
        rattler.exceptions.LinkError("invalid Zip archive"), tmp_path
    )  # not a full disk: no error
