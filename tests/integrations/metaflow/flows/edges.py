from metaflow import FlowSpec, conda, conda_base, step


@conda_base(libraries={"fx-core": "1.1.0"})
class EdgesFlow(FlowSpec):
    @step
    def start(self):
        try:
            import fx_core

            print(f"start fx-core={fx_core.__version__}")
        except ImportError:
            print("start fx-core=none")
        self.next(self.end)

    @conda(disabled=True)
    @step
    def end(self):
        print("end done")


if __name__ == "__main__":
    EdgesFlow()
