"""The built-in package formats: ``.conda``, ``.tar.bz2``, ``.whl`` and source distributions.

Each format can :meth:`check` an archive without extracting it (headers only, plus the archive's own
manifest) and :meth:`extract` it safely. Both refuse hostile content with :class:`~envcore.errors.FormatError`:
absolute paths, ``..`` components, symlinks or hardlinks that leave the package, device files and FIFOs, and
manifests (``info/paths.json``, wheel ``RECORD``) that disagree with the archive.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from pathlib import Path

from envcore.errors import FormatError


def member_problem(name: str) -> str | None:
    """Why an archive member name is unsafe, or None."""
    if not name or "\x00" in name:
        return "an empty or NUL-containing member name"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"an absolute path ({name!r})"
    if ".." in name.replace("\\", "/").split("/"):
        return f"a path leaving the package ({name!r})"
    return None


def link_problem(name: str, target: str) -> str | None:
    """Why a symlink ``name -> target`` (relative to the package root) is unsafe, or None."""
    if target.startswith("/"):
        return f"a symlink to an absolute path ({name!r} -> {target!r})"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if resolved == ".." or resolved.startswith("../"):
        return f"a symlink leaving the package ({name!r} -> {target!r})"
    return None


def tar_member_problem(member: tarfile.TarInfo) -> str | None:
    problem = member_problem(member.name)
    if problem:
        return problem
    if member.ischr() or member.isblk() or member.isfifo():
        return f"a device or FIFO ({member.name!r})"
    if member.issym():
        return link_problem(member.name, member.linkname)
    if member.islnk():
        target_problem = member_problem(member.linkname)
        return (
            f"a hardlink leaving the package ({member.name!r} -> {member.linkname!r})"
            if target_problem
            else None
        )
    if not (member.isfile() or member.isdir()):
        return f"an unsupported member type ({member.name!r})"
    return None


def safe_members(tar: tarfile.TarFile, archive: Path) -> Iterator[tarfile.TarInfo]:
    """The members of ``tar``, refusing the first unsafe one."""
    for member in tar:
        problem = tar_member_problem(member)
        if problem:
            raise hostile(archive, problem)
        yield member


# the stdlib's extraction filters: Python 3.10.12 and 3.11.4 on (before, safe_members is the only guard)
_HAS_FILTERS = hasattr(tarfile, "data_filter")
_FILTER_ERRORS: tuple[type[Exception], ...] = (tarfile.FilterError,) if _HAS_FILTERS else ()


def extract_tar(tar: tarfile.TarFile, archive: Path, dest: Path) -> list[tarfile.TarInfo]:
    """Extract a (possibly streamed) tar into ``dest`` after checking each member; returns the members."""
    members = []
    for member in safe_members(tar, archive):
        try:
            if _HAS_FILTERS:
                tar.extract(
                    member, dest, filter="data"
                )  # the stdlib's own guard, as a second line of defence
            else:
                tar.extract(member, dest)
        except _FILTER_ERRORS as exc:
            raise hostile(archive, str(exc)) from None
        members.append(member)
    return members


def hostile(archive: Path, problem: str) -> FormatError:
    return FormatError(
        f"Refusing package {archive.name}: it contains {problem}. The file is not used; remove it from the store "
        "or the channel it came from, and report it to the package's publisher."
    )


def malformed(archive: Path, problem: str) -> FormatError:
    return FormatError(
        f"Package {archive.name} is malformed: {problem}. The file is not used; fetch it again (envcore create "
        "--force) or report it to the package's publisher."
    )
