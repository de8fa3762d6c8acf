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


def test_only_envcore_leftovers_whose_lock_is_free_are_removed(tmp_path: Path) -> None:
    """``.NAME.clone`` / ``.NAME.rebuild`` go when ``.NAME.lock`` is beside them and free; a folder of that shape
    without envcore's lock file beside it (a user's) stays, as does one whose lock another process holds."""
    import subprocess
    import sys

    from envcore.uptodate import settle_beside

    envs = tmp_path / "envs"
    envs.mkdir()

    for name in (".a.clone", ".b.rebuild", ".mine.clone", ".held.rebuild", "a", "b"):
        (envs / name).mkdir()
        (envs / name / "f").write_text("x")
    for name in ("a", "b", "held"):
        (envs / f".{name}.lock").touch()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl,sys; f=open(sys.argv[1]); fcntl.flock(f, 2); print(1, flush=True); "
         "sys.stdin.read()", str(envs / ".held.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "1\n"
        assert settle_beside(str(envs / "a")) is False
        assert sorted(p.name for p in envs.iterdir() if p.is_dir()) == [
            ".held.rebuild",
            ".mine.clone",
            "a",
            "b",
        ]
    finally:
        holder.communicate("")
    assert (envs / ".held.rebuild" / "f").exists()
    settle_beside(str(envs / "b"))  # its owner gone now
    assert not (envs / ".held.rebuild").exists()
