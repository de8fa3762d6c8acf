"""Reference solutions for the recorded outputs of conda-CLI tools (``backends/*/tests/recorded/``): the
conda-forge packages the samples describe and the checks every parser test makes. Used by the tests of
envcore-conda, envcore-mamba and envcore-micromamba; hashes in the samples are placeholders (md5/sha256 of
the file name)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import unquote

from envcore.types import CONDA, LockedPackage, Requirement, ResolveRequest

CF = "https://conda.anaconda.org/conda-forge"
REQUEST = ResolveRequest(
    arch="linux-64", requirements=(Requirement(category=CONDA, name="zlib"),), sources={CONDA: (CF,)}
)
Row = tuple[str, str, str, str, str, int]
#: (name, version, build, subdir, extension, size) of the solutions the samples record
ZLIB_2024: list[Row] = [
    ("_libgcc_mutex", "0.1", "conda_forge", "linux-64", ".tar.bz2", 2562),
    ("tzdata", "2024b", "hc8b5060_0", "noarch", ".conda", 122354),
    ("libgomp", "14.2.0", "h77fa898_1", "linux-64", ".conda", 460992),
    ("_openmp_mutex", "4.5", "2_gnu", "linux-64", ".tar.bz2", 23621),
    ("libgcc", "14.2.0", "h77fa898_1", "linux-64", ".conda", 848745),
    ("libzlib", "1.3.1", "hb9d3cd8_2", "linux-64", ".conda", 61574),
    ("zlib", "1.3.1", "hb9d3cd8_2", "linux-64", ".conda", 92286),
]
ZLIB_2025: list[Row] = [
    ZLIB_2024[0],
    ("tzdata", "2025b", "h78e105d_0", "noarch", ".conda", 123089),
    ("libgomp", "15.1.0", "h767d61c_5", "linux-64", ".conda", 452635),
    ZLIB_2024[3],
    ("libgcc", "15.1.0", "h767d61c_5", "linux-64", ".conda", 824191),
    *ZLIB_2024[5:],
]


def recorded(folder: Path, name: str) -> tuple[str, str]:
    """(stdout, stderr) of a recorded run; stderr is the ``<stem>.stderr.txt`` next to it, if any."""
    stderr = folder / f"{Path(name).stem}.stderr.txt"
    return (folder / name).read_text(), stderr.read_text() if stderr.exists() else ""


def assert_solution(packages: list[LockedPackage], expected: list[Row]) -> None:
    """Names, versions, builds, urls, sizes and (placeholder) hashes as recorded; dependencies first."""
    assert sorted(p.name for p in packages) == sorted(row[0] for row in expected)
    by_name = {p.name: p for p in packages}
    for name, version, build, subdir, ext, size in expected:
        pkg, fn = by_name[name], f"{name}-{version}-{build}{ext}"
        (file,) = pkg.files
        assert (pkg.version, pkg.build, pkg.subdir, pkg.filename) == (version, build, subdir, fn[: -len(ext)])
        assert unquote(file.url) == f"{CF}/{subdir}/{fn}" and (file.url_format, file.size) == (ext, size)
        assert file.md5 == hashlib.md5(fn.encode()).hexdigest()
        assert file.sha256 == hashlib.sha256(fn.encode()).hexdigest()
        assert pkg.channel == CF
    order = [p.name for p in packages]
    assert order.index("_libgcc_mutex") < order.index("libgomp") < order.index("_openmp_mutex")
    assert order.index("_openmp_mutex") < order.index("libgcc")
