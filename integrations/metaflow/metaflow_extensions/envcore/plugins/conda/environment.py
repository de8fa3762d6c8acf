"""``--environment=conda``: every step runs in the environment its decorators describe.

At the start of a run (or deployment), :meth:`CondaEnvironment.init_environment` works out each step's
environment, resolves the ones not resolved before (in one worker process, in parallel), caches them in the
store and records them. The ``conda_env_internal`` step decorator then hydrates each step's environment
before its tasks and runs them with its python.

This module is imported in every Metaflow process, including tasks inside a step's environment where envcore
is absent: envcore is only imported by the methods that run in the launcher.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from metaflow.metaflow_environment import InvalidEnvironmentException, MetaflowEnvironment
from metaflow_extensions.envcore.plugins.conda import messages

if TYPE_CHECKING:
    from metaflow_extensions.envcore.plugins.conda.requirements import Merged
    from metaflow_extensions.envcore.plugins.conda.session import Session

    from envcore.types import ResolvedEnvironment, ResolveRequest

ENV_VAR = "_METAFLOW_CONDA_ENV"  # JSON [req_id, full_id, arch] of the environment a task runs in


@dataclass
class StepEnvironment:
    """What one step runs in."""

    step: str
    arch: str
    merged: Merged
    request: ResolveRequest | None = None  # to resolve (None: disabled, fetch-at-exec, named env as is)
    env: ResolvedEnvironment | None = None  # known once resolved or looked up
    newly_resolved: bool = False
    metaflow_pins: dict[str, str] = field(default_factory=dict)  # what Metaflow added to the request

    @property
    def disabled(self) -> bool:
        return bool(self.merged.disabled)

    @property
    def fetch_at_exec(self) -> bool:
        return bool(self.merged.fetch_at_exec) and not self.disabled

    @property
    def env_id(self) -> list[str] | None:
        return [self.env.req_id, self.env.full_id, self.env.arch] if self.env else None


# what makes two steps' environments one: the req id, the arch, and the base an extension keeps (an extension's
# req id names its base's requirements, which two resolutions of them share: team/env:v1 and team/env:v2)
_Key = tuple[str, str, tuple[str, str] | None]


def _key(rid: str, request: ResolveRequest) -> _Key:
    base = request.base
    return rid, request.arch, (base.req_id, base.full_id) if base is not None else None


def _caching_labels(
    requested: Sequence[tuple[StepEnvironment, ResolveRequest, _Key]], keys: list[_Key]
) -> list[str]:
    """What the caching lines call each of ``keys``' environments: the steps that run in it ('step start',
    'steps a, b'), with the arch when the steps are planned for several; none when there is only one."""
    if len(keys) < 2:
        return [""] * len(keys)
    several_archs = len({key[1] for key in keys}) > 1
    labels = []
    for key in keys:
        steps = list(dict.fromkeys(info.step for info, _, k in requested if k == key))
        label = f"step{'s' if len(steps) > 1 else ''} {', '.join(steps)}"
        labels.append(f"{label} on {key[1]}" if several_archs else label)
    return labels


def gpu_requested(step: Any) -> bool:
    """Whether a decorator of ``step`` (``@resources``, ``@batch``, ``@kubernetes``...) asks for a GPU."""
    return any(
        getattr(deco, "attributes", {}).get("gpu") not in (None, 0, "0", "") for deco in step.decorators
    )


def step_arch(step: Any, remote_commands: list[str]) -> str:
    """The target architecture: this machine's, or that of the compute a remote decorator sends it to."""
    from envcore.resolve import local_arch

    for deco in step.decorators:
        if deco.name in remote_commands:
            target = getattr(deco, "target_platform", None) or deco.attributes.get("target_platform")
            return target if isinstance(target, str) and target else "linux-64"
    return local_arch()


def base_python(env: ResolvedEnvironment) -> str:
    """The python version of a resolved environment ("3.11.7"), for Metaflow's version-dependent pins."""
    return next((p.version for p in env.packages if p.name == "python" and p.kind.value == "conda"), "")


def seconds(elapsed: float) -> str:
    """``0.31 seconds``: the original's words, with the hundredths envcore's CLI gives (the original's whole
    seconds said "0 seconds" for most of envcore's work)."""
    return f"{elapsed:.2f} seconds"


def is_quiet(echo: Any = None) -> bool:
    """Whether Metaflow runs with ``--quiet``: its command line's setting, else whether ``echo`` is the one
    Metaflow gives when quiet."""
    from metaflow._vendor import click

    ctx = click.get_current_context(silent=True)
    quiet = getattr(ctx.obj, "is_quiet", None) if ctx is not None else None
    if quiet is not None:
        return bool(quiet)
    return getattr(echo, "__name__", "") == "echo_dev_null"


def is_remote(decorators: Any, remote_commands: list[str]) -> bool:
    return any(deco.name in remote_commands for deco in decorators)


class CondaEnvironment(MetaflowEnvironment):
    TYPE = "conda"
    # Per-step results, shared by the environment and the decorators of the launcher process.
    _steps: ClassVar[dict[str, StepEnvironment]] = {}

    def __init__(self, flow: Any) -> None:
        super().__init__(flow)
        self._flow = flow
        self._datastore_type: str | None = None
        self._session: Session | None = None
        self._logger: Any = None  # Metaflow's (timestamped) logger, given to validate_environment
        self._quiet = False
        # Anything this environment does not handle is delegated to the default environment.
        from metaflow.metaflow_config import DEFAULT_ENVIRONMENT
        from metaflow.plugins import ENVIRONMENTS

        self.base_env: MetaflowEnvironment = next(
            (e for e in ENVIRONMENTS if e.TYPE == DEFAULT_ENVIRONMENT and e.TYPE != self.TYPE),
            MetaflowEnvironment,
        )(flow)

    # --- Metaflow's environment interface ---------------------------------------------------------------

    def validate_environment(self, echo: Any, datastore_type: str) -> None:
        self._datastore_type = datastore_type
        self._logger = echo
        self.base_env.validate_environment(echo, datastore_type)

    def decospecs(self) -> tuple[str, ...]:
        return ("conda_env_internal", *self.base_env.decospecs())

    def init_environment(self, echo: Any) -> None:
        self._quiet = is_quiet(echo)
        echo("Bootstrapping Conda environment... (this could take a few minutes)")
        missing = messages.envcore_missing()
        if missing:  # e.g. a Runner started by a step that runs in its own environment
            raise InvalidEnvironmentException(messages.for_printer(missing))
        from envcore.errors import EnvcoreError

        # `--force-rebuild-environments` (a Metaflow option) resolves everything again.
        try:
            self.resolve_steps(echo, force=bool(getattr(self, "_force_rebuild", False)))
        except EnvcoreError as exc:  # e.g. a configuration error met while looking for resolved environments
            raise InvalidEnvironmentException(messages.for_printer(exc.message)) from None
        self.base_env.init_environment(echo)

    def add_to_package(self) -> list[Any]:
        from metaflow.packaging_sys import ContentType
        from metaflow_extensions.envcore.plugins.conda import remote

        files = list(self.base_env.add_to_package())
        files.extend(
            (path, name, ContentType.OTHER_CONTENT)
            for path, name in remote.package_files(self.session().registry)
        )
        return files

    def bootstrap_commands(self, step_name: str, datastore_type: str) -> list[str]:
        from metaflow_extensions.envcore.plugins.conda import remote

        info = self._steps.get(step_name)
        if info is not None and info.disabled:
            return []
        registry = self.session().registry
        options: dict[str, Any] = {
            "plugins": remote.node_plugins(registry),
            "requirements": remote.node_requirements(registry),
        }
        if info is not None and info.fetch_at_exec:
            from envcore.resolve import default_python

            # Metaflow's pins, checked on the node when it has found the environment
            needs = self._pins(default_python(), datastore_type)
            fetch, arch = info.merged.named, info.arch
            return remote.bootstrap_commands(
                self._flow.name, step_name, None, fetch=fetch, arch=arch, needs=needs, **options
            )
        # A task launched by Metaflow's runtime gets its id from the launcher through the process
        # environment (the remote command is built in another process); a deployment knows it here.
        env_id = info.env_id if info is not None else remote.env_id_from_environ()
        return remote.bootstrap_commands(self._flow.name, step_name, env_id, **options)

    def executable(self, step_name: str, default: str | None = None) -> str:
        from metaflow_extensions.envcore.plugins.conda import remote

        info = self._steps.get(step_name)
        enabled = (not info.disabled) if info is not None else remote.env_id_from_environ() is not None
        if enabled and self._runs_remotely(step_name):
            return f"./{remote.PYTHON_LINK}"
        executable: str = self.base_env.executable(step_name, default)
        return executable

    def _runs_remotely(self, step_name: str) -> bool:
        step = next((s for s in self._flow if s.name == step_name), None)
        return step is not None and is_remote(step.decorators, self._remote_commands())

    def get_package_commands(
        self, code_package_url: str, datastore_type: str, code_package_metadata: str | None = None
    ) -> list[str]:
        commands: list[str] = self.base_env.get_package_commands(
            code_package_url, datastore_type, code_package_metadata
        )
        return commands

    def get_environment_info(self, include_ext_info: bool = False) -> dict[str, Any]:
        # The code package's INFO: Metaflow's client picks the environment whose `get_client_info` describes
        # a task by its `environment_type`, so it names this environment, not the one delegated to.
        info: dict[str, Any] = dict(self.base_env.get_environment_info(include_ext_info))
        info["environment_type"] = self.TYPE
        return info

    def pylint_config(self) -> list[str]:
        return [*self.base_env.pylint_config(), "--disable=F0401"]  # packages live in the step's env

    @classmethod
    def get_client_info(cls, flow_name: str, metadata: dict[str, str]) -> dict[str, Any]:
        """``Task.environment_info``: type, ids and arch from the task's ``conda_env_id``; with the environment's
        description (local record or store), its requirements and packages as the original gives them."""
        env_id = json.loads(metadata.get("conda_env_id") or "[]")
        if len(env_id) != 3:
            return {"type": "conda"}
        info: dict[str, Any] = {"type": "conda", "req_id": env_id[0], "full_id": env_id[1], "arch": env_id[2]}
        code = json.loads(metadata.get("code-package") or "{}")
        try:
            from metaflow_extensions.envcore.plugins.conda.session import Session

            from envcore.errors import EnvcoreError
        except ImportError:  # a python without envcore (a step's environment): the ids only
            return info
        try:
            env = Session(code.get("ds_type")).environments.find(f"{env_id[0]}:{env_id[1]}", env_id[2])
        except (EnvcoreError, OSError):
            return info
        info["user_deps"] = "; ".join(env.deps)
        info["all_packages"] = "; ".join(sorted(p.filename for p in env.packages))
        return info

    # --- working out each step's environment ------------------------------------------------------------

    def session(self) -> Session:
        if self._session is None:
            from metaflow_extensions.envcore.plugins.conda import pathspecs
            from metaflow_extensions.envcore.plugins.conda.session import Session

            self._session = Session(
                self._datastore_type,
                progress=self._progress,
                pathspec_lookup=pathspecs.lookup,
                quiet=lambda: self._quiet or is_quiet(),
            )
        return self._session

    def _progress(self, message: str) -> None:
        """envcore's progress (caching, fetching, installing) as Metaflow logs: timestamped, as the original's
        messages are (it prints them with the logger Metaflow gives the environment)."""
        if self._logger is not None:
            self._logger(message)
        else:
            print(message, file=sys.stderr, flush=True)

    def _remote_commands(self) -> list[str]:
        value = self.session().config.get("CONDA_REMOTE_COMMANDS")
        return [str(v) for v in value] if isinstance(value, list) else ["batch", "kubernetes"]

    def _pins(self, python: str, datastore_type: str | None = None) -> dict[str, str]:
        from metaflow.metaflow_config import get_pinned_conda_libs

        datastore_type = datastore_type or self._datastore_type or "local"
        pins: dict[str, str] = get_pinned_conda_libs(python, datastore_type)
        return pins

    def metaflow_lacks(self, env: ResolvedEnvironment) -> list[str]:
        """What Metaflow needs in a task (its pins for this datastore) that ``env`` lacks, as ``name>=1.0``."""
        from metaflow_extensions.envcore.plugins.conda import requirements

        return requirements.unsatisfied(env, self._pins(base_python(env)))

    def plan_step(self, step: Any, arch: str | None = None) -> StepEnvironment:
        """Work out what ``step`` runs in, without resolving anything."""
        from metaflow_extensions.envcore.plugins.conda import requirements

        from envcore.errors import EnvcoreError
        from envcore.resolve import build_request, default_python, gpu_packages

        merged = requirements.merged_for_step(self._flow, step)
        arch = arch or step_arch(step, self._remote_commands())
        info = StepEnvironment(step=step.name, arch=arch, merged=merged)
        if info.disabled or info.fetch_at_exec:
            return info
        session = self.session()
        try:
            base = self._find_base(merged.named, arch, step.name) if merged.named else None
            spec = requirements.spec_for(merged, step.name)
            pypi_only = requirements.is_pypi_only(spec, base.env_type.value if base else None)
            python = base_python(base) if base else (spec.python or default_python())
            pins = self._pins(python)
            if base is not None and not spec.requirements and requirements.satisfies(base, pins):
                info.env = base  # a named environment with all Metaflow needs is used exactly as it is
                return info
            if gpu_requested(step):  # CONDA_SYS_DEFAULT_GPU_PACKAGES, unless the step's @sys_packages say
                spec = requirements.with_gpu_packages(spec, gpu_packages(session.config, arch), step.name)
            spec = requirements.with_metaflow_pins(spec, pins, pypi_only, step.name)
            info.metaflow_pins = pins
            info.request = build_request(spec, session.config, arch, base=base)
        except EnvcoreError as exc:
            raise InvalidEnvironmentException(messages.in_step(step.name, exc.message)) from None
        return info

    def _find_base(self, named: str, arch: str, step_name: str) -> ResolvedEnvironment:
        from metaflow_extensions.envcore.plugins.conda.requirements import substitute

        from envcore.errors import EnvcoreError

        ref = substitute(named, {}, step_name)
        try:
            return self.session().environments.find(ref, arch)
        except EnvcoreError as exc:
            raise InvalidEnvironmentException(
                messages.in_step(
                    step_name, f"base environment '{ref}' not found for architecture '{arch}': {exc.message}"
                )
            ) from None

    def _caches(self, session: Session) -> bool:
        """Whether resolved environments are cached in the store: not for a datastore listed in
        ``CONDA_IGNORE_CACHING_DATASTORES`` (as the original: e.g. local runs of a team with a shared store)."""
        ignored = session.config.get("CONDA_IGNORE_CACHING_DATASTORES") or []
        return session.datastore_type not in ignored

    def _planned_with(self, planned: dict[str, list[StepEnvironment]], rid: str) -> list[StepEnvironment]:
        """The planned step environments whose request has the req id ``rid``."""
        from envcore.resolve import req_id

        registry = self.session().registry
        return [
            info
            for infos in planned.values()
            for info in infos
            if info.request is not None and req_id(registry, info.request) == rid
        ]

    def _failures(self, planned: dict[str, list[StepEnvironment]], failed: dict[str, str]) -> str:
        lines = []
        for rid, message in failed.items():
            failing = self._planned_with(planned, rid)
            steps = sorted({info.step for info in failing})
            pins = {name: spec for info in failing for name, spec in info.metaflow_pins.items()}
            words = re.sub(r"\S+://\S+", "", message)  # names in the message, not in its URLs
            named = [
                f"{name}{spec}"
                for name, spec in pins.items()
                if re.search(rf"(?<![\w-]){re.escape(name)}\b", words)
            ]
            if named:  # a conflict may be with what Metaflow added, which the user did not write
                message += (
                    f" Metaflow adds {', '.join(named)} to every step's environment: it needs "
                    f"{'it' if len(named) == 1 else 'them'} in each task."
                )
            lines.append(f"Step(s): {', '.join(steps)}: {message}")
        return "\n".join(lines)

    def _warn_of_undeclared_extras(
        self,
        echo: Any,
        planned: dict[str, list[StepEnvironment]],
        resolved: dict[str, tuple[ResolvedEnvironment, bool]],
    ) -> None:
        """Extras a step asked for that the resolved wheels do not declare (the resolver left them out, as
        ``envcore resolve`` warns), once per environment, naming its steps."""
        from envcore.pypi import undeclared_extras

        session = self.session()
        for rid, (env, new) in resolved.items():
            if not new:
                continue
            steps = sorted({info.step for info in self._planned_with(planned, rid)})
            for warning in undeclared_extras(env, session.config.cache_dir()):
                echo(f"    Warning: Step(s): {', '.join(steps)}: {messages.for_printer(warning)}")

    def resolve_steps(
        self,
        echo: Any,
        steps: list[str] | None = None,
        *,
        force: bool = False,
        archs: list[str] | None = None,
        check: Callable[[dict[str, list[StepEnvironment]]], None] | None = None,
        dry_run: bool = False,
    ) -> dict[str, list[StepEnvironment]]:
        """Plan every step (or ``steps``), resolve what is not resolved yet (all of it with ``force``),
        cache and record it (neither with ``dry_run``). With ``archs``, each step is planned once per
        architecture (nothing is stored as the step's run-time environment then). ``check`` is given the plan
        before anything is resolved (it raises to stop there). envcore's warnings meanwhile (stored resolutions
        CONDA_USE_REMOTE_LATEST passes over, a damaged package-cache file) are ``Warning:`` lines."""
        with messages.warnings_as_lines(lambda line: echo(f"    {line}")):
            return self._resolve_steps(echo, steps, force=force, archs=archs, check=check, dry_run=dry_run)

    def _resolve_steps(
        self,
        echo: Any,
        steps: list[str] | None,
        *,
        force: bool,
        archs: list[str] | None,
        check: Callable[[dict[str, list[StepEnvironment]]], None] | None,
        dry_run: bool,
    ) -> dict[str, list[StepEnvironment]]:
        from envcore.resolve import req_id

        session = self.session()
        wanted = [s for s in self._flow if steps is None or s.name in steps]
        planned: dict[str, list[StepEnvironment]] = {
            s.name: [self.plan_step(s, a) for a in (archs or [None])]  # type: ignore[list-item]
            for s in wanted
        }
        from metaflow_extensions.envcore.plugins.conda.requirements import ignored_by_disabled

        for infos in planned.values():
            for warning in ignored_by_disabled(infos[0].merged):
                echo(f"    Warning: {messages.for_printer(warning)}")
        if check is not None:
            check(planned)
        requested = [  # each step's request with its key, computed once (a req id hashes the request)
            (info, info.request, _key(req_id(session.registry, info.request), info.request))
            for infos in planned.values()
            for info in infos
            if info.request is not None
        ]
        todo: dict[_Key, ResolveRequest] = {}
        known: dict[_Key, tuple[ResolvedEnvironment, bool]] = {}
        for _, request, key in requested:
            if key in todo or key in known:
                continue
            found = None if force else session.environments.known(request)
            if found is not None:
                known[key] = (found, False)
            else:
                todo[key] = request
        if todo:
            if known:  # the original's words
                count = f"{len(todo)} of {len(todo) + len(known)} environments (others are cached)"
            else:
                count = f"{len(todo)} environment{'s' if len(todo) > 1 else ''}"
            started = time.monotonic()
            echo(f"    Resolving {count} ...", nl=False)
            try:
                results = session.resolve(
                    list(todo.values()),
                    force=force,
                    cache=self._caches(session),
                    keep=not dry_run,
                    labels=_caching_labels(requested, list(todo)),
                )
            except BaseException:
                echo(" failed.")
                raise
            failed = {key[0]: r for key, r in zip(todo, results, strict=True) if isinstance(r, str)}
            # the caching that followed the last resolution is left out: its own lines, next, say how long it took
            took = time.monotonic() - started - session.timings.get("after_resolving", 0.0)
            echo(" failed." if failed else f" done in {seconds(took)}.")
            session.flush_messages()  # with resolvers' warnings (a yanked pin), which the worker reports
            if failed:
                raise InvalidEnvironmentException(messages.for_printer(self._failures(planned, failed)))
            for key, result in zip(todo, results, strict=True):
                assert not isinstance(result, str)
                known[key] = result
            self._warn_of_undeclared_extras(echo, planned, {key[0]: known[key] for key in todo})
        for info, _, key in requested:
            info.env, info.newly_resolved = known[key]
        reused = {  # found in this machine's record: a remote node finds it in the store only
            key: info.env
            for info, _, key in requested
            if info.env is not None and not info.newly_resolved and self._runs_remotely(info.step)
        }
        if reused and self._caches(session) and not dry_run:
            session.ensure_stored(list(reused.values()), _caching_labels(requested, list(reused)))
            session.flush_messages()
        if not archs and not dry_run:
            for name, infos in planned.items():
                self._steps[name] = infos[0]
        return planned
