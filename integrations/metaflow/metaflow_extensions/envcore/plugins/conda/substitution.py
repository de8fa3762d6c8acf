"""``@{VAR}`` in ``@named_env(name=..., pathspec=...)``. Importing this module imports nothing of Metaflow
(remote nodes use it before Metaflow is set up)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

_VAR = re.compile(r"@\{(\w+)\}")


class MissingVariable(LookupError):
    pass


def substitute(text: str, values: Mapping[str, str | Callable[[], str]]) -> str:
    """Replace every ``@{VAR}`` in ``text``: from the process environment first, then from ``values``
    (``METAFLOW_RUN_ID``, ``METAFLOW_RUN_ID_BASE``, ``METAFLOW_STEP_NAME``, ``METAFLOW_TASK_ID``,
    ``METAFLOW_INIT_<PARAM>``), whose entries may be computed only when used."""

    def one(match: re.Match[str]) -> str:
        var = match.group(1)
        if var in os.environ:
            return os.environ[var]
        if var in values:
            value = values[var]
            return value() if callable(value) else value
        known = ", ".join(sorted(values)) or "none"
        raise MissingVariable(
            f"Could not find '{var}' in the environment -- needed to resolve '{text}'. Known values: {known} "
            "and the process environment."
        )

    return _VAR.sub(one, text)
