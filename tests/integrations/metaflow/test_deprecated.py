"""The original's deprecated ``@conda`` / ``@pypi`` arguments still work, with its deprecation notice:
``pip_packages`` are PyPI packages (with ``libraries``, a mixed environment), ``pip_sources`` / ``sources``
extra indices, ``name`` / ``pathspec`` a named environment (``pathspec`` is honoured, which the original did
not do)."""

from __future__ import annotations

import hashlib
import sys
import textwrap
import zipfile
from pathlib import Path

from .conftest import Machine, both, reports, run_id

FLOW = """\
import shutil
import subprocess
import sys

from metaflow import FlowSpec, conda, pip, step


class DeprecatedArgsFlow(FlowSpec):
    @conda(libraries={{"fx-ffmpeg": "6.1.0"}}, pip_packages={{"fx-extras": "0.4.0", "fx-side": ""}},
           pip_sources=[{extra!r}])
    @step
    def start(self):
        import fx_extras
        import fx_side

        tool = subprocess.run(["fx-ffmpeg"], capture_output=True, text=True, check=True).stdout.split()
        print(f"step=start fx-extras={{fx_extras.__version__}} fx-side={{fx_side.__version__}} tool={{tool[1]}}")
        self.next(self.by_name)

    @conda(name="team/core-env")
    @step
    def by_name(self):
        import fx_core

        print(f"step=by_name python={{sys.executable}} fx-core={{fx_core.__version__}}")
        self.next(self.by_pathspec)

    @pip(pathspec="@{{SOURCE_PATHSPEC}}")
    @step
    def by_pathspec(self):
        import fx_core

        print(f"step=by_pathspec fx-core={{fx_core.__version__}}")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    DeprecatedArgsFlow()
"""


def _extra_index(root: Path) -> str:
    """A second PyPI index with one package, ``fx-side``, that the universe's index does not have."""
    wheel = root / "wheels" / "fx_side-1.0.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    info = "fx_side-1.0.0.dist-info"
    files = {
        "fx_side/__init__.py": '__version__ = "1.0.0"\n',
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: fx-side\nVersion: 1.0.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{p},,\n" for p in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    page = root / "simple" / "fx-side"
    page.mkdir(parents=True)
    (page / "index.html").write_text(
        f'<html><body><a href="../../wheels/{wheel.name}#sha256={digest}">{wheel.name}</a></body></html>\n'
    )
    (root / "simple" / "index.html").write_text('<html><body><a href="fx-side/">fx-side</a></body></html>\n')
    return (root / "simple").as_uri() + "/"


def test_deprecated_conda_and_pypi_arguments(machine: Machine, tmp_path: Path) -> None:
    flow = tmp_path / "deprecated_args.py"
    flow.write_text(textwrap.dedent(FLOW.format(extra=_extra_index(tmp_path / "extra"))))
    machine.envcore("resolve", "--conda", "fx-core==1.0.0", "--conda", "requests", "--alias", "team/core-env")
    source = machine.flow("conda_per_step", "run")
    pathspec = f"CondaPerStepFlow/{run_id(both(source))}/end"

    out = machine.run(sys.executable, flow, "--environment=conda", "run", SOURCE_PATHSPEC=pathspec)
    text = both(out)
    seen = reports(text)
    assert seen["start"] == {"fx-extras": "0.4.0", "fx-side": "1.0.0", "tool": "6.1.0"}  # a mixed environment
    assert seen["by_name"]["fx-core"] == "1.0.0"
    assert seen["by_pathspec"]["fx-core"] == "2.0.0"  # the environment `end` of that run ran in
    notices = [
        line[line.index("*DEPRECATED*") :].strip() for line in text.splitlines() if "*DEPRECATED*" in line
    ]
    assert (
        "*DEPRECATED*: Using 'pip_packages, pip_sources' in '@conda' is deprecated. Please use '@pypi' or "
        "'@named_env' instead." in notices
    ), notices
    assert (
        "*DEPRECATED*: Using 'name' in '@conda' is deprecated. Please use '@pypi' or '@named_env' instead."
        in notices
    )
    assert (
        "*DEPRECATED*: Using 'pathspec' in '@pip' is deprecated. Please use 'extra_indices' or '@named_env' "
        "instead." in notices
    )
    assert "*DEPRECATED*: Use '@pypi' instead of '@pip'." in notices
    assert len(notices) == 4, notices  # from the launcher only, not from every task
