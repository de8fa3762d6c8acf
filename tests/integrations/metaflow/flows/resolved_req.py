"""@resolved_req(use_flow_dir=True): the packages of the compiled requirements.txt next to the flow."""

import sys

from metaflow import FlowSpec, resolved_req, step


@resolved_req(use_flow_dir=True)
class ResolvedReqFlow(FlowSpec):
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
    ResolvedReqFlow()
