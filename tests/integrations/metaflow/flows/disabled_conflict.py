from metaflow import FlowSpec, conda, pypi, step


class DisabledConflictFlow(FlowSpec):
    @pypi(disabled=True)
    @conda(libraries={"fx-core": "2.0.0"})
    @step
    def start(self):
        self.next(self.end)

    @conda(disabled=True)
    @step
    def end(self):
        pass


if __name__ == "__main__":
    DisabledConflictFlow()
