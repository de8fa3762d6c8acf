from metaflow import FlowSpec, conda, named_env, step


class BadStepFlow(FlowSpec):
    @conda(libraries={"fx-core": "1.1.0"})
    @step
    def start(self):
        self.next(self.mid)

    @named_env(name="team/nope")
    @step
    def mid(self):
        self.next(self.end)

    @conda(disabled=True)
    @step
    def end(self):
        pass


if __name__ == "__main__":
    BadStepFlow()
