"""No decorator at all: every step still runs in an environment (python + what Metaflow needs)."""

import sys

from metaflow import FlowSpec, step


class UndecoratedFlow(FlowSpec):
    @step
    def start(self):
        import requests

        print(f"step=start python={sys.executable} requests={requests.__version__} prefix={sys.prefix}")
        self.next(self.end)

    @step
    def end(self):
        print(f"step=end python={sys.executable}")


if __name__ == "__main__":
    UndecoratedFlow()
