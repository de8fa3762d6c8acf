"""envcore-conda-lock against the conformance kit, unmodified. Two fixtures are overridden, no test:

* ``pypi_index_url``: the universe's index over http on 127.0.0.1 (the kit's ``wheel_index``), since
  conda-lock's vendored poetry reads http(s) indexes only;
* ``_micromamba_on_path`` (autouse): the kit's py-rattler ``micromamba`` test executable on PATH, since no real
  conda-compatible binary exists here and conda-lock cannot solve without one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envcore.testing.conformance import ResolverConformance
from envcore.testing.fixtures import WheelIndex


class TestCondaLockConformance(ResolverConformance):
    resolver_name = "conda-lock"

    @pytest.fixture
    def pypi_index_url(self, wheel_index: WheelIndex) -> str:
        return wheel_index.http_url

    @pytest.fixture(autouse=True)
    def _micromamba_on_path(self, conda_cli_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PATH", f"{conda_cli_bin}{os.pathsep}{os.environ['PATH']}")
