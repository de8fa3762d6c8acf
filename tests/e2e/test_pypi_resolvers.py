"""Every installed PyPI resolver, selected by configuration as site admins do, end to end through the
``envcore`` command: PyPI-only and mixed environments, created on another machine from the store alone."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ..conftest import env_ids, imported_modules

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.mark.parametrize("resolver", ["uv", "pip"])
@pytest.mark.parametrize(
    ("args", "kind", "code", "expected"),
    [
        (["--pypi", "fx-web==2.0.0"], "pypi-only", "import fx_web; print(fx_web.__version__)", "2.0.0"),
        (
            ["--conda", "fx-ffmpeg", "--pypi", "fx-extras==0.3.0"],
            "mixed",
            "import fx_extras; print(fx_extras.__version__)",
            "0.3.0",
        ),
    ],
)
def test_pypi_resolver_end_to_end(
    run: Run, world: dict[str, Path], resolver: str, args: list[str], kind: str, code: str, expected: str
) -> None:
    chosen = {"METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER": resolver}
    out = run("resolve", *args, **chosen)
    assert f"Environment of type {kind}" in out.stdout
    assert f"+ {resolver} " in out.stdout  # "Resolved with rattler <v> + <resolver> <v>"
    (ref,) = env_ids(out.stdout)
    shutil.rmtree(world["universe"])
    run("create", ref, "--name", "e", machine="b", **chosen)
    python = world["b"] / "cache" / "envs" / "e" / "bin" / "python"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == expected, done.stderr


@pytest.mark.parametrize(
    ("args", "runs_checked", "not_loaded"),
    [
        (["--pypi", "fx-web"], (0, 1), {"envcore.fetch", "tempfile", "shutil"}),
        (["--conda", "fx-app", "--conda", "fx-ffmpeg", "--pypi", "fx-extras"], (1,), {"tempfile", "shutil"}),
    ],
    ids=["pypi-only", "mixed"],
)
def test_a_pypi_resolve_loads_no_file_machinery(
    run: Run, args: list[str], runs_checked: tuple[int, ...], not_loaded: set[str]
) -> None:
    """A PyPI-only resolve on conda's python reads no conda package's files and writes no scratch folder: the
    fetching module, ``tempfile`` and ``shutil`` (with bz2, lzma, random: ~17M instructions, ~2.6% of the command)
    are not imported, on the first resolve (uv's version asked) and on the next (remembered). A mixed one gives
    uv its constraints (the conda side's Python packages, read from their files by the first resolve, then
    remembered) in a scratch folder made without them."""
    for attempt in range(2):
        done = run("resolve", *args, "--force", "--dry-run", PYTHONPROFILEIMPORTTIME="1")
        modules = imported_modules(done.stderr)
        assert {"envcore_uv.resolver", "envcore.condadists"} <= modules  # (the PyPI side did run)
        if attempt in runs_checked:
            assert not modules & not_loaded


@pytest.mark.parametrize(
    "args",
    [
        ["--pypi", "fx-web", "--pypi", "fx-extras"],
        ["--conda", "fx-app", "--conda", "fx-ffmpeg", "--pypi", "fx-extras"],
    ],
    ids=["pypi-only", "mixed"],
)
def test_a_repeated_pypi_resolve_loads_no_packaging_machinery(run: Run, args: list[str]) -> None:
    """The first uv resolve reads the wheels' names with packaging (its tags, utils and version modules, with
    sysconfig: ~17M instructions, ~3% of the command) and remembers the answer; the same resolve again reads it
    back and loads none of them, nor tomllib before uv has answered."""
    machinery = {"packaging.tags", "packaging.utils", "packaging.version"}
    for attempt in range(2):
        done = run("resolve", *args, "--force", "--dry-run", PYTHONPROFILEIMPORTTIME="1")
        modules = imported_modules(done.stderr)
        assert {"envcore_uv.resolver", "tomllib"} <= modules  # (uv did resolve)
        assert bool(modules & machinery) == (attempt == 0), modules & machinery


def test_a_conda_only_resolve_loads_no_pypi_machinery(run: Run) -> None:
    """A conda-only resolve has no PyPI requirement whose marker could be ignored: neither envcore's PyPI module
    nor ``packaging`` (~8 ms of the command) is imported, resolved afresh or reused; nor the composition of a
    conda and a PyPI resolver."""
    for flags in (["--force", "--dry-run"], []):
        done = run(
            "resolve", "--conda", "fx-app", "--conda", "fx-ffmpeg", *flags, PYTHONPROFILEIMPORTTIME="1"
        )
        modules = imported_modules(done.stderr)
        assert "envcore_rattler.resolver" in modules or not flags  # (the first one did solve)
        assert not {
            m for m in modules if m in ("envcore.pypi", "envcore.compose") or m.split(".")[0] == "packaging"
        }


def test_a_resolve_that_reads_and_writes_no_description_does_not_import_its_module(run: Run) -> None:
    """--force --dry-run neither reads a stored description nor writes one (nor prints --json): the module that
    reads and writes them is not imported."""
    done = run("resolve", "--conda", "fx-app", "--force", "--dry-run", PYTHONPROFILEIMPORTTIME="1")
    assert "envcore.description" not in imported_modules(done.stderr)
    done = run("resolve", "--conda", "fx-app", "--force", "--dry-run", "--json", PYTHONPROFILEIMPORTTIME="1")
    assert "envcore.description" in imported_modules(done.stderr)


@pytest.mark.parametrize("arch", ["osx-arm64", "linux-aarch64"])
def test_markers_are_evaluated_for_the_target_by_every_pypi_resolver(run: Run, arch: str) -> None:
    """Before, pip evaluated markers for this machine: for osx-arm64 it left out a darwin-only requirement (another
    full id than uv's, silently), and refused an x86_64-only one that does not apply there."""
    cases = [
        ["--pypi", 'fx-native; sys_platform == "darwin"', "--pypi", "fx-web"],
        [
            "--pypi",
            'fx-core==1.0.0; platform_machine == "x86_64"',
            "--pypi",
            'fx-modern; sys_platform == "linux"',
        ],
    ]
    for args in cases:
        ids = {
            resolver: env_ids(
                run(
                    "resolve",
                    *args,
                    "--arch",
                    arch,
                    "--dry-run",
                    METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER=resolver,
                ).stdout
            )
            for resolver in ("uv", "pip")
        }
        assert ids["pip"] == ids["uv"] and len(ids["uv"]) == 1, (args, ids)


def test_pip_names_the_conflict_and_the_requirement(run: Run) -> None:
    """Before: 'Cannot install -r /tmp/envcore-pip-XXXX/requirements.in (line 1) because these package versions
    have conflicting dependencies', naming no package and a file gone by then."""
    out = run(
        "resolve",
        "--conda",
        "fx-core==1.0.0",
        "--pypi",
        "fx-extras==0.4.0",
        "--dry-run",
        check=False,
        METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER="pip",
    )
    message = " ".join(out.stderr.split())
    assert out.returncode != 0 and "requirements.in" not in message
    assert (
        "Cannot install fx-extras==0.4.0 because these package versions have conflicting dependencies"
        in message
    )
    assert "The conflict is caused by: fx-extras 0.4.0 depends on fx-core>=1.1" in message
    assert "(constraint) fx-core==1.0.0" in message and "a constraint is what the conda side" in message


def test_pip_explains_constraints_only_where_the_conflict_has_one(run: Run) -> None:
    """A conflict among PyPI requirements alone has no constraint of the conda side's to explain."""
    out = run(
        "resolve",
        "--pypi",
        "fx-extras==0.4.0",
        "--pypi",
        "fx-core==1.0.0",
        "--dry-run",
        check=False,
        METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER="pip",
    )
    message = " ".join(out.stderr.split())
    assert "The conflict is caused by: The user requested fx-core==1.0.0; fx-extras 0.4.0" in message, message
    assert "constraint" not in message, message


def _wheel_with_extras(folder: Path, extras: tuple[str, ...]) -> None:
    """fx-wx 1.0, declaring ``extras``, with a RECORD envcore's checks accept."""
    import base64
    import hashlib
    import zipfile

    def digest(data: bytes) -> str:
        return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    declared = "".join(
        f"Provides-Extra: {extra}\nRequires-Dist: fx-core; extra == '{extra}'\n" for extra in extras
    )
    files = {
        "fx_wx/__init__.py": b"",
        "fx_wx-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: fx-wx\nVersion: 1.0\n{declared}".encode(),
        "fx_wx-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},{digest(data)},{len(data)}\n" for name, data in files.items())
    folder.mkdir()
    with zipfile.ZipFile(folder / "fx_wx-1.0-py3-none-any.whl", "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("fx_wx-1.0.dist-info/RECORD", record + "fx_wx-1.0.dist-info/RECORD,,\n")


@pytest.mark.parametrize("resolver", ["uv", "pip"])
def test_an_extra_the_wheel_does_not_declare_is_warned_about(run: Run, tmp_path: Path, resolver: str) -> None:
    _wheel_with_extras(tmp_path / "links", ("fast", "Big_One"))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"--find-links {tmp_path / 'links'}\nfx-wx[fsat,fast,big-one]\nfx-core[x]\n")
    chosen = {"METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER": resolver}
    out = run("resolve", "-r", str(requirements), **chosen)
    warnings = " ".join(out.stderr.split())
    assert (
        "envcore: warning: fx-wx 1.0 has no extra 'fsat' (it declares big-one, fast), so the resolver left it out. "
        "Check the spelling of fx-wx[big-one,fast,fsat]." in warnings
    )
    assert "fx-core 2.0.0 has no extra 'x' (it declares none)" in warnings
    assert "'fast'" not in warnings and "'big-one'" not in warnings  # PEP 685: Big_One is big-one
    again = run("resolve", "-r", str(requirements), **chosen)  # said when resolved, not each time
    assert "warning" not in again.stderr
