"""Install verified local conda archives into a prefix with py-rattler (extract once, hardlink after)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import rattler
import rattler.exceptions

from envcore.config import Config
from envcore.errors import FormatError
from envcore.types import LockedPackage
from envcore_rattler.loop import run_sync


async def _records(packages: Sequence[tuple[LockedPackage, Path]]) -> list[rattler.RepoDataRecord]:
    """The archives' own records (read concurrently), pointing at the verified local files."""
    read = await asyncio.gather(*(rattler.RepoDataRecord.from_package_archive(path) for _, path in packages))
    # The files are already verified against the locked hashes; rattler is pointed at them so nothing is
    # downloaded.
    return [
        rattler.RepoDataRecord(
            package_record=record,
            file_name=path.name,
            url=path.resolve().as_uri(),
            channel=pkg.channel or path.parent.resolve().as_uri(),
        )
        for (pkg, path), record in zip(packages, read, strict=True)
    ]


class RattlerInstaller:
    def __init__(self, config: Config) -> None:
        self.cache_dir = config.cache_dir() / "rattler" / "pkgs"

    def check(self) -> None:
        return None

    def install(self, packages: Sequence[tuple[LockedPackage, Path]], prefix: Path) -> None:
        if not packages:
            return
        try:
            records = run_sync(_records(packages))
            run_sync(
                rattler.install(
                    records,
                    target_prefix=prefix.resolve(),  # placeholders are rewritten with this exact string
                    cache_dir=self.cache_dir,
                    show_progress=False,
                    execute_link_scripts=False,
                )
            )
        except (
            rattler.exceptions.ExtractError,
            rattler.exceptions.LinkError,
            rattler.exceptions.InstallerError,
        ) as exc:
            raise FormatError(
                f"Installing conda packages into {prefix} failed: {' '.join(str(exc).split())}. The package files "
                "may be damaged; run `envcore create --force` to fetch and verify them again."
            ) from None
