"""This machine's conda subdir, known without importing :mod:`platform` (the no-op ``create`` needs it)."""

from __future__ import annotations

import os
import sys

from envcore.errors import ConfigError

# The oldest macOS an osx target is resolved for: its wheels are chosen for it (the original's pip
# ``--platform macosx_12_0_*``; uv's own default moves between its versions, 13.0 in uv 0.13), and its conda
# packages are solved with it as ``__osx`` (a backend's default, not a requested sys package: not in the req id).
MACOS_TARGET = (12, 0)
DEFAULT_OSX = dict.fromkeys(("osx-64", "osx-arm64"), f"{MACOS_TARGET[0]}.{MACOS_TARGET[1]}")


def local_arch() -> str:
    system = sys.platform  # a plain string: mypy checks every branch, not only this machine's
    if system == "win32":
        import platform

        return "win-arm64" if platform.machine().lower() in ("arm64", "aarch64") else "win-64"
    machine = os.uname().machine.lower()
    arm = machine in ("arm64", "aarch64")
    if system.startswith("linux"):
        return "linux-aarch64" if arm else {"x86_64": "linux-64"}.get(machine, f"linux-{machine}")
    if system == "darwin":
        return "osx-arm64" if arm else "osx-64"
    raise ConfigError(f"envcore does not support this platform ({system} {machine}); use Linux or macOS.")


def runs_here(arch: str) -> bool:
    """Whether programs built for ``arch`` run on this machine: its own, and osx-64 on an Apple silicon Mac
    (Rosetta 2, as the original's ``create --arch osx-64`` expects)."""
    here = local_arch()
    return arch == here or (here, arch) == ("osx-arm64", "osx-64")
