"""Flow-level decorators merged together, a step's merged decorators over them, virtual packages (also those
of a step that asks for a GPU)."""

from metaflow import FlowSpec, conda, conda_base, pypi, pypi_base, resources, step, sys_packages


@conda_base(libraries={"fx-core": ">=1.1"})
@pypi_base(packages={"fx-extras": ""})
class MergeRulesFlow(FlowSpec):
    @conda(libraries={"fx-core": "<2"})
    @step
    def start(self):
        self.next(self.gpu)

    @resources(gpu=1)
    @sys_packages(packages={"__cuda": "12.4"})
    @conda(libraries={"fx-native": ""})
    @step
    def gpu(self):
        self.next(self.on_gpu)

    @resources(gpu=1)
    @conda(libraries={"fx-native": ""})
    @step
    def on_gpu(self):
        self.next(self.end)

    @conda(libraries={"fx-core": "2.0.0"})
    @pypi(packages={"fx-extras": "0.3.0"})
    @step
    def end(self):
        pass


if __name__ == "__main__":
    MergeRulesFlow()
