"""@resolved_uv with a step's own @pypi: refused (the lock says what every step has)."""

from metaflow import FlowSpec, pypi, resolved_uv, step


@resolved_uv
class ResolvedConflictFlow(FlowSpec):
    @pypi(packages={"fx-core": "1.0.0"})
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ResolvedConflictFlow()
