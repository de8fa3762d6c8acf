"""Named environments: by alias, by pathspec (substituted from the process environment), and extended
with one more package."""

import sys

from metaflow import FlowSpec, conda, named_env, step


class NamedEnvFlow(FlowSpec):
    @named_env(name="team/core-env")
    @step
    def start(self):
        import fx_core

        print(f"step=start python={sys.executable} fx-core={fx_core.__version__}")
        self.next(self.by_pathspec)

    @named_env(pathspec="@{SOURCE_PATHSPEC}")
    @step
    def by_pathspec(self):
        import fx_core

        print(f"step=by_pathspec python={sys.executable} fx-core={fx_core.__version__}")
        self.next(self.end)

    @named_env(name="team/core-env")
    @conda(libraries={"fx-yaml": "6.0.1"})
    @step
    def end(self):
        import fx_core
        import fx_yaml

        print(f"step=end python={sys.executable} fx-core={fx_core.__version__} fx-yaml={fx_yaml.__version__}")


if __name__ == "__main__":
    NamedEnvFlow()
