"""fetch_at_exec with a name holding the task id: each task of a foreach finds its own environment."""

from metaflow import FlowSpec, conda, current, named_env, step


class PerTaskEnvFlow(FlowSpec):
    @conda(disabled=True)
    @step
    def start(self):
        self.items = [1, 2, 3]
        self.next(self.fan, foreach="items")

    @named_env(name="team/task-@{METAFLOW_TASK_ID}", fetch_at_exec=True)
    @step
    def fan(self):
        import fx_core

        print(f"step=fan task={current.task_id} fx-core={fx_core.__version__}")
        self.next(self.join)

    @conda(disabled=True)
    @step
    def join(self, inputs):
        self.next(self.end)

    @conda(disabled=True)
    @step
    def end(self):
        pass


if __name__ == "__main__":
    PerTaskEnvFlow()
