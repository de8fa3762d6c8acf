"""``step:Flow/Run/Step[/Task]`` aliases answered from Metaflow's metadata: the ``conda_env_id`` every task of
a ``--environment=conda`` run records.

A pathspec that names no environment is explained (no such flow, run, step or task; a step that ran without a
Conda environment; a run that recorded none) with an :class:`~envcore.errors.AliasError`, which ``show``
reports as that environment's state and other commands as their error.
"""

from __future__ import annotations

import json
from typing import Any


def _metadata() -> str:
    from metaflow import get_metadata

    return str(get_metadata())


def _env_id(task: Any) -> tuple[str, str] | None:
    raw = task.metadata_dict.get("conda_env_id") if task is not None else None
    if not raw:
        return None
    value = json.loads(raw)
    return str(value[0]), str(value[1])


def lookup(pathspec: str) -> tuple[str, str]:
    """The (req_id, full_id) a step (its first task) or a task ran in."""
    from metaflow import Flow, Run, Step, Task
    from metaflow.exception import MetaflowException

    from envcore.errors import AliasError

    parts = pathspec.strip("/").split("/")
    if len(parts) not in (3, 4) or not all(parts):
        raise AliasError(
            f"'step:{pathspec}' is not a step's pathspec: give FlowName/RunId/StepName (or "
            "FlowName/RunId/StepName/TaskId), e.g. step:MyFlow/1234/start."
        )
    flow_name, run_id, step_name = parts[:3]
    where = f"Metaflow's metadata ({_metadata()})"
    try:
        Flow(flow_name, _namespace_check=False)
    except MetaflowException:
        raise AliasError(
            f"No flow named '{flow_name}' is known to {where}, so 'step:{pathspec}' names no environment. "
            "Check the flow's name (as in `class NAME(FlowSpec)`), and --metadata or METAFLOW_DEFAULT_METADATA."
        ) from None
    try:
        run = Run(f"{flow_name}/{run_id}", _namespace_check=False)
    except MetaflowException:
        raise AliasError(
            f"Flow '{flow_name}' has no run '{run_id}' in {where}, so 'step:{pathspec}' names no environment. "
            "Check the run id (the flow's runs are listed by `Flow(NAME).runs()`)."
        ) from None
    try:
        step = Step(f"{flow_name}/{run_id}/{step_name}", _namespace_check=False)
        task = Task(pathspec.strip("/"), _namespace_check=False) if len(parts) == 4 else step.task
    except MetaflowException:
        steps = ", ".join(sorted(s.id for s in run)) or "none yet"
        what = f"step '{step_name}'" if len(parts) == 3 else f"task '{step_name}/{parts[3]}'"
        raise AliasError(
            f"Run '{flow_name}/{run_id}' has no {what} (its steps: {steps}), so 'step:{pathspec}' names no "
            "environment. Check the step's name."
        ) from None
    found = _env_id(task)
    if found is not None:
        return found
    if any(_env_id(other.task) is not None for other in run if other.id != step_name):
        raise AliasError(
            f"Step '{flow_name}/{run_id}/{step_name}' ran without a Conda environment: it is disabled "
            "(disabled=True in its @conda or @pypi, or in the flow's @conda_base or @pypi_base), so it has no "
            "environment to use. Name a step of that run that ran in one."
        )
    raise AliasError(
        f"Step '{flow_name}/{run_id}/{step_name}' has no recorded environment id: its run did not use "
        "--environment=conda (or its tasks stopped before starting), so it has no environment to use. Name "
        "a step of a run made with --environment=conda."
    )
