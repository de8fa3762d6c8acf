"""``req_parser``, ``yml_parser``, ``toml_parser`` (exported as ``metaflow.<name>``): requirement files as
decorator arguments for a Metaflow ``Config``, in the original's form."""

from __future__ import annotations

import shutil
import sys

import pytest
from metaflow.metaflow_environment import InvalidEnvironmentException
from metaflow_extensions.envcore.plugins.conda.parsers import req_parser, toml_parser, yml_parser
from packaging.specifiers import SpecifierSet

from envcore import specs

from .conftest import FLOWS, Machine, both, reports


def test_req_parser_gives_pypi_arguments_in_the_originals_form() -> None:
    text = (
        "--extra-index-url https://pypi.example.com/simple\n--pre\n"
        "fx-web==2.0.0\nfx-core>=1.0,<2\nrequests[socks]\nfx-http ; python_version < '3.12'\n"
        "--conda-pkg ffmpeg=6.1\npython>=3.10\n"
    )
    args = req_parser(text)
    assert args == {
        "packages": {
            "fx-web": "2.0.0",
            "fx-core": "<2,>=1.0",
            "requests[socks]": "",
            "fx-http": ';python_version < "3.12"',
        },
        "python": ">=3.10",
        "extra_indices": ["https://pypi.example.com/simple"],
        "extras": ["--pre"],
        "conda_only": {"ffmpeg": "6.1"},  # exact, as the original reads --conda-pkg
    }

    # as decorator arguments they ask for what the file asks for (==2 is ==2.0.0)
    def asked(spec: specs.Spec) -> list[tuple[str, SpecifierSet, str | None]]:
        pypi = [r for r in spec.requirements if r.category == "pypi"]
        return [
            (r.name, SpecifierSet(r.spec if r.spec[:1] in "<>=!~" else f"=={r.spec}"), r.marker) for r in pypi
        ]

    assert asked(specs.from_decorator(**args)) == asked(specs.parse_requirements_txt(text))


@pytest.mark.parametrize(
    "text",
    [
        "fx-core==1.0 ; python_version < '3.12'\n",
        "fx-core==1.0,>=0.5\n",
        "fx-core==1.0.*,>=1.0.1\n",
        "fx-core==1.0\nfx-core>=0.5\n",
    ],
)
def test_a_pin_req_parser_gives_with_a_marker_or_more_specifiers_is_a_pypi_package(text: str) -> None:
    """req_parser writes a pin as its version without ==, followed by the file's other specifiers and marker
    (1.0;python_version < "3.12", 1.0,>=0.5), as the original does; @pypi reads that as the file means it (it
    refused it as not a version)."""
    args = req_parser(text)
    (version,) = args["packages"].values()
    assert version.startswith("1.0")

    def asked(spec: specs.Spec) -> tuple[SpecifierSet, str | None]:
        (req,) = spec.requirements  # (an exact version is kept without its ==)
        return SpecifierSet(req.spec if req.spec[:1] in "<>=!~" else f"=={req.spec}"), req.marker

    assert asked(specs.from_decorator(**args)) == asked(specs.parse_requirements_txt(text))


def test_yml_and_toml_parsers_give_conda_and_pypi_arguments() -> None:
    yml = "channels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - fx-core>=1.0\n  - pip:\n    - fx-web==2.0.0\n"
    assert yml_parser(yml) == {
        "python": "3.11.*",
        "channels": ["conda-forge"],
        "libraries": {"fx-core": ">=1.0"},
        "pip_packages": {"fx-web": "2.0.0"},
    }
    toml = (
        '[project]\nname = "p"\nrequires-python = ">=3.10"\ndependencies = ["fx-web>=2", "fx-core==1.1.0"]\n'
    )
    assert toml_parser(toml) == {"packages": {"fx-web": ">=2", "fx-core": "1.1.0"}, "python": ">=3.10"}


@pytest.mark.parametrize(
    ("parser", "text", "message"),
    [
        (
            req_parser,
            "--sys-pkg __glibc==2.28\nfx-web\n",
            "System dependencies are not supported when parsing",
        ),
        (
            req_parser,
            "--conda-channel conda-forge\nfx-web\n",
            "Only PYPI sources are allowed in requirements.txt",
        ),
        (req_parser, "-e ./here\n", "the requirements given to req_parser"),
        (
            yml_parser,
            "dependencies:\n  - sys:\n    - __glibc=2.28\n",
            "System dependencies are not supported",
        ),
    ],
)
def test_parsers_refuse_what_a_decorator_cannot_say(parser: object, text: str, message: str) -> None:
    with pytest.raises(InvalidEnvironmentException, match=message):
        parser(text)  # type: ignore[operator]


def test_a_flow_takes_its_packages_from_a_config_read_by_req_parser(machine: Machine) -> None:
    project = machine.root / "project"
    project.mkdir(parents=True)
    shutil.copy(FLOWS / "config_parsers.py", project / "config_parsers.py")
    (project / "requirements.txt").write_text("fx-web==2.0.0\nfx-core>=1.0,<2\n")
    out = machine.run(
        sys.executable, project / "config_parsers.py", "--environment=conda", "run", cwd=project
    )
    seen = reports(both(out))
    assert seen["start"]["fx-web"] == "2.0.0" and seen["start"]["fx-core"].startswith("1."), both(out)
