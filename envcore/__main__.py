"""The ``envcore`` command (console script and ``python -m envcore``).

The no-op ``create`` is answered by :mod:`envcore.uptodate` before click or any plugin is imported;
everything else runs :func:`envcore.cli.main`.

Start-up imports allocate objects that live as long as the process (modules, functions, classes): the cyclic
garbage collector is paused while they are imported, and they are then moved to its permanent generation
(``gc.freeze``), so that no collection traverses them again (a CLI conda resolve: 604-605M -> 596-597M
instructions, callgrind). Collection is on again before the command runs.
"""

from __future__ import annotations

import gc
import os
import sys


def main() -> None:
    for name in ("stdout", "stderr"):  # closed (`2>&-`): Python gives None, which every write fails on
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 (for the life of the process)
    try:
        _main()
    except KeyboardInterrupt:  # before the command's own handling is in place (during the first imports)
        print("Aborted.", file=sys.stderr)
        raise SystemExit(130) from None


def _main() -> None:
    gc.disable()
    from envcore.uptodate import answer

    _collect_from_here()
    code = answer(sys.argv[1:])
    if code is not None:
        sys.stdout.flush()
        raise SystemExit(code)
    gc.disable()
    from envcore.cli import main as full

    _collect_from_here()
    full()


def _collect_from_here() -> None:
    """What is allocated from now on is collected as usual; what was allocated until now never is."""
    gc.freeze()
    gc.enable()


if __name__ == "__main__":
    main()
