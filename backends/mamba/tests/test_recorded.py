"""The driver's parser against outputs of mamba 1.5.x (conda's JSON; its solver explanation as text), mamba
2.0.x (libmamba's JSON, empty lists as null) and mamba on main after 2.8.1 (``log_history``), kept under
``recorded/``. No real mamba can be installed here: each sample was written from mamba's source at a tag or
commit, as its ``.origin`` sidecar says; hashes there are placeholders (md5/sha256 of the file name)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from envcore_conda.recorded import CF, REQUEST, ZLIB_2024, ZLIB_2025, assert_solution, recorded
from envcore_conda.resolver import json_object
from envcore_mamba.resolver import MambaResolver

from envcore.config import Config
from envcore.errors import ResolutionError

RECORDED = Path(__file__).parent / "recorded"
#: sample name prefix -> (version the tool reports, solution)
SAMPLES = {
    "mamba-1.5.12": ("1.5.12", ZLIB_2024),
    "mamba-2.0.5": ("2.0.5", ZLIB_2024),
    "mamba-2.8.1-main": ("2.8.1", ZLIB_2025),
}


def _mamba(make_conda_cli: Callable[..., Path], version: str) -> MambaResolver:
    """The driver, reporting ``version`` (through the test executable's ``--version``)."""
    exe = make_conda_cli("mamba", version)
    resolver = MambaResolver(Config.load(environ={"METAFLOW_ENVCORE_MAMBA_EXE": str(exe)}))
    assert resolver.version() == version
    return resolver


def test_every_sample_says_where_it_comes_from() -> None:
    samples = [p for p in RECORDED.iterdir() if p.suffix in (".json", ".txt") and ".stderr" not in p.name]
    assert len(samples) == 6
    for sample in samples:
        origin = sample.with_name(sample.name + ".origin").read_text()
        assert origin.startswith("Written from ") and "not captured from a real run" in origin
        assert (" at tag " in origin or " at commit " in origin) and "Command: mamba create" in origin


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_dry_run(make_conda_cli: Callable[..., Path], sample: str) -> None:
    version, solution = SAMPLES[sample]
    stdout, stderr = recorded(RECORDED, f"{sample}-dry-run.json")
    data = json_object(stdout)
    assert data is not None and data["dry_run"] is True and data["success"] is True
    if version == "1.5.12":  # conda's dist fields: no url in LINK
        assert all("url" not in link for link in data["actions"]["LINK"])
    elif version == "2.0.5":  # libmamba 2.0 flattens its JSON: an empty list comes back as null
        assert {"depends": None}.items() <= data["actions"]["LINK"][0].items()
    else:
        assert data["log_history"] == []
    assert_solution(_mamba(make_conda_cli, version).interpret(0, stdout, stderr, REQUEST, [CF]), solution)


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        (
            "mamba-1.5.12-unsatisfiable.txt",
            "Could not solve for environment specs; The following packages are incompatible; libgcc 12.2.0** is "
            "requested and can be installed; zlib 1.3.1** is not installable because it requires libzlib 1.3.1 "
            "hb9d3cd8_2, which requires libgcc >=13 , which conflicts with any installable versions previously "
            "reported",
        ),
        (
            "mamba-2.0.5-unsatisfiable.json",
            "package libzlib-1.3.1-hb9d3cd8_2 requires libgcc >=13, but none of the providers can be installed",
        ),
        (
            "mamba-2.8.1-main-unsatisfiable.json",
            "package libzlib-1.3.1-hb9d3cd8_2 requires libgcc >=13, but none of the providers can be installed",
        ),
    ],
)
def test_unsatisfiable(make_conda_cli: Callable[..., Path], sample: str, expected: str) -> None:
    version = SAMPLES[sample.rsplit("-", 1)[0]][0]
    stdout, stderr = recorded(RECORDED, sample)
    with pytest.raises(ResolutionError) as err:
        _mamba(make_conda_cli, version).interpret(1, stdout, stderr, REQUEST, [CF])
    assert err.value.message == (
        f"The conda requirements cannot be resolved for linux-64 by mamba {version} (exit code 1): {expected}. "
        f"Change the constraint named above, or check that the package exists in the channels ({CF})."
    )
