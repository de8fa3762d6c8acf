"""Install verified local conda archives into a prefix with py-rattler (extract once, hardlink after)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path

import rattler
import rattler.exceptions
import rattler.package

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
    installs_any_arch = True  # it links files and rewrites prefixes only: link scripts are never run

    def __init__(self, config: Config) -> None:
        self.cache_dir = config.cache_dir() / "rattler" / "pkgs"

    def check(self) -> None:
        return None

    def forget(self, packages: Sequence[tuple[LockedPackage, Path]]) -> None:
        """Remove the unpacked copies in rattler's package cache whose files differ from the archives' own
        records (``paths.json``: size and sha256 of every file), under rattler's lock of each entry (the one an
        installing rattler holds while it links from it)."""
        import fcntl
        import shutil

        for package, archive in packages:
            entry = self.cache_dir / f"{package.name}-{package.version}-{package.build}"
            if not entry.is_dir():
                continue
            lock = os.open(entry.with_name(f"{entry.name}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if entry.is_dir() and not _unpacked_as_recorded(entry, archive):
                    gone = entry.with_name(f".{entry.name}.damaged-{os.getpid()}")
                    entry.rename(gone)
                    shutil.rmtree(gone, ignore_errors=True)
            finally:
                os.close(lock)  # (releases the lock)

    def install(self, packages: Sequence[tuple[LockedPackage, Path]], prefix: Path) -> None:
        if not packages:
            return
        tagged = (prefix / CACHE_TAG).exists()
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
            _refuse_full_disk(exc, prefix)
            raise FormatError(
                f"Installing conda packages into {prefix} failed: {' '.join(str(exc).split())}. The package files "
                "may be damaged; run `envcore create --verify` to hash them again and fetch the damaged ones anew."
            ) from None
        except BaseException:  # interrupted (Ctrl-C): rattler's linking threads run on after the cancel
            _wait_until_quiet(prefix)  # so that the caller's cleanup (or put-back) is not raced by them
            raise
        if not tagged:
            _drop_rattler_cache_tag(prefix)


# rattler tags every prefix it installs into as a cache directory (https://bford.info/cachedir/): backup tools
# (tar --exclude-caches, borg, restic) then skip the environment. A prefix is no cache: the tag is removed.
CACHE_TAG = "CACHEDIR.TAG"


def _drop_rattler_cache_tag(prefix: Path) -> None:
    tag = prefix / CACHE_TAG
    try:
        if b"created by rattler" in tag.read_bytes()[:512]:
            tag.unlink()
    except FileNotFoundError:
        pass


def _refuse_full_disk(exc: Exception, prefix: Path) -> None:
    from envcore.tools import says_disk_full  # (on errors only: it imports subprocess)

    if says_disk_full(str(exc)):
        raise FormatError(
            f"Installing conda packages into {prefix} failed: the disk is full (No space left on device). The "
            "package files are fine: free disk space there (or set METAFLOW_ENVCORE_CACHE_DIR to a larger disk) "
            "and run the command again."
        ) from None


def _wait_until_quiet(prefix: Path, *, interval: float = 0.2, longest: float = 30.0) -> None:
    """Return once nothing has been added to ``prefix`` for ``interval`` seconds (or after ``longest``)."""

    def files() -> int:
        return sum(len(names) + len(dirs) for _, dirs, names in os.walk(prefix))

    deadline = time.monotonic() + longest
    seen = -1
    while time.monotonic() < deadline:
        now = files()
        if now == seen:
            return
        seen = now
        time.sleep(interval)


def _unpacked_as_recorded(entry: Path, archive: Path) -> bool:
    """Whether every file of the package ``entry`` (an unpacked ``archive``) has the size and sha256 that the
    archive's ``paths.json`` records."""
    from envcore.fetch import digest_file

    for path in rattler.package.PathsJson.from_package_archive(archive).paths:
        if not path.path_type.hardlink:
            continue
        file = entry / path.relative_path
        try:
            if path.size_in_bytes is not None and file.stat().st_size != path.size_in_bytes:
                return False  # (paths.json records no size for an empty file)
            if path.sha256 is not None and digest_file(file, "sha256") != path.sha256.hex():
                return False
        except OSError:
            return False
    return True
