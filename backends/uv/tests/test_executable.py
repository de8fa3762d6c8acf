"""Which uv runs: the configured one, else the uv wheel's, whose lookup is remembered per installation."""

from __future__ import annotations

import json
from pathlib import Path

from envcore_uv import executable
from uv import find_uv_bin

from envcore.config import Config


def _uv(cache: Path, **environ: str) -> str:
    executable._bundled_uv.cache_clear()  # as a new process
    return executable.uv_executable(
        Config.load(environ={"METAFLOW_ENVCORE_CACHE_DIR": str(cache), **environ})
    )


def test_the_wheels_uv_is_remembered_while_it_is_there_and_looked_up_again_when_not(tmp_path: Path) -> None:
    cache, real = tmp_path / "cache", find_uv_bin()
    assert _uv(cache) == real
    (remembered,) = (cache / "tools").glob("uv-binary-*.json")
    saved = json.loads(remembered.read_text())
    assert saved["value"] == real
    # a remembered binary is taken as it is, without a lookup: another executable stands in for it
    stand_in = tmp_path / "bin" / "uv"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    remembered.write_text(json.dumps({**saved, "value": str(stand_in)}))
    assert _uv(cache) == str(stand_in)
    stand_in.chmod(0o644)  # no longer executable: looked up again, and that remembered
    assert _uv(cache) == real and json.loads(remembered.read_text()) == saved
    stand_in.chmod(0o755)
    remembered.write_text(json.dumps({**saved, "value": str(stand_in)}))
    stand_in.unlink()  # gone (the environment was rebuilt)
    assert _uv(cache) == real and json.loads(remembered.read_text()) == saved
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    # the uv package installed again (its module file another one): looked up again
    remembered.write_text(json.dumps({"identity": [*saved["identity"][:-1], 1], "value": str(stand_in)}))
    assert _uv(cache) == real and json.loads(remembered.read_text()) == saved
    for damaged in ("{not json", json.dumps({"identity": saved["identity"], "value": 7}), "[]"):
        remembered.write_text(damaged)
        assert _uv(cache) == real and json.loads(remembered.read_text()) == saved
    # the setting still decides, whatever is remembered
    assert _uv(cache, METAFLOW_ENVCORE_UV_EXE=str(stand_in)) == str(stand_in)
    # a cache that cannot be written only means looking it up each time
    unwritable = tmp_path / "a-file"
    unwritable.write_text("")
    assert _uv(unwritable) == real
