"""What hydration counts while an installer that reports nothing works (envcore.hydrate)."""

from __future__ import annotations

from pathlib import Path

from envcore.hydrate import _installed_so_far
from envcore.types import PackageKind


def test_conda_packages_are_counted_by_their_conda_meta_records(tmp_path: Path) -> None:
    count = _installed_so_far(PackageKind.CONDA, tmp_path)
    assert count() == 0  # no conda-meta yet: the installer has not started
    meta = tmp_path / "conda-meta"
    meta.mkdir()
    (meta / "history").touch()
    assert count() == 0
    for name in ("python-3.11.7-h0.json", "fx-app-1.0.0-py_0.json"):
        (meta / name).write_text("{}")
    assert count() == 2


def test_wheels_are_counted_by_new_dist_info_folders(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    (site / "fx_yaml-6.0.1.dist-info").mkdir(parents=True)  # installed by a conda package, before the wheels
    count = _installed_so_far(PackageKind.PYPI, tmp_path)
    assert count() == 0
    (site / "fx_extras").mkdir()
    (site / "fx_extras-0.4.0.dist-info").mkdir()
    assert count() == 1
