"""The ``envcore`` command (console script and ``python -m envcore``).

The no-op ``create`` is answered by :mod:`envcore.uptodate` before click or any plugin is imported;
everything else runs :func:`envcore.cli.main`.
"""

from __future__ import annotations

import sys


def main() -> None:
    from envcore.uptodate import answer

    code = answer(sys.argv[1:])
    if code is not None:
        sys.stdout.flush()
        raise SystemExit(code)
    from envcore.cli import main as full

    full()


if __name__ == "__main__":
    main()
