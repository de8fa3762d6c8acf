"""The driver's parser against outputs of micromamba 1.5.x and 2.0.x (libmamba's JSON, empty lists as null;
2.x percent-encodes file names in urls) and micromamba on main after 2.8.1 (``log_history``), kept under
``recorded/``. No real micromamba can be installed here: each sample was written from mamba's source at a tag
or commit, as its ``.origin`` sidecar says; hashes there are placeholders (md5/sha256 of the file name)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from envcore_conda.recorded import CF, REQUEST, ZLIB_2024, ZLIB_2025, Row, assert_solution, recorded
from envcore_conda.resolver import json_object
from envcore_micromamba.resolver import MicromambaResolver

from envcore.config import Config
from envcore.errors import ResolutionError

RECORDED = Path(__file__).parent / "recorded"
X264_2024: list[Row] = [
    ZLIB_2024[0],
    *ZLIB_2024[2:5],
    ("libgcc-ng", "14.2.0", "h69a702a_1", "linux-64", ".conda", 54142),
    ("x264", "1!164.3095", "h166bdaf_2", "linux-64", ".tar.bz2", 897548),
]


#: sample name prefix -> (version the tool reports, solution)
SAMPLES = {
    "micromamba-1.5.10": ("1.5.10", ZLIB_2024),
    "micromamba-2.0.5": ("2.0.5", X264_2024),
    "micromamba-2.8.1-main": ("2.8.1", ZLIB_2025),
}


def _micromamba(make_conda_cli: Callable[..., Path], version: str) -> MicromambaResolver:
    """The driver, reporting ``version`` (through the test executable's ``--version``)."""
    exe = make_conda_cli("micromamba", version)
    resolver = MicromambaResolver(Config.load(environ={"METAFLOW_ENVCORE_MICROMAMBA_EXE": str(exe)}))
    assert resolver.version() == version
    return resolver


def test_every_sample_says_where_it_comes_from() -> None:
    samples = [p for p in RECORDED.iterdir() if p.suffix in (".json", ".txt") and ".stderr" not in p.name]
    assert len(samples) == 7
    for sample in samples:
        origin = sample.with_name(sample.name + ".origin").read_text()
        assert origin.startswith("Written from ") and "not captured from a real run" in origin
        assert (" at tag " in origin or " at commit " in origin) and "Command: micromamba create" in origin


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_dry_run(make_conda_cli: Callable[..., Path], sample: str) -> None:
    version, solution = SAMPLES[sample]
    stdout, stderr = recorded(RECORDED, f"{sample}-dry-run.json")
    data = json_object(stdout)
    assert data is not None and data["dry_run"] is True and data["success"] is True
    link = {r["name"]: r for r in data["actions"]["LINK"]}
    if version == "1.5.10":  # the channel is the subdir's URL; empty lists are null
        assert link["zlib"]["channel"] == f"{CF}/linux-64" and link["tzdata"]["depends"] is None
    elif version == "2.0.5":  # the channel is its name; the file name is percent-encoded in the url
        assert link["x264"]["channel"] == "conda-forge" and "x264-1%21164" in link["x264"]["url"]
    else:
        assert data["log_history"] == [] and link["tzdata"]["depends"] == []
    packages = _micromamba(make_conda_cli, version).interpret(0, stdout, stderr, REQUEST, [CF])
    assert_solution(packages, solution)
    if version == "2.0.5":
        x264 = next(p for p in packages if p.name == "x264")
        assert x264.files[0].url == f"{CF}/linux-64/x264-1%21164.3095-h166bdaf_2.tar.bz2"
        assert x264.filename == "x264-1!164.3095-h166bdaf_2" and x264.depends == ("libgcc-ng >=12",)


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("micromamba-1.5.10-unsatisfiable.json", "nothing provides requested fx-nope"),
        (
            "micromamba-2.0.5-unsatisfiable.json",
            "package libzlib-1.3.1-hb9d3cd8_2 requires libgcc >=13, but none of the providers can be installed",
        ),
        (
            "micromamba-2.8.1-main-unsatisfiable.json",
            "package libzlib-1.3.1-hb9d3cd8_2 requires libgcc >=13, but none of the providers can be installed",
        ),
    ],
)
def test_unsatisfiable(make_conda_cli: Callable[..., Path], sample: str, expected: str) -> None:
    version = SAMPLES[sample.rsplit("-", 1)[0]][0]
    stdout, stderr = recorded(RECORDED, sample)
    with pytest.raises(ResolutionError) as err:
        _micromamba(make_conda_cli, version).interpret(1, stdout, stderr, REQUEST, [CF])
    assert err.value.message == (
        f"The conda requirements cannot be resolved for linux-64 by micromamba {version} (exit code 1): "
        f"{expected}. Change the constraint named above, or check that the package exists in the channels ({CF})."
    )


def test_channel_error_from_log_history(make_conda_cli: Callable[..., Path]) -> None:
    """After 2.8.1, --json keeps the log off stderr: the critical record in log_history is the reason."""
    stdout, stderr = recorded(RECORDED, "micromamba-2.8.1-main-channel-error.json")
    assert stderr == ""
    private = "http://127.0.0.1:8080/private"
    with pytest.raises(ResolutionError) as err:
        _micromamba(make_conda_cli, "2.8.1").interpret(1, stdout, stderr, REQUEST, [private])
    assert err.value.message == (
        f"micromamba 2.8.1 could not read the conda channels ({private}) for linux-64: Multiple errors occurred: "
        f"Download error (22) HTTP response code said error [{private}/linux-64/repodata.json]; The requested URL "
        f"returned error: 401; Download error (22) HTTP response code said error [{private}/noarch/repodata.json]; "
        "The requested URL returned error: 401. Check the channel names, METAFLOW_CONDA_CHANNEL_ALIAS, the "
        "credentials in METAFLOW_CONDA_SRCS_AUTH_INFO and your network."
    )
