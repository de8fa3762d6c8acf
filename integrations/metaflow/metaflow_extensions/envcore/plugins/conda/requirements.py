"""From a step's decorators to what its environment must be: the original extension's merge rules.

1. The flow-level decorators are merged together, then the step-level ones: packages of the same name have
   their constraints AND-ed, sources are unioned; a scalar (``python``, ``name``, ``pathspec``,
   ``fetch_at_exec``, ``disabled``) said twice with different values is an error naming both values.
2. The step's merge overrides the flow's: a package the step names replaces the flow's constraint, a scalar
   the step sets replaces the flow's, and a step ``name`` drops a flow ``pathspec`` (and vice versa).
3. Metaflow's own requirements (``get_pinned_conda_libs``) are added to the conda side, or to the PyPI side of
   a PyPI-only environment. A named environment used as is gets nothing added: it is used exactly.

Only the launcher imports this module (it needs envcore).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metaflow.metaflow_environment import InvalidEnvironmentException
from metaflow_extensions.envcore.plugins.conda import messages, substitution
from metaflow_extensions.envcore.plugins.conda.decorators import DecoratorRequest, RequirementDecorator

if TYPE_CHECKING:
    from envcore.specs import Spec
    from envcore.types import ResolvedEnvironment

SCALARS = ("python", "disabled", "name", "pathspec", "fetch_at_exec")


@dataclass(frozen=True)
class Merged:
    """The merged decorators of one level (flow or step), or of both."""

    requests: tuple[DecoratorRequest, ...] = ()
    flow_count: int = 0  # how many of ``requests`` are flow-level (they come first)
    python: str | None = None
    disabled: bool | None = None
    name: str | None = None
    pathspec: str | None = None
    fetch_at_exec: bool | None = None

    @property
    def named(self) -> str | None:
        """The environment reference: ``name[:tag]`` or ``step:Flow/Run/Step``."""
        if self.name:
            return self.name
        return f"step:{self.pathspec}" if self.pathspec else None

    @property
    def has_packages(self) -> bool:
        return any(
            r.libraries or r.packages or r.conda_only or r.channels or r.extra_indices for r in self.requests
        )


def _scalar(request: DecoratorRequest, name: str) -> Any:
    return request.effective_disabled if name == "disabled" else getattr(request, name)


def _decorator(request: DecoratorRequest) -> str:
    """``@conda`` from an origin such as ``step 'start' (@conda)`` or ``the flow decorator @conda_base``."""
    match = re.search(r"@\w+", request.origin)
    return match.group(0) if match else request.origin


def asked(request: DecoratorRequest) -> str:
    """What a decorator asks for, in a few words (``fx-core, python 3.11``)."""
    names = [*request.libraries, *request.packages, *request.conda_only, *request.sys_packages]
    if request.python:
        names.append(f"python {request.python}")
    names.extend(f"channel {c}" for c in request.channels)
    names.extend(f"index {i}" for i in request.extra_indices)
    if request.name or request.pathspec:
        names.append(f"the environment {request.name or 'step:' + str(request.pathspec)}")
    return ", ".join(names) or "nothing"


def _disabled_conflict(where: str, disabling: DecoratorRequest, other: DecoratorRequest) -> str:
    if other.disabled is False:  # both said it
        return (
            f"In {where}: {_decorator(disabling)} has disabled=True but {_decorator(other)} has disabled=False; "
            "a step runs in one environment or none, so give the same value (or remove one)."
        )
    return (
        f"In {where}: {_decorator(disabling)} is disabled (disabled=True) but {_decorator(other)} on the same "
        f"{'step' if where.startswith('step') else 'flow'} asks for {asked(other)}. Remove disabled=True to "
        f"use them, or remove them from {_decorator(other)} to run without a Conda environment."
    )


def merge(requests: Iterable[DecoratorRequest], where: str) -> Merged:
    """Same-level merge: scalars must agree (or be unsaid)."""
    requests = tuple(requests)
    values: dict[str, Any] = {}
    said_by: dict[str, DecoratorRequest] = {}
    for request in requests:
        for name in SCALARS:
            value = _scalar(request, name)
            if value is None:
                continue
            if values.get(name) is not None and values[name] != value:
                if name == "disabled":
                    first, second = said_by[name], request
                    disabling, other = (first, second) if values[name] else (second, first)
                    raise InvalidEnvironmentException(
                        messages.for_printer(_disabled_conflict(where, disabling, other))
                    )
                raise InvalidEnvironmentException(
                    f"In {where}: {name} is specified with incompatible values: {values[name]} and {value}"
                )
            values[name] = value
            said_by.setdefault(name, request)
    return Merged(requests=requests, **values)


def ignored_by_disabled(merged: Merged) -> list[str]:
    """What decorators that say both disabled=True and packages ask for, ignored (the original drops it
    silently): ``In step 'start' (@conda): disabled=True, so fx-core are ignored...``."""
    if not merged.disabled:
        return []
    return [
        f"In {r.origin}: disabled=True, so what it also asks for ({asked(r)}) is ignored and the step runs "
        "without a Conda environment. Remove disabled=True to use it, or remove it."
        for r in merged.requests
        if r.disabled is True and r.says_something
    ]


def override(flow: Merged, step: Merged) -> Merged:
    """The step's merge over the flow's."""
    values = {name: getattr(flow, name) for name in SCALARS}
    for name in SCALARS:
        if getattr(step, name) is not None:
            values[name] = getattr(step, name)
    if step.name is not None and step.pathspec is None:
        values["pathspec"] = None
    if step.pathspec is not None and step.name is None:
        values["name"] = None
    return Merged(requests=flow.requests + step.requests, flow_count=len(flow.requests), **values)


def decorator_requests(decorators: Iterable[Any], step_name: str | None) -> list[DecoratorRequest]:
    return [d.request(step_name) for d in decorators if isinstance(d, RequirementDecorator)]


def flow_requests(flow: Any) -> list[DecoratorRequest]:
    found = []
    for decos in flow._flow_decorators.values():
        found.extend(decorator_requests(decos, None))
    return found


def merged_for_step(flow: Any, step: Any) -> Merged:
    flow_level = merge(flow_requests(flow), "the flow decorators")
    step_level = merge(decorator_requests(step.decorators, step.name), f"step '{step.name}'")
    final = override(flow_level, step_level)
    if final.fetch_at_exec:
        if not final.named:
            raise InvalidEnvironmentException(
                f"In step '{step.name}', a 'fetch_at_exec' environment needs to have an environment specified "
                "with '@named_env' (name= or pathspec=)."
            )
        if final.has_packages or final.python or any(r.sys_packages for r in final.requests):
            raise InvalidEnvironmentException(
                f"In step '{step.name}', a 'fetch_at_exec' environment cannot have any additional requirements "
                "(packages, sources, or python): they would be resolved when the task starts."
            )
    return final


# --- specs --------------------------------------------------------------------------------------------------


def _spec_error(step_name: str, exc: Exception) -> InvalidEnvironmentException:
    return InvalidEnvironmentException(messages.in_step(step_name, getattr(exc, "message", str(exc))))


def _one_spec(request: DecoratorRequest) -> Spec:
    from envcore import specs

    return specs.from_decorator(
        libraries=request.libraries,
        packages=request.packages,
        channels=list(request.channels),
        extra_indices=list(request.extra_indices),
        extras=list(request.extras),
        python=request.python,
        conda_only=request.conda_only,
        sys_packages=request.sys_packages,
        origin=request.origin,
    )


def spec_for(merged: Merged, step_name: str) -> Spec:
    """The user's requirements as one :class:`~envcore.specs.Spec`: flow-level specs merged, step-level specs
    merged, the step's over the flow's."""
    from envcore import specs
    from envcore.errors import EnvcoreError

    try:
        flow_specs = [_one_spec(r) for r in merged.requests[: merged.flow_count]]
        step_specs = [_one_spec(r) for r in merged.requests[merged.flow_count :]]
        empty = specs.from_decorator(origin=f"step '{step_name}'")
        flow_spec = specs.merge(*flow_specs) if flow_specs else empty
        step_spec = specs.merge(*step_specs) if step_specs else empty
        return specs.override(flow_spec, step_spec)
    except EnvcoreError as exc:
        raise _spec_error(step_name, exc) from None


def with_gpu_packages(spec: Spec, packages: Mapping[str, str], step_name: str) -> Spec:
    """``spec`` with the virtual packages of a GPU step (name -> version) that its own ``@sys_packages`` do not
    set."""
    from envcore import specs
    from envcore.errors import EnvcoreError
    from envcore.types import SYS

    own = {r.name for r in spec.requirements if r.category == SYS}
    added = {name: version for name, version in packages.items() if name not in own}
    if not added:
        return spec
    try:
        gpu = specs.from_decorator(sys_packages=added, origin="METAFLOW_CONDA_SYS_DEFAULT_GPU_PACKAGES")
        return specs.merge(spec, gpu)
    except EnvcoreError as exc:
        raise _spec_error(step_name, exc) from None


def with_metaflow_pins(spec: Spec, pins: Mapping[str, str], pypi_only: bool, step_name: str) -> Spec:
    """Metaflow's own requirements, AND-ed with what the user asked for."""
    from envcore import specs
    from envcore.errors import EnvcoreError

    if not pins:
        return spec
    origin = "Metaflow's own requirements"
    try:
        extra = (
            specs.from_decorator(packages=dict(pins), origin=origin)
            if pypi_only
            else specs.from_decorator(libraries=dict(pins), origin=origin)
        )
        return specs.merge(spec, extra)
    except EnvcoreError as exc:
        raise _spec_error(step_name, exc) from None


def as_constraint(version: str) -> str:
    """One of Metaflow's pins (``>=2.21.0``, ``1.14.0``, or empty) as a PEP 440 constraint to write after the
    name: a bare version is exact."""
    text = version.strip()
    return text if not text or text[:1] in "<>=!~" else f"=={text}"


def satisfies(env: ResolvedEnvironment, wanted: Mapping[str, str]) -> bool:
    """Whether ``env`` already has every package of ``wanted`` (name -> constraint), in a version the
    constraint accepts; a constraint that cannot be checked counts as not satisfied."""
    return not unsatisfied(env, wanted)


def unsatisfied(env: ResolvedEnvironment, wanted: Mapping[str, str]) -> list[str]:
    """The packages of ``wanted`` (name -> constraint) that ``env`` lacks, or has in a version the constraint
    does not accept, as ``name>=1.0`` (a constraint that cannot be checked counts as not satisfied)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    have = {canonicalize_name(p.name): p.version for p in env.packages}
    lacking = []
    for name, constraint in wanted.items():
        text = as_constraint(constraint)
        version = have.get(canonicalize_name(name))
        try:
            ok = version is not None and (not text or Version(version) in SpecifierSet(text))
        except (InvalidSpecifier, InvalidVersion):
            ok = False
        if not ok:
            lacking.append(f"{name}{text}")
    return lacking


def fetched_lacks(ref: str, step: str, lacking: Iterable[str]) -> str:
    """Why a fetch-at-exec step cannot run in ``ref``: it misses what Metaflow imports in every task (it is used
    as it is: nothing is added at execution, which would resolve anew)."""
    return messages.for_printer(
        f"The environment '{ref}' that step '{step}' fetches at execution lacks what Metaflow needs in a task: "
        f"{', '.join(lacking)}. A fetch-at-exec environment is used as it is, so resolve it with these: "
        f"'metaflow environment resolve --alias {ref} ...' adds them (unless --skip-metaflow-deps), or add "
        "them to the requirements it is resolved from."
    )


def is_pypi_only(spec: Spec, base_type: str | None) -> bool:
    from envcore.types import CONDA, PYPI

    cats = {r.category for r in spec.requirements}
    if base_type is not None:
        return base_type == "pypi-only" and CONDA not in cats
    return PYPI in cats and CONDA not in cats


# --- @{VAR} substitution ------------------------------------------------------------------------------------


def substitute(text: str, values: Mapping[str, str | Callable[[], str]], step: str) -> str:
    """:func:`.substitution.substitute`, failing the Metaflow way, naming the step."""
    try:
        return substitution.substitute(text, values)
    except substitution.MissingVariable as exc:
        why = str(exc)
        if not values:
            why += (
                " (METAFLOW_RUN_ID, METAFLOW_STEP_NAME, METAFLOW_TASK_ID and METAFLOW_INIT_<PARAMETER> are known only "
                "to @named_env(..., fetch_at_exec=True), when the task starts)"
            )
        raise InvalidEnvironmentException(messages.in_step(step, why)) from None
