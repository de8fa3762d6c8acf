"""@pypi_base from a requirements.txt read by a Metaflow Config with envcore's req_parser (the original's)."""

import sys

from metaflow import Config, FlowSpec, config_expr, pypi_base, req_parser, step


@pypi_base(**config_expr("deps"))
class ConfigParsersFlow(FlowSpec):
    deps = Config("deps", default="requirements.txt", parser=req_parser)

    @step
    def start(self):
        import fx_core
        import fx_web

        print(f"step=start python={sys.executable} fx-core={fx_core.__version__} fx-web={fx_web.__version__}")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ConfigParsersFlow()
