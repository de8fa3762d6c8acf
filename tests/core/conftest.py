from __future__ import annotations

import importlib
import os
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

InstallPlugin = Callable[..., Path]


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InstallPlugin]:
    """Install a plugin distribution the way an installer lays it out (package + ``.dist-info`` with an
    ``envcore`` entry point) into a site directory on ``sys.path``; returns that directory, which
    subprocesses get through ``PYTHONPATH``."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    added: list[str] = []

    def install(
        dist: str, entry_points: dict[str, str], modules: dict[str, str], version: str = "1.0"
    ) -> Path:
        for module, code in modules.items():
            path = site / (module.replace(".", "/") + ".py")
            path.parent.mkdir(parents=True, exist_ok=True)
            for parent in path.relative_to(site).parents:
                if str(parent) != ".":
                    (site / parent / "__init__.py").touch()
            path.write_text(textwrap.dedent(code))
            added.append(module.split(".")[0])
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[envcore]\n{lines}")
        importlib.invalidate_caches()
        return site

    yield install
    for name in list(sys.modules):
        if name.split(".")[0] in added:
            del sys.modules[name]


def settle(root: Path, seconds_ago: int) -> None:
    """Date ``root`` and everything in it ``seconds_ago`` (envcore.plugincache remembers nothing modified in
    the last two seconds)."""
    stamp = time.time() - seconds_ago
    for path in [root, *root.rglob("*")]:
        os.utime(path, (stamp, stamp))


def wait_for_settled_sys_path(*extra: Path) -> None:
    """Wait until no folder on ``sys.path`` (nor ``extra``) changed in the last two seconds: envcore.plugincache
    remembers nothing until then, and another test process (a pytest-xdist worker) may have just changed one
    (a first ``__pycache__`` in site-packages)."""
    from envcore.plugincache import RACY_NS

    folders = [p for p in [*sys.path, *map(str, extra)] if p and os.path.isdir(p)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        newest = max(os.stat(p).st_mtime_ns for p in folders)
        wait = (newest + RACY_NS) / 1e9 + 0.1 - time.time()
        if wait <= 0:
            return
        time.sleep(wait)


RESOLVER_PLUGIN = """
    from envcore import hookimpl
    from envcore.errors import BackendUnavailable
    from envcore.types import EnvType, ResolverPlugin, Setting

    class _Resolver:
        def __init__(self, config):
            self.exe = config.get("ENVCORE_{upper}_EXE")

        def check(self):
            raise BackendUnavailable(f"{{self.exe}} is not on PATH")

        def version(self):
            return "0"

        def resolve(self, request):
            return []

    @hookimpl
    def envcore_resolvers():
        yield ResolverPlugin(name="{name}", env_types=frozenset({{EnvType.CONDA_ONLY}}), factory=_Resolver,
                             summary="test resolver", executables=("{name}",))

    @hookimpl
    def envcore_settings():
        yield Setting(name="ENVCORE_{upper}_EXE", default="{name}-bin")
"""


def resolver_plugin_code(name: str) -> str:
    return RESOLVER_PLUGIN.format(name=name, upper=name.upper().replace("-", "_"))
