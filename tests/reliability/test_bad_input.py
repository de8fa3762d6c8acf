"""A corpus of bad input through the installed ``envcore`` command: every case is one paragraph on stderr,
a non-zero exit, no traceback, and the store byte-for-byte unchanged."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ..conftest import env_ids, snapshot
from .conftest import ReliabilityReport

RELIABILITY_CATEGORY = "bad inputs"
Run = Callable[..., subprocess.CompletedProcess[str]]

FILES: list[tuple[str, str, str]] = [
    ("requirements.txt", "-e ./pkg\n", "is an editable install"),
    ("requirements.txt", "-r other.txt\n", "does not exist"),
    ("requirements.txt", "-c constraints.txt\n", "does not exist"),
    ("requirements.txt", "pandas>>1\n", "Could not parse"),
    ("requirements.txt", "a==1 --config-settings x\n", "Could not parse"),
    ("requirements.txt", "--sys-pkg __osx==11\n", "not allowed"),
    ("requirements.txt", "--sys-pkg __cuda\n", "requires a version"),
    ("requirements.txt", "--sys-pkg __cuda>=11\n", "requires a specific version"),
    ("requirements.txt", "--conda-pkg 'bad name'\n", "Could not parse"),
    ("requirements.txt", "python>=three\n", "is not a python version"),
    ("requirements.txt", "--unknown-option x\n", "is not a supported line"),
    ("environment.yml", "dependencies: [a, b\n", "is not valid YAML"),
    ("environment.yml", "- a\n- b\n", "must be a mapping"),
    ("environment.yml", "channels: conda-forge\n", "must be a list"),
    ("environment.yml", "dependencies:\n  - python=3.10\n  - python=3.11\n", "multiple times"),
    ("environment.yml", "dependencies: [a, {x: 1}]\n", "is not understood"),
    ("environment.yml", "dependencies:\n  - sys:\n    - __glibc>=2.17\n", "requires a specific version"),
    ("environment.yml", "dependencies:\n  - pip:\n    - 'bad req ~~'\n", "Could not parse"),
    ("environment.yml", "dependencies:\n  - a b c d (\n", "is not a conda version constraint"),
    ("environment.yml", "dependencies:\n\t- a\n", "is not valid YAML"),
    ("pyproject.toml", '[project]\ndependencies = ["python>=3.10"]\n', "requires-python"),
    ("pyproject.toml", "[project\n", "is not valid TOML"),
    ("pyproject.toml", '[project]\ndependencies = ["pandas>>1"]\n', "Could not parse"),
    ("pyproject.toml", '[project]\nrequires-python = "three"\n', "is not a python version"),
]

ARGS: list[tuple[list[str], dict[str, str], str]] = [
    (["resolve"], {}, "Nothing to resolve"),
    (["resolve", "-r", "a.txt", "-f", "b.yml"], {}, "Can only specify one of -r, -f or -p"),
    (["resolve", "-r", "/nonexistent/requirements.txt"], {}, "Cannot read /nonexistent/requirements.txt"),
    (["resolve", "--conda", "fx-app", "--arch", "sparc-64"], {}, "Unknown architecture 'sparc-64'"),
    (["resolve", "--conda", "fx-app", "--python", "3.10", "-r", "py.txt"], {}, "Cannot specify --python"),
    (["resolve", "--conda", "x", "--using", "a:v1", "--using-pathspec", "F/1/s"], {}, "Cannot specify both"),
    (["resolve", "--conda", "fx-app", "--alias", "Team/x"], {}, "lowercase alphanumeric"),
    (["resolve", "--conda", "fx-app", "--alias", "/x"], {}, "must not start or end"),
    (["resolve", "--conda", "fx-app", "--alias", "x:V1"], {}, "tag name"),
    (["resolve", "--conda", "fx-app", "--alias", "step:F/1/s"], {}, "only names"),
    (["resolve", "--conda", "fx-nosuch"], {}, "fx-nosuch"),
    (["resolve", "--conda", "fx-core==9.9"], {}, "cannot be resolved"),
    (["resolve", "--pypi", "fx-nosuch"], {}, "fx-nosuch"),
    (["resolve", "--conda", "bad name"], {}, "is not a conda version constraint"),
    (["create", "a" * 40], {}, "Invalid format for environment alias"),
    (["create", "team/none:v9"], {}, "does not refer to a known environment"),
    (["show", f"{'a' * 40}:{'b' * 40}"], {}, "is not available"),
    (["alias", "team/none:v9", "team/other:v1"], {}, "does not refer to a known environment"),
    (["create", "x", "--name", "a/b"], {}, "does not refer"),
    (
        ["resolve", "--conda", "fx-app"],
        {"METAFLOW_CONDA_DEPENDENCY_RESOLVER": "nosuch"},
        "no resolver named 'nosuch'",
    ),
    (["resolve", "--conda", "fx-app"], {"METAFLOW_DEFAULT_DATASTORE": "nosuch"}, "nosuch"),
    (["resolve", "--conda", "fx-app"], {"METAFLOW_CONDA_USE_REMOTE_LATEST": ":all:"}, ":none:, :username:"),
    (["resolve", "--conda", "fx-app"], {"METAFLOW_CONDA_SRCS_AUTH_INFO": '{"h": "x"}'}, "must map hosts"),
    (
        ["resolve", "--conda", "fx-app"],
        {"METAFLOW_CONDA_SYS_DEFAULT_PACKAGES": "{not json"},
        "METAFLOW_CONDA_SYS_DEFAULT_PACKAGES",
    ),
    (  # refused as --sys-pkg __glibc==abc is, not stored in the environment
        ["resolve", "--conda", "fx-app", "--arch", "linux-aarch64"],
        {"METAFLOW_CONDA_SYS_DEFAULT_PACKAGES": '{"linux-aarch64": {"__glibc": "abc"}}'},
        "has the version 'abc', which is not one (in METAFLOW_CONDA_SYS_DEFAULT_PACKAGES for linux-aarch64)",
    ),
    (
        ["resolve", "--conda", "fx-app"],
        {"METAFLOW_CONDA_LOCK_TIMEOUT": "soon"},
        "METAFLOW_CONDA_LOCK_TIMEOUT",
    ),
    # paths of this machine that cannot be used ({tmp}/py.txt is a file)
    (
        ["resolve", "--conda", "fx-app"],
        {"METAFLOW_ENVCORE_CACHE_DIR": "{tmp}/py.txt/cache"},
        "Not a directory",
    ),
    (
        ["resolve", "--conda", "fx-app"],
        {"METAFLOW_CONDA_LOCALROOT": "{tmp}/py.txt/store"},
        "Cannot write to the local store at",
    ),
]


def assert_one_paragraph(done: subprocess.CompletedProcess[str], message: str) -> None:
    assert done.returncode not in (0, 3), done.stderr  # 3 is "internal error": a bug, not a message
    assert "Traceback" not in done.stderr
    assert message in " ".join(done.stderr.split()), done.stderr
    assert len([line for line in done.stderr.strip().splitlines() if not line.startswith("    ")]) <= 6


@pytest.fixture
def seeded(run: Run, world: dict[str, Path]) -> dict[str, bytes]:
    run("resolve", "--conda", "fx-core", "--alias", "team/seed:v1")
    return snapshot(world["store"])


@pytest.mark.parametrize(("name", "text", "message"), FILES)
def test_bad_files(
    run: Run,
    world: dict[str, Path],
    seeded: dict[str, bytes],
    tmp_path: Path,
    reliability_report: ReliabilityReport,
    name: str,
    text: str,
    message: str,
) -> None:
    path = tmp_path / name
    path.write_text(text)
    flag = {"requirements.txt": "-r", "environment.yml": "-f", "pyproject.toml": "-p"}[name]
    assert_one_paragraph(run("resolve", flag, str(path), check=False), message)
    assert snapshot(world["store"]) == seeded
    reliability_report.record("bad inputs")


@pytest.mark.parametrize(("args", "env", "message"), ARGS)
def test_bad_arguments_and_settings(
    run: Run,
    world: dict[str, Path],
    seeded: dict[str, bytes],
    tmp_path: Path,
    reliability_report: ReliabilityReport,
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    (tmp_path / "py.txt").write_text("python>=3.10\nx\n")
    env = {key: value.replace("{tmp}", str(tmp_path)) for key, value in env.items()}
    done = run(*[str(tmp_path / a) if a == "py.txt" else a for a in args], check=False, **env)
    assert_one_paragraph(done, message)
    assert snapshot(world["store"]) == seeded
    reliability_report.record("bad inputs")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[: len(raw) // 2], "cannot be read"),
        (
            lambda raw: json.dumps({**json.loads(raw), "envcore": {"schema": 99}}).encode(),
            "was written by a newer envcore (description schema 99); this envcore",
        ),
        (lambda raw: b"[]", "cannot be read"),
    ],
)
def test_corrupted_store_objects(
    run: Run,
    world: dict[str, Path],
    reliability_report: ReliabilityReport,
    damage: Callable[[bytes], bytes],
    message: str,
) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-app").stdout)
    (description,) = [p for p in world["store"].rglob("env") if p.is_file()]
    description.write_bytes(damage(description.read_bytes()))
    before = snapshot(world["store"])
    assert_one_paragraph(run("create", ref, "--name", "x", machine="b", check=False), message)
    assert snapshot(world["store"]) == before
    reliability_report.record("bad inputs")


def test_a_description_whose_packages_are_missing(
    run: Run, world: dict[str, Path], reliability_report: ReliabilityReport
) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-app").stdout)
    for package in world["store"].rglob("fx-web-*.conda"):
        if package.is_file():
            package.unlink()
    (world["universe"] / "channel").rename(world["universe"] / "gone")  # and the channel is gone too
    before = snapshot(world["store"])
    assert_one_paragraph(run("create", ref, "--name", "x", machine="b", check=False), "fx-web")
    assert snapshot(world["store"]) == before
    reliability_report.record("bad inputs")
