"""This machine's conda subdir, known without importing :mod:`platform` (the no-op ``create`` needs it)."""

from __future__ import annotations

import os
import sys

from envcore.errors import ConfigError


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
