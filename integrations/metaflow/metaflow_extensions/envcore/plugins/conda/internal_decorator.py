"""``@conda_env_internal``: attached to every step by the ``conda`` environment. In the launcher it hydrates
the step's environment and starts each task with its python; in the task it records the environment id in
the task's metadata (``conda_env_id``), which is what ``step:Flow/Run/Step`` aliases read later.

Imports nothing but Metaflow at module level: the task half runs inside the step's environment.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from metaflow.decorators import StepDecorator
from metaflow.metadata_provider import MetaDatum
from metaflow.metaflow_environment import InvalidEnvironmentException
from metaflow.unbounded_foreach import UBF_CONTROL
from metaflow_extensions.envcore.plugins.conda.environment import (
    ENV_VAR,
    CondaEnvironment,
    StepEnvironment,
    is_remote,
    seconds,
)

if TYPE_CHECKING:
    from envcore.types import ResolvedEnvironment


class CondaEnvInternalDecorator(StepDecorator):
    name = "conda_env_internal"

    # The code package extracted once per run: the env's python imports Metaflow and this extension from it.
    _code_dir: ClassVar[str | None] = None
    _code_env: ClassVar[dict[str, str]] = {}
    # Environments built again in this run (`--force-rebuild-environments`): each once, not per task.
    _rebuilt: ClassVar[set[tuple[str, str]]] = set()

    def step_init(
        self,
        flow: Any,
        graph: Any,
        step_name: str,
        decorators: Any,
        environment: Any,
        flow_datastore: Any,
        logger: Any,
    ) -> None:
        self._flow = flow
        self._step_name = step_name
        self._environment: CondaEnvironment = environment
        self._flow_datastore = flow_datastore
        self._logger = logger
        self._decorators = decorators
        self._env: ResolvedEnvironment | None = None
        # fetched at execution, per task: a name may hold @{METAFLOW_TASK_ID}, and the runtime may create
        # several tasks of this step (one decorator) before it launches the first
        self._env_of_task: dict[str, ResolvedEnvironment] = {}
        self._substitutions: dict[str, str | Callable[[], str]] = {}

    # --- launcher side --------------------------------------------------------------------------------

    def _info(self) -> StepEnvironment | None:
        return CondaEnvironment._steps.get(self._step_name)

    def _enabled(self, ubf_context: str | None = None) -> bool:
        info = self._info()
        if info is None or info.disabled:
            return False
        # Control tasks of unbounded foreach only orchestrate: they get an environment when asked for.
        return not (ubf_context == UBF_CONTROL and not info.merged.requests)

    def runtime_init(self, flow: Any, graph: Any, package: Any, run_id: str) -> None:
        info = self._info()
        if info is None or info.disabled:
            return
        cls = self.__class__
        if cls._code_dir is None:
            from metaflow.packaging_sys import ContentType

            cls._code_dir = tempfile.mkdtemp(prefix="metaflow-envcore-code-")
            package.extract_into(
                cls._code_dir,
                ContentType.CODE_CONTENT.value
                | ContentType.MODULE_CONTENT.value
                | ContentType.OTHER_CONTENT.value,
            )
            cls._code_env = dict(package.get_post_extract_env_vars(package.package_metadata, cls._code_dir))
        if info.fetch_at_exec:
            self._substitutions = {
                "METAFLOW_RUN_ID": run_id,
                "METAFLOW_RUN_ID_BASE": run_id,
                "METAFLOW_STEP_NAME": self._step_name,
            }

    def runtime_task_created(
        self,
        task_datastore: Any,
        task_id: str,
        split_index: Any,
        input_paths: list[str],
        is_cloned: bool,
        ubf_context: str,
    ) -> None:
        info = self._info()
        if info is None or info.disabled:
            return
        if not info.fetch_at_exec:
            self._env = info.env
            return
        # the runtime passes the task id it was given (None for a new task); the datastore has the one allocated
        task_id = str(getattr(task_datastore, "task_id", None) or task_id)
        self._substitutions["METAFLOW_TASK_ID"] = task_id
        self._substitutions.update(self._parameter_values(input_paths))
        self._env = self._env_of_task[task_id] = self._fetch(info)

    def _parameter_values(self, input_paths: list[str]) -> dict[str, str | Callable[[], str]]:
        """``METAFLOW_INIT_<PARAM>``: the run's parameter values, read (only if used) from the first input."""
        if not input_paths:
            return {}
        run_id, step_name, task_id = input_paths[0].split("/")[-3:]
        datastore = self._flow_datastore.get_task_datastore(run_id, step_name, task_id)
        values: dict[str, str | Callable[[], str]] = {}
        for var, param in self._flow._get_parameters():
            if getattr(param, "IS_CONFIG_PARAMETER", False):
                continue
            key = "METAFLOW_INIT_" + var.upper().replace("-", "_")
            values[key] = _parameter_loader(datastore, var, param)
        return values

    def _fetch(self, info: StepEnvironment) -> ResolvedEnvironment:
        from metaflow_extensions.envcore.plugins.conda import messages, requirements
        from metaflow_extensions.envcore.plugins.conda.requirements import substitute

        from envcore.errors import EnvcoreError

        assert info.merged.named is not None
        ref = substitute(info.merged.named, self._substitutions, self._step_name)
        try:
            env = self._environment.session().environments.find(ref, info.arch)
        except EnvcoreError as exc:
            raise InvalidEnvironmentException(
                messages.for_printer(
                    f"Cannot find environment '{ref}' (from '{info.merged.named}') for arch '{info.arch}' for "
                    f"the fetch-at-exec step '{self._step_name}': {exc.message}"
                )
            ) from None
        self._logger(f"    Environment '{ref}' is {env.req_id}:{env.full_id}")
        lacking = self._environment.metaflow_lacks(env)
        if lacking:
            raise InvalidEnvironmentException(requirements.fetched_lacks(ref, self._step_name, lacking))
        return env

    def runtime_step_cli(
        self, cli_args: Any, retry_count: int, max_user_code_retries: int, ubf_context: str
    ) -> None:
        if not self._enabled():
            # Keep an outer step's environment (a Runner inside a step) from leaking into this task.
            cli_args.env[ENV_VAR] = ""
            return
        task_id = str(getattr(getattr(cli_args, "task", None), "task_id", ""))
        env = self._env_of_task.get(task_id, self._env)
        if env is None:
            raise InvalidEnvironmentException(f"No environment is known for step '{self._step_name}'.")
        cli_args.env[ENV_VAR] = json.dumps([env.req_id, env.full_id, env.arch])
        self._record_pathspec(cli_args, env)
        if not self._enabled(ubf_context):
            return
        if is_remote(self._decorators, self._environment._remote_commands()):
            return  # hydrated on the remote node by the bootstrap commands
        python = self._hydrate(env)
        cli_args.env.update(self._python_path())
        cli_args.env["PYTHONNOUSERSITE"] = "1"
        if sys.platform.startswith("linux"):
            lib = str(python.parent.parent / "lib")
            old = os.environ.get("LD_LIBRARY_PATH")
            cli_args.env["LD_LIBRARY_PATH"] = f"{lib}:{old}" if old else lib
            if old is not None:
                cli_args.env["MF_ORIG_LD_LIBRARY_PATH"] = old
        cli_args.entrypoint[0] = str(python)

    def _hydrate(self, env: ResolvedEnvironment) -> Path:
        from envcore import hydrate

        cls = self.__class__
        session = self._environment.session()
        prefix = session.environments.prefix_for(env, None)
        # `--force-rebuild-environments`: each environment is built again, once per run (before its first task)
        force = bool(getattr(self._environment, "_force_rebuild", False)) and (
            (env.req_id, env.full_id) not in cls._rebuilt
        )
        if not force and hydrate.is_complete(prefix, env):
            self._logger(f"    Using existing Conda environment {env.req_id} ({env.full_id})")
        else:
            self._logger(f"    Creating Conda environment {env.req_id} ({env.full_id})...")
            started = time.monotonic()
            info = self._info()  # its request's credentials: the store may lack its files (not cached there)
            request = info.request if info is not None and info.env == env else None
            session.create(env, prefix, force=force, credentials=request.credentials if request else None)
            if force:
                cls._rebuilt.add((env.req_id, env.full_id))
            session.flush_messages()  # what it found and installed, before the line that closes the work
            session.say(
                f"    Extracting and linking Conda environment ... done in {seconds(time.monotonic() - started)}."
            )
        return prefix / "bin" / "python"

    def _python_path(self) -> dict[str, str]:
        """What makes the extracted code package importable (``NAME:`` means "replace", as in Metaflow)."""
        return {key.removesuffix(":"): value for key, value in self._code_env.items()}

    def _record_pathspec(self, cli_args: Any, env: ResolvedEnvironment) -> None:
        """``step:Flow/Run/Step`` then works on this machine at once, without reading metadata."""
        task = cli_args.task
        step_path = f"{task.flow_name}/{task.run_id}/{task.step}"
        record = self._environment.session().environments.record
        for pathspec in (step_path, f"{step_path}/{task.task_id}"):  # journaled: no rewrite per task
            record.set_mapping(pathspec, (env.req_id, env.full_id))

    def runtime_finished(self, exception: Any) -> None:
        cls = self.__class__
        if cls._code_dir is not None:
            shutil.rmtree(cls._code_dir, ignore_errors=True)
            cls._code_dir, cls._code_env = None, {}

    # --- task side (inside the step's environment) ----------------------------------------------------

    def task_pre_step(
        self,
        step_name: str,
        task_datastore: Any,
        metadata: Any,
        run_id: str,
        task_id: str,
        flow: Any,
        graph: Any,
        retry_count: int,
        max_user_code_retries: int,
        ubf_context: str,
        inputs: Any,
    ) -> None:
        raw = os.environ.get(ENV_VAR)
        if not raw:
            return
        # Non-python tools of the environment (bin/) come first for the user's code too.
        bin_dir = os.path.dirname(os.path.realpath(sys.executable))
        os.environ["PATH"] = os.pathsep.join(p for p in (bin_dir, os.environ.get("PATH")) if p)
        metadata.register_metadata(
            run_id,
            step_name,
            task_id,
            [
                MetaDatum(
                    field="conda_env_id",
                    value=raw,
                    type="conda_env_id",
                    tags=[f"attempt_id:{retry_count}"],
                )
            ],
        )


def _parameter_loader(datastore: Any, var: str, param: Any) -> Callable[[], str]:
    """The value of one run parameter, read from the datastore only if a name uses it."""
    return lambda: str(param.load_parameter(datastore[var]))
