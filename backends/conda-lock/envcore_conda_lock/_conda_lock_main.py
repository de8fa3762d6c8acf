"""``python -m envcore_conda_lock._conda_lock_main``: conda-lock, its PyPI solver given envcore's wheel targets.

conda-lock 4 knows the manylinux tags 2_17, 2_18, 2_24 and 2_28 only: for a target with glibc 2.27 (envcore's
default for other linux architectures) it took no ``manylinux_2_27`` wheel (numpy's for aarch64), and an older
release or a source distribution instead. Its list is completed to every ``manylinux_2_N`` up to 2_40, and its
oldest macOS is envcore's (:data:`envcore.pypi.MACOS_TARGET`), as the uv and pip resolvers have them. A
conda-lock without these names runs unchanged."""

from __future__ import annotations


def _complete_targets() -> None:
    try:
        from conda_lock import pypi_solver  # type: ignore[import-untyped]
    except ImportError:
        return
    from envcore.pypi import MACOS_TARGET

    tags = getattr(pypi_solver, "MANYLINUX_TAGS", None)
    if isinstance(tags, list) and all(isinstance(t, str) for t in tags):  # ascending, as conda-lock keeps it
        legacy = [t for t in ("1", "2010", "2014") if t in tags]
        tags[:] = [*legacy, *(f"_2_{minor}" for minor in range(17, 41))]
    if isinstance(getattr(pypi_solver, "MACOS_VERSION", None), tuple):
        pypi_solver.MACOS_VERSION = MACOS_TARGET


if __name__ == "__main__":
    _complete_targets()
    from conda_lock.conda_lock import main  # type: ignore[import-untyped]

    main()
