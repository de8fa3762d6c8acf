"""``req_parser``, ``yml_parser`` and ``toml_parser``: a requirements.txt, environment.yml or pyproject.toml
given as text (a Metaflow ``Config``'s value) turned into the arguments of ``@pypi`` / ``@conda``, as the
original's parsers of the same names::

    from metaflow import Config, FlowSpec, config_expr, pypi_base, req_parser

    @pypi_base(**config_expr("deps"))
    class MyFlow(FlowSpec):
        deps = Config("deps", default="requirements.txt", parser=req_parser)

The text is read as ``envcore resolve -r/-f/-p`` reads a file (its errors are the same paragraphs), and each
package's version is given in the original's form, so that a flow has the original's req ids.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from metaflow.metaflow_environment import InvalidEnvironmentException

if TYPE_CHECKING:  # envcore is imported when a parser runs: metaflow exports these to tasks without it
    from envcore.specs import Spec
    from envcore.types import Requirement

CONDA, NPCONDA, PYPI, SYS = "conda", "npconda", "pypi", "sys"  # envcore.types' categories


def req_parser(config_value: str) -> dict[str, Any]:
    """A requirements.txt as ``@pypi`` arguments: ``packages``, ``python``, ``extra_indices``, ``extras``,
    ``conda_only``."""
    from envcore import specs

    spec = _read(lambda: specs.parse_requirements_txt(config_value, "the requirements given to req_parser"))
    if spec.sources.get(CONDA):
        raise InvalidEnvironmentException("Only PYPI sources are allowed in requirements.txt")
    _refuse_system(spec.requirements, "requirements.txt", "pypi")
    found: dict[str, Any] = {"packages": _versions(spec.requirements, PYPI)}
    if spec.python:
        found["python"] = spec.python
    if spec.sources.get(PYPI):
        found["extra_indices"] = list(spec.sources[PYPI])
    if spec.extras.get(PYPI):
        found["extras"] = list(spec.extras[PYPI])
    conda_only = _versions(spec.requirements, NPCONDA)
    if conda_only:
        found["conda_only"] = conda_only
    return found


def yml_parser(config_value: str) -> dict[str, Any]:
    """An environment.yml as ``@conda`` arguments: ``libraries``, ``pip_packages``, ``channels``,
    ``pip_sources``, ``python``."""
    from envcore import specs

    spec = _read(lambda: specs.parse_environment_yml(config_value, "the environment given to yml_parser"))
    _refuse_system(spec.requirements, "environment.yml", "conda")
    found: dict[str, Any] = {}
    if spec.python:
        found["python"] = spec.python
    for argument, category in (("channels", CONDA), ("pip_sources", PYPI)):
        if spec.sources.get(category):
            found[argument] = list(spec.sources[category])
    for argument, category in (("libraries", CONDA), ("pip_packages", PYPI)):
        versions = _versions(spec.requirements, category)
        if versions:
            found[argument] = versions
    return found


def toml_parser(config_value: str) -> dict[str, Any]:
    """A pyproject.toml's ``[project].dependencies`` as ``@pypi`` arguments: ``packages``, ``python`` (its
    ``requires-python``), ``extra_indices``."""
    from envcore import specs

    spec = _read(lambda: specs.parse_pyproject(config_value, "the project given to toml_parser"))
    found: dict[str, Any] = {"packages": _versions(spec.requirements, PYPI)}
    if spec.python:
        found["python"] = spec.python
    if spec.sources.get(PYPI):
        found["extra_indices"] = list(spec.sources[PYPI])
    return found


def _read(parse: Callable[[], Spec]) -> Spec:
    from envcore.errors import SpecError

    try:
        return parse()
    except SpecError as exc:
        raise InvalidEnvironmentException(str(exc)) from None


def _refuse_system(requirements: tuple[Requirement, ...], file: str, decorator: str) -> None:
    if any(r.category == SYS for r in requirements):
        raise InvalidEnvironmentException(
            f"System dependencies are not supported when parsing {file} for the {decorator} decorator -- use a "
            "named environment instead"
        )


def _versions(requirements: tuple[Requirement, ...], category: str) -> dict[str, str]:
    """``{name: version}`` as the original's parsers write them: the key takes extras and a URL
    (``name[a,b]@url``), the version is the specifier without a leading ``==`` and a marker follows ``;``."""
    found: dict[str, str] = {}
    for req in requirements:
        if req.category != category:
            continue
        key = (f"{req.channel}::" if req.channel else "") + req.name
        key += f"[{','.join(req.extras)}]" if req.extras else ""
        key += f"@{req.url}" if req.url else ""
        found[key] = req.spec.lstrip(" =") + (f";{req.marker}" if req.marker else "")
    return found
