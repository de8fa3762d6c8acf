"""The user-facing decorators: ``@conda``, ``@pypi``, ``@named_env``, ``@sys_packages`` and their ``*_base``
flow-level forms (plus the deprecated ``@pip``/``@pip_base``).

They only hold and check what the user wrote; :mod:`.requirements` merges them and the
:class:`~.environment.CondaEnvironment` resolves. This module imports nothing but Metaflow, because it is
also imported inside the step's own environment, where envcore is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from metaflow.decorators import FlowDecorator, StepDecorator
from metaflow.metaflow_environment import InvalidEnvironmentException
from metaflow_extensions.envcore.plugins.conda.messages import for_printer

ENVIRONMENT_TYPE = "conda"


@dataclass(frozen=True)
class DecoratorRequest:
    """What one decorator asks for, checked and normalised. ``None`` means "not said"."""

    origin: str
    libraries: dict[str, str] = field(default_factory=dict)  # conda packages
    packages: dict[str, str] = field(default_factory=dict)  # PyPI packages
    conda_only: dict[str, str] = field(default_factory=dict)  # non-python conda packages in a PyPI env
    sys_packages: dict[str, str] = field(default_factory=dict)  # __cuda, __glibc
    channels: tuple[str, ...] = ()
    extra_indices: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    python: str | None = None
    disabled: bool | None = None
    name: str | None = None
    pathspec: str | None = None
    fetch_at_exec: bool | None = None

    @property
    def says_something(self) -> bool:
        """The original counts a decorator that asks for anything as "not disabled"."""
        return bool(
            self.libraries
            or self.packages
            or self.conda_only
            or self.sys_packages
            or self.channels
            or self.extra_indices
            or self.extras
            or self.python
            or self.name
            or self.pathspec
        )

    @property
    def effective_disabled(self) -> bool | None:
        if self.disabled is not None:
            return self.disabled
        return False if self.says_something else None


def _fail(where: str, attribute: str, value: Any, expected: str) -> InvalidEnvironmentException:
    return InvalidEnvironmentException(
        for_printer(
            f"In {where}, the attribute '{attribute}' must be {expected}; got {_shown(value)} "
            f"({type(value).__name__})."
        )
    )


def _shown(value: Any) -> str:
    """``value`` as written, without the credentials a source URL may hold (``extra_indices="https://user:
    password@host/simple"``); where envcore is not installed (a task: the launcher checked the same values
    first), not at all."""
    try:
        from envcore.config import redact_text
    except ImportError:
        return "a value"
    return redact_text(repr(value))


def _version(where: str, attribute: str, key: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        hint = ' (write versions as strings, e.g. "1.10", so that 1.10 does not become 1.1)'
        raise _fail(where, f"{attribute}[{key!r}]", value, "a version string" + hint)
    return str(value).strip()


def _mapping(where: str, attribute: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(where, attribute, value, 'a dict of package name to version, e.g. {"numpy": "1.26.4"}')
    out = {}
    for key, version in value.items():
        if not isinstance(key, str) or not key.strip():
            raise _fail(where, attribute, key, "keyed by non-empty package names")
        out[key.strip()] = _version(where, attribute, key, version)
    return out


def _strings(where: str, attribute: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _fail(where, attribute, value, f'a list of strings, e.g. {attribute}=["..."]')
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise _fail(where, attribute, item, "a list of non-empty strings")
    return tuple(item.strip() for item in value)


def _text(where: str, attribute: str, value: Any) -> str | None:
    if value is None:
        return None
    if attribute == "python" and isinstance(value, (int, float)) and not isinstance(value, bool):
        raise _fail(
            where,
            attribute,
            value,
            'a string such as "3.11" (a float turns 3.10 into 3.1; with run --with, quote it inside the value: '
            "--with 'conda:python=\"3.11\"')",
        )
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, attribute, value, "a non-empty string")
    return value.strip()


def _flag(where: str, attribute: str, value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):  # from --with specs
        return value.lower() == "true"
    raise _fail(where, attribute, value, "True or False")


def _launching() -> bool:
    """The process that plans the run (deprecation notices are shown there, not by every task)."""
    try:
        from metaflow.system_context import ExecutionPhase, system_context
    except ImportError:
        return True
    return bool(system_context.phase == ExecutionPhase.LAUNCH)


class RequirementDecorator:
    """Shared by every package decorator: turns ``self.attributes`` into a :class:`DecoratorRequest`."""

    name: str
    attributes: dict[str, Any]
    allow_multiple = True
    # Deprecated attributes this decorator still accepts (mapped in :meth:`request`), and what replaces them.
    deprecated: tuple[str, ...] = ()
    replacement = ""

    def make_decorator_spec(self) -> str:
        """The ``--with`` spec Metaflow hands to each task. Metaflow's own writes strings bare, and its parser
        then reads ``python=3.10`` as the float 3.1 (and cuts ``python=>=3.10,<3.12`` at the comma): strings,
        lists and dicts are written as escaped JSON here, which that parser reads back as they were."""
        import json

        self.external_init()  # type: ignore[attr-defined]  # (Metaflow's: attributes fully evaluated)
        values = {key: value for key, value in self.attributes.items() if value is not None}
        if not values:
            return self.name
        written = ",".join(
            f"{key}={value}"
            if isinstance(value, (bool, int, float))
            else f"{key}={json.dumps(value)}".replace('"', '\\"')
            for key, value in values.items()
        )
        return f"{self.name}:{written}"

    def warn_deprecated(self, logger: Any) -> None:
        used = [key for key in self.deprecated if self.attributes.get(key) not in (None, {}, [], ())]
        if used and _launching():
            logger(
                f"*DEPRECATED*: Using '{', '.join(used)}' in '@{self.name}' is deprecated. Please use "
                f"{self.replacement} instead. "
            )

    def where(self, step_name: str | None) -> str:
        return f"step '{step_name}' (@{self.name})" if step_name else f"the flow decorator @{self.name}"

    def request(self, step_name: str | None = None) -> DecoratorRequest:
        where = self.where(step_name)
        a = self.attributes
        name, pathspec = _text(where, "name", a.get("name")), _text(where, "pathspec", a.get("pathspec"))
        if name and pathspec:
            raise InvalidEnvironmentException(
                f"In {where}: cannot specify both `name` and `pathspec` in a decorator; use one of them."
            )
        return DecoratorRequest(
            origin=where,
            libraries=_mapping(where, "libraries", a.get("libraries")),
            # `pip_packages` (deprecated, @conda) are PyPI packages: with `libraries`, a mixed environment
            packages={
                **_mapping(where, "pip_packages", a.get("pip_packages")),
                **_mapping(where, "packages", a.get("packages")),
            },
            conda_only=_mapping(where, "conda_only", a.get("conda_only")),
            sys_packages=self._sys(where),
            channels=_strings(where, "channels", a.get("channels")),
            extra_indices=tuple(
                dict.fromkeys(  # `pip_sources` (@conda) and `sources` (@pypi) are deprecated spellings
                    _strings(where, "extra_indices", a.get("extra_indices"))
                    + _strings(where, "pip_sources", a.get("pip_sources"))
                    + _strings(where, "sources", a.get("sources"))
                )
            ),
            extras=_strings(where, "extras", a.get("extras")),
            python=_text(where, "python", a.get("python")),
            disabled=_flag(where, "disabled", a.get("disabled")),
            name=name,
            pathspec=pathspec,
            fetch_at_exec=_flag(where, "fetch_at_exec", a.get("fetch_at_exec")),
        )

    def _sys(self, where: str) -> dict[str, str]:
        return {}


def _require_conda_environment(deco_name: str, environment: Any) -> None:
    if getattr(environment, "TYPE", None) != ENVIRONMENT_TYPE:
        raise InvalidEnvironmentException(
            f"The @{deco_name} decorator requires --environment={ENVIRONMENT_TYPE}: run "
            f"`python <flow>.py --environment={ENVIRONMENT_TYPE} run`."
        )


class _StepRequirement(RequirementDecorator, StepDecorator):
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
        _require_conda_environment(self.name, environment)
        self.warn_deprecated(logger)
        self.request(step_name)  # a bad attribute fails here, naming the step


class _FlowRequirement(RequirementDecorator, FlowDecorator):
    def flow_init(
        self,
        flow: Any,
        graph: Any,
        environment: Any,
        flow_datastore: Any,
        metadata: Any,
        logger: Any,
        echo: Any,
        options: Any,
    ) -> None:
        _require_conda_environment(self.name, environment)
        self.warn_deprecated(logger)
        self.request()


# Deprecated attributes, still accepted (with a notice) as the original does: on @conda, `pip_packages` and
# `pip_sources` (-> @pypi) and `name`, `pathspec`, `fetch_at_exec` (-> @named_env); on @pypi, `sources`
# (-> extra_indices) and the named-environment ones.
_NAMED_DEPRECATED: dict[str, Any] = {"name": None, "pathspec": None, "fetch_at_exec": None}
_CONDA: dict[str, Any] = {
    "libraries": {},
    "channels": [],
    "python": None,
    "disabled": None,
    "pip_packages": {},
    "pip_sources": [],
    **_NAMED_DEPRECATED,
}
_PYPI: dict[str, Any] = {
    "packages": {},
    "extra_indices": [],
    "extras": [],
    "conda_only": {},
    "python": None,
    "disabled": None,
    "sources": [],
    **_NAMED_DEPRECATED,
}
_CONDA_DEPRECATED = ("pip_packages", "pip_sources", "name", "pathspec", "fetch_at_exec")
_PYPI_DEPRECATED = ("sources", "name", "pathspec", "fetch_at_exec")
_NAMED: dict[str, Any] = {"name": None, "pathspec": None, "fetch_at_exec": None, "disabled": None}
_SYS: dict[str, Any] = {"packages": {}, "disabled": None}


class _SysMixin(RequirementDecorator):
    def _sys(self, where: str) -> dict[str, str]:
        found = _mapping(where, "packages", self.attributes.get("packages"))
        for name, version in found.items():
            if name not in ("__cuda", "__glibc"):
                raise InvalidEnvironmentException(
                    f"In {where}, the system package '{name}' is not allowed; use __cuda or __glibc."
                )
            if not version:
                raise InvalidEnvironmentException(
                    f"In {where}, the system package '{name}' needs a version, e.g. {{'{name}': '12.4'}}."
                )
        return found

    def request(self, step_name: str | None = None) -> DecoratorRequest:
        where = self.where(step_name)
        return DecoratorRequest(
            origin=where,
            sys_packages=self._sys(where),
            disabled=_flag(where, "disabled", self.attributes.get("disabled")),
        )


class CondaStepDecorator(_StepRequirement):
    """Conda packages for this step (over those of ``@conda_base``).

    Parameters
    ----------
    libraries : Dict[str, str], default {}
        Conda packages: name (or ``channel::name``) to version constraint ("" floats).
    channels : List[str], default []
        Extra conda channels, searched before the configured ones.
    python : str, optional
        Python version constraint; default: the launching interpreter's ``X.Y.*``.
    disabled : bool, default False
        If True, the step runs in the launching interpreter.
    pip_packages, pip_sources, name, pathspec, fetch_at_exec
        Deprecated: use ``@pypi(packages=, extra_indices=)`` and ``@named_env``.
    """

    name = "conda"
    defaults = dict(_CONDA)
    deprecated = _CONDA_DEPRECATED
    replacement = "'@pypi' or '@named_env'"


class PypiStepDecorator(_StepRequirement):
    """PyPI packages for this step (over those of ``@pypi_base``).

    Parameters
    ----------
    packages : Dict[str, str], default {}
        PyPI packages: name to version constraint.
    extra_indices : List[str], default []
        Extra package indices, searched after the configured one.
    extras : List[str], default []
        Resolver flags such as ``pre`` (pre-releases).
    conda_only : Dict[str, str], default {}
        Non-python conda packages to add to a PyPI environment (e.g. ffmpeg).
    python : str, optional
        Python version constraint; default: the launching interpreter's ``X.Y.*``.
    disabled : bool, default False
        If True, the step runs in the launching interpreter.
    sources, name, pathspec, fetch_at_exec
        Deprecated: use ``extra_indices`` and ``@named_env``.
    """

    name = "pypi"
    defaults = dict(_PYPI)
    deprecated = _PYPI_DEPRECATED
    replacement = "'extra_indices' or '@named_env'"


class NamedEnvStepDecorator(_StepRequirement):
    """Run this step in a named environment (an alias) or in the environment of another step's run.

    Parameters
    ----------
    name : str, optional
        ``name[:tag]`` of an environment; ``@{VAR}`` is substituted.
    pathspec : str, optional
        ``Flow/Run/Step`` whose environment this step reuses; ``@{VAR}`` is substituted.
    fetch_at_exec : bool, default False
        Look the name up when the task starts instead of when the run starts.
    disabled : bool, default False
        If True, the step runs in the launching interpreter.
    """

    name = "named_env"
    defaults = dict(_NAMED)


class SysPackagesStepDecorator(_SysMixin, _StepRequirement):
    """Virtual packages (``__cuda``, ``__glibc``) to resolve this step's environment against.

    Parameters
    ----------
    packages : Dict[str, str], default {}
        ``{"__cuda": "12.4"}``, ``{"__glibc": "2.27"}``.
    """

    name = "sys_packages"
    defaults = dict(_SYS)


class PipStepDecorator(PypiStepDecorator):
    """Deprecated spelling of ``@pypi``."""

    name = "pip"

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
        if _launching():
            logger("*DEPRECATED*: Use '@pypi' instead of '@pip'.")
        super().step_init(flow, graph, step_name, decorators, environment, flow_datastore, logger)


class CondaFlowDecorator(_FlowRequirement):
    """Conda packages for every step of the flow (``@conda`` on a step adds or replaces)."""

    name = "conda_base"
    defaults = dict(_CONDA)
    deprecated = _CONDA_DEPRECATED
    replacement = "'@pypi_base' or '@named_env_base'"


class PypiFlowDecorator(_FlowRequirement):
    """PyPI packages for every step of the flow (``@pypi`` on a step adds or replaces)."""

    name = "pypi_base"
    defaults = dict(_PYPI)
    deprecated = _PYPI_DEPRECATED
    replacement = "'extra_indices' or '@named_env_base'"


class NamedEnvFlowDecorator(_FlowRequirement):
    """A named environment for every step of the flow."""

    name = "named_env_base"
    defaults = dict(_NAMED)


class SysPackagesFlowDecorator(_SysMixin, _FlowRequirement):
    """Virtual packages for every step of the flow."""

    name = "sys_packages_base"
    defaults = dict(_SYS)


class PipFlowDecorator(PypiFlowDecorator):
    """Deprecated spelling of ``@pypi_base``."""

    name = "pip_base"
