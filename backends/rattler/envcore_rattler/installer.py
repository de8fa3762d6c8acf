"""Install verified local conda archives into a prefix with py-rattler (extract once, hardlink after)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import rattler
import rattler.exceptions

from envcore.config import Config
from envcore.errors import FormatError
from envcore.types import LockedPackage
from envcore_rattler.resolver import run_sync


async def _records(packages: Sequence[tuple[LockedPackage, Path]]) -> list[rattler.RepoDataRecord]:
    records = []
    for pkg, path in packages:
        record = await rattler.RepoDataRecord.from_package_archive(path)
        # The file is already verified against the locked hash; point rattler at it so nothing is downloaded.
        records.append(
            rattler.RepoDataRecord(
                package_record=record,
                file_name=path.name,
                url=path.resolve().as_uri(),
                channel=pkg.channel or path.parent.resolve().as_uri(),
            )
        )
    return records


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
