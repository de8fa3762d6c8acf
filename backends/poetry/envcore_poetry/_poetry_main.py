"""Run ``poetry lock`` for a target python, then list the index links of every locked file.

Executed as a script by poetry's own interpreter (``python _poetry_main.py PROJECT PYTHON_VERSION LINKS``), so it
imports only the standard library and poetry. Two things differ from a plain ``poetry lock``:

* ``poetry lock`` insists on an interpreter that satisfies the project's python constraint, although locking
  never runs it; the environment is a ``MockEnv`` of the target python with nothing installed (so the host's
  packages never bias the solver either).
* poetry.lock names files but not their URLs; after locking, the repositories the lock used (same sources,
  same credentials, index pages already in memory) give the link of every file, and whether the index marks
  the release yanked, written to ``LINKS`` as JSON.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any


def _mock_env(version: str) -> Any:
    from poetry.utils.env import MockEnv

    major, minor, patch = (int(x) for x in [*re.findall(r"\d+", version), "0", "0"][:3])
    return MockEnv(version_info=(major, minor, patch), sys_path=[], is_venv=False)


def _links(poetry: Any) -> list[dict[str, Any]]:
    """The index links of every locked file, from the repositories the lock used (their pages are cached)."""
    out = []
    for package in poetry.locker.locked_repository().packages:
        found = []
        if package.source_type == "legacy" and package.source_reference:
            found = poetry.pool.repository(package.source_reference).find_links_for_package(package)
        out.append(
            {
                "name": package.name,
                "version": package.version.text,
                "links": {link.filename: link.url_without_fragment for link in found},
                # PEP 592: the reason (maybe "") when the index marks the release yanked, else None
                "yanked": next((link.yanked_reason for link in found if link.yanked), None),
            }
        )
    return out


def main(argv: list[str]) -> int:
    project, version, links_path = Path(argv[0]), argv[1], Path(argv[2])
    from poetry.console.application import Application
    from poetry.utils.env import EnvManager

    env = _mock_env(version)
    EnvManager.create_venv = lambda self, *args, **kwargs: env  # type: ignore[method-assign]
    app = Application()
    app.auto_exits(False)
    sys.argv = ["poetry", "lock", "--no-interaction", "--directory", str(project)]
    code = int(app.run())
    if code == 0:
        links_path.write_text(json.dumps(_links(app.poetry)))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
