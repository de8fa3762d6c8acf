"""@resolved_uv: every step gets the packages uv.lock pins (copied next to a uv project by the test)."""

import platform
import sys

from metaflow import FlowSpec, resolved_uv, step


@resolved_uv
class ResolvedUvFlow(FlowSpec):
    @step
    def start(self):
        import fx_core
        import fx_web

        print(
            f"step=start python={sys.executable} version={platform.python_version()} "
            f"fx-core={fx_core.__version__} fx-web={fx_web.__version__}"
        )
        self.next(self.end)

    @step
    def end(self):
        import fx_yaml

        print(f"step=end python={sys.executable} fx-pyyaml={fx_yaml.__version__}")


if __name__ == "__main__":
    ResolvedUvFlow()
