"""A flow's step environments months later: the channel and the index are gone, and another machine, sharing
only the store and the run's metadata, re-creates a step's environment by its pathspec and re-runs the flow
with the stored resolutions (``CONDA_USE_REMOTE_LATEST``), exactly as they were."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from envcore.testing.channel import Universe

from ...conftest import store_another
from .conftest import Machine, both, printed, run_id


def _private_copy(universe: Universe, root: Path) -> Universe:
    """A copy of ``universe`` at ``root`` (the session's own is shared with other tests)."""
    shutil.copytree(universe.root, root, symlinks=True)
    return replace(
        universe,
        root=root,
        channel_dir=root / "channel",
        channel_url=(root / "channel").as_uri(),
        wheels_dir=root / "wheels",
        simple_dir=root / "simple",
        simple_url=(root / "simple").as_uri() + "/",
    )


def test_a_steps_environment_is_re_created_and_the_flow_re_run_after_the_sources_are_gone(
    tmp_path: Path, mf_universe: Universe
) -> None:
    universe = _private_copy(mf_universe, tmp_path / "universe")
    a = Machine(root=tmp_path / "a", store=tmp_path / "store", universe=universe)
    first = both(a.flow("mixed", "run"))
    pathspec = f"MixedFlow/{run_id(first)}/start"
    shown = json.loads(a.envcore("show", f"step:{pathspec}", "--json").stdout)
    ref = f"{shown['req_id']}:{shown['full_id']}"
    shutil.rmtree(universe.root)

    b = Machine(root=tmp_path / "b", store=tmp_path / "store", universe=universe)
    shared = {"METAFLOW_DATASTORE_SYSROOT_LOCAL": str(a.datastore)}  # the run's metadata, not a's record
    created = b.metaflow("environment", "create", pathspec, "--pathspec", "--name", "again", **shared)
    assert f"Environment {ref} created at" in created.stdout
    prefix = b.cache / "envs" / "again"
    conda = {json.loads(p.read_text())["name"]: p for p in (prefix / "conda-meta").glob("*.json")}
    described = {p["envcore"]["name"]: p for p in shown["env"]["packages"]}
    assert set(conda) == {n for n, p in described.items() if p["_type"] == "conda"}
    for name, record in conda.items():
        meta, package = json.loads(record.read_text()), described[name]
        assert meta["sha256"] == package["envcore"]["files"][package["url_format"]]["sha256"], name
    assert (prefix / "bin" / "fx-ffmpeg").exists()
    assert list(prefix.glob("lib/python*/site-packages/fx_extras-0.4.0.dist-info"))

    # a colleague's newer envcore stored a later resolution, which this one cannot read: passed over, and said
    newer = store_another(tmp_path / "store", ref, by="zed", on="2099-01-01 00:00:00", schema=2)
    again = b.flow("mixed", "run", METAFLOW_CONDA_USE_REMOTE_LATEST=":any:")
    assert printed(both(again))["start"][0].split()[2:] == ["fx-extras=0.4.0", "tool=6.1.0"]
    assert f"Using {ref}, resolved by tester on " in both(again)  # the stored one, and it says which
    text = " ".join(both(again).split())
    assert (
        "Warning: METAFLOW_CONDA_USE_REMOTE_LATEST skipped 1 stored resolution(s) written by envcore 9.1.0"
        in text
    )
    assert newer in text and "Traceback" not in text, text
