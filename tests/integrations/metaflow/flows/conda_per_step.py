"""Pure conda, a different version of the same package per step (the user guide's first flow)."""

import sys

from metaflow import FlowSpec, conda, step


class CondaPerStepFlow(FlowSpec):
    @conda(libraries={"fx-core": "1.0.0"})
    @step
    def start(self):
        import fx_core

        print(f"step=start python={sys.executable} fx-core={fx_core.__version__}")
        self.next(self.end)

    @conda(libraries={"fx-core": "2.0.0"})
    @step
    def end(self):
        import fx_core

        print(f"step=end python={sys.executable} fx-core={fx_core.__version__}")


if __name__ == "__main__":
    CondaPerStepFlow()
