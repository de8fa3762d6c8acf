"""envcore's messages as a Metaflow user reads them.

* envcore's hints name its own commands (`envcore show`, `envcore resolve --alias`); here they are
  `metaflow environment show` and so on.
* Metaflow's error printer takes every ``*`` as a bold on/off marker and drops it, with no way to escape it,
  so a constraint such as ``1.2.*`` would be printed ``1.2.``: messages for that printer get U+2217 (ASTERISK
  OPERATOR, which looks the same) instead.

Imports nothing but the standard library: tasks import it in environments without envcore.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager

_COMMANDS = re.compile(r"\benvcore (resolve|create|get|show|alias)\b")
STAR = "\u2217"


def commands(text: str) -> str:
    """``envcore show`` -> ``metaflow environment show`` (the environment commands only)."""
    return _COMMANDS.sub(r"metaflow environment \1", text)


def for_printer(text: str) -> str:
    """A message for Metaflow's error printer: Metaflow's command names, asterisks kept visible."""
    return commands(text).replace("*", STAR)


def warnings_as_lines(say: Callable[[str], object]) -> AbstractContextManager[None]:
    """While it lasts, each of envcore's warnings (:class:`~envcore.errors.EnvcoreWarning`, from any thread) is
    said once through ``say`` as a ``Warning: ...`` line for Metaflow's printer, as a run says it: otherwise
    Metaflow's CLI drops it (it ignores Python's warnings), or Python shows it raw, with its file and line."""
    from envcore.progress import envcore_warnings_to

    return envcore_warnings_to(lambda text: say(f"Warning: {for_printer(text)}"))


# envcore's advice about a command-line option, as a flow's decorators say the same
_STEP_ADVICE = {
    "Remove --python.": "Remove python= from the step's @conda or @pypi decorator (or the flow's).",
    "Remove the python requirement, or extend an environment made with the python you want.": (
        "Remove python= from the step's @conda or @pypi decorator (or the flow's), or name an environment made "
        "with the python you want."
    ),
}


def in_step(step: str, message: str) -> str:
    """``In step 'S': message`` for Metaflow's printer, unless the message already names the step."""
    for option, decorator in _STEP_ADVICE.items():
        message = message.replace(option, decorator)
    text = message if f"step '{step}'" in message else f"In step '{step}': {message}"
    return for_printer(text)


def envcore_missing() -> str | None:
    """Why this Python cannot launch conda flows, when envcore (or a library its CLI needs) is not importable:
    a step's own environment has Metaflow and this extension (the code package) but not envcore."""
    import importlib.util
    import sys

    missing = [name for name in ("envcore", "click", "pluggy") if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (
        f"envcore is not installed in this Python ({sys.executable}; missing: {', '.join(missing)}), and "
        "launching a flow with --environment=conda or running `metaflow environment` needs it. Inside a step with "
        "its own environment (@conda, @pypi), this Python is the step's: give that step @conda(disabled=True) "
        "(or @pypi(disabled=True)) so that it runs in the launching interpreter, which has envcore."
    )
