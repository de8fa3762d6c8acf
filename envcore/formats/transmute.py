"""Converting conda packages between ``.tar.bz2`` and ``.conda`` with conda-package-handling."""

from __future__ import annotations

from pathlib import Path

from envcore.errors import BackendUnavailable, FormatError


def transmute(archive: Path, target: str, out_dir: Path) -> Path:
    """Write ``archive`` in the ``target`` format (``.conda`` or ``.tar.bz2``) into ``out_dir``."""
    try:
        from conda_package_handling import api
    except ImportError:
        raise BackendUnavailable(
            "METAFLOW_CONDA_PREFERRED_FORMAT asks for transmuted packages, but conda-package-handling is not "
            "installed. Install it with `pip install 'envcore[transmute]'`, or set the format to none."
        ) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = archive.name.removesuffix(".tar.bz2").removesuffix(".conda")
    errors = api.transmute(str(archive), target, out_folder=str(out_dir), processes=1, zstd_compress_level=3)
    out = out_dir / (stem + target)
    if errors or not out.is_file():
        raise FormatError(f"Could not convert {archive.name} to {target}: {errors or 'no output'}.")
    return out
