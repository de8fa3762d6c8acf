"""``metaflow environment create --install-notebook``: a Jupyter kernel running in a step's environment.

The kernel needs ``ipykernel``: when the environment lacks it, a derived environment is resolved (the
original's pins kept, ``ipykernel`` added on the side the environment uses) and created instead. The kernel
spec is written where ``jupyter kernelspec install --user`` writes it (``$JUPYTER_DATA_DIR`` or
``~/.local/share/jupyter``), so no Jupyter installation is needed to install it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envcore.environments import Environments
    from envcore.types import ResolvedEnvironment

KERNEL_PACKAGE = "ipykernel"


def with_kernel(envs: Environments, env: ResolvedEnvironment) -> tuple[ResolvedEnvironment, bool]:
    """``env`` if it has ipykernel, else a derived environment that adds it (resolved, cached, recorded);
    and whether one was derived."""
    from envcore import specs
    from envcore.resolve import build_request

    if any(p.name == KERNEL_PACKAGE for p in env.packages):
        return env, False
    wanted = {KERNEL_PACKAGE: ""}
    if env.env_type.value == "pypi-only":
        spec = specs.from_decorator(packages=wanted, origin="--install-notebook")
    else:
        spec = specs.from_decorator(libraries=wanted, origin="--install-notebook")
    request = build_request(spec, envs.config, env.arch, base=env)
    ((derived, new),) = envs.resolve([request])
    return (envs.save(derived) if new else derived), True


def data_dir() -> Path:
    configured = os.environ.get("JUPYTER_DATA_DIR")
    return Path(configured) if configured else Path.home() / ".local" / "share" / "jupyter"


def install_kernel(python: Path, display: str, env: dict[str, str] | None) -> Path:
    """Write the kernel spec (``mf_<display with / : . - as _>``), the kernel getting ``env`` (the settings
    of ``--into-dir``'s code: ``PYTHONPATH``...); returns its directory."""
    name = "mf_" + re.sub(r"[^a-zA-Z0-9_]", "_", display.removeprefix("Metaflow ").strip())
    kernel_dir = data_dir() / "kernels" / name.lower()
    kernel_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": display,
        "language": "python",
        "metadata": {"debugger": True},
    }
    if env:
        spec["env"] = dict(env)
    (kernel_dir / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
    return kernel_dir
