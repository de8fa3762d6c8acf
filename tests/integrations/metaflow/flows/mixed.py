"""Mixed: a conda-only binary tool and a PyPI-only package in one step; extras honoured."""

import shutil
import subprocess
import sys

from metaflow import FlowSpec, conda, pypi, step


class MixedFlow(FlowSpec):
    @conda(libraries={"fx-ffmpeg": "6.1.0"})
    @pypi(packages={"fx-extras": "0.4.0"})
    @step
    def start(self):
        import fx_extras

        tool = subprocess.run(["fx-ffmpeg"], capture_output=True, text=True, check=True).stdout.split()
        print(f"step=start python={sys.executable} fx-extras={fx_extras.__version__} tool={tool[1]}")
        print(f"step=start tool_path={shutil.which('fx-ffmpeg')}")
        self.next(self.end)

    @pypi(packages={"fx-core": ">=2"}, extras=["pre"])
    @step
    def end(self):
        import fx_core

        print(f"step=end fx-core={fx_core.__version__}")


if __name__ == "__main__":
    MixedFlow()
