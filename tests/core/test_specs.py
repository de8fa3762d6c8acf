"""Specifications from decorators, requirements.txt, environment.yml and pyproject.toml: what each input
becomes (as the ``<category>::<value>`` strings the req id hashes), how specs combine, and the error
paragraphs of bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from envcore import resolve, specs
from envcore.config import Config
from envcore.errors import SpecError
from envcore.types import PYPI, SYS


def tstrs(spec: specs.Spec) -> list[str]:
    return [r.tstr for r in spec.requirements]


# --- decorators ----------------------------------------------------------------------------------------

DECORATORS = [
    ({"libraries": {"numpy": "1.21.5"}}, ["conda::numpy==1.21.5"]),
    ({"libraries": {"numpy": ""}}, ["conda::numpy"]),
    ({"libraries": {"numpy": ">=1.20,<2"}}, ["conda::numpy==>=1.20,<2"]),
    (
        {"libraries": {"numpy": "==1.21.5"}},
        ["conda::numpy====1.21.5"],
    ),  # the text as written, as the original
    ({"libraries": {"numpy": "1.21.*"}}, ["conda::numpy==1.21.*"]),
    ({"libraries": {"conda-forge::numpy": "1.21"}}, ["conda::conda-forge::numpy==1.21"]),
    ({"libraries": {"requests": ">=2.21.0"}}, ["conda::requests==>=2.21.0"]),
    ({"libraries": {"a": "1", "b": "2"}}, ["conda::a==1", "conda::b==2"]),
    ({"packages": {"pandas": "1.4.0"}}, ["pypi::pandas==1.4"]),  # canonicalize_version, as the original
    ({"packages": {"pandas": "2.1.1"}}, ["pypi::pandas==2.1.1"]),
    ({"packages": {"pandas": ">=1.4,<2"}}, ["pypi::pandas==>=1.4,<2"]),
    ({"packages": {"pandas": ""}}, ["pypi::pandas"]),
    ({"packages": {"requests[socks]": "2.31.0"}}, ["pypi::requests[socks]==2.31"]),
    ({"packages": {"pandas": "1.4.*"}}, ["pypi::pandas==1.4.*"]),  # a prefix match, as ==1.4.* is
    ({"packages": {"torch": "==2.1.*"}}, ["pypi::torch====2.1.*"]),
    ({"packages": {"fx-core": "v2.0.0"}}, ["pypi::fx-core==2"]),  # PEP 440 allows the v, as the original
    ({"packages": {"fx-core": "; python_version < '3.12'"}}, ["pypi::fx-core; python_version < '3.12'"]),
    # the original hashes a decorator's version text as written (conda) or canonicalized (PyPI), spaces and order
    # kept: the same flow gets the same req id
    (
        {"libraries": {"fx-core": ">= 1.0, <3", "fx-web": "2.0.0=py_0"}},
        ["conda::fx-core==>= 1.0, <3", "conda::fx-web==2.0.0=py_0"],
    ),
    ({"packages": {"fx-http": ">=1.0, <1.2"}}, ["pypi::fx-http==>=1.0, <1.2"]),
    ({"conda_only": {"ffmpeg": "6.1"}}, ["npconda::ffmpeg==6.1"]),
    ({"sys_packages": {"__cuda": "12.4"}}, ["sys::__cuda==12.4"]),
    ({"sys_packages": {"__glibc": "==2.27"}}, ["sys::__glibc==2.27"]),
]


@pytest.mark.parametrize(("kwargs", "expected"), DECORATORS)
def test_decorator_arguments(kwargs: dict[str, dict[str, str]], expected: list[str]) -> None:
    assert tstrs(specs.from_decorator(**kwargs)) == expected


@pytest.mark.parametrize(
    ("python", "expected"),
    [("3.10", "3.10.*"), ("3.11.7", "3.11.7"), (">=3.10,<3.12", ">=3.10,<3.12"), ("3.10.*", "3.10.*")],
)
def test_python_argument(python: str, expected: str) -> None:
    spec = specs.from_decorator(libraries={"numpy": ""}, python=python)
    assert spec.python == expected
    assert tstrs(spec) == ["conda::numpy"]


def test_python_in_libraries_sets_python() -> None:
    spec = specs.from_decorator(libraries={"python": "3.10", "numpy": ""})
    assert spec.python == "3.10.*" and tstrs(spec) == ["conda::numpy"]


def test_sources_and_extras_from_decorators() -> None:
    spec = specs.from_decorator(
        packages={"x": ""},
        channels=["bioconda", "bioconda"],
        extra_indices=["https://i/simple"],
        extras=["pre"],
    )
    assert spec.sources == {"conda": ("bioconda",), "pypi": ("https://i/simple",)}
    assert spec.extras == {PYPI: ("--pre",)}


# --- requirements.txt ----------------------------------------------------------------------------------

REQUIREMENTS = [
    ("pandas==1.4.0", ["pypi::pandas==1.4.0"]),
    ("pandas>=1.4,<2", ["pypi::pandas==<2,>=1.4"]),
    ("pandas", ["pypi::pandas"]),
    ("pandas ~= 1.4", ["pypi::pandas==~=1.4"]),
    ("Foo_Bar==1.*", ["pypi::Foo_Bar==1.*"]),
    ("requests[socks,security]>=2", ["pypi::requests[security,socks]==>=2"]),
    ("requests>=2 ; python_version < '3.12'", ['pypi::requests==>=2;python_version < "3.12"']),
    ("pkg @ https://x.example/pkg-1.0.tar.gz", ["pypi::pkg@https://x.example/pkg-1.0.tar.gz"]),
    ("git+https://github.com/org/tool.git@v1", ["pypi::tool@git+https://github.com/org/tool.git@v1"]),
    ("git+https://h/x/repo.git#egg=thing", ["pypi::thing@git+https://h/x/repo.git#egg=thing"]),
    ("a\nb\n", ["pypi::a", "pypi::b"]),
    ("# comment\n\na==1  # inline\n", ["pypi::a==1"]),
    ("a#b==1", ["pypi::a#b==1"] if False else None),  # '#' not preceded by a space is not a comment: invalid
    ("pandas>=1.4,\\\n  <2", ["pypi::pandas==<2,>=1.4"]),
    ("--conda-pkg ffmpeg==6.1\nx", ["npconda::ffmpeg==6.1", "pypi::x"]),
    ("--conda-pkg ffmpeg=6.1\n", ["npconda::ffmpeg==6.1"]),  # exact, as the original (not conda's 6.1.*)
    ("--conda-pkg conda-forge::ffmpeg", ["npconda::conda-forge::ffmpeg"]),
    ("--sys-pkg __cuda==12.4\nx", ["sys::__cuda==12.4", "pypi::x"]),
    ("--sys-pkg __glibc=2.27", ["sys::__glibc==2.27"]),
]


@pytest.mark.parametrize(("text", "expected"), [r for r in REQUIREMENTS if r[1] is not None])
def test_requirements_txt(text: str, expected: list[str]) -> None:
    assert tstrs(specs.parse_requirements_txt(text)) == expected


@pytest.mark.parametrize(
    ("text", "sources", "extras"),
    [
        ("--extra-index-url https://a/simple\nx", {"pypi": ("https://a/simple",)}, {}),
        ("--extra-index-url=https://a/simple\nx", {"pypi": ("https://a/simple",)}, {}),
        ("--conda-channel bioconda\nx", {"conda": ("bioconda",)}, {}),
        ("--pre\nx", {}, {"pypi": ("--pre",)}),
        ("--no-index\n-f /wheels\nx", {}, {"pypi": ("--no-index", "--find-links /wheels")}),
        ("--find-links /w\n--trusted-host h\nx", {}, {"pypi": ("--find-links /w", "--trusted-host h")}),
    ],
)
def test_requirements_txt_options(
    text: str, sources: dict[str, tuple[str, ...]], extras: dict[str, tuple[str, ...]]
) -> None:
    spec = specs.parse_requirements_txt(text)
    assert (dict(spec.sources), dict(spec.extras)) == (sources, extras)
    assert tstrs(spec) == ["pypi::x"]


@pytest.mark.parametrize(("line", "python"), [("python>=3.10", ">=3.10"), ("python==3.11", "3.11.*")])
def test_requirements_txt_python_line(line: str, python: str) -> None:
    spec = specs.parse_requirements_txt(f"{line}\nx\n")
    assert spec.python == python and tstrs(spec) == ["pypi::x"]


def test_index_url_is_ignored_with_a_warning() -> None:
    spec = specs.parse_requirements_txt("-i https://other/simple\nx\n", "reqs.txt")
    assert spec.sources == {}
    (warning,) = spec.warnings
    assert "line 1 of reqs.txt" in warning and "--extra-index-url" in warning


# --- environment.yml -----------------------------------------------------------------------------------

YML = [
    ("dependencies:\n  - numpy", ["conda::numpy"]),
    ("dependencies:\n  - numpy=1.21", ["conda::numpy==1.21.*"]),
    ("dependencies:\n  - numpy==1.21.5", ["conda::numpy==1.21.5"]),
    ("dependencies:\n  - numpy>=1.20", ["conda::numpy==>=1.20"]),
    ("dependencies:\n  - numpy = >=1.20", ["conda::numpy==>=1.20"]),
    ("dependencies:\n  - numpy 1.21.5", ["conda::numpy==1.21.5"]),
    ("dependencies:\n  - numpy>=1.20,<2", ["conda::numpy==>=1.20,<2"]),
    ("dependencies:\n  - conda-forge::numpy", ["conda::conda-forge::numpy"]),
    (
        "dependencies:\n  - numpy=1.21=py311_0",
        ["conda::numpy==1.21 py311_0"],
    ),  # with a build: exact, as conda
    ("dependencies:\n  - pip:\n    - requests>=2", ["pypi::requests==>=2"]),
    (
        "dependencies:\n  - a\n  - pip:\n    - b==1\n  - sys:\n    - __cuda==12.4",
        ["conda::a", "pypi::b==1", "sys::__cuda==12.4"],
    ),
    ("dependencies:\n  - sys:\n    - __glibc=2.27", ["sys::__glibc==2.27"]),
    ("dependencies:\n  - git+https://h/x/tool.git", ["pypi::tool@git+https://h/x/tool.git"]),
    ("name: demo\ndependencies: [numpy, scipy]", ["conda::numpy", "conda::scipy"]),
    ("# only a comment\n", []),
]


@pytest.mark.parametrize(("text", "expected"), YML)
def test_environment_yml(text: str, expected: list[str]) -> None:
    assert tstrs(specs.parse_environment_yml(text)) == expected


def test_environment_yml_sources_python_and_ignored_sections() -> None:
    spec = specs.parse_environment_yml(
        "name: x\nchannels:\n  - conda-forge\n  - bioconda\npypi-indices:\n  - https://a/simple\n"
        "dependencies:\n  - python=3.10\n  - numpy\nvariables:\n  A: 1\n",
        "env.yml",
    )
    assert spec.python == "3.10.*"
    assert spec.sources == {"conda": ("conda-forge", "bioconda"), "pypi": ("https://a/simple",)}
    (warning,) = spec.warnings
    assert warning.startswith("The section 'variables' of env.yml is ignored")
    assert spec.origin == "the environment file env.yml"


def test_variables_in_a_requirements_file_are_expanded_as_pip_does() -> None:
    """${NAME} (upper case, digits, _) anywhere in a line, after comments are removed; ${lower} is not one."""
    spec = specs.parse_requirements_txt(
        "--extra-index-url https://__token__:${INDEX_TOKEN}@h.example/simple\n"
        "fx-core==${FX_VERSION}  # ${NOT_READ}\n",
        environ={"INDEX_TOKEN": "s3cr3t", "FX_VERSION": "1.1.0"},
    )
    assert spec.sources == {"pypi": ("https://__token__:s3cr3t@h.example/simple",)}
    assert tstrs(spec) == ["pypi::fx-core==1.1.0"]


@pytest.mark.parametrize("value", [None, ""])
def test_an_unset_variable_in_a_requirements_file_is_named(value: str | None) -> None:
    environ = {} if value is None else {"INDEX_TOKEN": value}
    with pytest.raises(specs.SpecError) as caught:
        specs.parse_requirements_txt(
            "fx-core\n--extra-index-url https://t:${INDEX_TOKEN}@h.example/simple\n", "r.txt", environ=environ
        )
    assert str(caught.value) == (
        "${INDEX_TOKEN} names the environment variable INDEX_TOKEN, which is not set (line 2 of r.txt). "
        "Set INDEX_TOKEN before running envcore, or write the value itself."
    )


def test_the_pip_section_of_an_environment_yml_takes_the_options_of_a_requirements_file() -> None:
    """conda hands the pip section to pip as a requirements file, so its options are written there too (the
    PyTorch wheel index is the common case)."""
    spec = specs.parse_environment_yml(
        "dependencies:\n  - numpy\n  - pip:\n    - --extra-index-url https://download.pytorch.org/whl/cpu\n"
        "    - --pre\n    - -f https://h/links\n    - --index-url https://other/simple\n    - torch==2.3\n"
        "  - scipy\n",
        "env.yml",
    )
    assert tstrs(spec) == ["conda::numpy", "pypi::torch==2.3", "conda::scipy"]  # in the order written
    assert spec.sources == {"pypi": ("https://download.pytorch.org/whl/cpu",)}
    assert spec.extras == {"pypi": ("--pre", "--find-links https://h/links")}
    (warning,) = spec.warnings
    assert "--index-url https://other/simple (entry 4 of the pip section of env.yml) is ignored" in warning
    assert spec.origin == "the environment file env.yml"


def test_an_unsupported_pip_option_in_an_environment_yml_names_its_entry() -> None:
    with pytest.raises(
        specs.SpecError, match=r"'-e \./here' is an editable install.*entry 2 of the pip section"
    ):
        specs.parse_environment_yml("dependencies:\n  - pip:\n    - a\n    - -e ./here\n", "env.yml")
    with pytest.raises(
        specs.SpecError, match=r"'--no-build-isolation' is not a supported line .*entry 1 of the pip"
    ):
        specs.parse_environment_yml("dependencies:\n  - pip:\n    - '--no-build-isolation'\n", "env.yml")
    with pytest.raises(
        specs.SpecError, match=r"not \[\{'--no-binary :all': None\}\] .*quote an entry with ': '"
    ):
        specs.parse_environment_yml("dependencies:\n  - pip:\n    - --no-binary :all:\n", "env.yml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (  # packages not indented under pip: YAML reads an empty section, then conda packages
            "dependencies:\n  - numpy\n  - pip:\n  - torch==2.3\n",
            "The pip section is empty, and the dependencies after it would be read as conda packages (line 3 of "
            "env.yml). If they are meant for pip, write '- pip:' followed by '- NAME' lines indented under it",
        ),
        (
            "dependencies:\n  - pip:\n    torch: 2.3\n",
            "The pip section is followed by 'torch': ..., which YAML reads as a key beside pip:, not as a package "
            "(line 2 of env.yml). Write its packages as a list",
        ),
        ("dependencies:\n  - sys:\n  - numpy\n", "The sys section is empty"),
    ],
)
def test_a_pip_section_yaml_reads_otherwise_than_meant_is_named(text: str, message: str) -> None:
    with pytest.raises(specs.SpecError) as err:
        specs.parse_environment_yml(text, "env.yml")
    assert err.value.message.startswith(message)


def test_an_empty_pip_section_at_the_end_is_nothing() -> None:
    assert tstrs(specs.parse_environment_yml("dependencies:\n  - numpy\n  - pip:\n")) == ["conda::numpy"]


def test_requirement_files_include_others_as_pip_reads_them(tmp_path: Path) -> None:
    """``-r FILE`` (``--requirement``) from the folder of the file naming it, with that file's options, hash
    warnings and python, at the place of the line; also in an environment.yml's pip section (from its folder,
    as conda runs pip there)."""
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "leaf.txt").write_text(
        "--pre\nfx-core>=1.1 --hash=sha256:ab\npython>=3.10\n"
    )
    (tmp_path / "sub" / "mid.txt").write_text(
        "--extra-index-url https://x.example/simple\n-r deeper/leaf.txt\nfx-http<2\n"
    )
    top = tmp_path / "requirements-dev.txt"
    top.write_text("fx-web\n--requirement=sub/mid.txt\nfx-core<2\n")
    spec = specs.load(top)
    assert tstrs(spec) == ["pypi::fx-web", "pypi::fx-core==>=1.1,<2", "pypi::fx-http==<2"]
    assert spec.sources == {PYPI: ("https://x.example/simple",)} and spec.extras == {PYPI: ("--pre",)}
    assert spec.python == ">=3.10" and spec.origin == f"the requirements file {top}"
    (warning,) = spec.warnings
    assert f"The --hash options of {tmp_path}/sub/deeper/leaf.txt (line 2 of " in warning
    yml = tmp_path / "environment.yml"
    yml.write_text("dependencies:\n  - fx-app\n  - pip:\n    - -r sub/deeper/leaf.txt\n")
    assert tstrs(specs.load(yml)) == ["conda::fx-app", "pypi::fx-core==>=1.1"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"a.txt": "-r b.txt\n", "b.txt": "x\n-r a.txt\n"},
            "-r a.txt includes {d}/a.txt, which is already being "
            "read: the requirement files include each other (line 2 of {d}/b.txt). Remove one of the -r lines",
        ),
        ({"a.txt": "-r a.txt\n"}, "-r a.txt includes {d}/a.txt, which is already being read"),
        (
            {"a.txt": "x\n-r gone.txt\n"},
            "-r gone.txt names {d}/gone.txt, which does not exist (line 2 of {d}/a.txt)",
        ),
        (
            {"a.txt": "-r .\n"},
            "-r . names {d}, which is a folder (line 1 of {d}/a.txt). Check the path; a "
            "relative one is read from the folder of the file that names it",
        ),
        (
            {"a.txt": "-r b.txt\n", "b.txt": "-e .\n"},
            "'-e .' is an editable install, which a locked environment "
            "cannot hold: it points into a working copy on this machine, and the environment is hydrated on others "
            "(line 1 of {d}/b.txt). Write the path or URL without -e (. or ./pkg)",
        ),
        ({"a.txt": "-r b.txt\n", "b.txt": "python==3.10\n", "c": ""}, None),
        (
            {"a.txt": "python>=3.11\n-r b.txt\n", "b.txt": "python==3.10\n"},
            "python is specified with "
            "incompatible values: >=3.11 (the requirements file {d}/a.txt) and 3.10.* (the requirements file {d}/b.txt)",
        ),
        ({"a.txt": "-r b.txt\n", "b.txt": b"\xff\n"}, "{d}/b.txt is not UTF-8 text (byte 0xff on line 1)"),
    ],
)
def test_bad_includes_are_one_paragraph_naming_the_file_and_line(
    tmp_path: Path, files: dict[str, str | bytes], message: str | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    if message is None:
        assert specs.load(tmp_path / "a.txt").python == "3.10.*"
        return
    with pytest.raises(SpecError) as err:
        specs.load(tmp_path / "a.txt")
    assert err.value.message.startswith(message.format(d=tmp_path)), err.value.message


@pytest.mark.parametrize(
    ("name", "text", "kind", "hint"),
    [
        (
            "environment.yml",
            "name: x\ndependencies:\n  - fx-core\n",
            "requirements",
            "an environment.yml, and was "
            "read as a requirements file: if it is an environment.yml, give it with -f.",
        ),
        (
            "pyproject.toml",
            '[project]\ndependencies = ["fx-core"]\n',
            "environment",
            "a pyproject.toml, and was read "
            "as an environment.yml: if it is a pyproject.toml, give it with -p.",
        ),
        (
            "requirements.txt",
            "fx-core>=1\n",
            "environment",
            "a requirements file, and was read as an environment.yml: "
            "if it is a requirements file, give it with -r.",
        ),
        (
            "requirements.in",
            "fx-core>=1\n",
            "pyproject",
            "a requirements file, and was read as a pyproject.toml",
        ),
    ],
)
def test_a_file_given_to_the_option_of_another_format_says_which_one_its_name_suggests(
    tmp_path: Path, name: str, text: str, kind: str, hint: str
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(SpecError) as err:
        specs.load(tmp_path / name, kind)
    assert f". {tmp_path / name} is named like {hint}" in err.value.message
    assert specs.load(tmp_path / name).requirements  # (read by its name, it is fine)
    (tmp_path / "deps").write_text(text)  # a name that says nothing: the error alone
    with pytest.raises(SpecError) as err:
        specs.load(tmp_path / "deps", kind)
    assert "is named like" not in err.value.message


SETUPTOOLS_DYNAMIC = """[project]
name = "dyn"
version = "1.0"
dynamic = ["dependencies", "optional-dependencies"]

[tool.setuptools.dynamic]
dependencies = {file = ["requirements.txt", "more.txt"]}
optional-dependencies.web = {file = "web.txt"}
"""


def test_dynamic_dependencies_setuptools_reads_from_files_are_read_from_them(tmp_path: Path) -> None:
    """``[tool.setuptools.dynamic] dependencies = {file = [...]}`` (and optional dependencies for --extra), from
    the project's folder, as setuptools reads them; other dynamic dependencies are still refused."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "pyproject.toml").write_text(SETUPTOOLS_DYNAMIC)
    (tmp_path / "app" / "requirements.txt").write_text("# runtime\nfx-core>=1.1  # the core\n\nfx-http\n")
    (tmp_path / "app" / "more.txt").write_text("fx-pyyaml\n")
    (tmp_path / "app" / "web.txt").write_text("fx-web>=2\n")
    project = tmp_path / "app" / "pyproject.toml"
    assert tstrs(specs.load(project)) == ["pypi::fx-core==>=1.1", "pypi::fx-http", "pypi::fx-pyyaml"]
    assert tstrs(specs.load(project, extras=["web"]))[-1] == "pypi::fx-web==>=2"
    (tmp_path / "app" / "more.txt").write_text("fx-pyyaml\n--extra-index-url https://x.example/simple\n")
    with pytest.raises(SpecError) as err:
        specs.load(project)
    assert err.value.message == (
        f"'--extra-index-url https://x.example/simple' is an option, and setuptools reads only requirements from "
        f"{tmp_path}/app/more.txt (line 2 of {tmp_path}/app/more.txt, which [tool.setuptools.dynamic] of {project} "
        "reads). Remove it there, or give the file itself with -r."
    )
    (tmp_path / "app" / "more.txt").unlink()
    with pytest.raises(SpecError, match=r"Cannot read .*/app/more.txt: No such file or directory"):
        specs.load(project)
    project.write_text(
        SETUPTOOLS_DYNAMIC.replace('{file = ["requirements.txt", "more.txt"]}', '{attr = "x.deps"}')
    )
    with pytest.raises(SpecError, match=r"The dependencies of .* are dynamic .* read them from files with"):
        specs.load(project)


def test_a_conda_lock_file_given_as_an_environment_yml_is_named_as_such() -> None:
    text = (
        "version: 1\nmetadata:\n  platforms: [linux-64]\n  sources: [environment.yml]\npackage:\n- name: x\n"
    )
    with pytest.raises(SpecError) as err:
        specs.parse_environment_yml(text, "conda-lock.yml")
    assert err.value.message == (
        "conda-lock.yml is a conda-lock lock file (metadata and package), a list of locked packages, not an "
        "environment file. Resolve from the environment.yml it was made from (its metadata.sources names it)."
    )


def test_an_include_given_by_a_file_url_is_read_and_one_by_another_url_refused(tmp_path: Path) -> None:
    """pip reads ``-r file:base.txt`` (conda's documentation writes the pip section's -r so) and ``-r URL``."""
    (tmp_path / "base.txt").write_text("fx-core\n")
    (tmp_path / "pins.txt").write_text("fx-http==1.1\n")
    (tmp_path / "a.txt").write_text(f"-r file:base.txt\n--requirement {(tmp_path / 'pins.txt').as_uri()}\n")
    assert tstrs(specs.load(tmp_path / "a.txt")) == ["pypi::fx-core", "pypi::fx-http==1.1"]
    (tmp_path / "a.txt").write_text("-r https://example.com/requirements.txt\n")
    with pytest.raises(SpecError) as err:
        specs.load(tmp_path / "a.txt")
    assert err.value.message == (
        f"-r https://example.com/requirements.txt names a file by a URL other than file:, which envcore does not "
        f"download (line 1 of {tmp_path}/a.txt). Download it and give its path, so that what is resolved is what "
        "you reviewed."
    )


def test_an_include_in_standard_input_is_read_from_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    (tmp_path / "base.txt").write_text("fx-core==1.1.0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"-r base.txt\nfx-http\n")))
    specs._stdin.cache_clear()
    try:
        first, again = specs.load(Path("-"), "requirements"), specs.load(Path("-"), "requirements")
    finally:
        specs._stdin.cache_clear()
    assert tstrs(first) == tstrs(again) == ["pypi::fx-core==1.1.0", "pypi::fx-http"]  # read once, seen twice


# --- pyproject.toml ------------------------------------------------------------------------------------

PYPROJECT = [
    ('[project]\ndependencies = ["pandas>=2", "requests"]', ["pypi::pandas==>=2", "pypi::requests"], None),
    ('[project]\nrequires-python = ">=3.10"\ndependencies = []', [], ">=3.10"),
    ('[project]\ndependencies = ["x[a]==1.0"]', ["pypi::x[a]==1.0"], None),
    (
        '[tool.poetry.dependencies]\npython = "^3.10"\nrequests = "^2.31"',
        ["pypi::requests==<3,>=2.31"],
        ">=3.10,<4",
    ),
    ('[tool.poetry.dependencies]\nnumpy = "~1.26.2"', ["pypi::numpy==<1.27,>=1.26.2"], None),
    ('[tool.poetry.dependencies]\nnumpy = "*"', ["pypi::numpy"], None),
    ('[tool.poetry.dependencies]\nnumpy = "1.26.4"', ["pypi::numpy==1.26.4"], None),
    (
        '[tool.poetry.dependencies]\nx = {version = "^0.3.1", extras = ["fast"]}',
        ["pypi::x[fast]==<0.4,>=0.3.1"],
        None,
    ),
]


@pytest.mark.parametrize(("text", "expected", "python"), PYPROJECT)
def test_pyproject(text: str, expected: list[str], python: str | None) -> None:
    spec = specs.parse_pyproject(text)
    assert tstrs(spec) == expected and spec.python == python


def test_pyproject_indices() -> None:
    spec = specs.parse_pyproject(
        '[project]\ndependencies = ["a"]\n[[tool.uv.index]]\nurl = "https://u/simple"\n'
        '[[tool.poetry.source]]\nname = "p"\nurl = "https://p/simple"\n'
    )
    assert spec.sources == {"pypi": ("https://p/simple", "https://u/simple")}


def test_load_picks_the_parser_by_name(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("a==1\n")
    (tmp_path / "environment.yaml").write_text("dependencies: [b]\n")
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["c"]\n')
    assert [
        tstrs(specs.load(tmp_path / n)) for n in ("requirements.txt", "environment.yaml", "pyproject.toml")
    ] == [
        ["pypi::a==1"],
        ["conda::b"],
        ["pypi::c"],
    ]


PROJECT_WITH_EXTRAS = """
[project]
name = "My.Project"
dependencies = ["fx-core"]

[project.optional-dependencies]
web = ["fx-web>=2"]
yaml = ["fx-pyyaml"]
all = ["my-project[web,yaml]", "fx-http"]

[dependency-groups]
test = ["fx-extras", {include-group = "lint"}]
lint = ["fx-yaml"]

[tool.poetry.group.docs.dependencies]
fx-native = "^1.0"
"""


@pytest.mark.parametrize(
    ("extras", "groups", "expected"),
    [
        ((), (), ["pypi::fx-core"]),
        (("web",), (), ["pypi::fx-core", "pypi::fx-web==>=2"]),
        (("ALL",), (), ["pypi::fx-core", "pypi::fx-http", "pypi::fx-web==>=2", "pypi::fx-pyyaml"]),
        ((), ("test",), ["pypi::fx-core", "pypi::fx-extras", "pypi::fx-yaml"]),
        ((), ("docs",), ["pypi::fx-core", "pypi::fx-native==<2,>=1.0"]),
    ],
)
def test_extras_and_groups_of_a_pyproject_are_added_when_chosen(
    extras: tuple[str, ...], groups: tuple[str, ...], expected: list[str]
) -> None:
    """As uv pip compile --extra/--group: names compare normalised, an extra naming the project itself brings
    its extras in, include-group is followed, poetry's groups count too."""
    spec = specs.parse_pyproject(PROJECT_WITH_EXTRAS, "p.toml", extras=extras, groups=groups)
    assert sorted(tstrs(spec)) == sorted(expected)


@pytest.mark.parametrize(
    ("extras", "groups", "message"),
    [
        (
            ("nope",),
            (),
            "There are no optional dependencies named 'nope' ([project.optional-dependencies] of "
            "p.toml). Give --extra one of: all, web, yaml.",
        ),
        (
            (),
            ("nope",),
            "There are no dependency groups named 'nope' ([dependency-groups] of p.toml). Give "
            "--group one of: docs, lint, test.",
        ),
    ],
)
def test_an_unknown_extra_or_group_lists_those_there_are(
    extras: tuple[str, ...], groups: tuple[str, ...], message: str
) -> None:
    with pytest.raises(specs.SpecError) as caught:
        specs.parse_pyproject(PROJECT_WITH_EXTRAS, "p.toml", extras=extras, groups=groups)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("groups", "cycle"),
    [
        ('a = ["fx-core", {include-group = "B"}]\nb = [{include-group = "a"}]', "a -> B -> a"),
        ('a = [{include-group = "a"}]', "a -> a"),
        (
            'a = [{include-group = "b"}]\nb = [{include-group = "c"}]\nc = [{include-group = "b"}]',
            "b -> c -> b",
        ),
    ],
)
def test_dependency_groups_that_include_each_other_are_refused(groups: str, cycle: str) -> None:
    """PEP 735: tools report cycles. Before, the cycle was read as if it were not there."""
    text = f'[project]\nname = "x"\n\n[dependency-groups]\n{groups}\n'
    with pytest.raises(specs.SpecError) as caught:
        specs.parse_pyproject(text, "p.toml", groups=["a"])
    assert str(caught.value).startswith(f"The dependency groups include each other in a cycle ({cycle})")


def test_a_group_included_twice_without_a_cycle_is_read_once() -> None:
    text = (
        '[project]\nname = "x"\n\n[dependency-groups]\na = [{include-group = "b"}, {include-group = "c"}]\n'
        'b = [{include-group = "c"}]\nc = ["fx-core"]\n'
    )
    assert tstrs(specs.parse_pyproject(text, "p.toml", groups=["a"])) == ["pypi::fx-core"]


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("", ["pypi::fx-core", "pypi::fx-legacy"]),
        ('[dependency-groups]\nDev = ["fx-http"]\n', ["pypi::fx-core", "pypi::fx-http", "pypi::fx-legacy"]),
    ],
)
def test_uvs_legacy_dev_dependencies_are_the_group_dev(table: str, expected: list[str]) -> None:
    """As uv reads [tool.uv].dev-dependencies (before PEP 735): the group dev, with any [dependency-groups].dev;
    not installed unless chosen."""
    text = f'[project]\nname = "x"\ndependencies = ["fx-core"]\n{table}[tool.uv]\ndev-dependencies = ["fx-legacy"]\n'
    assert tstrs(specs.parse_pyproject(text, "p.toml")) == ["pypi::fx-core"]
    assert tstrs(specs.parse_pyproject(text, "p.toml", groups=["dev"])) == expected


@pytest.mark.parametrize(
    ("line", "fix"),
    [
        ("fx-core=1.0.0", "Write fx-core==1.0.0: a PyPI requirement takes PEP 508's == for a version"),
        ("fx-core 1.0.*", "Write fx-core==1.0.*: a PyPI requirement takes PEP 508's == for a version"),
        ("fx-core>=1.0 <2", "Separate the version constraints with commas: fx-core>=1.0,<2."),
        ("fx-core[a] >=1 !=1.5", "Separate the version constraints with commas: fx-core[a]>=1,!=1.5."),
        ("fx-core==1.0\tfx-http", "Write each requirement on a line of its own."),
        ("fx-core (>=1", "Write a PEP 508 requirement such as pandas>=2.1."),
    ],
)
def test_a_requirement_written_in_another_tools_form_is_shown_in_pep_508(line: str, fix: str) -> None:
    """Conda's NAME=1.0 and NAME 1.0, constraints without commas and two requirements on a line: the error
    says how to write what was meant (the original only said it could not parse the line)."""
    with pytest.raises(SpecError) as caught:
        specs.parse_requirements_txt(f"fx-http\n{line}\n", "r.txt")
    assert caught.value.message.startswith(f"Could not parse {line!r}: ")
    assert f"(line 2 of r.txt). {fix}" in caught.value.message
    # wherever PyPI requirements are read
    with pytest.raises(SpecError, match=r"Write fx-core==2\.0: a PyPI"):
        specs.parse_pyproject('[project]\nname = "x"\ndependencies = ["fx-core=2.0"]\n', "p.toml")


def test_a_projects_paths_are_read_from_its_folder(tmp_path: Path) -> None:
    """Relative paths, hatch's {root:uri} (and {root:parent:uri}) and uv's ${PROJECT_ROOT} in a pyproject.toml
    name files from the project's folder, as uv and hatch read them, wherever envcore runs from (before, a
    relative path was read from the current folder and {root:uri} was taken as part of a path)."""
    project = tmp_path / "apps" / "app" / "pyproject.toml"
    project.parent.mkdir(parents=True)
    project.write_text(
        '[project]\nname = "app"\ndependencies = [\n'
        '  "fx-core @ {root:parent:parent:uri}/libs/fx_core-1.0.0-py3-none-any.whl",\n'
        '  "fx-http @ file:///${PROJECT_ROOT}/../../libs/fx_http-1.0.0-py3-none-any.whl",\n'
        '  "fx-web @ {root:uri}/dist/fx_web-2.0.0-py3-none-any.whl",\n'
        "  \"fx-legacy @ ./dist/fx_legacy-1.0.0-py3-none-any.whl ; sys_platform == 'linux'\",\n]\n"
    )
    for wheel in (
        "libs/fx_core-1.0.0",
        "libs/fx_http-1.0.0",
        "apps/app/dist/fx_web-2.0.0",
        "apps/app/dist/fx_legacy-1.0.0",
    ):
        (tmp_path / f"{wheel}-py3-none-any.whl").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"{wheel}-py3-none-any.whl").touch()
    libs, dist = (tmp_path / "libs").as_uri(), (project.parent / "dist").as_uri()
    assert tstrs(specs.load(project, "pyproject")) == [
        f"pypi::fx-core@{libs}/fx_core-1.0.0-py3-none-any.whl",
        f"pypi::fx-http@{libs}/fx_http-1.0.0-py3-none-any.whl",
        f"pypi::fx-web@{dist}/fx_web-2.0.0-py3-none-any.whl",
        f'pypi::fx-legacy@{dist}/fx_legacy-1.0.0-py3-none-any.whl;sys_platform == "linux"',
    ]


def test_pixi_dependencies_are_said_to_be_unread() -> None:
    """A pixi project keeps its conda packages in [tool.pixi.dependencies], which envcore does not read: said,
    with the --conda options that give them, rather than an environment silently without them."""
    text = (
        '[project]\nname = "x"\ndependencies = ["fx-web"]\n'
        '[tool.pixi.workspace]\nchannels = ["conda-forge"]\nplatforms = ["linux-64"]\n'
        '[tool.pixi.dependencies]\nfx-ffmpeg = ">=6"\nfx-native = "*"\n'
    )
    spec = specs.parse_pyproject(text, "p.toml")
    assert tstrs(spec) == ["pypi::fx-web"]
    assert spec.warnings == (
        "The pixi dependencies of p.toml ([tool.pixi]) are not read: envcore reads the project's [project] "
        "dependencies only. Give the conda packages on the command line (--conda fx-ffmpeg --conda fx-native) or "
        "resolve from an environment.yml with -f.",
    )
    assert specs.parse_pyproject(text.split("[tool.pixi.dependencies]")[0], "p.toml").warnings == ()


# --- combining -----------------------------------------------------------------------------------------


def test_merge_ands_constraints_like_the_original() -> None:
    merged = specs.merge(
        specs.from_decorator(libraries={"pandas": ">=0.24.0"}),
        specs.from_decorator(libraries={"pandas": "1.4.0"}),
    )
    assert tstrs(merged) == ["conda::pandas==>=0.24.0,==1.4.0"]


def test_merge_unions_sources_in_order_and_keeps_one_python() -> None:
    merged = specs.merge(
        specs.from_decorator(channels=["a", "b"], python="3.10"),
        specs.from_decorator(channels=["b", "c"], python="3.10", extras=["pre"]),
    )
    assert merged.sources == {"conda": ("a", "b", "c")} and merged.python == "3.10.*"
    assert merged.extras == {PYPI: ("--pre",)}


def test_merge_refuses_two_pythons_naming_both() -> None:
    with pytest.raises(SpecError) as info:
        specs.merge(
            specs.from_decorator(python="3.7", origin="@pypi_base"),
            specs.from_decorator(python="3.8", origin="@conda_base"),
        )
    assert info.value.message.startswith(
        "python is specified with incompatible values: 3.7.* (@pypi_base) and 3.8.*"
    )


def test_override_replaces_per_package() -> None:
    flow = specs.from_decorator(libraries={"numpy": "1.21.5", "pandas": "1.4"}, python="3.10", channels=["a"])
    step = specs.from_decorator(libraries={"numpy": "1.21.6"}, channels=["b"])
    final = specs.override(flow, step)
    assert sorted(tstrs(final)) == ["conda::numpy==1.21.6", "conda::pandas==1.4"]
    assert final.python == "3.10.*" and final.sources == {"conda": ("a", "b")}
    assert specs.override(flow, specs.from_decorator(python="3.11")).python == "3.11.*"


# --- markers -------------------------------------------------------------------------------------------

MARKER_REQS = specs.parse_requirements_txt(
    "a ; sys_platform == 'linux'\nb ; sys_platform == 'darwin'\nc ; python_version < '3.11'\n"
    "d ; platform_machine == 'arm64'\ne\n"
).requirements


@pytest.mark.parametrize(
    ("python", "arch", "kept"),
    [
        ("3.11.*", "linux-64", ["a", "e"]),
        ("3.10.*", "linux-64", ["a", "c", "e"]),
        ("3.11.7", "osx-arm64", ["b", "d", "e"]),
        ("3.10", "osx-64", ["b", "c", "e"]),
        ("3.12.1", "win-64", ["e"]),
    ],
)
def test_markers_are_evaluated_for_the_target(python: str, arch: str, kept: list[str]) -> None:
    result = specs.applicable(MARKER_REQS, python_version=python, arch=arch)
    assert [r.name for r in result] == kept
    assert all(r.marker is None for r in result)


def test_a_marker_the_target_cannot_decide_is_an_error() -> None:
    reqs = specs.parse_requirements_txt("a ; python_full_version >= '3.11.4'").requirements
    with pytest.raises(SpecError, match="Ambiguous package marker for a"):
        specs.applicable(reqs, python_version="3.11.*", arch="linux-64")
    assert [r.name for r in specs.applicable(reqs, python_version="3.11.7", arch="linux-64")] == ["a"]


# --- constraints files (-c) ---------------------------------------------------------------------------------


def test_constraints_files_become_the_requests_constraint_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each constraint (name, versions, marker) as one PyPI option, in order, duplicates dropped; nested -c files
    read beside the file that names them; ${VAR} expanded; a constraint without versions limits nothing."""
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "base.txt").write_text("Fx_Core >= 1.1 , <2\nfx-http\n")
    (tmp_path / "c" / "top.txt").write_text(
        "-c base.txt\nfx-web==${WEB}  # pinned\nfx-core<2,>=1.1 ; python_version >= '3.8'\nfx-core>=1.1,<2\n"
    )
    spec = specs.parse_requirements_txt(
        "--constraint=c/top.txt\nfx-app\n", "r.txt", base=tmp_path, environ={"WEB": "2.0.0"}
    )
    assert [r.name for r in spec.requirements] == ["fx-app"]
    assert spec.extras["pypi"] == (
        "--constraint=fx-core<2,>=1.1",
        "--constraint=fx-web==2.0.0",
        '--constraint=fx-core<2,>=1.1 ; python_version >= "3.8"',
    )
    monkeypatch.setenv("WEB", "2.0.0")
    same = specs.from_command_line(pypi=["fx-app"], constraints=[tmp_path / "c" / "top.txt"])
    assert same.extras == {"pypi": spec.extras["pypi"]}


def test_binary_options_are_kept_canonical() -> None:
    spec = specs.parse_requirements_txt(
        "--only-binary=:all:\n--no-binary Fx_Web,fx.core\n--prefer-binary\n--no-binary fx-core,fx-web\nfx-web\n"
    )
    assert spec.extras["pypi"] == ("--only-binary :all:", "--no-binary fx-core,fx-web", "--prefer-binary")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "fx-web[extra]<2",
            "'fx-web[extra]<2' has extras, which a constraint cannot have (pip refuses them too)",
        ),
        (
            "fx-web @ https://h/fx_web-1.0-py3-none-any.whl",
            "has a URL or path, which a constraint cannot have",
        ),
        ("./local/pkg", "has a URL or path"),
        ("git+https://h/o/r.git", "has a URL or path"),
        ("--index-url https://h/simple", "is an option, which a constraints file cannot hold (only -c FILE)"),
        ("-r other.txt", "is an option, which a constraints file cannot hold"),
        ("fx-web>>2", "Could not parse 'fx-web>>2'"),
        ("-c c.txt", "-c c.txt includes "),
    ],
)
def test_a_bad_constraints_file_is_one_paragraph_naming_its_line(
    tmp_path: Path, line: str, message: str
) -> None:
    (tmp_path / "c.txt").write_text(f"fx-core<2\n{line}\n")
    with pytest.raises(SpecError) as info:
        specs.parse_requirements_txt("-c c.txt\nfx-web\n", "r.txt", base=tmp_path)
    assert message in info.value.message
    assert "\n" not in info.value.message


# --- errors --------------------------------------------------------------------------------------------

ERRORS = [
    (
        lambda: specs.parse_requirements_txt("a\n-e ./pkg\n", "r.txt"),
        "'-e ./pkg' is an editable install, which a locked environment cannot hold",
    ),
    (
        lambda: specs.parse_requirements_txt("--editable=git+https://h/o/r.git#egg=r", "r.txt"),
        "'--editable=git+https://h/o/r.git#egg=r' is an editable install",
    ),
    (
        lambda: specs.parse_requirements_txt("a\n-c no-such-constraints.txt\n", "r.txt"),
        "-c no-such-constraints.txt names ",
    ),
    (lambda: specs.parse_requirements_txt("--constraint"), "--constraint has no value"),
    (lambda: specs.parse_requirements_txt("--no-build-isolation"), "is not a supported line"),
    (
        lambda: specs.parse_requirements_txt("--only-binary a,,b", "r.txt"),
        "--only-binary a,,b names no packages: it takes :all:, :none: or package names separated by commas "
        "(line 1 of r.txt). Write --only-binary :all: or --only-binary name1,name2.",
    ),
    (lambda: specs.parse_requirements_txt("--prefer-binary x"), "is not a supported line"),
    (lambda: specs.parse_requirements_txt("pandas>>1", "r.txt"), "Could not parse 'pandas>>1'"),
    (
        lambda: specs.parse_requirements_txt("x\n--sys-pkg __osx==11", "r.txt"),
        "System package '__osx' not allowed (line 2 of r.txt)",
    ),
    (lambda: specs.parse_requirements_txt("--sys-pkg __cuda"), "System package '__cuda' requires a version"),
    (lambda: specs.parse_requirements_txt("--sys-pkg __cuda>=11"), "requires a specific version not '>=11'"),
    (
        lambda: specs.parse_requirements_txt("--sys-pkg __glibc==abc", "r.txt"),
        "System package '__glibc' has the version 'abc', which is not one (line 1 of r.txt)",
    ),
    (
        lambda: specs.from_command_line(sys_pkgs=["__glibc==2.28", "__glibc=2.17"]),
        "The system package __glibc is given twice, with the versions 2.28 and 2.17. Give it once.",
    ),
    (
        lambda: specs.parse_environment_yml("dependencies:\n  - sys:\n    - __cuda=12.4\n    - __cuda=11.8"),
        "The system package __cuda is given twice",
    ),
    (lambda: specs.parse_requirements_txt("a#b==1"), "Could not parse"),
    (lambda: specs.parse_environment_yml("dependencies: [a, b\n", "e.yml"), "e.yml is not valid YAML"),
    (
        lambda: specs.parse_environment_yml("dependencies: [a, {x: 1}]", "e.yml"),
        "The dependency {'x': 1} is not understood",
    ),
    (lambda: specs.parse_environment_yml("- a\n- b\n", "e.yml"), "must be a mapping"),
    (
        lambda: specs.parse_environment_yml("dependencies:\n  - python=3.10\n  - python=3.11\n"),
        "Python versions specified multiple times",
    ),
    (
        lambda: specs.parse_environment_yml("channels: conda-forge\n", "e.yml"),
        "channels in e.yml must be a list",
    ),
    (
        lambda: specs.parse_environment_yml("dependencies:\n  - sys:\n    - __glibc>=2.17"),
        "requires a specific version",
    ),
    (
        lambda: specs.parse_environment_yml("dependencies:\n  - a b c d ("),
        "is not a conda version constraint",
    ),
    (
        lambda: specs.parse_pyproject('[project]\ndependencies = ["python>=3.10"]'),
        "Python specification should be specified as 'requires-python'",
    ),
    (lambda: specs.parse_pyproject("[project\n", "p.toml"), "p.toml is not valid TOML"),
    (lambda: specs.from_decorator(libraries={"bad name": "1"}), "Could not parse conda package 'bad name'"),
    (lambda: specs.from_decorator(packages={"x": "1.0.0.x.y"}), "'1.0.0.x.y' is not a valid version of x"),
    # before, a word was glued to the name: 'fx-corenot a version!!'
    (lambda: specs.from_decorator(packages={"x": "latest"}), "'latest' is not a valid version of x"),
    (lambda: specs.from_decorator(python="three"), "'three' is not a python version"),
    # before, silently ignored: --channel "$CHANNEL" with the variable unset
    (
        lambda: specs.from_command_line(channels=[""]),
        "--channel is given an empty value (on the command line)",
    ),
    (lambda: specs.from_command_line(indices=[" "]), "--index is given an empty value"),
    (lambda: specs.load(Path("/nonexistent/requirements.txt")), "Cannot read /nonexistent/requirements.txt"),
]


@pytest.mark.parametrize(("call", "message"), ERRORS)
def test_bad_input_is_one_paragraph_naming_the_problem(call: object, message: str) -> None:
    with pytest.raises(SpecError) as info:
        call()  # type: ignore[operator]
    assert message in info.value.message
    assert "\n" not in info.value.message


# --- conda MatchSpec strings (for the conda-compatible solvers) ---------------------------------------------


@pytest.mark.parametrize(
    ("spec", "channel", "expected"),
    [
        ("", None, "numpy"),
        ("1.21.5", None, "numpy ==1.21.5"),
        ("1.21.5", "https://conda.example/c", "https://conda.example/c::numpy ==1.21.5"),
        (">=1.20,<2", None, "numpy >=1.20,<2"),
        ("1.21.*", None, "numpy 1.21.*"),
        ("==1.21.5", None, "numpy ==1.21.5"),
        ("~=1.21", None, "numpy ~=1.21"),
        ("1.21|1.22", None, "numpy 1.21|1.22"),
        ("!=1.0", None, "numpy !=1.0"),
    ],
)
def test_match_spec(spec: str, channel: str | None, expected: str) -> None:
    import rattler

    text = specs.match_spec(specs.conda_requirement("numpy", spec, "test"), channel)
    assert text == expected
    if channel is None:  # what the strict parser of py-rattler (the default resolver) accepts
        assert rattler.MatchSpec(text).name.normalized == "numpy"


# --- python versions (decorators, files and --python alike) ---------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3.11", "3.11.*"),
        ("==3.11", "3.11.*"),
        ("3", "3.*"),
        ("3.11.7", "3.11.7"),
        ("3.11.*", "3.11.*"),
        (">=3.10, <3.12", ">=3.10,<3.12"),
        ("!=3.9.*,>=3.8", "!=3.9.*,>=3.8"),
    ],
)
def test_python_spec(value: str, expected: str) -> None:
    assert specs.python_spec(value, "test") == expected


@pytest.mark.parametrize("value", ["abc", "3.11.x", ">=", "3..1", "3.11,", "py3"])
def test_python_spec_refuses_what_is_not_a_version(value: str) -> None:
    with pytest.raises(SpecError, match="is not a python version"):
        specs.python_spec(value, "in --python")


def test_build_request_reads_python_as_decorators_do(tmp_path: Path) -> None:
    config = Config.load(environ={"METAFLOW_HOME": str(tmp_path / "mf"), "METAFLOW_CONDA_CHANNELS": "c"})
    spec = specs.from_command_line(conda=["fx-core"])
    for given, python in (("3.11", "3.11.*"), ("==3.11", "3.11.*"), ("3", "3.*"), ("3.11.7", "3.11.7")):
        assert resolve.build_request(spec, config, "linux-64", python=given).python == python
    with pytest.raises(SpecError, match=r"'abc' is not a python version \(in --python 'abc'\)"):
        resolve.build_request(spec, config, "linux-64", python="abc")


# --- the command line: --conda as environment.yml dependencies, --pypi as requirements.txt lines ---------

CONDA_ENTRIES = [
    ("fx-core", "conda::fx-core"),
    ("fx-core==1.0.0", "conda::fx-core==1.0.0"),
    ("fx-http=1", "conda::fx-http==1.*"),  # conda's meaning, as in environment.yml
    ("fx-core<2,>=1.1", "conda::fx-core==<2,>=1.1"),
    ("fx-core >=1.1, <2", "conda::fx-core==>=1.1,<2"),
    ("fx-core=1.0.0=py_0", "conda::fx-core==1.0.0 py_0"),  # a version with a build is exact
    ("fx-core==1.0.0=py_0", "conda::fx-core==1.0.0 py_0"),
    ("fx-core 1.0.0 py_0", "conda::fx-core==1.0.0 py_0"),
    ("fx-core=1.*=py_0", "conda::fx-core==1.* py_0"),
    ("fx-core==1.*", "conda::fx-core==1.*"),
    ("conda-forge::fx-core>=1", "conda::conda-forge::fx-core==>=1"),
    ("fx-core = >=1.0", "conda::fx-core==>=1.0"),
]


@pytest.mark.parametrize(("entry", "tstr"), CONDA_ENTRIES)
def test_conda_option_is_read_as_an_environment_yml_dependency(entry: str, tstr: str) -> None:
    import rattler

    from_yml = specs.parse_environment_yml(f"dependencies:\n  - {entry}\n").requirements
    from_cli = specs.from_command_line(conda=[entry]).requirements
    assert from_cli == from_yml and [r.tstr for r in from_cli] == [tstr]
    # what the default resolver's strict parser gets is valid
    assert rattler.MatchSpec(specs.match_spec(from_cli[0]), strict=True).name.normalized == from_cli[0].name


@pytest.mark.parametrize(
    ("entry", "version", "build"),
    [("fx-core=1.0.0=py_0", "==1.0.0", "py_0"), ("fx-core=1.1.0=py_0", "==1.1.0", "py_0")],
)
def test_a_version_followed_by_a_build_is_exact_for_the_solver(entry: str, version: str, build: str) -> None:
    import rattler

    (req,) = specs.parse_environment_yml(f"dependencies: ['{entry}']").requirements
    match = rattler.MatchSpec(specs.match_spec(req), strict=True)
    assert (str(match.version), match.build) == (version, build)


def test_a_build_string_with_dots_is_kept_for_the_solver() -> None:
    import rattler

    (req,) = specs.parse_environment_yml(
        "dependencies: ['pytorch=2.1.0=py3.11_cuda12.1_cudnn8.9.2_0']"
    ).requirements
    assert req.tstr == "conda::pytorch==2.1.0 py3.11_cuda12.1_cudnn8.9.2_0"
    match = rattler.MatchSpec(specs.match_spec(req))  # as the rattler resolver parses it (conda's reading)
    assert (str(match.version), match.build) == ("==2.1.0", "py3.11_cuda12.1_cudnn8.9.2_0")


PYPI_LINES = [
    ("fx-core==v1", "pypi::fx-core==v1"),
    ("fx-core==1.*", "pypi::fx-core==1.*"),
    ("fx-core==1.0.0", "pypi::fx-core==1.0.0"),
    ("fx-core<2,>=1.1", "pypi::fx-core==<2,>=1.1"),
    ("fx-core[a] ; python_version >= '3'", 'pypi::fx-core[a];python_version >= "3"'),
]


@pytest.mark.parametrize(("line", "tstr"), PYPI_LINES)
def test_pypi_option_is_read_as_a_requirements_txt_line(line: str, tstr: str) -> None:
    from_cli = specs.from_command_line(pypi=[line]).requirements
    assert from_cli == specs.parse_requirements_txt(line).requirements
    assert [r.tstr for r in from_cli] == [tstr]


def test_a_package_given_twice_on_the_command_line_gets_both_constraints() -> None:
    spec = specs.from_command_line(
        conda=["fx-core>=1.1", "fx-core<2", "fx-http=1", "fx-http"],
        pypi=["fx-web==1.0.0", "fx-web==2.0.0", "fx-app[x]", "fx-app[y]>=1"],
    )
    assert tstrs(spec) == [
        "conda::fx-core==>=1.1,<2",
        "conda::fx-http==1.*",
        "pypi::fx-web====1.0.0,==2.0.0",  # (the original's rendering of AND-ed pins) the resolver reports it
        "pypi::fx-app[x,y]==>=1",
    ]
    # what one requirement cannot say (a build, different markers) stays apart, for the resolver to AND
    kept = specs.from_command_line(
        conda=["fx-core=1.0.0=py_0", "fx-core<2"], pypi=["a; sys_platform=='x'", "a"]
    )
    assert tstrs(kept) == [
        "conda::fx-core==1.0.0 py_0",
        "conda::fx-core==<2",
        'pypi::a;sys_platform == "x"',
        "pypi::a",
    ]


def test_python_on_the_command_line() -> None:
    assert specs.from_command_line(conda=["python=3.11", "fx-core"]).python == "3.11.*"
    with pytest.raises(SpecError, match="python is given twice"):
        specs.from_command_line(conda=["python=3.11", "python=3.12"])
    with pytest.raises(SpecError, match="names python"):
        specs.from_command_line(pypi=["python==3.11"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pypi": ["fx-core==abc"]}, "Could not parse 'fx-core==abc'"),
        ({"pypi": ["fx-core==abc"]}, "(in --pypi 'fx-core==abc')"),
        ({"conda": ["bad name"]}, "is not a conda version constraint"),
        ({"conda": ["fx-core<2,"]}, "(in --conda 'fx-core<2,')"),
        ({"conda": ["fx-core=1.0=py-0"]}, "'=1.0=py-0' is not a conda version constraint"),  # as written
        ({"channels": ["http://[::1"]}, "'http://[::1' is not a conda channel (in --channel 'http://[::1')"),
        ({"channels": ["two words"]}, "is not a conda channel"),
        ({"indices": ["not a url"]}, "'not a url' is not a package index URL (in --index 'not a url')"),
        ({"indices": ["ftp://x/y"]}, "'ftp://x/y' is not a package index URL"),
        ({"indices": ["https://h:99999/simple"]}, "is not a package index URL"),
    ],
)
def test_bad_command_line_values(kwargs: dict[str, list[str]], message: str) -> None:
    with pytest.raises(SpecError) as info:
        specs.from_command_line(**kwargs)
    assert message in info.value.message and "\n" not in info.value.message
    assert "(in @conda)" not in info.value.message


def test_messages_never_show_credentials() -> None:
    with pytest.raises(SpecError) as info:
        specs.from_command_line(indices=["ftp://alice:s3cret@h/simple"])
    assert "s3cret" not in info.value.message and "ftp://h/simple" in info.value.message
    spec = specs.parse_requirements_txt("-i https://alice:s3cret@h/simple\nx\n", "r.txt")
    assert "s3cret" not in spec.warnings[0] and "https://h/simple" in spec.warnings[0]


# --- files: encodings, pip-compile output, wrong shapes -------------------------------------------------


def test_load_reads_the_format_the_caller_names(tmp_path: Path) -> None:
    (tmp_path / "env1.yml").write_text('[project]\ndependencies = ["c"]\n')
    (tmp_path / "envfile").write_text("dependencies:\n  - b=1\n")
    assert tstrs(specs.load(tmp_path / "env1.yml", "pyproject")) == ["pypi::c"]
    assert tstrs(specs.load(tmp_path / "envfile", "environment")) == ["conda::b==1.*"]
    with pytest.raises(SpecError, match="Could not parse 'dependencies:'"):
        specs.load(tmp_path / "envfile", "requirements")
    with pytest.raises(SpecError, match="Could not parse 'dependencies:'"):
        specs.load(tmp_path / "envfile")  # without a kind, by the name: requirements.txt


def test_load_refuses_a_file_that_is_not_utf8_and_accepts_a_bom(tmp_path: Path) -> None:
    (tmp_path / "latin.txt").write_bytes(b"a==1\nb\xe9==2\n")
    with pytest.raises(SpecError, match=r"latin.txt is not UTF-8 text \(byte 0xe9 on line 2\)"):
        specs.load(tmp_path / "latin.txt", "requirements")
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbffx-core==1.0.0\n")
    assert tstrs(specs.load(tmp_path / "bom.txt", "requirements")) == ["pypi::fx-core==1.0.0"]
    assert tstrs(specs.parse_requirements_txt("\ufeffa==1")) == ["pypi::a==1"]
    assert tstrs(specs.parse_environment_yml("\ufeffdependencies: [a]")) == ["conda::a"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_a_file_with_the_byte_order_mark_of_utf16_or_utf32_is_read_as_pip_reads_it(
    tmp_path: Path, encoding: str
) -> None:
    """PowerShell's ``pip freeze > requirements.txt`` writes UTF-16 LE with its byte order mark."""
    import codecs

    bom = codecs.BOM_UTF16_BE if encoding == "utf-16-be" else b""  # (utf-16 and utf-32 write their own)
    (tmp_path / "frozen.txt").write_bytes(bom + "fx-core==1.0.0\r\nfx-http>=1\r\n".encode(encoding))
    assert tstrs(specs.load(tmp_path / "frozen.txt")) == ["pypi::fx-core==1.0.0", "pypi::fx-http==>=1"]
    (tmp_path / "broken.txt").write_bytes(codecs.BOM_UTF16_LE + b"f\x00x")  # an odd number of bytes
    with pytest.raises(
        SpecError, match=r"broken.txt starts with the byte order mark of UTF-16 but is not UTF-16"
    ):
        specs.load(tmp_path / "broken.txt")


def test_pip_compile_hashes_are_accepted_with_a_warning() -> None:
    text = (
        "fx-core==1.0.0 \\\n    --hash=sha256:aaaa \\\n    --hash=sha256:bbbb\n    # via fx-app\n"
        "fx-http==1.2.0 --hash sha256:cccc\n"
    )
    spec = specs.parse_requirements_txt(text, "reqs.txt")
    assert tstrs(spec) == ["pypi::fx-core==1.0.0", "pypi::fx-http==1.2.0"]
    (warning,) = spec.warnings
    assert "--hash options of reqs.txt (line 1 of reqs.txt and others) are ignored" in warning
    required = specs.parse_requirements_txt("--require-hashes\n" + text, "reqs.txt")  # as pip -r reqs.txt
    assert tstrs(required) == tstrs(spec) and len(required.warnings) == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: specs.parse_pyproject('[project]\ndependencies = "fx-core"'), "must be a list of strings"),
        (
            lambda: specs.parse_pyproject('[project]\nname = "x"\ndynamic = ["dependencies"]', "p.toml"),
            "The dependencies of p.toml are dynamic",
        ),
        (lambda: specs.parse_pyproject('project = "x"'), "[project] of pyproject.toml must be a table"),
        (lambda: specs.parse_pyproject("[tool.poetry]\ndependencies = 3"), "must be a table"),
        (
            lambda: specs.parse_pyproject("[project]\nrequires-python = 3.1"),
            "requires-python must be a string",
        ),
        (
            lambda: specs.parse_environment_yml("dependencies: fx-core", "e.yml"),
            "dependencies in e.yml must be a list",
        ),
        (lambda: specs.parse_environment_yml("dependencies:\n  - 123\n"), "The dependency 123 is a number"),
        (lambda: specs.parse_environment_yml("dependencies:\n  -\n"), "A dependency is empty"),
        (
            lambda: specs.parse_environment_yml("dependencies:\n  - pip: abc\n"),
            "pip must be a list of strings",
        ),
        (lambda: specs.parse_environment_yml("dependencies:\n  - fx-core=1.0=py-0\n"), "not a conda version"),
        (
            lambda: specs.parse_requirements_txt("--extra-index-url nope\nx"),
            "'nope' is not a package index URL",
        ),
    ],
)
def test_wrong_shapes_are_one_paragraph(call: object, message: str) -> None:
    with pytest.raises(SpecError) as info:
        call()  # type: ignore[operator]
    assert message in info.value.message and "\n" not in info.value.message


def test_the_requirements_recorded_in_an_environment_read_back_as_given() -> None:
    from types import SimpleNamespace

    from envcore.resolve import requirements_of

    given = [
        specs.conda_requirement("conda-forge::numpy", "1.21", "test"),
        specs.pypi_requirement('requests[http2,socks]>=2; python_version < "3.12"', "test"),
        specs.conda_requirement("fx-core", "", "test"),
        specs.conda_requirement("https://conda.example.com/chan::fx-http", "1.2", "test"),
        specs.pypi_requirement("fx-app @ file:///wheels/fx_app-1.0.0-py3-none-any.whl", "test"),
        specs.pypi_requirement("fx-extras[yaml] @ https://h.example/fx_extras-1.0.tar.gz", "test"),
    ]
    env = SimpleNamespace(deps=[r.tstr for r in given] + ["conda::python==3.11.*", "sys::__glibc==2.36=0"])
    assert [r.tstr for r in requirements_of(env)] == [r.tstr for r in given]  # type: ignore[arg-type]


def test_a_decorators_text_is_hashed_as_written_and_solved_normalised() -> None:
    """The original hashes (and records) a decorator's version as written; the solvers get it normalised, also
    when it is read back from a recorded environment (``--using``, ``--from``)."""
    from types import SimpleNamespace

    from envcore.resolve import requirements_of

    spec = specs.from_decorator(libraries={"fx-core": ">= 1.0, <3", "fx-web": "2.0.0=py_0"})
    assert [(r.tstr, r.spec) for r in spec.requirements] == [
        ("conda::fx-core==>= 1.0, <3", ">=1.0,<3"),
        ("conda::fx-web==2.0.0=py_0", "2.0.0 py_0"),
    ]
    assert [specs.match_spec(r) for r in spec.requirements] == ["fx-core >=1.0,<3", "fx-web ==2.0.0 py_0"]
    read = requirements_of(SimpleNamespace(deps=[r.tstr for r in spec.requirements]))  # type: ignore[arg-type]
    assert [(r.tstr, r.spec) for r in read] == [(r.tstr, r.spec) for r in spec.requirements]


def test_merged_decorator_texts_hash_as_the_originals_merge() -> None:
    flow = specs.from_decorator(libraries={"fx-core": ">= 1.0"}, packages={"fx-http": "1.2.0"})
    step = specs.from_decorator(libraries={"fx-core": "<3,>= 1.0"}, packages={"fx-http": ">=1.0"})
    merged = specs.merge(flow, step)
    assert tstrs(merged) == ["conda::fx-core==>= 1.0,<3", "pypi::fx-http==1.2,>=1.0"]
    assert [r.spec for r in merged.requirements] == [">=1.0,<3", "==1.2,>=1.0"]


# --- direct references, URL channels, nodefaults, malformed requirements ------------------------------------


def test_bare_paths_are_named_by_their_wheel_sdist_or_pyproject(tmp_path: Path) -> None:
    project = tmp_path / "libs" / "mylib"
    project.mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "My_Lib"\nversion = "1.0"\n')
    w = tmp_path / "w"
    w.mkdir()
    for name in ("fx_src-0.9.0.tar.gz", "fx_core-1.0.0-py3-none-any.whl"):
        (w / name).touch()
    (tmp_path / "fx_core-1.0.0-py3-none-any.whl").touch()
    text = f"{w}/fx_src-0.9.0.tar.gz\n{w}/fx_core-1.0.0-py3-none-any.whl\n./libs/mylib\nhttps://h/p/fx_app-1.0.zip\n"
    assert tstrs(specs.parse_requirements_txt(text)) == [
        f"pypi::fx-src@{w.as_uri()}/fx_src-0.9.0.tar.gz",
        f"pypi::fx-core@{w.as_uri()}/fx_core-1.0.0-py3-none-any.whl",
        f"pypi::My_Lib@{project.as_uri()}",  # relative to the current directory, as pip reads it
        "pypi::fx-app@https://h/p/fx_app-1.0.zip",
    ]
    (req,) = specs.parse_requirements_txt("fx-core @ ./fx_core-1.0.0-py3-none-any.whl").requirements
    assert req.url == (tmp_path / "fx_core-1.0.0-py3-none-any.whl").as_uri()


def test_a_local_path_not_here_is_refused_naming_where_it_is_written(tmp_path: Path) -> None:
    """In an environment.yml's dependencies and a project's (poetry's too), as in a requirements file."""
    (tmp_path / "environment.yml").write_text(
        "dependencies:\n  - fx-core\n  - ./dist/fx_app-1.0-py3-none-any.whl\n"
    )
    with pytest.raises(SpecError) as err:
        specs.load(tmp_path / "environment.yml")
    assert err.value.message.endswith(
        f"names {tmp_path}/dist/fx_app-1.0-py3-none-any.whl, which does not exist on this machine (line 3 of "
        f"{tmp_path}/environment.yml). Correct the path (a relative one is read from the folder of "
        f"{tmp_path}/environment.yml)."
    )
    for table in (
        '[project]\ndependencies = ["fx-app @ ./gone"]',
        '[tool.poetry.dependencies]\nfx-app = {path = "gone"}',
    ):
        (tmp_path / "pyproject.toml").write_text(table + "\n")
        with pytest.raises(SpecError) as err:
            specs.load(tmp_path / "pyproject.toml")
        assert err.value.message.startswith(
            f"fx-app @ {tmp_path.as_uri()}/gone names {tmp_path}/gone, which does not"
        )
        assert err.value.message.endswith(
            "Correct the path (a relative one is read from the project's folder)."
        )


def test_a_pip_freeze_line_naming_a_path_not_here_is_refused_with_the_fix() -> None:
    """``pip freeze`` in a conda environment writes ``NAME @ file:///home/conda/feedstock_root/...`` for what
    conda installed; the resolver only said "Distribution not found", without the file or line."""
    line = "certifi @ file:///home/conda/feedstock_root/build_artifacts/certifi_1690/work/certifi"
    with pytest.raises(SpecError) as err:
        specs.parse_requirements_txt(f"fx-core==1.0\n{line}\n", "frozen.txt")
    assert err.value.message == (
        f"{line} names /home/conda/feedstock_root/build_artifacts/certifi_1690/work/certifi, which does not exist "
        "on this machine (line 2 of frozen.txt). pip freeze writes such lines for packages conda or a build "
        "installed: write certifi==VERSION instead (pip list --format=freeze prints them so), or correct the path."
    )
    with pytest.raises(SpecError, match=r"entry 1 of the pip section of env\.yml"):
        specs.parse_environment_yml(f"dependencies:\n  - pip:\n    - {line}\n", "env.yml")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("./nothing/here", "/nothing/here does not exist"),
        ("./", "has no [project].name in a pyproject.toml"),
        ("/w/not-a-wheel.whl", "is not the file name of a wheel"),
        ("https://u:pw@h/p/fx_app-1.0.zip", "carries credentials"),
        ("fx-app @ https://h/p/fx_app-1.0.zip?token=abc", "carries credentials"),
        ("fx-core===", "=== has no version"),
        ("fx-core===abc", "'abc' is not a version"),
        ("fx-core @ https://", "is not a URL with a host"),
    ],
)
def test_bad_direct_references_and_specifiers_name_the_line(line: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        specs.parse_requirements_txt(f"fx-http\n{line}\n", "reqs.txt")
    assert message in caught.value.message and "(line 2 of reqs.txt)" in caught.value.message
    assert ":pw@" not in caught.value.message and "token=abc" not in caught.value.message


@pytest.mark.parametrize(
    "key",
    ["file:///tmp/x/chan2::fx-core", "https://conda.example.com/a/chan::fx-core", "http://h:8080/c::fx-core"],
)
def test_a_url_channel_qualifies_a_package(key: str) -> None:
    channel = key.rpartition("::")[0]
    expected = [f"conda::{key}==>=1"]
    assert tstrs(specs.from_command_line(conda=[f"{key}>=1"])) == expected
    assert tstrs(specs.parse_environment_yml(f"dependencies:\n  - {key}>=1\n")) == expected
    assert tstrs(specs.from_decorator(libraries={key: ">=1"})) == expected
    assert tstrs(specs.parse_requirements_txt(f"--conda-pkg {key}>=1")) == [f"npconda::{key}==>=1"]
    assert specs.match_spec(specs.from_command_line(conda=[key]).requirements[0], channel) == key


def test_a_url_channel_with_credentials_keeps_them_out_of_the_requirement() -> None:
    spec = specs.parse_environment_yml("dependencies:\n  - https://bob:pw@conda.example.com/chan::fx-core\n")
    assert tstrs(spec) == ["conda::https://conda.example.com/chan::fx-core"]
    assert spec.sources["conda"] == (
        "https://bob:pw@conda.example.com/chan",
    )  # for the resolver's credentials
    with pytest.raises(SpecError, match="is not a conda channel"):
        specs.from_command_line(conda=["htp:/x::fx-core"])


def test_find_links_credentials_go_with_the_request_and_not_into_its_options(tmp_path: Path) -> None:
    """The options enter ids and descriptions: a find-links URL's user:password@ is kept apart, as an
    index's is (its resolver gets them through the request's credentials)."""
    spec = specs.parse_requirements_txt("-f https://bob:pw9@wheels.example/x/\nfx-web\n", "r.txt")
    config = Config.load(environ={"METAFLOW_HOME": str(tmp_path)})
    request = resolve.build_request(spec, config, "linux-64")
    assert request.extras == {"pypi": ("--find-links https://wheels.example/x/",)}
    assert request.credentials == {"wheels.example": ("bob", "pw9")}
    assert "pw9" not in repr(request)


@pytest.mark.parametrize(
    "text",
    [
        "--extra-index-url https://h.example/simple?token=T0KEN-42\nx\n",
        "--find-links https://h.example/w/?X-Amz-Signature=T0KEN-42\nx\n",
        "-f https://h.example/w/?a=1&api_key=T0KEN-42\nx\n",
    ],
)
def test_a_url_with_a_secret_in_its_query_is_refused_without_showing_it(text: str) -> None:
    """A secret in a query cannot be kept apart from the URL as user:password@ is: refused, masked."""
    with pytest.raises(SpecError) as info:
        specs.parse_requirements_txt(text, "r.txt")
    message = info.value.message
    assert "T0KEN-42" not in message and "carries a secret in its query" in message
    assert "(line 1 of r.txt)" in message and "user:password@" in message
    assert specs.parse_requirements_txt("-f https://h.example/w/?page=2\nx\n", "r.txt").extras


@pytest.mark.parametrize(
    ("where", "given"),
    [
        ("in --channel", {"channels": ["https://h.example/chan?token=T0KEN-42"]}),
        ("in --conda", {"conda": ["https://h.example/chan?api_key=T0KEN-42::fx-core"]}),
    ],
)
def test_a_channel_with_a_secret_in_its_query_is_refused_without_showing_it(
    where: str, given: dict[str, list[str]]
) -> None:
    """Before, it was stored in the environment's sources (its description in the store, the local record, the
    req id) and printed by show and resolve, as written."""
    with pytest.raises(SpecError) as info:
        specs.from_command_line(**given)
    message = info.value.message
    assert "T0KEN-42" not in message and "carries a secret in its query" in message and where in message
    assert specs.from_command_line(channels=["https://h.example/chan?page=2"]).sources  # not a secret


def test_a_configured_channel_with_a_secret_in_its_query_is_refused(tmp_path: Path) -> None:
    config = Config.load(
        environ={"METAFLOW_HOME": str(tmp_path), "METAFLOW_CONDA_CHANNELS": "https://h.example/c?sig=T0K"}
    )
    with pytest.raises(SpecError) as info:
        resolve.build_request(specs.from_command_line(conda=["fx-core"]), config, "linux-64")
    assert "T0K" not in info.value.message and "(in METAFLOW_CONDA_CHANNELS" in info.value.message


def test_a_configured_index_with_a_secret_in_its_query_is_refused(tmp_path: Path) -> None:
    environ = {
        "METAFLOW_HOME": str(tmp_path),
        "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": "https://h.example/s?token=T0K",
    }
    with pytest.raises(SpecError) as info:
        resolve.build_request(specs.from_command_line(pypi=["x"]), Config.load(environ=environ), "linux-64")
    assert "T0K" not in info.value.message and "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE" in info.value.message


def test_nodefaults_is_not_a_channel_but_a_request() -> None:
    spec = specs.parse_environment_yml("channels:\n  - bioconda\n  - nodefaults\ndependencies: [fx-core]\n")
    assert spec.sources == {"conda": ("bioconda",)} and spec.nodefaults
    assert not specs.parse_environment_yml("channels: [bioconda]\n").nodefaults
    assert specs.from_decorator(channels=["nodefaults"]).sources == {}
    assert specs.from_decorator(channels=["nodefaults"]).nodefaults
    assert specs.merge(spec, specs.from_decorator()).nodefaults


PLAIN_AND_NOT = [
    "fx-web",
    "pandas>=2.1",
    "Foo_Bar.baz [a, b] >= 1.0, <2",
    "x==1.*",
    "x===abc",
    "x ~= 1.4.2",
    "a[b]",
    "x[]",
    "x[ ]>1",
    "x!=1.0,>=0.9",
    "x==1.0.0+local",
    "x>=1.0,",  # an empty part: SpecifierSet takes it, a requirement does not
    "x>=1.0 extra",
    "x>=",
    "x (>=1)",
    'x; python_version<"3"',
    "x[a]; sys_platform == 'linux'",
    "x @ https://example.invalid/x-1.0-py3-none-any.whl",
    "-x",
    "x_",
    "x[a,]",
    "x==1.0 ; os_name=='posix'",
    "x<=1.0.post1.dev2",
    "x==1.0,,<2",
    "x == v1.0",
    "x[a b]",
]


@pytest.mark.parametrize("text", PLAIN_AND_NOT)
def test_plain_requirements_read_without_packaging_requirements_read_as_packaging_reads_them(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast reading of plain requirements (name, extras, specifiers) gives what packaging's Requirement
    gives, or hands the text to it (which also words the errors)."""
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as Pep508
    from packaging.specifiers import SpecifierSet

    try:
        expected: object = Pep508(text)
    except InvalidRequirement:
        expected = None
    fast = specs._plain_pep508(text)
    if fast is None:
        return  # packaging reads it (tested through pypi_requirement everywhere else)
    assert isinstance(expected, Pep508), f"{text!r} read as plain, but packaging rejects it"
    assert (fast.name, set(fast.extras), fast.specifier or SpecifierSet(), fast.marker, fast.url) == (
        expected.name,
        expected.extras,
        expected.specifier,
        None,
        None,
    )

    def read() -> object:
        try:
            return specs.pypi_requirement(text, "here")
        except SpecError as exc:
            return str(exc)

    fast_outcome = read()
    monkeypatch.setattr(specs, "_plain_pep508", lambda _: None)
    assert fast_outcome == read()


# --- files as their tools read them: repeated keys, exported files, paths beside the file, poetry's tables ----


def test_a_key_given_twice_in_an_environment_yml_is_an_error_naming_its_line() -> None:
    for text, key in (
        ("dependencies:\n  - fx-core=1.0\ndependencies:\n  - fx-web\n", "dependencies"),
        ("channels: [a]\ndependencies: [fx-core]\nchannels: [b]\n", "channels"),
    ):
        with pytest.raises(SpecError) as err:
            specs.parse_environment_yml(text, "env.yml")
        assert f"the key {key!r} is given twice (line 3, column 1 of env.yml)" in err.value.message
    merged = "base: &b\n  x: 1\nother:\n  <<: *b\n  x: 2\ndependencies: [fx-core]\n"  # a merge key may be overridden
    assert tstrs(specs.parse_environment_yml(merged)) == ["conda::fx-core"]


def test_an_alias_in_an_environment_yml_is_refused_at_once_but_as_a_merge_key() -> None:
    """Nested aliases ("billion laughs") would expand a small file into an error of megabytes: refused, fast."""
    import time

    lines = ["a: &a [fx-core, fx-core, fx-core, fx-core, fx-core, fx-core, fx-core, fx-core, fx-core]"]
    lines += [f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefg", "bcdefgh", strict=True)]
    started = time.monotonic()
    with pytest.raises(SpecError) as err:
        specs.parse_environment_yml("\n".join([*lines, "dependencies: *h"]), "laughs.yml")
    assert time.monotonic() - started < 1
    assert err.value.message == (
        "laughs.yml is refused: it uses the YAML alias *a, which envcore expands only as a merge key's value "
        "(<<: *name) (line 2, column 8 of laughs.yml). Write the value out where the alias is."
    )


def test_a_value_repeated_in_an_error_is_bounded(tmp_path: Path) -> None:
    """A long line, dependency or option value is quoted by its start and its length; a file with NUL
    characters (/proc/self/environ) is not quoted at all."""
    long_line = "numpy @@@ " + "y" * 3000
    (tmp_path / "long.txt").write_text(long_line + "\n")
    with pytest.raises(SpecError) as err:
        specs.load(tmp_path / "long.txt")
    assert f"Could not parse {long_line[:100]!r}... (3010 characters): Expected" in err.value.message
    with pytest.raises(SpecError) as err:
        specs.parse_environment_yml(f"dependencies:\n  - {{x: {'z' * 3000}}}\n", "env.yml")
    assert len(err.value.message) < 400 and "characters) is not understood" in err.value.message
    (tmp_path / "environ").write_bytes(b"PATH=/bin\nSECRET=hunter2\x00HOME=/root")
    with pytest.raises(SpecError) as err:
        specs.load(tmp_path / "environ")
    assert err.value.message == (
        f"{tmp_path / 'environ'} is not a text file (it holds a NUL character on line 2). Check that it is the "
        "file you meant."
    )


def test_a_long_value_is_redacted_before_it_is_cut() -> None:
    from envcore.errors import echoed

    url = f"https://{'u' * 90}:hunter2@h/{'p' * 200}"  # cut at 100 characters, its password would remain
    assert echoed(url) == f"{'https://h/' + 'p' * 90!r}... (210 characters)"


def test_an_exported_environment_yml_pins_python_and_drops_its_build_with_a_warning() -> None:
    spec = specs.parse_environment_yml("dependencies:\n  - python=3.11.7=h0_cpython\n  - fx-core=1.0=py_0\n")
    assert spec.python == "3.11.7" and tstrs(spec) == ["conda::fx-core==1.0 py_0"]
    assert any("The build h0_cpython of python" in w for w in spec.warnings)


def test_python_twice_in_an_environment_yml_is_an_error_even_without_a_version() -> None:
    with pytest.raises(SpecError, match="Python versions specified multiple times"):
        specs.parse_environment_yml("dependencies:\n  - python\n  - python=3.11\n")


def test_a_yaml_boolean_dependency_is_named_as_one() -> None:
    with pytest.raises(SpecError, match="The dependency True is a boolean"):
        specs.parse_environment_yml("dependencies:\n  - on\n")


def test_the_defaults_channel_means_the_configured_channels(tmp_path: Path) -> None:
    spec = specs.parse_environment_yml("channels: [bioconda, defaults]\ndependencies: [fx-core]\n")
    assert spec.sources == {"conda": ("bioconda",)} and not spec.nodefaults
    config = Config.load(environ={"METAFLOW_HOME": str(tmp_path / "mf"), "METAFLOW_CONDA_CHANNELS": "c"})
    assert resolve.build_request(spec, config, "linux-64").sources["conda"] == ("bioconda", "c")
    only_nodefaults = specs.parse_environment_yml(
        "channels: [nodefaults]\ndependencies: [fx-core]\n", "n.yml"
    )
    with pytest.raises(SpecError) as err:
        resolve.build_request(only_nodefaults, config, "linux-64")
    assert "The channels of the environment file n.yml are only nodefaults" in err.value.message


@pytest.mark.parametrize("marker", ['platform_release >= "5"', 'platform_version == "#1 SMP"'])
def test_a_marker_on_the_machines_kernel_is_refused(marker: str) -> None:
    with pytest.raises(SpecError) as err:
        specs.parse_requirements_txt(f"fx-core; {marker}\n", "r.txt")
    assert "a locked environment cannot know" in err.value.message and "line 1 of r.txt" in err.value.message


@pytest.mark.parametrize(
    ("line", "flag_or_source"),
    [
        ("--extra-index-url\thttps://x.example/simple", "https://x.example/simple"),
        ("--extra-index-url=https://x.example/simple", "https://x.example/simple"),
        ("-fhttps://x.example/links", "--find-links https://x.example/links"),
        ("-f https://x.example/links", "--find-links https://x.example/links"),
    ],
)
def test_option_lines_are_split_as_pip_splits_them(line: str, flag_or_source: str) -> None:
    spec = specs.parse_requirements_txt(f"{line}\nfx-core\n")
    assert flag_or_source in (*spec.sources.get(PYPI, ()), *spec.extras.get(PYPI, ()))


@pytest.mark.parametrize("line", ["--extra-index-url", "-f", "--conda-pkg ", "--find-links="])
def test_an_option_without_its_value_says_so(line: str) -> None:
    with pytest.raises(SpecError, match=r"has no value \(line 1 of requirements.txt\)"):
        specs.parse_requirements_txt(f"{line}\nfx-core\n")


def test_relative_paths_are_read_as_pip_and_conda_read_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "wheels").mkdir(parents=True)
    (project / "mine").mkdir()
    (project / "mine" / "pyproject.toml").write_text('[project]\nname = "mine"\n')
    elsewhere.mkdir()
    (project / "requirements.txt").write_text("--find-links ./wheels\n--find-links ./nowhere\nfx-core\n")
    (project / "environment.yml").write_text("dependencies:\n  - pip:\n    - ./mine\n")
    monkeypatch.chdir(elsewhere)
    flags = specs.load(Path("../project/requirements.txt")).extras[PYPI]
    # beside the file when it is there (pip), else from the current directory; written absolute either way
    assert flags == (f"--find-links {project / 'wheels'}", f"--find-links {elsewhere / 'nowhere'}")
    (mine,) = specs.load(
        Path("../project/environment.yml")
    ).requirements  # conda runs pip in the file's folder
    assert (mine.name, mine.url) == ("mine", (project / "mine").as_uri())


POETRY_PROJECT = """
[tool.poetry.dependencies]
python = "^3.10"
fx-core = "^1.0"
fx-src = {git = "https://github.com/org/fx-src.git", tag = "v1"}
fx-ssh = {git = "git@github.com:org/fx-ssh.git", branch = "main", subdirectory = "pkg"}
fx-local = {path = "../fx-local", develop = true}
fx-x = {url = "https://h.example/fx_x-1.0-py3-none-any.whl"}
fx-http = {version = "^1.0", optional = true}
fx-win = {version = "*", markers = "sys_platform == 'win32'"}
fx-old = {version = "^1.0", python = "<3.8"}
fx-both = {version = "^1.0", python = "~2.7 || ^3.9", platform = "linux"}
fx-p = {version = "^1.0", source = "private"}

[tool.poetry.extras]
http = ["fx-http"]
"""


def test_poetry_dependency_tables_keep_what_each_key_says(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "fx-local").mkdir()
    (tmp_path / "app" / "pyproject.toml").write_text(POETRY_PROJECT)
    spec = specs.load(tmp_path / "app" / "pyproject.toml")
    found = {r.name: (r.spec, r.url, r.marker) for r in spec.requirements}
    assert found == {
        "fx-core": ("<2,>=1.0", None, None),
        "fx-src": ("", "git+https://github.com/org/fx-src.git@v1", None),
        "fx-ssh": ("", "git+ssh://git@github.com/org/fx-ssh.git@main#subdirectory=pkg", None),
        "fx-local": ("", (tmp_path / "fx-local").as_uri(), None),
        "fx-x": ("", "https://h.example/fx_x-1.0-py3-none-any.whl", None),
        "fx-win": ("", None, 'sys_platform == "win32"'),  # as packaging writes markers
        "fx-old": ("<2,>=1.0", None, 'python_version < "3.8"'),
        "fx-both": (
            "<2,>=1.0",
            None,
            '((python_version >= "2.7" and python_version < "2.8") or (python_version >= "3.9" and '
            'python_version < "4")) and sys_platform == "linux"',
        ),
        "fx-p": ("<2,>=1.0", None, None),
    }  # fx-http is optional: only with its extra
    assert spec.python == ">=3.10,<4"
    assert any("fx-p names the poetry source 'private'" in w for w in spec.warnings)
    with_extra = specs.load(tmp_path / "app" / "pyproject.toml", extras=["http"])
    assert [r.name for r in with_extra.requirements][-1] == "fx-http"
    assert specs.applicable(spec.requirements, python_version="3.11.7", arch="linux-64")  # markers evaluate


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            'fx = [{version = "^1", python = "<3.8"}, {version = "^2", python = ">=3.8"}]',
            "has several constraints",
        ),
        ('fx = {version = "^1", colour = "red"}', "has the key 'colour', which envcore does not read"),
        ('fx = {git = "https://h/r.git", tag = "v1", branch = "main"}', "names more than one of tag, branch"),
    ],
)
def test_poetry_entries_envcore_cannot_keep_are_refused(entry: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        specs.parse_pyproject(f"[tool.poetry.dependencies]\n{entry}\n")


def test_uv_sources_and_explicit_indexes_are_not_silently_misread() -> None:
    spec = specs.parse_pyproject(
        '[project]\ndependencies = ["fx-core", "fx-web"]\n[[tool.uv.index]]\nname = "x"\n'
        'url = "https://x.example/simple"\nexplicit = true\n[tool.uv.sources]\nfx-web = {git = "https://h/w"}\n'
    )
    assert spec.sources == {"pypi": ("https://x.example/simple",)}
    assert any("The index 'x' of [[tool.uv.index]]" in w and "explicit" in w for w in spec.warnings)
    assert any("[tool.uv.sources] of pyproject.toml is not read" in w for w in spec.warnings)


def test_a_decorator_version_with_a_build_reads_as_in_an_environment_yml() -> None:
    spec = specs.from_decorator(libraries={"fx-core": "1.0=py_0", "fx-web": "==2.0=py_1"})
    assert [r.spec for r in spec.requirements] == ["1.0 py_0", "2.0 py_1"]
    assert tstrs(spec) == ["conda::fx-core==1.0=py_0", "conda::fx-web====2.0=py_1"]  # hashed as written


@pytest.mark.parametrize("entry", ["fx-app==", "fx-app=", "fx-app >="])
def test_an_operator_without_a_version_is_refused(entry: str) -> None:
    with pytest.raises(SpecError, match="is not a conda version constraint"):
        specs.from_command_line(conda=[entry])
    with pytest.raises(SpecError, match="without a version"):
        specs.from_decorator(libraries={"fx-app": entry.removeprefix("fx-app").strip()})


def test_a_package_on_two_lines_of_a_file_gets_both_constraints_as_on_the_command_line() -> None:
    lines = specs.parse_requirements_txt("fx-extras>=1\nfx-web\nfx-extras<3\n")
    assert tstrs(lines) == tstrs(specs.from_command_line(pypi=["fx-extras>=1", "fx-web", "fx-extras<3"]))
    assert tstrs(lines) == ["pypi::fx-extras==>=1,<3", "pypi::fx-web"]
    yml = specs.parse_environment_yml("dependencies:\n  - fx-core>=1\n  - fx-core<3\n")
    assert tstrs(yml) == ["conda::fx-core==>=1,<3"]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("requirements.txt", "# nothing yet\n"),
        ("environment.yml", ""),
        ("pyproject.toml", "[build-system]\n"),
    ],
)
def test_a_file_naming_no_packages_says_so(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    assert f"{tmp_path / name} names no packages" in " ".join(specs.load(tmp_path / name).warnings)
    (tmp_path / name).write_text("python=3.11\n" if name == "requirements.txt" else text)
    if name == "requirements.txt":  # python alone is asked for: no warning
        assert not specs.load(tmp_path / name).warnings


def test_folders_written_as_pip_reads_them_are_local_projects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "pyproject.toml").write_text('[project]\nname = "fx-mine"\n')
    monkeypatch.chdir(tmp_path / "mine")
    for line, folder in ((".", tmp_path / "mine"), ("../mine/", tmp_path / "mine")):
        (req,) = specs.parse_requirements_txt(f"{line}\n").requirements
        assert (req.name, req.url) == ("fx-mine", folder.as_uri())
    monkeypatch.chdir(tmp_path)
    (req,) = specs.parse_requirements_txt("mine/\n").requirements
    assert (req.name, req.url) == ("fx-mine", (tmp_path / "mine").as_uri())


def test_an_environment_yml_dependency_error_names_its_line() -> None:
    with pytest.raises(SpecError, match=r"\(line 3 of env.yml\)"):
        specs.parse_environment_yml("dependencies:\n  - fx-core=1.0\n  - fx-web>>2\n", "env.yml")


def test_a_channel_qualified_python_in_an_environment_yml_pins_python() -> None:
    """It was dropped silently: the environment got the default python."""
    spec = specs.parse_environment_yml("dependencies:\n  - conda-forge::python=3.10\n  - fx-core\n")
    assert spec.python == "3.10.*" and tstrs(spec) == ["conda::fx-core"]
    assert any("The channel conda-forge of python" in w for w in spec.warnings)


@pytest.mark.parametrize("link", ["http://[::1", "https://u:hush@[zz]/links"])
def test_a_find_links_url_that_does_not_parse_is_named(link: str) -> None:
    with pytest.raises(SpecError) as err:
        specs.parse_requirements_txt(f"-f {link}\nfx-core\n", "r.txt")
    assert "is not a URL (line 1 of r.txt)" in err.value.message and "hush" not in err.value.message


def test_a_configured_channel_that_does_not_parse_is_named(tmp_path: Path) -> None:
    config = Config.load(
        environ={"METAFLOW_HOME": str(tmp_path / "mf"), "METAFLOW_CONDA_CHANNELS": "http://[::1"}
    )
    with pytest.raises(SpecError, match="is not a conda channel \\(in METAFLOW_CONDA_CHANNELS"):
        resolve.build_request(specs.from_command_line(conda=["fx-core"]), config, "linux-64")


def test_poetry_platforms_urls_and_what_is_not_kept() -> None:
    spec = specs.parse_pyproject(
        "[tool.poetry.dependencies]\n"
        'a = {version = "*", platform = "!=win32"}\n'
        'b = {version = "*", platform = "linux || darwin"}\n'
        'c = {url = "https://h.example/c-1.0.tar.gz", subdirectory = "pkg"}\n'
        'd = {git = "https://h.example/d.git", version = "1.0"}\n'
        'e = {version = "^1", allow-prereleases = true}\n'
        'f = ">=1 <2"\n'
    )
    found = {r.name: (r.spec, r.url, r.marker) for r in spec.requirements}
    assert found["a"][2] == 'sys_platform != "win32"'
    assert found["b"][2] == 'sys_platform == "linux" or sys_platform == "darwin"'
    assert found["c"][1] == "https://h.example/c-1.0.tar.gz#subdirectory=pkg"
    assert found["f"][0] == "<2,>=1"  # poetry's space is a comma
    assert [w.split(" (")[0] for w in spec.warnings] == ["version of d", "allow-prereleases of e"]
    with pytest.raises(SpecError, match=r"is an alternative \(\|\|\)"):
        specs.parse_pyproject('[tool.poetry.dependencies]\ng = ">=1 || <0.5"\n')


def test_two_options_on_one_line_are_refused_rather_than_glued() -> None:
    """`--extra-index-url URL --pre` gave the index 'URL --pre' and lost --pre."""
    with pytest.raises(SpecError, match=r"more than one value .* Write each option on a line of its own"):
        specs.parse_requirements_txt("--extra-index-url https://h.example/simple --pre\nfx-core\n")
    spec = specs.parse_requirements_txt("--conda-pkg fx-core 1.0 py_0\n")  # (a conda package's own spaces)
    assert tstrs(spec) == ["npconda::fx-core==1.0 py_0"]


def test_pypi_names_are_combined_as_pep_503_compares_them() -> None:
    assert tstrs(specs.parse_requirements_txt("FX_Core>=1\nfx.core<2.1\n")) == ["pypi::FX_Core==>=1,<2.1"]


def test_a_direct_reference_hash_is_checked_against_the_locked_file() -> None:
    """`NAME @ URL#sha256=...` was accepted with any hash (pip refuses a mismatch)."""
    from envcore.errors import ResolutionError
    from envcore.types import LockedPackage, PackageFile, PackageKind, ResolveRequest

    url = "https://h.example/fx_core-2.0.0-py3-none-any.whl"
    locked = LockedPackage(
        kind=PackageKind.PYPI,
        name="fx-core",
        version="2.0.0",
        filename="fx_core-2.0.0-py3-none-any",
        files=(PackageFile(url_format=".whl", url=url, sha256="ab" * 32),),
    )
    for given, ok in (("ab" * 32, True), ("AB" * 32, True), ("00" * 32, False)):
        (req,) = specs.from_command_line(pypi=[f"fx-core @ {url}#sha256={given}"]).requirements
        request = ResolveRequest(arch="linux-64", requirements=(req,))
        if ok:
            resolve._check_reference_hashes(request, [locked])
        else:
            with pytest.raises(ResolutionError, match=r"not the 0+ its URL gives"):
                resolve._check_reference_hashes(request, [locked])


def test_paths_take_extras_and_markers_as_pip_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "pyproject.toml").write_text('[project]\nname = "fx-mine"\n')
    monkeypatch.chdir(tmp_path)
    text = './mine[a,b] ; sys_platform == "linux"\nmine/ ; python_version > "3"\n'
    first, second = specs.parse_requirements_txt(text).requirements
    assert (first.name, first.extras, first.url, first.marker) == (
        "fx-mine",
        ("a", "b"),
        (tmp_path / "mine").as_uri(),
        'sys_platform == "linux"',
    )
    assert (second.url, second.marker) == ((tmp_path / "mine").as_uri(), 'python_version > "3"')


def test_poetrys_legacy_dev_dependencies_are_the_group_dev() -> None:
    text = '[tool.poetry.dependencies]\nfx-core = "^1"\n[tool.poetry.dev-dependencies]\nfx-web = "*"\n'
    assert tstrs(specs.parse_pyproject(text)) == ["pypi::fx-core==<2,>=1"]
    assert tstrs(specs.parse_pyproject(text, groups=["dev"])) == ["pypi::fx-core==<2,>=1", "pypi::fx-web"]


def test_archs_resolved_together_share_one_set_of_virtual_packages_at_the_lowest_versions(
    tmp_path: Path,
) -> None:
    defaults = {"linux-64": {"__glibc": "2.36"}, "linux-aarch64": {"__glibc": "2.28", "__cuda": "11.8"}}
    config = Config.load(
        environ={
            "METAFLOW_HOME": str(tmp_path / "mf"),
            "METAFLOW_CONDA_CHANNELS": "c",
            "CONDA_OVERRIDE_GLIBC": "2.36",  # this machine's, if it is one of the two
            "CONDA_OVERRIDE_CUDA": "12.4",
            "METAFLOW_CONDA_SYS_DEFAULT_PACKAGES": json.dumps(defaults),
        }
    )
    spec = specs.from_command_line(conda=["fx-core"])
    archs = ("linux-64", "linux-aarch64", "osx-arm64")
    seen = {
        tuple(r.tstr for r in resolve.build_request(spec, config, arch, coresolved=together).of(SYS))
        for together in (archs, archs[::-1], archs[1:] + archs[:1])
        for arch in archs
    }
    assert seen == {("sys::__cuda==11.8=0", "sys::__glibc==2.28=0")}
    # one arch alone keeps its own
    alone = resolve.build_request(spec, config, "linux-64").of(SYS)
    assert "2.36=0" in {r.spec for r in alone}
    # the user's own win everywhere
    asked = specs.merge(spec, specs.from_decorator(sys_packages={"__glibc": "2.17"}))
    for arch in archs:
        request = resolve.build_request(asked, config, arch, coresolved=archs)
        assert [r.spec for r in request.of(SYS) if r.name == "__glibc"] == ["2.17=0"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, {}),
        ({"__cuda": "12.2"}, {"__cuda": "12.2"}),  # the original's form
        ({"__cuda": 12}, {"__cuda": "12"}),
        ({"linux-64": {"__cuda": "12.2"}, "osx-arm64": {}}, {"__cuda": "12.2"}),  # one per arch
        ({"linux-aarch64": {"__cuda": "12.2"}}, {}),
        ({"__nope": "1"}, None),
        ({"__cuda": ["12"]}, None),
        ({"__cuda": True}, None),
        (["__cuda"], None),
        ({"__cuda": "abc"}, None),  # a version --sys-pkg refuses
        ({"linux-64": 5}, None),
        ({"linux-64": {"__cuda": "12.2"}, "bogus": {}}, None),
    ],
)
def test_gpu_packages_take_the_originals_form_or_one_per_arch(
    tmp_path: Path, value: object, expected: dict[str, str] | None
) -> None:
    from envcore.errors import ConfigError

    environ = {"METAFLOW_HOME": str(tmp_path), "METAFLOW_CONDA_SYS_DEFAULT_GPU_PACKAGES": json.dumps(value)}
    config = Config.load(environ=environ)
    if expected is None:
        with pytest.raises(
            ConfigError,
            match=r"METAFLOW_CONDA_SYS_DEFAULT_GPU_PACKAGES` is .* (Set it to a map of __cuda or __glibc|expected a JSON dict)",
        ):
            resolve.gpu_packages(config, "linux-64")
    else:
        assert resolve.gpu_packages(config, "linux-64") == expected


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        (  # as --sys-pkg __glibc==abc is refused
            "CONDA_SYS_DEFAULT_PACKAGES",
            {"linux-aarch64": {"__glibc": "abc"}},
            r"System package '__glibc' has the version 'abc', which is not one \(in "
            r"METAFLOW_CONDA_SYS_DEFAULT_PACKAGES for linux-aarch64\)",
        ),
        (  # was dropped
            "CONDA_SYS_DEFAULT_PACKAGES",
            {"linux-aarch64": {"__nope": "1"}},
            r"System package '__nope' not allowed .* Values allowed are: __cuda, __glibc",
        ),
        ("CONDA_SYS_DEFAULT_PACKAGES", {"linux-aarch64": {"__glibc": True}}, "a version that is not text"),
        ("CONDA_SYS_DEFAULT_PACKAGES", {"linux-aarch64": 5}, "for linux-aarch64 is not a map"),
        ("CONDA_SYS_DEFAULT_PACKAGES", {"bogus": {}}, "names 'bogus', not a conda subdir"),
        ("CONDA_SYS_DEFAULT_GPU_PACKAGES", {"linux-64": 5}, "for linux-64 is not a map"),
        ("CONDA_SYS_MARKERS", {"linux-64": 3}, "for linux-64 is not a map of marker names to text"),
        ("CONDA_SYS_MARKERS", {"linux-64": {"platform_cpu": "x"}}, "for linux-64 is not a map"),
        ("CONDA_ALL_ARCHS", ["bogus"], r"must list conda subdirs \(linux-64, "),
    ],
)
def test_settings_about_targets_are_refused_when_bad_whatever_the_target(
    tmp_path: Path, setting: str, value: object, message: str
) -> None:
    """Checked on every resolve, for any target (linux-64 here, the arch of none of the values): a bad value
    is never stored in an environment nor silently dropped."""
    from envcore.errors import ConfigError

    environ = {
        "METAFLOW_HOME": str(tmp_path),
        "METAFLOW_CONDA_CHANNELS": "c",
        f"METAFLOW_{setting}": json.dumps(value),
    }
    spec = specs.from_command_line(conda=["fx-core"])
    with pytest.raises(ConfigError, match=rf"^`METAFLOW_{setting}` is .*{message}.* such as "):
        resolve.build_request(spec, Config.load(environ=environ), "osx-arm64")


def test_good_settings_about_targets_are_taken(tmp_path: Path) -> None:
    environ = {
        "METAFLOW_HOME": str(tmp_path),
        "METAFLOW_CONDA_CHANNELS": "c",
        "METAFLOW_CONDA_SYS_DEFAULT_PACKAGES": json.dumps(
            {"linux-aarch64": {"__glibc": "==2.28", "__cuda": 12}}
        ),
        "METAFLOW_CONDA_SYS_MARKERS": json.dumps({"linux-64": {"platform_machine": "x86_64"}}),
        "METAFLOW_CONDA_ALL_ARCHS": json.dumps(["linux-64", "osx-arm64"]),
    }
    request = resolve.build_request(
        specs.from_command_line(conda=["fx-core"]), Config.load(environ=environ), "linux-aarch64"
    )
    assert [r.tstr for r in request.of(SYS)] == ["sys::__cuda==12=0", "sys::__glibc==2.28=0"]


@pytest.mark.parametrize(
    "reason",
    [
        "fx-native * *cuda* cannot be installed because fx-native 1.0.0 would require __cuda >=12, for which no "
        "candidates were found",  # rattler
        "nothing provides __cuda >=12 needed by fx-native-1.0.0-h1_cuda12",  # libsolv
        "fx-native 1.0.0 requires __cuda >=12, which is missing on the system",  # libmamba 2
    ],
)
def test_an_unmet_virtual_package_is_a_feature_of_the_target_to_declare(reason: str) -> None:
    foreign = "linux-aarch64" if resolve.local_arch() != "linux-aarch64" else "linux-64"
    fix = resolve.unmet_system_feature(reason, foreign)
    assert fix is not None and fix.startswith(f"{foreign} is resolved without __cuda at that version")
    assert "--sys-pkg __cuda==12.4" in fix and "@sys_packages" in fix
    assert f'METAFLOW_CONDA_SYS_DEFAULT_PACKAGES ({{"{foreign}": {{"__cuda": "12.4"}}}})' in fix


def test_unmet_osx_and_other_virtual_packages_are_named_and_anything_else_is_not_one() -> None:
    osx = resolve.unmet_system_feature(
        "x 1 would require __osx >=13, for which no candidates were found", "osx-64"
    )
    assert osx == (
        "osx-64 is resolved for macOS 12.0 and newer, as its wheels are (envcore's default; __osx cannot be "
        "declared): choose a version of the package built for it."
    )
    win = resolve.unmet_system_feature("nothing provides __win needed by x-1-0", "linux-64")
    assert win == "The package needs __win, which linux-64 does not provide: choose one built for linux-64."
    assert (
        resolve.unmet_system_feature("nothing provides fx-core >=9 needed by fx-app-1-0", "linux-64") is None
    )


def test_a_conda_explicit_file_is_named_as_such() -> None:
    text = "# platform: linux-64\n@EXPLICIT\nfile:///c/noarch/fx-core-1.0.0-py_0.conda#0123\n"
    for parse in (specs.parse_requirements_txt, specs.parse_environment_yml):
        with pytest.raises(
            SpecError,
            match=r"^explicit\.txt is a conda explicit file \(@EXPLICIT\).*Give it with --explicit FILE",
        ):
            parse(text, "explicit.txt")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("fx-core[version='>=1.0,<2']", ("conda::fx-core==>=1.0,<2", "fx-core >=1.0,<2")),
        ('fx-core[version="1.0.*", build=py_0]', ("conda::fx-core==1.0.* py_0", "fx-core 1.0.* py_0")),
        ("fx-app[build=py_0]", ("conda::fx-app==* py_0", "fx-app * py_0")),
        ("fx-core[version=2.0.0]", ("conda::fx-core==2.0.0", "fx-core ==2.0.0")),
        ("fx-core [channel=conda-forge]", ("conda::conda-forge::fx-core", "fx-core")),
    ],
)
def test_conda_bracket_form_reads_as_the_plain_one(entry: str, expected: tuple[str, str]) -> None:
    (req,) = specs.from_command_line(conda=[entry]).requirements
    assert (req.tstr, specs.match_spec(req)) == expected
    quoted = entry.replace("'", "''")  # YAML's single-quoted scalar
    (in_a_file,) = specs.parse_environment_yml(f"dependencies:\n  - '{quoted}'\n").requirements
    assert in_a_file.tstr == req.tstr


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("fx-core[md5=abc]", "the key 'md5' is not one envcore reads"),
        ("fx-core >=1[version='2']", "it gives a thing twice"),
        ("fx-core[version='1',,]", "Could not parse the brackets of"),
    ],
)
def test_conda_bracket_form_errors_name_what_is_wrong(entry: str, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        specs.from_command_line(conda=[entry])
