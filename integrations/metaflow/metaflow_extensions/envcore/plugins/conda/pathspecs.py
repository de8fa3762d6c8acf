"""``step:Flow/Run/Step[/Task]`` aliases answered from Metaflow's metadata: the ``conda_env_id`` every task of
a ``--environment=conda`` run records."""

from __future__ import annotations

import json


def lookup(pathspec: str) -> tuple[str, str] | None:
    """The (req_id, full_id) a step (its first task) or a task ran in; None if unknown."""
    from metaflow import Step, Task
    from metaflow.exception import MetaflowException

    try:
        parts = pathspec.strip("/").split("/")
        if len(parts) == 3:
            task = Step(pathspec, _namespace_check=False).task
        elif len(parts) == 4:
            task = Task(pathspec, _namespace_check=False)
        else:
            return None
        if task is None:
            return None
        raw = task.metadata_dict.get("conda_env_id")
    except MetaflowException:
        return None
    if not raw:
        return None
    value = json.loads(raw)
    return str(value[0]), str(value[1])
