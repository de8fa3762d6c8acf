"""The driver's parser against outputs of conda 24.x and 25.x (``create --dry-run --json``) kept under
``recorded/``. No real conda can be installed here: each sample was written from conda's (and
conda-libmamba-solver's) source at a tag, as its ``.origin`` sidecar says; hashes there are placeholders
(md5/sha256 of the file name), which lets these tests check that each package got its own record's hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from envcore_conda.resolver import CondaCliResolver, failure_summary, json_object, without_json

from envcore.config import Config
from envcore.errors import ResolutionError
from envcore.testing.condacli import write_conda_cli
from envcore.types import CONDA, LockedPackage, Requirement, ResolveRequest

RECORDED = Path(__file__).parent / "recorded"
CF = "https://conda.anaconda.org/conda-forge"
REQUEST = ResolveRequest(
    arch="linux-64",
    requirements=(Requirement(category=CONDA, name="zlib"), Requirement(category=CONDA, name="tzdata")),
    sources={CONDA: (CF,)},
)
#: (name, version, build, subdir, extension, size) of the solution each sample records
SOLUTIONS = {
    "24.11.3": [
        ("_libgcc_mutex", "0.1", "conda_forge", "linux-64", ".tar.bz2", 2562),
        ("tzdata", "2024b", "hc8b5060_0", "noarch", ".conda", 122354),
        ("libgomp", "14.2.0", "h77fa898_1", "linux-64", ".conda", 460992),
        ("_openmp_mutex", "4.5", "2_gnu", "linux-64", ".tar.bz2", 23621),
        ("libgcc", "14.2.0", "h77fa898_1", "linux-64", ".conda", 848745),
        ("libzlib", "1.3.1", "hb9d3cd8_2", "linux-64", ".conda", 61574),
        ("zlib", "1.3.1", "hb9d3cd8_2", "linux-64", ".conda", 92286),
    ],
    "25.11.1": [
        ("_libgcc_mutex", "0.1", "conda_forge", "linux-64", ".tar.bz2", 2562),
        ("tzdata", "2025b", "h78e105d_0", "noarch", ".conda", 123089),
        ("libgomp", "15.1.0", "h767d61c_5", "linux-64", ".conda", 452635),
        ("_openmp_mutex", "4.5", "2_gnu", "linux-64", ".tar.bz2", 23621),
        ("libgcc", "15.1.0", "h767d61c_5", "linux-64", ".conda", 824191),
        ("libzlib", "1.3.1", "hb9d3cd8_2", "linux-64", ".conda", 61574),
        ("zlib", "1.3.1", "hb9d3cd8_2", "linux-64", ".conda", 92286),
    ],
}


def recorded(name: str) -> tuple[str, str]:
    """(stdout, stderr) of a recorded run; stderr is the ``<stem>.stderr.txt`` next to it, if any."""
    stderr = RECORDED / f"{Path(name).stem}.stderr.txt"
    return (RECORDED / name).read_text(), stderr.read_text() if stderr.exists() else ""


def assert_solution(
    packages: list[LockedPackage], expected: list[tuple[str, str, str, str, str, int]]
) -> None:
    assert sorted(p.name for p in packages) == sorted(row[0] for row in expected)
    by_name = {p.name: p for p in packages}
    for name, version, build, subdir, ext, size in expected:
        pkg, fn = by_name[name], f"{name}-{version}-{build}{ext}"
        (file,) = pkg.files
        assert (pkg.version, pkg.build, pkg.subdir, pkg.filename) == (version, build, subdir, fn[: -len(ext)])
        assert (file.url, file.url_format, file.size) == (f"{CF}/{subdir}/{fn}", ext, size)
        assert file.md5 == hashlib.md5(fn.encode()).hexdigest()
        assert file.sha256 == hashlib.sha256(fn.encode()).hexdigest()
        assert pkg.channel == CF
    order = [p.name for p in packages]
    assert (
        order.index("_libgcc_mutex")
        < order.index("libgomp")
        < order.index("_openmp_mutex")
        < order.index("libgcc")
        < order.index("libzlib")
        < order.index("zlib")
    )
    assert "libzlib 1.3.1 hb9d3cd8_2" in by_name["zlib"].depends


@pytest.fixture(scope="module", params=sorted(SOLUTIONS))
def conda(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> CondaCliResolver:
    """The driver, reporting the version of the sample (through the test executable's ``--version``)."""
    exe = write_conda_cli(tmp_path_factory.mktemp("conda"), "conda", request.param)
    resolver = CondaCliResolver(Config.load(environ={"METAFLOW_ENVCORE_CONDA_EXE": str(exe)}))
    assert resolver.version() == request.param
    return resolver


def test_every_sample_says_where_it_comes_from() -> None:
    samples = [p for p in RECORDED.iterdir() if p.suffix in (".json", ".txt") and ".stderr" not in p.name]
    assert len(samples) == 7
    for sample in samples:
        origin = sample.with_name(sample.name + ".origin").read_text()
        assert origin.startswith("Written from ") and "not captured from a real run" in origin
        assert " at tag " in origin and "Command: conda create" in origin


def test_dry_run(conda: CondaCliResolver) -> None:
    version = conda.version()
    stdout, stderr = recorded(f"conda-{version}-dry-run.json")
    data = json_object(stdout)
    assert data is not None and data["dry_run"] is True and data["actions"]["PREFIX"] == data["prefix"]
    assert all("url" not in link for link in data["actions"]["LINK"])  # conda's dist fields
    assert_solution(conda.interpret(0, stdout, stderr, REQUEST, [CF]), SOLUTIONS[version])


def test_packages_not_found(conda: CondaCliResolver) -> None:
    stdout, stderr = recorded(f"conda-{conda.version()}-packages-not-found.json")
    with pytest.raises(ResolutionError) as err:
        conda.interpret(1, stdout, stderr, REQUEST, [CF])
    assert err.value.message == (
        f"The conda requirements cannot be resolved for linux-64 by conda {conda.version()} (exit code 1): "
        "PackagesNotFoundError: these packages are not available from the channels: fx-nope. Change the "
        f"constraint named above, or check that the package exists in the channels ({CF})."
    )


def test_unsatisfiable(conda: CondaCliResolver) -> None:
    stdout, stderr = recorded(f"conda-{conda.version()}-unsatisfiable.json")
    with pytest.raises(ResolutionError) as err:
        conda.interpret(1, stdout, stderr, REQUEST, [CF])
    message = err.value.message
    assert message.startswith(
        f"The conda requirements cannot be resolved for linux-64 by conda {conda.version()} (exit code 1): "
        "LibMambaUnsatisfiableError: Encountered problems while solving: package libzlib-1.3.1-hb9d3cd8_2 "
        "requires libgcc >=13, but none of the providers can be installed; Could not solve for environment specs; "
        "The following packages are incompatible; libgcc ==12.2.0 is requested and can be installed;"
    )
    assert (
        "zlib ==1.3.1 is not installable because it requires libzlib ==1.3.1 hb9d3cd8_2, which requires "
        "libgcc >=13 , which conflicts with any installable versions previously reported. Change"
    ) in message
    assert not any(glyph in message for glyph in "│└─├")


def test_link_without_url_and_not_fetched_is_reported() -> None:
    """conda leaves packages found in a package cache out of FETCH; their LINK entries have no url."""
    stdout, stderr = recorded("conda-25.11.1-dry-run-cached.json")
    data = json_object(stdout)
    assert data is not None and {r["name"] for r in data["actions"]["FETCH"]} == {
        row[0] for row in SOLUTIONS["25.11.1"]
    } - {"libzlib", "zlib"}
    resolver = CondaCliResolver(Config.load(environ={}))
    with pytest.raises(
        ResolutionError, match=r"chose libzlib-1\.3\.1-hb9d3cd8_2, zlib-1\.3\.1-hb9d3cd8_2 but"
    ):
        resolver.interpret(0, stdout, stderr, REQUEST, [CF])


def test_json_among_other_text() -> None:
    """Warnings before the object, or text after it, do not hide it; the prose left is the text around it."""
    stdout, _ = recorded("conda-24.11.3-unsatisfiable.json")
    noisy = f"==> WARNING: A newer version of conda exists. <==\n{stdout}\ndone\n"
    assert json_object(noisy) == json.loads(stdout)
    assert without_json(noisy).split() == [
        "==>",
        "WARNING:",
        "A",
        "newer",
        "version",
        "of",
        "conda",
        "exists.",
        "<==",
        "done",
    ]
    assert failure_summary(noisy, "")[0].startswith("LibMambaUnsatisfiableError: Encountered problems")
