"""Constraints files (pip's ``-c FILE``, in a requirements file or on the command line): versions for PyPI
packages, applied only where something requires them, by the uv and pip resolvers; refused in one paragraph where
they cannot be applied."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]


def _pypi_versions(out: str) -> dict[str, str]:
    (env,) = json.loads(out).values()
    return {
        p["envcore"]["name"]: p["envcore"]["version"] for p in env["env"]["packages"] if p["_type"] == "pypi"
    }


@pytest.mark.parametrize("resolver", ["uv", "pip"])
def test_a_constraints_file_limits_versions_and_installs_nothing_new(
    run: Run, tmp_path: Path, resolver: str
) -> None:
    """fx-web 2.0.0 needs fx-core>=1.1: the newest is 2.0.0, a constraint keeps it below 2; the constraint on
    fx-extras, which nothing requires, installs nothing; a nested -c is read beside the file that names it, and its
    constraint, whose marker does not hold, is not applied; the constraints enter the req id."""
    chosen = {"METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER": resolver}
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.txt").write_text('fx-core<1.1 ; python_version < "3"\n')
    (tmp_path / "sub" / "constraints.txt").write_text("# pins\nfx-core<2\nfx-extras==0.3.0\n-c more.txt\n")
    (tmp_path / "requirements.txt").write_text("-c sub/constraints.txt\nfx-web==2.0.0\n")
    plain = run("resolve", "--pypi", "fx-web==2.0.0", "--dry-run", "--json", **chosen)
    assert _pypi_versions(plain.stdout) == {"fx-web": "2.0.0", "fx-core": "2.0.0"}
    limited = run("resolve", "-r", str(tmp_path / "requirements.txt"), "--dry-run", "--json", **chosen)
    assert _pypi_versions(limited.stdout) == {"fx-web": "2.0.0", "fx-core": "1.1.0"}
    (env,) = json.loads(limited.stdout).values()
    (plain_env,) = json.loads(plain.stdout).values()
    assert env["req_id"] != plain_env["req_id"]
    # the same constraints given on the command line: the same requirements, the same ids
    (tmp_path / "only.txt").write_text("fx-web==2.0.0\n")
    given = run(
        "resolve",
        "-r",
        str(tmp_path / "only.txt"),
        "-c",
        str(tmp_path / "sub" / "constraints.txt"),
        "--dry-run",
        "--json",
        **chosen,
    )
    (given_env,) = json.loads(given.stdout).values()
    assert (given_env["req_id"], given_env["full_id"]) == (env["req_id"], env["full_id"])


def test_where_constraints_cannot_be_applied_it_is_one_paragraph(run: Run, tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("fx-core<2\n")
    (tmp_path / "r.txt").write_text("-c c.txt\nfx-web\n")
    cases = [
        (
            ["-r", str(tmp_path / "r.txt")],
            {  # (an http index, as poetry needs; nothing listens there: refused before it is read)
                "METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER": "poetry",
                "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": "http://127.0.0.1:9/simple/",
            },
            "The poetry resolver cannot apply the constraint 'fx-core<2' (from a -c FILE line): poetry has no "
            "constraints files.",
        ),
        (
            ["-c", str(tmp_path / "c.txt")],
            {},
            "-c/--constraint limits the versions of PyPI packages that something requires, and nothing is required "
            "here",
        ),
        (
            ["--pylock", str(tmp_path / "pylock.toml"), "-c", str(tmp_path / "c.txt")],
            {},
            "--pylock cannot be combined with -c: the lock file is the whole PyPI side",
        ),
        (["--from", "a:b", "-c", str(tmp_path / "c.txt")], {}, "Cannot specify --from with -c"),
    ]
    for args, settings, message in cases:
        done = run("resolve", *args, "--dry-run", check=False, **settings)
        assert done.returncode != 0
        assert message in " ".join(done.stderr.split()), done.stderr
        assert "Traceback" not in done.stderr


def test_a_constraint_that_leaves_no_solution_is_named_in_the_error(run: Run, tmp_path: Path) -> None:
    """uv words a constraint as a dependency ("fx-web==2.0.0 depends on fx-core<2"): the error names the
    constraints, and keeps the start of uv's explanation (its last 8 lines had cut its "Because ...")."""
    (tmp_path / "c.txt").write_text("fx-core<2\nfx-core!=1.1.0\n")
    done = run("resolve", "--pypi", "fx-web==2.0.0", "-c", str(tmp_path / "c.txt"), "--dry-run", check=False)
    said = " ".join(done.stderr.split())
    assert done.returncode == 1
    assert "Because only the following versions of fx-core are available" in said, said
    assert said.endswith("The constraints of -c files apply too: fx-core<2, fx-core!=1.1.0."), said


@pytest.mark.parametrize("resolver", ["uv", "pip"])
def test_binary_options_choose_between_wheels_and_sources(run: Run, tmp_path: Path, resolver: str) -> None:
    """--only-binary :all: refuses fx-src (an sdist only) where it had been built; --no-binary fx-glibc builds
    fx-glibc from its sdist although it has wheels; --prefer-binary is pip's, which uv warns it ignores."""
    chosen = {"METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER": resolver}
    (tmp_path / "only.txt").write_text("--only-binary :all:\nfx-src\n")
    refused = run("resolve", "-r", str(tmp_path / "only.txt"), "--dry-run", check=False, **chosen)
    assert refused.returncode == 1 and "fx-src" in refused.stderr and "Traceback" not in refused.stderr
    (tmp_path / "no.txt").write_text("--no-binary fx-glibc\n--prefer-binary\nfx-glibc==1.0.0\n")
    built = run("resolve", "-r", str(tmp_path / "no.txt"), "--dry-run", "--json", **chosen)
    (env,) = json.loads(built.stdout).values()
    (glibc,) = [p for p in env["env"]["packages"] if p["envcore"]["name"] == "fx-glibc"]
    assert [f.get("built") for f in glibc["envcore"]["files"].values()] == [True]
    warned = "--prefer-binary is ignored by the uv resolver" in " ".join(built.stderr.split())
    assert warned == (resolver == "uv"), built.stderr
