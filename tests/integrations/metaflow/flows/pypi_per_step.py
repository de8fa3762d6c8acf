"""Pure PyPI, a different version per step."""

import sys

from metaflow import FlowSpec, pypi, step


class PypiPerStepFlow(FlowSpec):
    @pypi(packages={"fx-web": "2.0.0"})
    @step
    def start(self):
        import fx_core
        import fx_web

        print(f"step=start python={sys.executable} fx-web={fx_web.__version__} fx-core={fx_core.__version__}")
        self.next(self.end)

    @pypi(packages={"fx-web": "1.9.0"})
    @step
    def end(self):
        import fx_web

        print(f"step=end python={sys.executable} fx-web={fx_web.__version__}")


if __name__ == "__main__":
    PypiPerStepFlow()
