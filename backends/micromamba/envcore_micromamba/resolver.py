"""micromamba through the conda-CLI driver: the libmamba CLI, with its root prefix given by ``-r``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from envcore_conda.resolver import CondaCliResolver


class MicromambaResolver(CondaCliResolver):
    tool = "micromamba"
    setting = "ENVCORE_MICROMAMBA_EXE"
    minimum = (1, 4)
    supported = "micromamba 1.4 or newer (1.5.x and 2.x are supported)"
    install_hint = "install micromamba (https://mamba.readthedocs.io/en/latest/installation/micromamba-installation.html)"

    def command(
        self, exe: str, prefix: Path, root: Path, channels: Sequence[str], specs: Sequence[str]
    ) -> list[str]:
        cmd = super().command(exe, prefix, root, channels, specs)
        cmd[2:2] = ["-r", str(root)]
        return cmd
