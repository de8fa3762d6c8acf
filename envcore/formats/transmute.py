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
    if target == ".conda":
        _without_timestamps(out)
    return out


def _without_timestamps(conda: Path) -> None:
    """conda-package-handling dates the ``metadata.json`` of a ``.conda`` it writes (its tarballs are dated
    1980 already): with that date fixed, every machine makes the same bytes of one package, and so caches it
    under the same key (its md5) instead of adding its own copy and rewriting the description."""
    import shutil
    import zipfile

    fixed = conda.with_name(f".{conda.name}.fixed")
    with zipfile.ZipFile(conda) as source, zipfile.ZipFile(fixed, "w") as copy:
        for entry in source.infolist():
            dated = zipfile.ZipInfo(entry.filename, date_time=(1980, 1, 1, 0, 0, 0))
            dated.compress_type, dated.external_attr = entry.compress_type, entry.external_attr
            dated.create_system = 3  # unix, whatever writes it
            with (
                source.open(entry) as reader,
                copy.open(dated, "w", force_zip64=entry.file_size >= 2**31) as writer,
            ):
                shutil.copyfileobj(reader, writer, 1 << 20)
    fixed.replace(conda)
