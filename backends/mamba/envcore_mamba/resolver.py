"""mamba through the conda-CLI driver: 1.x is conda's front end (conda's flags and JSON, LINK without urls),
2.x is the libmamba CLI (micromamba's flags, ``--root-prefix``, LINK entries with url and hashes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from envcore_conda.resolver import CondaCliResolver


class MambaResolver(CondaCliResolver):
    tool = "mamba"
    setting = "ENVCORE_MAMBA_EXE"
    minimum = (1, 4)
    supported = "mamba 1.4 or newer (1.5.x and 2.x are supported)"
    install_hint = "install Miniforge (https://conda-forge.org/download/), which ships mamba"

    def command(
        self, exe: str, prefix: Path, root: Path, channels: Sequence[str], specs: Sequence[str]
    ) -> list[str]:
        cmd = super().command(exe, prefix, root, channels, specs)
        if self.tool_version() >= (2,):  # the libmamba CLI takes the root prefix as a flag
            cmd[2:2] = ["--root-prefix", str(root)]
        return cmd
