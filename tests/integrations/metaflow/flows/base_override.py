"""@conda_base over every step; a step overrides a package, one is disabled, one is undecorated."""

import sys

from metaflow import FlowSpec, conda, conda_base, step


@conda_base(libraries={"fx-core": "1.0.0", "fx-yaml": "5.4.0"})
class BaseOverrideFlow(FlowSpec):
    @step
    def start(self):
        import fx_core
        import fx_yaml

        print(
            f"step=start python={sys.executable} fx-core={fx_core.__version__} fx-yaml={fx_yaml.__version__}"
        )
        self.next(self.override)

    @conda(libraries={"fx-core": "1.1.0"})
    @step
    def override(self):
        import fx_core
        import fx_yaml

        print(f"step=override fx-core={fx_core.__version__} fx-yaml={fx_yaml.__version__}")
        self.next(self.end)

    @conda(disabled=True)
    @step
    def end(self):
        try:
            import fx_core  # noqa: F401

            found = "yes"
        except ImportError:
            found = "no"
        print(f"step=end python={sys.executable} fx-core-importable={found}")


if __name__ == "__main__":
    BaseOverrideFlow()
